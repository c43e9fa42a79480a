// The embedded bus: a map from subject to handlers, delivered synchronously.
// Handlers enqueue (actor mailboxes, socket writes), so synchronous delivery
// keeps order and costs no allocation beyond the envelope itself.
import type { Bus, Subscription } from './bus.ts';
import type { Envelope } from './envelope.ts';

export class InProcessBus implements Bus {
  readonly kind = 'inprocess' as const;
  private seq = 0;
  get published(): number { return this.seq; }
  private readonly subs = new Map<string, Set<(env: Envelope) => void>>();

  constructor(readonly origin = 'local') {}

  publish(subject: string, env: Envelope): void {
    const handlers = this.subs.get(subject);
    if (!handlers) return;
    env.origin = this.origin;
    env.seq = ++this.seq;
    for (const h of handlers) h(env);
  }

  subscribe(subject: string, handler: (env: Envelope) => void): Subscription {
    let set = this.subs.get(subject);
    if (!set) this.subs.set(subject, (set = new Set()));
    set.add(handler);
    return {
      unsubscribe: () => {
        set.delete(handler);
        if (set.size === 0) this.subs.delete(subject);
      },
    };
  }

  async flush(): Promise<void> {}
  healthy(): boolean { return true; }
  async rtt(): Promise<number> { return 0; }
  async close(): Promise<void> { this.subs.clear(); }
}
