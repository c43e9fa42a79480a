// The cluster bus on NATS core (client: @nats-io/transport-node, the v3
// successor of `nats`; v2 is in maintenance only). One connection per process:
// NATS keeps per-connection publish order per subject, which the shard
// handoff relies on.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Bus, Subscription } from './bus.ts';
import { decodeEnvelope, encodeEnvelope, type Envelope } from './envelope.ts';

export class NatsBus implements Bus {
  readonly kind = 'nats' as const;
  private seq = 0;
  get published(): number { return this.seq; }
  private connected = true;

  private constructor(private readonly nc: NatsConnection, readonly origin: string, private readonly onError: (e: unknown) => void) {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.connected = false;
        else if (s.type === 'reconnect') this.connected = true;
      }
    })().catch(() => {});
  }

  static async connect(url: string, origin: string, onError: (e: unknown) => void = () => {}): Promise<NatsBus> {
    const nc = await connect({
      servers: url.split(','),
      name: origin,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      pingInterval: 5000,
    });
    return new NatsBus(nc, origin, onError);
  }

  /**
   * Publishes are queued and handed to the client once per event-loop turn:
   * the client writes its buffer on a microtask, which would otherwise mean one
   * socket write per inbound client packet. Order is kept (one FIFO).
   */
  publish(subject: string, env: Envelope): void {
    env.origin = this.origin;
    env.seq = ++this.seq;
    this.pending.push(subject, encodeEnvelope(env));
    if (this.pending.length === 2) setImmediate(this.drainPending);
  }

  private readonly pending: (string | Uint8Array)[] = [];
  private readonly drainPending = (): void => {
    const p = this.pending;
    for (let i = 0; i < p.length; i += 2) this.nc.publish(p[i] as string, p[i + 1] as Uint8Array);
    p.length = 0;
  };

  subscribe(subject: string, handler: (env: Envelope) => void): Subscription {
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) return this.onError(err);
        let env: Envelope;
        try {
          env = decodeEnvelope(msg.data);
        } catch (e) {
          return this.onError(e);
        }
        handler(env);
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
