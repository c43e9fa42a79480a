// Counts of events per key over fixed windows (rate limits). One process
// counts in a bounded map; a cluster counts in Redis, so that every session
// process sees the same totals for a key many processes add to (a domain).
import type { Cluster, Redis } from 'ioredis';

export interface WindowCounters {
  /** Count one event for `key` in the window of `windowMs` that started with the key's first event; resolves to the count so far. */
  hit(key: string, windowMs: number): Promise<number>;
}

/** One process's counters: at most `max` keys, the oldest forgotten first. */
export class MemoryWindowCounters implements WindowCounters {
  private readonly m = new Map<string, { n: number; ends: number }>();

  constructor(private readonly max = 100_000) {}

  async hit(key: string, windowMs: number): Promise<number> {
    return this.hitNow(key, windowMs, Date.now());
  }

  /** The same, synchronously (a caller that holds its counters in memory and must not wait). */
  hitNow(key: string, windowMs: number, now: number): number {
    let e = this.m.get(key);
    if (e && e.ends <= now) {
      this.m.delete(key);
      e = undefined;
    }
    if (!e) {
      while (this.m.size >= this.max) this.m.delete(this.m.keys().next().value!);
      e = { n: 0, ends: now + windowMs };
      this.m.set(key, e);
    }
    return ++e.n;
  }
}

// The window starts with the key's first event: its TTL.
const HIT = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

/** A cluster's counters: one script call per event, one key per counter (alone in its hash tag), expiring with its window. */
export class RedisWindowCounters implements WindowCounters {
  constructor(private readonly redis: Redis | Cluster, private readonly prefix = '') {}

  keyOf(key: string): string {
    return `${this.prefix}{rate:${key}}`;
  }

  async hit(key: string, windowMs: number): Promise<number> {
    return Number(await this.redis.eval(HIT, 1, this.keyOf(key), windowMs));
  }
}
