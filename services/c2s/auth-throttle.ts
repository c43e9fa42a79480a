// Brute-force protection for client logins: failed authentications counted
// per client address and per account over a fixed window. Past a threshold
// each further failure is answered only after an exponential back-off; past a
// higher one an address is blocked for a while. An account is only ever
// slowed, never locked: whoever guesses its password must not be able to keep
// its owner out. A successful login writes nothing (it resets no counter, or a
// client holding one valid account could wipe its own record between guesses).
//
// The counters live in this process (the embedded mode: a bounded map) or in
// Redis (a cluster: every connection manager sees the same counts; one hash
// per address or account, one hash tag, with a TTL).
import { isIP } from 'node:net';
import type { Cluster, Redis } from 'ioredis';
import type { Config } from '../../libs/config/schema.ts';
import { logger, throttledWarn } from '../../libs/log/index.ts';
import { formatAddress, unmapAddress } from './address.ts';

const log = logger('c2s');

/** What a new stream needs to know of its address: until when (epoch ms) to hold its next attempt, and until when it is blocked (0: not). */
export interface Standing {
  readonly retryAt: number;
  readonly blockedUntil: number;
}

export const CLEAR: Standing = { retryAt: 0, blockedUntil: 0 };

/** A failure counted: the count in the window, when the next attempt may be answered, the block (0: none), and whether this failure started it. */
export interface Counted extends Standing {
  readonly failures: number;
  readonly blockedNow: boolean;
}

export interface CountRule {
  readonly windowMs: number;
  /** Failures after which each further one is held back. */
  readonly backoffAfter: number;
  /** The failure that blocks (0: none). */
  readonly blockAfter: number;
  readonly blockMs: number;
  readonly baseMs: number;
  readonly maxMs: number;
}

/** Where failures are counted. */
export interface AuthCounters {
  standing(key: string): Promise<Standing>;
  fail(key: string, rule: CountRule, now: number): Promise<Counted>;
}

/** The back-off after the n-th failure: none up to `backoffAfter`, then base, 2 × base, 4 × base… up to max. */
export function backoffMs(n: number, rule: CountRule): number {
  if (n <= rule.backoffAfter) return 0;
  return Math.min(rule.maxMs, rule.baseMs * 2 ** Math.min(n - rule.backoffAfter - 1, 40));
}

/** The counters of one process: a map of at most `max` entries, the oldest forgotten first. */
export class MemoryAuthCounters implements AuthCounters {
  private readonly m = new Map<string, { n: number; retryAt: number; blockedUntil: number; expires: number }>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.m.size;
  }

  private entry(key: string, now: number) {
    const e = this.m.get(key);
    if (e && e.expires <= now) {
      this.m.delete(key);
      return undefined;
    }
    return e;
  }

  async standing(key: string): Promise<Standing> {
    const e = this.entry(key, Date.now());
    return e ? { retryAt: e.retryAt, blockedUntil: e.blockedUntil } : CLEAR;
  }

  async fail(key: string, rule: CountRule, now: number): Promise<Counted> {
    let e = this.entry(key, now);
    if (!e) {
      while (this.m.size >= this.max) this.m.delete(this.m.keys().next().value!);
      e = { n: 0, retryAt: 0, blockedUntil: 0, expires: now + rule.windowMs };
      this.m.set(key, e);
    }
    e.n++;
    e.retryAt = now + backoffMs(e.n, rule);
    const blockedNow = rule.blockAfter > 0 && e.n === rule.blockAfter;
    if (blockedNow) {
      e.blockedUntil = now + rule.blockMs;
      e.expires = Math.max(e.expires, e.blockedUntil);
    }
    return { failures: e.n, retryAt: e.retryAt, blockedUntil: e.blockedUntil, blockedNow };
  }
}

