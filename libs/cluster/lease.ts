// Who may act for a shard: leases with fencing tokens. Membership says who is
// alive and so who *should* own a shard (rendezvous hashing); a lease says who
// *may*, and only until it expires on the lease table's clock (Redis' own).
//
// Every grant carries a fencing token larger than any granted before. The
// holder stamps its writes with it and the store refuses a write whose token
// is older than one it has seen for that account (libs/store/redis-fenced.ts),
// so a process that paused past its lease cannot overwrite what the new owner
// wrote.
//
// The holder counts its lease from the moment it *sent* the request that
// renewed it, and stops trusting it after `safety` × TTL of that: before the
// table can have let it expire, whatever the network, a GC pause or SIGSTOP
// did meanwhile. The table grants nothing to anyone else before the full TTL.
import { performance } from 'node:perf_hooks';
import type { Cluster, Redis } from 'ioredis';

/** Where leases live. Grants, renewals and expiry are decided by the table's clock, never by a holder's. */
export interface LeaseTable {
  /**
   * Take or renew each shard for `owner`: granted when the shard is free, expired, or already this owner's.
   * Resolves to the fencing token of each granted shard (a renewal keeps its token; a new grant gets a larger one).
   */
  acquire(owner: string, shards: readonly number[], ttlMs: number): Promise<Map<number, number>>;
  /** Give up the shards this owner holds (a handoff), so the next owner need not wait for expiry. */
  release(owner: string, shards: readonly number[]): Promise<void>;
}

/** A monotonic clock in milliseconds (performance.now() by default; a fake one in tests). */
export interface Clock { now(): number }
export const monotonic: Clock = { now: () => performance.now() };

