// The initiating side of a server-to-server stream (RFC 6120 §4–§6) as one
// explicit state machine: connect to the first target that answers, STARTTLS,
// then authenticate with SASL EXTERNAL (our certificate) when the peer offers
// it, else Server Dialback (XEP-0220), then carry stanzas — both ways when
// the peer agreed to a bidirectional stream (XEP-0288). A stream opened only
// to verify a dialback key ends with the answer.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ServiceTarget } from '../../libs/dns/index.ts';
import { StreamError } from '../../libs/errors/index.ts';
import { logger } from '../../libs/log/index.ts';
import { child, children, el, text, type Element } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { S2sConnection } from './connection.ts';
import type { S2sContext } from './context.ts';
import { verifyAnswer } from './dialback.ts';
import {
  isStanza, NS_BIDI, NS_BIDI_FEATURE, NS_DIALBACK, NS_DIALBACK_FEATURE, NS_SASL, NS_SERVER, NS_STREAM, NS_TLS, qname, streamHeader,
} from './stanza.ts';

const log = logger('s2s');

export type OutgoingState =
  | { name: 'connecting' }
  | { name: 'wait-stream' }
  | { name: 'wait-features' }
  | { name: 'wait-proceed' }
  | { name: 'wait-tls' }
  | { name: 'wait-sasl' }
  | { name: 'wait-dialback' }
  | { name: 'wait-verify' }
  | { name: 'established' }
  | { name: 'closed' };

/** A stream that carries stanzas, or one that only asks whether a dialback key is genuine. */
export type OutgoingPurpose =
  | { kind: 'route' }
  | { kind: 'verify'; streamId: string; key: string };

/** RFC 6120 §10.4.3: the stanza error a sender gets when no stream could be set up. */
export type SetupFailure = 'remote-server-not-found' | 'remote-server-timeout';

export interface OutgoingEvents {
  established(): void;
  /** Setup failed, or a verify stream got no answer. */
  failed(condition: SetupFailure, text: string): void;
  /** An established stream ended. */
  closed(): void;
  /** A verify stream's answer. */
  verified(valid: boolean): void;
}

class ConnectTimeout extends Error {}

function describe(e: unknown): string {
  return e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e);
}

/** "condition: text" of a <stream:error/>. */
function streamErrorText(e: Element): string {
  const kids = children(e);
  const cond = kids.find((k) => k.name !== 'text')?.name ?? 'undefined-condition';
  const t = text(kids.find((k) => k.name === 'text'));
  return t ? `${cond}: ${t}` : cond;
}

