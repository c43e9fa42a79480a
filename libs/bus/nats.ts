// The cluster bus on NATS core (client: @nats-io/transport-node, the v3
// successor of `nats`; v2 is in maintenance only). One connection per process:
// NATS keeps per-connection publish order per subject, which the shard
// handoff relies on.
import { AuthorizationError, connect, InvalidArgumentError, UserAuthenticationExpiredError, type NatsConnection } from '@nats-io/transport-node';
import { logger, redactUrl } from '../log/index.ts';
import type { Bus, Subscription } from './bus.ts';
import { decodeEnvelope, encodeEnvelope, type Envelope } from './envelope.ts';
import { isFrame, packFrame, unpackFrame } from './frame.ts';

/** Bytes of envelopes one frame gathers before another is started. */
const MAX_FRAME_BYTES = 256 * 1024;

const log = logger('nats');

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** The servers a `bus` section names: `servers`, else `url` split on commas. */
export function natsServers(bus: { url?: string; servers?: readonly string[] }): string[] {
  const list = bus.servers ? [...bus.servers] : (bus.url ?? DEFAULT_NATS_URL).split(',');
  return list.map((s) => s.trim()).filter((s) => s !== '');
}

/**
 * The client ignores credentials in a server URL: they are taken out and sent as user and password (or as a
 * token, `nats://token@host`), those of the first URL that has any.
 */
export function withoutCredentials(servers: readonly string[]): { servers: string[]; auth: { user?: string; pass?: string; token?: string } } {
  let auth: { user?: string; pass?: string; token?: string } | undefined;
  const bare = servers.map((s) => {
    const m = /^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@(.*)$/i.exec(s);
    if (!m) return s;
    const [, scheme, cred, rest] = m;
    const colon = cred.indexOf(':');
    auth ??= colon < 0 ? { token: decodeURIComponent(cred) } : { user: decodeURIComponent(cred.slice(0, colon)), pass: decodeURIComponent(cred.slice(colon + 1)) };
    return scheme + rest;
  });
  return { servers: bare, auth: auth ?? {} };
}

/** Retrying cannot cure these: bad credentials or a malformed address. */
const fatal = (e: unknown): boolean => e instanceof AuthorizationError || e instanceof UserAuthenticationExpiredError || e instanceof InvalidArgumentError;

export class NatsBus implements Bus {
  readonly kind = 'nats' as const;
  private seq = 0;
  private messages = 0;
  /** NATS messages sent: what the bus server and every subscriber pay for. */
  get published(): number { return this.messages; }
  /** Envelopes published (several may travel in one message). */
  get envelopes(): number { return this.seq; }
  private connected = true;

  private constructor(private readonly nc: NatsConnection, readonly origin: string, private readonly onError: (e: unknown) => void) {
    // The client tries every known server (those given, and those the cluster gossips) until one takes it
    // back, then subscribes again; what is published meanwhile waits in its buffer.
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') {
          this.connected = false;
          log.warn('disconnected; reconnecting', { event: 'bus-disconnected', server: redactUrl(s.server) });
        } else if (s.type === 'reconnect') {
          this.connected = true;
          log.info('reconnected', { event: 'bus-reconnected', server: redactUrl(s.server) });
        }
      }
    })().catch(() => {});
  }

  /**
   * Connects to the first of `servers` that answers (a string may list several, separated by commas),
   * trying them all again until `timeoutMs` (default 10 s) has passed; the error then names them.
   */
  static async connect(servers: string | readonly string[], origin: string, onError: (e: unknown) => void = () => {},
    opts: { timeoutMs?: number } = {}): Promise<NatsBus> {
    const list = typeof servers === 'string' ? natsServers({ url: servers }) : [...servers];
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    const { servers: bare, auth } = withoutCredentials(list);
    for (;;) {
      try {
        const nc = await connect({
          servers: bare,
          ...auth,
          name: origin,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          pingInterval: 5000,
          timeout: Math.max(250, Math.min(5000, deadline - Date.now())),
        });
        return new NatsBus(nc, origin, onError);
      } catch (e) {
        const left = deadline - Date.now();
        if (fatal(e) || left <= 0) {
          const why = e instanceof Error ? e.message : String(e);
          throw new Error(`cannot reach NATS at ${list.map(redactUrl).join(', ')}${fatal(e) ? '' : ` within ${timeoutMs / 1000} s`}: ${why}`, { cause: e });
        }
        await new Promise((r) => setTimeout(r, Math.min(250, left)));
      }
    }
  }

  /**
   * Publishes are queued and handed to the client once per event-loop turn:
   * the client writes its buffer on a microtask, which would otherwise mean one
   * socket write per inbound client packet. Envelopes for one subject queued in
   * the same turn travel as one message (frame.ts), in the order published:
   * a room message to 500 sessions on one node, or 500 presence deliveries,
   * cost the bus one message. Order across subjects was never promised.
   */
  publish(subject: string, env: Envelope): void {
    env.origin = this.origin;
    env.seq = ++this.seq;
    const bytes = encodeEnvelope(env);
    const q = this.pending.get(subject);
    if (q) q.push(bytes);
    else this.pending.set(subject, [bytes]);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.drainPending);
    }
  }

  private readonly pending = new Map<string, Uint8Array[]>();
  private scheduled = false;
  private readonly drainPending = (): void => {
    this.scheduled = false;
    for (const [subject, q] of this.pending) {
      if (q.length === 1) {
        this.send(subject, q[0]);
        continue;
      }
      // Frames stay well below the server's payload limit (1 MB by default).
      let from = 0;
      let size = 0;
      for (let i = 0; i < q.length; i++) {
        if (i > from && size + q[i].length > MAX_FRAME_BYTES) {
          this.send(subject, i - from === 1 ? q[from] : packFrame(q.slice(from, i)));
          from = i;
          size = 0;
        }
        size += q[i].length + 4;
      }
      this.send(subject, q.length - from === 1 ? q[from] : packFrame(from === 0 ? q : q.slice(from)));
    }
    this.pending.clear();
  };

  private send(subject: string, data: Uint8Array): void {
    this.messages++;
    try {
      this.nc.publish(subject, data);
    } catch (e) {
      // Closed (shutting down) or refused: the message is lost like one NATS drops; this runs on a timer, where a throw would end the process.
      this.onError(e);
    }
  }

  subscribe(subject: string, handler: (env: Envelope) => void): Subscription {
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return this.onError(err);
        let parts: Uint8Array[];
        try {
          parts = isFrame(msg.data) ? unpackFrame(msg.data) : [msg.data];
        } catch (e) {
          return this.onError(e);
        }
        // One bad envelope, or a handler that throws, costs only itself: the rest of a frame still arrives.
        for (const part of parts) {
          let env: Envelope;
          try {
            env = decodeEnvelope(part);
          } catch (e) {
            this.onError(e);
            continue;
          }
          try {
            handler(env);
          } catch (e) {
            this.onError(e);
          }
        }
      },
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  flush(): Promise<void> {
    this.drainPending();
    return this.nc.flush();
  }
  async rtt(): Promise<number> { return (await this.nc.rtt()) / 1000; }

  healthy(): boolean { return this.connected && !this.nc.isClosed(); }

  async close(): Promise<void> {
    this.drainPending();
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}