// KEYS[1]: the address's or account's hash (fields n, retry, until). ARGV: now, windowMs, backoffAfter, blockAfter,
// blockMs, baseMs, maxMs. The window starts with the first failure (the key's TTL); a block keeps the key at least
// as long as it lasts. Returns n, retry, until, blockedNow.
const FAIL = `
local now = tonumber(ARGV[1])
local after, block, blockMs, base, cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local delay = 0
if n > after then delay = math.min(cap, base * 2 ^ math.min(n - after - 1, 40)) end
local retry = string.format('%.0f', now + delay)
redis.call('HSET', KEYS[1], 'retry', retry)
local untilT = redis.call('HGET', KEYS[1], 'until') or '0'
local started = 0
if block > 0 and n == block then
  untilT = string.format('%.0f', now + blockMs)
  redis.call('HSET', KEYS[1], 'until', untilT)
  if redis.call('PTTL', KEYS[1]) < blockMs then redis.call('PEXPIRE', KEYS[1], blockMs) end
  started = 1
end
return {n, retry, untilT, started}`;

/** The counters of a cluster, in Redis: a standing is one HMGET, a failure one script call. */
export class RedisAuthCounters implements AuthCounters {
  constructor(private readonly redis: Redis | Cluster, private readonly prefix = '') {}

  /** `a:<address>` or `u:<account>` → its hash, alone in its hash tag. */
  keyOf(key: string): string {
    return `${this.prefix}{auth:${key}}`;
  }

  async standing(key: string): Promise<Standing> {
    const [retry, until] = await this.redis.hmget(this.keyOf(key), 'retry', 'until');
    return { retryAt: Number(retry ?? 0), blockedUntil: Number(until ?? 0) };
  }

  async fail(key: string, r: CountRule, now: number): Promise<Counted> {
    const out = (await this.redis.eval(FAIL, 1, this.keyOf(key), now, r.windowMs, r.backoffAfter, r.blockAfter, r.blockMs, r.baseMs, r.maxMs)) as [number, string, string, number];
    return { failures: Number(out[0]), retryAt: Number(out[1]), blockedUntil: Number(out[2]), blockedNow: Number(out[3]) === 1 };
  }
}

/** IPv6 text → its 16 bytes, or undefined. */
function ipv6Bytes(addr: string): Uint8Array | undefined {
  let a = addr;
  let v4: number[] = [];
  const dot = a.lastIndexOf(':');
  if (a.includes('.')) {
    v4 = a.slice(dot + 1).split('.').map(Number);
    a = `${a.slice(0, dot + 1)}0:0`;
  }
  const [head, tail] = a.split('::');
  const part = (s: string | undefined) => (s ? s.split(':').map((g) => Number.parseInt(g, 16)) : []);
  const h = part(head);
  const t = a.includes('::') ? part(tail) : [];
  const groups = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  const b = new Uint8Array(16);
  groups.forEach((g, i) => { b[2 * i] = g >> 8; b[2 * i + 1] = g & 0xff; });
  if (v4.length === 4) b.set(v4, 12);
  return b;
}

/** What a client's failures are counted under: its IPv4 address, or its IPv6 network of `prefix` bits ('2001:db8::/64'). */
export function addressKey(remote: string, prefix: number): string {
  const a = unmapAddress(remote.split('%')[0]);
  if (isIP(a) !== 6 || prefix >= 128) return a;
  const b = ipv6Bytes(a);
  if (!b) return a;
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    b[i] &= (0xff00 >> keep) & 0xff;
  }
  return `${formatAddress(b)}/${prefix}`;
}

export type ThrottleConfig = Config['c2s']['authThrottle'];

/** What a failed login's answer waits for: the back-off, and the address's block if this or an earlier failure started one. */
export interface FailureVerdict {
  /** When to answer the failure (epoch ms; the later of the address's and the account's back-off). */
  answerAt: number;
  /** The address's standing after this failure. */
  standing: Standing;
}

/**
 * The policy over the counters: which keys, which thresholds, and the log
 * lines (`auth failed address=… account=… mechanism=…`, the line the fail2ban
 * filter in deploy/fail2ban matches; `auth blocked …` once when a block starts).
 * The counters failing (Redis unreachable) never keeps anyone out: logins go on
 * unthrottled and a warning says so.
 */
export class AuthThrottle {
  private readonly address: CountRule;
  private readonly account: CountRule;
  private readonly warn = throttledWarn(log, 10_000);
  /**
   * What this process last learnt of addresses in back-off or blocked (from its reads and its own streams'
   * failures): an attempt on a stream opened before a block started here is refused without another read.
   */
  private readonly known = new Map<string, Standing>();