export class OutgoingStream {
  state: OutgoingState = { name: 'connecting' };
  /** How we proved who we are to the peer. */
  auth: 'none' | 'external' | 'dialback' = 'none';
  /** XEP-0288: the peer may send us stanzas on this stream too. */
  bidi = false;
  /** When a stanza last went over this stream (either way). */
  lastUsed = Date.now();
  private conn: S2sConnection | undefined;
  private header: Record<string, string> = {};
  private features: Element | undefined;
  private externalFailed = false;
  private setupTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly local: string,
    readonly remote: string,
    private readonly purpose: OutgoingPurpose,
    private readonly ctx: S2sContext,
    private readonly events: OutgoingEvents,
  ) {}

  get secure(): boolean {
    return this.conn?.secure ?? false;
  }

  start(): void {
    const seconds = this.ctx.config.s2s.setupTimeoutSeconds;
    this.setupTimer = setTimeout(() => this.end(undefined, 'remote-server-timeout', `no authenticated stream to ${this.remote} within ${seconds} s`), seconds * 1000);
    this.setupTimer.unref();
    this.connect().catch((e: unknown) => {
      log.error('setting up an outgoing stream failed', { local: this.local, remote: this.remote, error: e });
      this.end(undefined, 'remote-server-not-found', `the stream to ${this.remote} could not be set up`);
    });
  }

  send(xml: string): void {
    this.lastUsed = Date.now();
    this.conn?.send(xml);
  }

  /** Close the stream: gracefully when established, as a timeout when it never was. */
  close(): void {
    this.end(undefined, 'remote-server-timeout', this.state.name === 'established' ? 'closed' : `gave up on the stream to ${this.remote}`);
  }

  // ---- connecting ----

  private async connect(): Promise<void> {
    let targets: ServiceTarget[];
    try {
      targets = await this.ctx.targets(this.remote);
    } catch (e) {
      return this.end(undefined, 'remote-server-not-found', `cannot resolve ${this.remote}: ${describe(e)}`);
    }
    if (targets.length === 0) return this.end(undefined, 'remote-server-not-found', `${this.remote} offers no server-to-server service`);
    let timedOut = false;
    const problems: string[] = [];
    for (const t of targets) {
      if (this.state.name !== 'connecting') return; // the setup timer ended it meanwhile
      try {
        const socket = await this.dial(t);
        if (this.state.name !== 'connecting') {
          socket.destroy();
          return;
        }
        return this.attach(socket);
      } catch (e) {
        if (e instanceof ConnectTimeout) timedOut = true;
        problems.push(`${t.host}:${t.port} ${describe(e)}`);
      }
    }
    this.end(undefined, timedOut ? 'remote-server-timeout' : 'remote-server-not-found', `cannot connect to ${this.remote} (${problems.join('; ')})`);
  }

  private dial(t: ServiceTarget): Promise<Socket> {
    const ms = this.ctx.config.s2s.connectTimeoutSeconds * 1000;
    return new Promise((resolve, reject) => {
      const socket: Socket = t.directTls
        ? tlsConnect({ host: t.host, port: t.port, servername: this.remote, ALPNProtocols: ['xmpp-server'], secureContext: this.ctx.certs.context(this.local), rejectUnauthorized: false })
        : netConnect({ host: t.host, port: t.port });
      const onError = (e: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(e);
      };
      const timer = setTimeout(() => onError(new ConnectTimeout('timed out')), ms);
      socket.once('error', onError);
      socket.once(t.directTls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        resolve(socket);
      });
    });
  }

  private attach(socket: Socket): void {
    const conn = new S2sConnection(socket, this.ctx.limits);
    this.conn = conn;
    conn.attach({
      open: (attrs) => this.onOpen(attrs),
      element: (e) => this.onElement(e),
      close: () => this.end(undefined, 'remote-server-not-found', `${this.remote} closed the stream`),
      error: (err) => this.end(err, 'remote-server-not-found', `${this.remote} sent bad XML: ${err.message}`),
      gone: () => this.end(undefined, 'remote-server-not-found', `the connection to ${this.remote} was closed`),
    });
    this.openStream();
  }

  private openStream(): void {
    this.conn!.openStream(streamHeader({ from: this.local, to: this.remote }));
    this.state = { name: 'wait-stream' };
  }

  // ---- the peer's stream ----

  private onOpen(attrs: Record<string, string>): void {
    if (this.state.name !== 'wait-stream') return this.end(new StreamError('invalid-xml', 'unexpected stream header'), 'remote-server-not-found', `${this.remote} restarted its stream unasked`);
    if (attrs['xmlns:stream'] !== NS_STREAM || attrs.xmlns !== NS_SERVER) {
      return this.end(new StreamError('invalid-namespace', 'expected a jabber:server stream'), 'remote-server-not-found', `${this.remote} answered with a stream that is not jabber:server`);
    }
    if (attrs.version === undefined || !attrs.version.startsWith('1.')) {
      return this.end(new StreamError('unsupported-version', 'XMPP 1.0 streams only'), 'remote-server-not-found', `${this.remote} does not speak XMPP 1.0`);
    }
    this.header = attrs;
    this.state = { name: 'wait-features' };
  }

  private onElement(e: Element): void {
    const q = qname(e, this.header);
    if (q.ns === NS_STREAM && q.local === 'error') {
      return this.end(undefined, 'remote-server-not-found', `${this.remote} ended the stream: ${streamErrorText(e)}`);
    }
    const s = this.state;
    switch (s.name) {
      case 'connecting':
      case 'wait-stream':
      case 'wait-tls':
      case 'closed':
        return; // the parser emits nothing before a header; after the end, nothing matters
      case 'wait-features':
        if (q.ns === NS_STREAM && q.local === 'features') return this.onFeatures(e);
        return this.unexpected(e);
      case 'wait-proceed':
        if (q.ns === NS_TLS && q.local === 'proceed') return this.startTls();
        return this.end(undefined, 'remote-server-not-found', `${this.remote} refused STARTTLS`);
      case 'wait-sasl':
        if (q.ns === NS_SASL && q.local === 'success') {
          // RFC 6120 §6.4.6: a fresh stream on the authenticated connection.
          this.auth = 'external';
          this.conn!.resetStream();
          return this.openStream();
        }
        if (q.ns === NS_SASL && q.local === 'failure') {
          log.info('SASL EXTERNAL refused; trying dialback', { local: this.local, remote: this.remote, reason: children(e)[0]?.name ?? '' });
          this.externalFailed = true;
          return this.authenticate();
        }
        return this.unexpected(e);
      case 'wait-dialback':
        if (q.ns === NS_DIALBACK && q.local === 'result' && e.attrs.type !== undefined) return this.dialbackResult(e);
        if (q.ns === NS_DIALBACK && q.local === 'verify' && e.attrs.type === undefined) return this.conn!.send(verifyAnswer(this.ctx.keys, this.ctx.served, e));
        return this.unexpected(e);
      case 'wait-verify':
        if (q.ns === NS_DIALBACK && q.local === 'verify' && e.attrs.type !== undefined) return this.verifyResult(e);
        return this.unexpected(e);
      case 'established':
        return this.onEstablished(e, q.ns, q.local);
      default: {
        const unreachable: never = s;
        return unreachable;
      }
    }
  }

  private unexpected(e: Element): void {
    this.end(new StreamError('unsupported-stanza-type', `<${e.name}/> is not expected now`), 'remote-server-not-found', `${this.remote} sent <${e.name}/> during ${this.state.name}`);
  }

  // ---- negotiation ----

  private onFeatures(f: Element): void {
    const conn = this.conn!;
    const s2s = this.ctx.config.s2s;
    if (this.auth !== 'none') return this.up(); // the stream after SASL success
    if (!conn.secure && child(f, 'starttls', NS_TLS)) {
      conn.send(`<starttls xmlns='${NS_TLS}'/>`);
      this.state = { name: 'wait-proceed' };
      return;
    }
    if (this.purpose.kind === 'verify') return this.sendVerify(this.purpose.streamId, this.purpose.key);
    if (!conn.secure && s2s.requireTls) {
      return this.end(new StreamError('policy-violation', 'TLS is required'), 'remote-server-not-found', `${this.remote} offers no TLS`);
    }
    this.features = f;
    if (s2s.bidi && child(f, 'bidi', NS_BIDI_FEATURE)) {
      conn.send(`<bidi xmlns='${NS_BIDI}'/>`);
      this.bidi = true;
    }
    this.authenticate();
  }

  private startTls(): void {
    this.state = { name: 'wait-tls' };
    this.conn!.startTlsClient(this.remote, this.ctx.certs.context(this.local)).then(
      () => { if (this.state.name === 'wait-tls') this.openStream(); },
      (err: unknown) => this.end(undefined, 'remote-server-not-found', `TLS with ${this.remote} failed: ${describe(err)}`),
    ).catch((e: unknown) => {
      log.error('opening the stream after TLS failed', { local: this.local, remote: this.remote, error: e });
      this.end(undefined, 'remote-server-not-found', `the stream to ${this.remote} could not be opened after TLS`);
    });
  }

  /** SASL EXTERNAL when offered (it proves our certificate), else dialback where allowed. */
  private authenticate(): void {
    const conn = this.conn!;
    const f = this.features!;
    const dialbackAllowed = this.ctx.config.s2s.dialback === 'allow';
    if (!conn.certifies(this.remote) && !dialbackAllowed) {
      return this.end(new StreamError('policy-violation', 'your certificate cannot be verified'), 'remote-server-not-found',
        `${this.remote} is not authenticated by its certificate (${conn.certificateProblem}) and dialback is refused`);
    }
    const external = children(child(f, 'mechanisms', NS_SASL) ?? el('none'), 'mechanism').some((m) => text(m).trim() === 'EXTERNAL');
    if (external && conn.secure && !this.externalFailed) {
      conn.send(serialize(el('auth', { xmlns: NS_SASL, mechanism: 'EXTERNAL' }, Buffer.from(this.local).toString('base64'))));
      this.state = { name: 'wait-sasl' };
      return;
    }
    const dialbackOffered = child(f, 'dialback', NS_DIALBACK_FEATURE) !== undefined || this.header['xmlns:db'] === NS_DIALBACK;
    const id = this.header.id ?? '';
    if (dialbackAllowed && dialbackOffered && id !== '') {
      const key = this.ctx.keys.key(this.remote, this.local, id);
      conn.send(serialize(el('db:result', { from: this.local, to: this.remote }, key)));
      this.state = { name: 'wait-dialback' };
      return;
    }
    this.end(new StreamError('policy-violation', 'no authentication method in common'), 'remote-server-not-found',
      `no way to authenticate to ${this.remote}${this.externalFailed ? ' (it refused SASL EXTERNAL)' : ''}${dialbackAllowed ? '' : ' (dialback is refused)'}`);
  }

  private dialbackResult(e: Element): void {
    if (e.attrs.from !== this.remote || e.attrs.to !== this.local) {
      return this.end(new StreamError('invalid-from', 'the dialback result names other domains'), 'remote-server-not-found', `${this.remote} answered dialback for other domains`);
    }
    if (e.attrs.type !== 'valid') {
      this.ctx.counters.dialbackFailed('out');
      const why = e.attrs.type === 'error' ? children(child(e, 'error') ?? el('none'))[0]?.name ?? 'error' : e.attrs.type;
      return this.end(undefined, 'remote-server-not-found', `${this.remote} did not accept our dialback key (${why})`);
    }
    this.auth = 'dialback';
    this.up();
  }

  private sendVerify(streamId: string, key: string): void {
    this.conn!.send(serialize(el('db:verify', { from: this.local, to: this.remote, id: streamId }, key)));
    this.state = { name: 'wait-verify' };
  }

  private verifyResult(e: Element): void {
    if (this.purpose.kind !== 'verify' || e.attrs.id !== this.purpose.streamId) return;
    clearTimeout(this.setupTimer);
    this.state = { name: 'closed' };
    this.conn!.close();
    this.events.verified(e.attrs.type === 'valid');
  }

  private up(): void {
    clearTimeout(this.setupTimer);
    this.state = { name: 'established' };
    this.lastUsed = Date.now();
    log.info('outgoing stream established', { local: this.local, remote: this.remote, auth: this.auth, bidi: this.bidi, tls: this.secure });
    this.events.established();
  }

  // ---- established ----

  private onEstablished(e: Element, ns: string, local: string): void {
    if (isStanza(e)) {
      if (!this.bidi) return this.end(new StreamError('unsupported-stanza-type', 'this stream carries stanzas one way only'), 'remote-server-not-found', `${this.remote} sent a stanza on a one-way stream`);
      this.lastUsed = Date.now();
      const err = this.ctx.inbound(e, (l, r) => l === this.local && r === this.remote, (r) => (r === this.remote ? this.local : undefined));
      if (err) this.end(err, 'remote-server-not-found', `${this.remote} broke the rules: ${err.message}`);
      return;
    }
    // Peers verify other streams' keys over the stream they already have to us.
    if (ns === NS_DIALBACK && local === 'verify' && e.attrs.type === undefined) return this.conn!.send(verifyAnswer(this.ctx.keys, this.ctx.served, e));
  }

  // ---- ending ----

  /**
   * The one way a stream ends. Before it was established, that is a failure
   * whose condition the waiting stanzas bounce with.
   */
  private end(err: StreamError | undefined, condition: 'remote-server-not-found' | 'remote-server-timeout', why: string): void {
    const was = this.state.name;
    if (was === 'closed') return;
    this.state = { name: 'closed' };
    clearTimeout(this.setupTimer);
    this.conn?.close(err);
    if (was === 'established') {
      log.info('outgoing stream closed', { local: this.local, remote: this.remote, why });
      this.events.closed();
    } else {
      log.warn(this.purpose.kind === 'verify' ? 'dialback verification failed' : 'outgoing stream failed', { local: this.local, remote: this.remote, condition, why });
      this.events.failed(condition, why);
    }
  }
}