// KEYS[1]: the group's lease hash (one hash tag: one Redis Cluster slot). Field `<shard>` = 'owner|expiresAt|token';
// field `epoch` = the last token granted. ARGV: owner, ttl, shard…  Returns shard, token pairs for the granted ones.
// A new token is max(last + 1, now): it grows even if a failover lost the last grants, as long as the new
// primary's clock is not behind by more than the lost grants' age.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner, ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
local epoch = nil
for i = 3, #ARGV do
  local s = ARGV[i]
  local cur = redis.call('HGET', KEYS[1], s)
  local o, exp, token = nil, 0, nil
  if cur then
    local a, b, c = string.match(cur, '^(.*)|(%d+)|(%d+)$')
    o, exp, token = a, tonumber(b), c
  end
  if not cur or exp <= now or o == owner then
    if not cur or exp <= now or o ~= owner then
      if epoch == nil then epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') end
      epoch = math.max(epoch + 1, now)
      token = string.format('%.0f', epoch)
    end
    redis.call('HSET', KEYS[1], s, owner .. '|' .. string.format('%.0f', now + ttl) .. '|' .. token)
    out[#out + 1] = s
    out[#out + 1] = token
  end
end
if epoch ~= nil then redis.call('HSET', KEYS[1], 'epoch', string.format('%.0f', epoch)) end
return out`;

const RELEASE = `
local n = 0
for i = 2, #ARGV do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n`;

/**
 * The lease table in one Redis hash (one slot in Redis Cluster: renewing a process's shards is one script call).
 * With `replicated` (a primary with replicas), a grant or renewal counts only once a replica has it: a failover of
 * the table's primary must not hand another process a lease this one was told it holds. In doubt (WAIT failed),
 * the call fails like an unreachable table: renewals lapse, new grants are asked for again.
 */
export class RedisLeaseTable implements LeaseTable {
  constructor(private readonly redis: Redis | Cluster, private readonly key: string, private readonly replicated?: (key: string) => Promise<boolean>) {}

  async acquire(owner: string, shards: readonly number[], ttlMs: number): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    if (shards.length === 0) return out;
    const r = (await this.redis.eval(ACQUIRE, 1, this.key, owner, String(Math.ceil(ttlMs)), ...shards.map(String))) as string[];
    if (this.replicated && !(await this.replicated(this.key))) throw new Error('no replica of the lease table confirmed the grant (its primary failing over?)');
    for (let i = 0; i < r.length; i += 2) out.set(Number(r[i]), Number(r[i + 1]));
    return out;
  }

  async release(owner: string, shards: readonly number[]): Promise<void> {
    if (shards.length === 0) return;
    await this.redis.eval(RELEASE, 1, this.key, owner, ...shards.map(String));
  }
}

/** The same rules in memory, on a given clock: the embedded mode and the unit tests. */
export class MemoryLeaseTable implements LeaseTable {
  private readonly leases = new Map<number, { owner: string; expires: number; token: number }>();
  private epoch = 0;
  /** Fail every call while set (tests: the table is unreachable). */
  down = false;

  constructor(private readonly clock: Clock = monotonic) {}

  async acquire(owner: string, shards: readonly number[], ttlMs: number): Promise<Map<number, number>> {
    if (this.down) throw new Error('lease table unreachable');
    const now = this.clock.now();
    const out = new Map<number, number>();
    for (const s of shards) {
      const cur = this.leases.get(s);
      if (cur && cur.expires > now && cur.owner !== owner) continue;
      const token = cur && cur.expires > now ? cur.token : ++this.epoch;
      this.leases.set(s, { owner, expires: now + ttlMs, token });
      out.set(s, token);
    }
    return out;
  }

  async release(owner: string, shards: readonly number[]): Promise<void> {
    if (this.down) throw new Error('lease table unreachable');
    for (const s of shards) if (this.leases.get(s)?.owner === owner) this.leases.delete(s);
  }

  /** Who holds a shard now (tests). */
  holder(s: number): string | undefined {
    const cur = this.leases.get(s);
    return cur && cur.expires > this.clock.now() ? cur.owner : undefined;
  }
}

export interface LeaseKeeperOptions {
  /** How long a grant lasts on the table's clock; Infinity: leases never expire (one process alone). */
  ttlMs: number;
  /** How often held leases are renewed. */
  renewMs: number;
  /** The fraction of the TTL, counted from a renewal's request, after which the holder stops trusting it. */
  safety?: number;
  clock?: Clock;
  /**
   * A held lease can no longer be trusted (not renewed in time: a pause, a slow or unreachable table): act no more
   * for the shard until a renewal says whether it is still ours. A renewal follows at once.
   */
  onLapsed?(shard: number): void;
  /** A lapsed lease renewed: still ours with the same token (`fresh` false: nobody can have held it meanwhile), or granted anew. */
  onRegained?(shard: number, fresh: boolean): void;
  /** The lease is gone (another process holds it, or it stays lapsed past the TTL): stop serving the shard. */
  onLost(shard: number, reason: 'expired' | 'taken'): void;
  /** A renewal failed (the table is unreachable). */
  onError?(e: unknown): void;
}

interface Held { token: number; validUntil: number; lapsedAt: number }

/** One process's leases: acquires in batches, renews on a timer, and says at once when one can no longer be trusted. */
export class LeaseKeeper {
  private readonly held = new Map<number, Held>();
  /** The last token this process was granted per shard, kept after the lease is gone: its late writes carry it and are refused. */
  private readonly tokens = new Map<number, number>();
  private readonly waiting = new Map<number, ((token: number | undefined) => void)[]>();
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private renewing = false;
  private lastRenewAt = -Infinity;
  private readonly clock: Clock;
  private readonly trustMs: number;
  lost = 0;

  constructor(private readonly table: LeaseTable, readonly owner: string, private readonly o: LeaseKeeperOptions) {
    this.clock = o.clock ?? monotonic;
    this.trustMs = o.ttlMs * (o.safety ?? 2 / 3);
  }

  /** True while this process may act for the shard. Cheap: called for every envelope. */
  valid(shard: number): boolean {
    const h = this.held.get(shard);
    return h !== undefined && h.lapsedAt === 0 && this.clock.now() < h.validUntil;
  }

  /** Held but not trusted: waiting for a renewal to say whether it is still ours. */
  lapsed(shard: number): boolean {
    return (this.held.get(shard)?.lapsedAt ?? 0) !== 0;
  }

  /** The fencing token of the shard's current or last lease here; undefined if never held. */
  token(shard: number): number | undefined {
    return this.tokens.get(shard);
  }

  heldCount(): number {
    return this.held.size;
  }

  /** Take the shard's lease (batched with other requests of this turn); resolves to its token, or undefined when another process holds it. */
  acquire(shard: number): Promise<number | undefined> {
    return new Promise((resolve) => {
      const w = this.waiting.get(shard);
      if (w) w.push(resolve);
      else this.waiting.set(shard, [resolve]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => void this.flushAcquire());
      }
    });
  }

  private async flushAcquire(): Promise<void> {
    this.scheduled = false;
    const batch = new Map(this.waiting);
    this.waiting.clear();
    const shards = [...batch.keys()];
    const sent = this.clock.now();
    let granted: Map<number, number>;
    try {
      granted = await this.table.acquire(this.owner, shards, this.o.ttlMs);
    } catch (e) {
      this.o.onError?.(e);
      granted = new Map();
    }
    for (const [s, resolvers] of batch) {
      const token = granted.get(s);
      if (token !== undefined) this.grant(s, token, sent);
      for (const r of resolvers) r(token);
    }
    this.arm();
  }

  private grant(s: number, token: number, sent: number): void {
    this.held.set(s, { token, validUntil: sent + this.trustMs, lapsedAt: 0 });
    this.tokens.set(s, token);
  }

  /** Hand the shard's lease back (after its actors drained): the next owner gets it at once. */
  async release(shard: number): Promise<void> {
    if (!this.held.delete(shard)) return;
    try {
      await this.table.release(this.owner, [shard]);
    } catch (e) {
      // The lease then simply expires: the next owner waits for the TTL.
      this.o.onError?.(e);
    }
  }

  start(): void {
    if (!Number.isFinite(this.o.ttlMs)) return;
    this.timer = setInterval(() => void this.renew(), this.o.renewMs);
    this.timer.unref();
  }

  /** One renewal of every held lease (lapsed ones included): those not granted are lost at once. */
  async renew(): Promise<void> {
    if (this.renewing || this.held.size === 0) return;
    this.renewing = true;
    const shards = [...this.held.keys()];
    const sent = this.clock.now();
    this.lastRenewAt = sent;
    try {
      const granted = await this.table.acquire(this.owner, shards, this.o.ttlMs);
      for (const s of shards) {
        const h = this.held.get(s);
        if (!h) continue; // released meanwhile
        const token = granted.get(s);
        if (token === undefined) {
          this.drop(s, 'taken');
          continue;
        }
        // A new token: the lease ran out on the table in between, so another process may have acted meanwhile.
        const fresh = token !== h.token;
        const wasLapsed = h.lapsedAt !== 0;
        this.grant(s, token, sent);
        if (wasLapsed || fresh) this.o.onRegained?.(s, fresh);
      }
    } catch (e) {
      this.o.onError?.(e);
    } finally {
      this.renewing = false;
    }
    this.expire();
    this.arm();
  }

  /**
   * Leases whose trust has run out lapse (the holder stops acting, a renewal is asked for at once); one lapsed for a
   * whole TTL has certainly expired on the table and is lost.
   */
  expire(): void {
    const now = this.clock.now();
    let lapsed = false;
    for (const [s, h] of this.held) {
      if (h.lapsedAt !== 0) {
        if (now - h.lapsedAt >= this.o.ttlMs) this.drop(s, 'expired');
      } else if (now >= h.validUntil) {
        h.lapsedAt = now;
        lapsed = true;
        this.o.onLapsed?.(s);
      }
    }
    // Ask at once whether the lapsed ones are still ours, but not in a loop when renewals are slower than the trust.
    if (lapsed && !this.renewing && now - this.lastRenewAt >= this.o.renewMs / 4) setTimeout(() => void this.renew(), 0).unref();
  }

  private drop(s: number, reason: 'expired' | 'taken'): void {
    if (!this.held.delete(s)) return;
    this.lost++;
    this.o.onLost(s, reason);
  }

  /** Wake up when the earliest lease runs out of trust, so a shard stops even if no envelope arrives. */
  private arm(): void {
    if (!Number.isFinite(this.o.ttlMs)) return;
    if (this.watchdog) clearTimeout(this.watchdog);
    let first = Infinity;
    for (const h of this.held.values()) {
      const next = h.lapsedAt !== 0 ? h.lapsedAt + this.o.ttlMs : h.validUntil;
      if (next < first) first = next;
    }
    if (first === Infinity) return;
    this.watchdog = setTimeout(() => { this.watchdog = undefined; this.expire(); this.arm(); }, Math.max(0, first - this.clock.now()) + 1);
    this.watchdog.unref();
  }

  /** Stop renewing; with `releaseAll`, hand every lease back. */
  async stop(releaseAll: boolean): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.watchdog) clearTimeout(this.watchdog);
    const shards = [...this.held.keys()];
    this.held.clear();
    if (releaseAll && shards.length) await this.table.release(this.owner, shards).catch((e: unknown) => this.o.onError?.(e));
  }
}