  constructor(readonly config: ThrottleConfig, private readonly counters: AuthCounters,
    private readonly events: { failed?(): void; blocked?(): void } = {}) {
    const c = config;
    const common = { windowMs: c.windowSeconds * 1000, blockMs: c.blockSeconds * 1000, baseMs: c.backoffBaseMs, maxMs: c.backoffMaxMs };
    this.address = { ...common, backoffAfter: c.addressBackoffAfter, blockAfter: c.maxFailuresPerAddress };
    this.account = { ...common, backoffAfter: c.accountBackoffAfter, blockAfter: 0 };
  }

  get enabled(): boolean {
    return this.config.enabled;
  }

  private learn(net: string, s: Standing): Standing {
    const now = Date.now();
    const old = this.known.get(net);
    const merged = old ? { retryAt: Math.max(old.retryAt, s.retryAt), blockedUntil: Math.max(old.blockedUntil, s.blockedUntil) } : s;
    if (merged.retryAt <= now && merged.blockedUntil <= now) {
      this.known.delete(net);
      return merged;
    }
    if (!old) while (this.known.size >= this.config.maxTracked) this.known.delete(this.known.keys().next().value!);
    this.known.set(net, merged);
    return merged;
  }

  /** The address's standing as this process knows it now, without a read (a stream's next attempt). */
  current(remote: string): Standing {
    if (!this.config.enabled || this.known.size === 0) return CLEAR;
    const net = addressKey(remote, this.config.ipv6PrefixLength);
    const s = this.known.get(net);
    return s ? this.learn(net, s) : CLEAR;
  }

  /** The address's standing, read once per connection; CLEAR when disabled or when the counters cannot be read. */
  async standing(remote: string): Promise<Standing> {
    if (!this.config.enabled) return CLEAR;
    const net = addressKey(remote, this.config.ipv6PrefixLength);
    try {
      return this.learn(net, await this.counters.standing(`a:${net}`));
    } catch (e) {
      this.warn('login failures cannot be read; logins are not throttled meanwhile', { error: e });
      return CLEAR;
    }
  }

  /** A failed login: logged, counted for its address and (when known) its account. */
  async failed(remote: string, account: string, mechanism: string, condition: string): Promise<FailureVerdict> {
    const now = Date.now();
    const address = unmapAddress(remote);
    const fields = { address, account: account || '-', mechanism: mechanism || '-', condition };
    this.events.failed?.();
    if (!this.config.enabled) {
      log.info('auth failed', { ...fields, event: 'auth-failed' });
      return { answerAt: now, standing: CLEAR };
    }
    const net = addressKey(remote, this.config.ipv6PrefixLength);
    let byAddress: Counted | undefined;
    let byAccount: Counted | undefined;
    try {
      [byAddress, byAccount] = await Promise.all([
        this.counters.fail(`a:${net}`, this.address, now),
        account ? this.counters.fail(`u:${account}`, this.account, now) : undefined,
      ]);
    } catch (e) {
      this.warn('login failures cannot be counted; logins are not throttled meanwhile', { error: e });
    }
    // `event` last: the text line begins `auth failed address=…` as the fail2ban filter expects.
    log.info('auth failed', { ...fields, failures: byAddress?.failures ?? '?', accountFailures: byAccount?.failures ?? '-', event: 'auth-failed' });
    if (byAddress?.blockedNow) {
      this.events.blocked?.();
      log.warn('auth blocked', { address: net, failures: byAddress.failures, seconds: this.config.blockSeconds });
    }
    const standing = byAddress ? this.learn(net, { retryAt: byAddress.retryAt, blockedUntil: byAddress.blockedUntil }) : CLEAR;
    return { answerAt: Math.max(now, byAddress?.retryAt ?? 0, byAccount?.retryAt ?? 0), standing };
  }
}

/** The text of a blocked address's refusals, or undefined when it is not blocked. */
export function blockedText(s: Standing | undefined, now = Date.now()): string | undefined {
  if (!s || s.blockedUntil <= now) return undefined;
  return `this address is temporarily blocked after too many failed logins; try again in ${Math.ceil((s.blockedUntil - now) / 1000)} seconds`;
}
