// The way out from one of our domains to one remote domain: a bounded queue
// while the stream is being set up, then the stream. A route lives exactly as
// long as its stream; the next stanza after it ends starts a new one. Nothing
// waits without a bound and nothing is dropped without a bounce.
import type { Envelope } from '../../libs/bus/envelope.ts';
import type { StanzaErrorCondition } from '../../libs/errors/index.ts';
import { logger } from '../../libs/log/index.ts';
import type { S2sContext } from './context.ts';
import { OutgoingStream } from './outgoing.ts';
import { wireStanza } from './stanza.ts';

const log = logger('s2s');

export interface RouteOwner {
  readonly ctx: S2sContext;
  /** Return a stanza to its local sender with an error. */
  bounce(env: Envelope, condition: StanzaErrorCondition, text: string): void;
  /** The route's stream is over (failed or closed): forget the route. */
  ended(route: Route): void;
}

export class Route {
  readonly stream: OutgoingStream;
  /** Why the stream could not be set up, once it could not. */
  failure: { condition: StanzaErrorCondition; text: string } | undefined;
  private queue: Envelope[] = [];
  private closing = false;
  private readonly done: Promise<void>;
  private finish!: () => void;

  constructor(readonly local: string, readonly remote: string, private readonly owner: RouteOwner) {
    this.done = new Promise((r) => (this.finish = r));
    this.stream = new OutgoingStream(local, remote, { kind: 'route' }, owner.ctx, {
      established: () => this.flush(),
      failed: (condition, text) => this.fail(condition, text),
      closed: () => this.over(),
      verified: () => {},
    });
    this.stream.start();
  }

  get key(): string {
    return `${this.local} ${this.remote}`;
  }

  get queued(): number {
    return this.queue.length;
  }

  send(env: Envelope): void {
    const state = this.stream.state.name;
    if (state === 'established') return this.write(env);
    if (state === 'closed') return this.owner.bounce(env, 'remote-server-not-found', `the stream to ${this.remote} has ended`);
    if (this.queue.length >= this.owner.ctx.config.s2s.maxQueue) {
      return this.owner.bounce(env, 'resource-constraint', `too many stanzas waiting for a stream to ${this.remote}`);
    }
    this.queue.push(env);
  }

  /**
   * Handoff and idleness: flush what waits once the stream is up, close it,
   * resolve when it is over (a stream still being set up gets its chance, up
   * to the setup timeout).
   */
  close(): Promise<void> {
    this.closing = true;
    if (this.stream.state.name === 'established') this.stream.close();
    return this.done;
  }

  /** Shutdown: an established stream closes, one still being set up fails now and what waits bounces. */
  abort(): Promise<void> {
    this.closing = true;
    this.stream.close();
    return this.done;
  }

  private write(env: Envelope): void {
    let xml: string;
    try {
      xml = wireStanza(env);
    } catch (e) {
      log.error('cannot serialize a stanza for a remote server', { remote: this.remote, error: e });
      return this.owner.bounce(env, 'internal-server-error', 'the stanza could not be forwarded');
    }
    this.owner.ctx.counters.stanza('out', env.kind);
    this.stream.send(xml);
  }

  private flush(): void {
    const waiting = this.queue;
    this.queue = [];
    for (const env of waiting) this.write(env);
    if (this.closing) this.stream.close();
  }

  private fail(condition: StanzaErrorCondition, text: string): void {
    this.failure = { condition, text };
    const waiting = this.queue;
    this.queue = [];
    for (const env of waiting) this.owner.bounce(env, condition, text);
    this.over();
  }

  private over(): void {
    this.owner.ended(this);
    this.finish();
  }
}
