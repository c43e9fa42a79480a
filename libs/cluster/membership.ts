// Who is alive: heartbeats with expiry. In the cluster each process renews its
// entry in a Redis sorted set scored by expiry time (Redis' own clock, so
// process clocks never matter); an entry not renewed within the TTL is dead.
// The embedded mode has one member: itself.
import type { RedisClient } from '../store/redis-store.ts';

export interface Membership {
  readonly self: string;
  /** Live members that take work, sorted. */
  members(): readonly string[];
  /** Live members, leaving ones included: they still answer (a shard can be claimed from them). */
  alive(): readonly string[];
  onChange(cb: (members: readonly string[], previous: readonly string[]) => void): void;
  start(): Promise<void>;
  /** Keep heartbeating but take no more work: others move our shards away. */
  markLeaving(): Promise<void>;
  /** Leave at once: others see it on their next poll. */
  stop(): Promise<void>;
}

export class StaticMembership implements Membership {
  constructor(readonly self: string) {}
  members(): readonly string[] { return [this.self]; }
  alive(): readonly string[] { return [this.self]; }
  onChange(): void {}
  async start(): Promise<void> {}
  async markLeaving(): Promise<void> {}
  async stop(): Promise<void> {}
}

// KEYS[1]: alive members, KEYS[2]: the leaving ones; both scored by expiry.
// ARGV: self ('' to watch only), ttl, leaving ('1' or '0').
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1]) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return { redis.call('ZRANGE', KEYS[1], 0, -1), redis.call('ZRANGE', KEYS[2], 0, -1) }`;

export interface RedisMembershipOptions {
  /** The group's key, e.g. 'parley:{members:session}'; with `${key}:leaving` it must hash to one Redis Cluster slot (a hash tag). */
  key: string;
  /** This process's id, or '' to watch the group without joining it. */
  self: string;
  heartbeatMs: number;
  ttlMs: number;
  onError?: (e: unknown) => void;
}

export class RedisMembership implements Membership {
  readonly self: string;
  private current: string[] = [];
  private all: string[] = [];
  private leaving = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: ((m: readonly string[], prev: readonly string[]) => void)[] = [];
  private stopped = false;
  private lastBeat = 0;
  private expired = false;
  private expiry: NodeJS.Timeout | undefined;
  private readonly expiryListeners: ((expired: boolean) => void)[] = [];

  constructor(private readonly redis: RedisClient, private readonly opts: RedisMembershipOptions) {
    this.self = opts.self;
  }

  members(): readonly string[] { return this.current; }
  alive(): readonly string[] { return this.all; }
  onChange(cb: (m: readonly string[], prev: readonly string[]) => void): void { this.listeners.push(cb); }

  /**
   * When the newest heartbeat that reached Redis was sent (this process's
   * clock, ms; 0 before the first). Redis stamped our entry after that, so the
   * entry lives at least until lastBeatAt + ttlMs, and may be gone after.
   */
  get lastBeatAt(): number { return this.lastBeat; }

  /**
   * Our own entry's fate, for a member (not a watcher): `true` once ttlMs
   * have passed since lastBeatAt (the others may have declared us dead),
   * `false` when a heartbeat sent since gets through.
   */
  onExpiry(cb: (expired: boolean) => void): void { this.expiryListeners.push(cb); }

  private renewed(sentAt: number): void {
    if (sentAt <= this.lastBeat) return; // an older heartbeat answered late
    this.lastBeat = sentAt;
    clearTimeout(this.expiry);
    const left = sentAt + this.opts.ttlMs - Date.now();
    if (left > 0) {
      this.expiry = setTimeout(() => this.setExpired(true), left);
      this.expiry.unref();
    }
    this.setExpired(left <= 0);
  }

  private setExpired(expired: boolean): void {
    if (this.expired === expired) return;
    this.expired = expired;
    for (const l of this.expiryListeners) l(expired);
  }

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), this.opts.heartbeatMs);
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    const sentAt = Date.now();
    try {
      const [alive, leaving] = (await this.redis.eval(HEARTBEAT, 2, this.opts.key, `${this.opts.key}:leaving`, this.self,
        String(this.opts.ttlMs), this.leaving ? '1' : '0')) as [string[], string[]];
      if (this.stopped) return;
      if (this.self) this.renewed(sentAt);
      this.all = alive.sort();
      const list = alive.filter((m) => !leaving.includes(m));
      if (list.length !== this.current.length || list.some((m, i) => m !== this.current[i])) {
        const prev = this.current;
        this.current = list;
        for (const l of this.listeners) l(list, prev);
      }
    } catch (e) {
      this.opts.onError?.(e);
    }
  }

  async markLeaving(): Promise<void> {
    this.leaving = true;
    await this.beat();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    clearTimeout(this.expiry);
    if (this.self) {
      await this.redis.zrem(this.opts.key, this.self).catch(() => {});
      await this.redis.zrem(`${this.opts.key}:leaving`, this.self).catch(() => {});
    }
  }
}
