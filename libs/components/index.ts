// External components: which domains are served by a program connected to
// some process of this deployment, and how a stanza reaches it. Stanzas for a
// component go to its own subject (`<prefix>.component.<domain>`), which only
// the process holding its connection subscribes to, so a sender never needs to
// know where that is. Whether a component is connected at all is learned from
// announcements on `<prefix>.components`: its holder announces the connection
// when it authenticates, again every `announceMs`, and its end; an entry not
// renewed within `ttlMs` (its process died) is forgotten. The newest connection
// of a domain wins: a holder that hears of a newer one for its domain lets go.
import { randomBytes } from 'node:crypto';
import type { Bus, Subjects, Subscription } from '../bus/bus.ts';
import { envelope, type Envelope } from '../bus/envelope.ts';

const OP_UP = 'component-up';
const OP_DOWN = 'component-down';
/** A process that starts asks every holder to announce at once rather than wait a period. */
const OP_ASK = 'component-ask';

interface Announcement {
  domain: string;
  node: string;
  /** The connection's id, unique in the deployment. */
  conn: string;
  /** When it authenticated (ms since the epoch, the holder's clock). */
  since: number;
  /** The first announcement of a connection, which displaces any other one. */
  fresh: boolean;
}

interface Entry {
  node: string;
  conn: string;
  since: number;
  expires: number;
}

/** A component connection held by this process. */
export interface ComponentHold {
  readonly domain: string;
  /** The connection ended: stop taking its stanzas and say so. */
  release(): void;
}

interface Held {
  domain: string;
  conn: string;
  since: number;
  sub: Subscription;
  displaced: () => void;
}

export interface ComponentTiming {
  /** How often a holder announces its connections. */
  announceMs: number;
  /** An announcement not renewed within this is a connection gone with its process. */
  ttlMs: number;
}

/** Is (since, conn) of `a` newer than that of `b`? Ties on the clock go by id, the same on every process. */
function newer(a: { since: number; conn: string }, b: { since: number; conn: string }): boolean {
  return a.since !== b.since ? a.since > b.since : a.conn > b.conn;
}

export class ComponentDirectory {
  private readonly configured: Set<string>;
  private readonly where = new Map<string, Entry>();
  private readonly held = new Map<string, Held>();
  private sub: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    domains: readonly string[],
    private readonly node: string,
    private readonly timing: ComponentTiming,
  ) {
    this.configured = new Set(domains);
  }

  /** Is this domain a configured component's (connected or not)? */
  has(domain: string): boolean {
    return this.configured.has(domain);
  }

  list(): string[] {
    return [...this.configured];
  }

  /** Is some connection for the domain announced and not expired? */
  connected(domain: string): boolean {
    const e = this.where.get(domain);
    return e !== undefined && e.expires > Date.now();
  }

  /** Which process holds the domain's connection (tests, logs); '' when none. */
  holderOf(domain: string): string {
    return this.connected(domain) ? this.where.get(domain)!.node : '';
  }

  /** Hand a stanza to the component of `domain`; false when none is connected (the caller bounces). */
  send(domain: string, env: Envelope): boolean {
    if (!this.connected(domain)) return false;
    this.bus.publish(this.subjects.component(domain), env);
    return true;
  }

  async start(): Promise<void> {
    if (this.configured.size === 0) return;
    this.sub = this.bus.subscribe(this.subjects.components(), (env) => this.heard(env));
    await this.bus.flush();
    this.bus.publish(this.subjects.components(), envelope({ kind: 'ctl', dir: 'deliver', op: OP_ASK }));
    this.timer = setInterval(() => {
      for (const h of this.held.values()) this.announce(h, false);
    }, this.timing.announceMs);
    this.timer.unref();
  }

  /**
   * This process holds an authenticated connection for `domain`: stanzas for
   * the domain come to `deliver` until it is released, or until a newer
   * connection for it authenticates anywhere (then `displaced` is called, and
   * the hold is already released).
   */
  async hold(domain: string, deliver: (env: Envelope) => void, displaced: () => void): Promise<ComponentHold> {
    const h: Held = { domain, conn: `${this.node}/${randomBytes(6).toString('base64url')}`, since: Date.now(), sub: this.bus.subscribe(this.subjects.component(domain), deliver), displaced };
    // Registered with the bus server before anyone is told to send here.
    await this.bus.flush();
    this.held.set(h.conn, h);
    this.announce(h, true);
    // On the bus server before the component hears it is connected: whoever it then writes to hears of it first
    // (what the bus server took from one publisher it hands each subscriber in that order).
    await this.bus.flush();
    return { domain, release: () => this.release(h) };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const h of [...this.held.values()]) this.release(h);
    this.sub?.unsubscribe();
  }

  private release(h: Held): void {
    if (!this.held.delete(h.conn)) return;
    h.sub.unsubscribe();
    this.bus.publish(this.subjects.components(), envelope({ kind: 'ctl', dir: 'deliver', op: OP_DOWN, data: { domain: h.domain, conn: h.conn } }));
  }

  private announce(h: Held, fresh: boolean): void {
    const data: Announcement = { domain: h.domain, node: this.node, conn: h.conn, since: h.since, fresh };
    this.bus.publish(this.subjects.components(), envelope({ kind: 'ctl', dir: 'deliver', op: OP_UP, data }));
  }

  private heard(env: Envelope): void {
    if (env.op === OP_ASK) {
      for (const h of this.held.values()) this.announce(h, false);
      return;
    }
    const a = env.data as Partial<Announcement> | undefined;
    if (!a || typeof a.domain !== 'string' || typeof a.conn !== 'string' || !this.configured.has(a.domain)) return;
    if (env.op === OP_DOWN) {
      if (this.where.get(a.domain)?.conn === a.conn) this.where.delete(a.domain);
      return;
    }
    if (env.op !== OP_UP || typeof a.node !== 'string' || typeof a.since !== 'number') return;
    const up = { node: a.node, conn: a.conn, since: a.since };
    const now = Date.now();
    const cur = this.where.get(a.domain);
    if (!cur || cur.conn === up.conn || a.fresh || cur.expires <= now || newer(up, cur)) {
      this.where.set(a.domain, { ...up, expires: now + this.timing.ttlMs });
    }
    // A connection of ours for the same domain that is not the newest lets go.
    for (const h of [...this.held.values()]) {
      if (h.domain === a.domain && h.conn !== up.conn && (a.fresh || newer(up, h))) {
        this.release(h);
        h.displaced();
      }
    }
  }
}
