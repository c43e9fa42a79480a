// Who is alive: heartbeats with expiry. In the cluster each process renews its
// entry in a Redis sorted set scored by expiry time (Redis' own clock, so
// process clocks never matter); an entry not renewed within the TTL is dead.
// The embedded mode has one member: itself.
import type { Redis } from 'ioredis';

export interface Membership {
  readonly self: string;
  /** Live members, sorted. */
  members(): readonly string[];
  onChange(cb: (members: readonly string[], previous: readonly string[]) => void): void;
  start(): Promise<void>;
  /** Leave at once (graceful shutdown): others see it on their next poll. */
  stop(): Promise<void>;
}

export class StaticMembership implements Membership {
  constructor(readonly self: string) {}
  members(): readonly string[] { return [this.self]; }
  onChange(): void {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)`;

export interface RedisMembershipOptions {
  /** The group's key, e.g. 'parley:members:session'. */
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
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: ((m: readonly string[], prev: readonly string[]) => void)[] = [];
  private stopped = false;

  constructor(private readonly redis: Redis, private readonly opts: RedisMembershipOptions) {
    this.self = opts.self;
  }

  members(): readonly string[] { return this.current; }
  onChange(cb: (m: readonly string[], prev: readonly string[]) => void): void { this.listeners.push(cb); }

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), this.opts.heartbeatMs);
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    if (this.stopped) return;
    try {
      const list = (await this.redis.eval(HEARTBEAT, 1, this.opts.key, this.self, String(this.opts.ttlMs))) as string[];
      if (this.stopped) return;
      list.sort();
      if (list.length !== this.current.length || list.some((m, i) => m !== this.current[i])) {
        const prev = this.current;
        this.current = list;
        for (const l of this.listeners) l(list, prev);
      }
    } catch (e) {
      this.opts.onError?.(e);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.self) await this.redis.zrem(this.opts.key, this.self).catch(() => {});
  }
}
