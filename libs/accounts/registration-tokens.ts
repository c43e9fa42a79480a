// Pre-authenticated registration tokens (XEP-0445 "ibr-token", XEP-0401
// invitations): an operator makes a token (`parley register-token create`),
// hands it to someone, and their client creates an account in-band with it.
// Kept in the store, so every connection manager of a cluster (Redis) or the
// one process (lmdb) sees the same tokens.
//
// Keys: {$regtokens}:tokens        token → msgpack([domain, uses, expiresAt, createdAt])
//       {$regtokens}:used:<token>  1…uses → ms (one field per use taken)
// A use is taken with HSETNX on the next free number, so two registrations
// racing for the last use cannot both get it; a registration that fails after
// taking one gives it back.
import { randomBytes } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import type { Store } from '../store/store.ts';

const SCOPE = '$regtokens';
const TOKENS = 'tokens';
const usedColl = (token: string) => `used:${token}`;

export interface RegistrationToken {
  readonly token: string;
  /** The domain an account may be created on with it. */
  readonly domain: string;
  /** Accounts it may create. */
  readonly uses: number;
  /** Of those, created. */
  readonly used: number;
  /** When it stops being accepted (ms since the epoch); 0: never. */
  readonly expiresAt: number;
  readonly createdAt: number;
}

/** Why a token is refused; the client is told only that it is not valid. */
export type TokenRefusal = 'unknown' | 'other-domain' | 'expired' | 'used-up';

/** A use taken for one registration: give it back if the account could not be created. */
export interface TakenUse {
  release(): Promise<void>;
}

/** Durations as an operator writes them: 90s, 30m, 12h, 7d (or a number of seconds); 0 never expires. */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number.isSafeInteger(n * unit * 1000) ? n * unit * 1000 : undefined;
}

export class RegistrationTokens {
  constructor(private readonly store: Store, private readonly now: () => number = Date.now) {}

  /** A new token for `domain`, good for `uses` accounts over `ttlMs` (0: no expiry). */
  async create(domain: string, uses: number, ttlMs: number): Promise<RegistrationToken> {
    const token = randomBytes(18).toString('base64url');
    const createdAt = this.now();
    const expiresAt = ttlMs > 0 ? createdAt + ttlMs : 0;
    await this.store.hset(SCOPE, TOKENS, token, pack([domain, uses, expiresAt, createdAt]));
    return { token, domain, uses, used: 0, expiresAt, createdAt };
  }

  async get(token: string): Promise<RegistrationToken | undefined> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(token)) return undefined;
    const raw = await this.store.hget(SCOPE, TOKENS, token);
    if (!raw) return undefined;
    const [domain, uses, expiresAt, createdAt] = unpack(raw) as [string, number, number, number];
    return { token, domain, uses, used: await this.store.hlen(SCOPE, usedColl(token)), expiresAt, createdAt };
  }

  /** Every token (of one domain), oldest first. */
  async list(domain?: string): Promise<RegistrationToken[]> {
    const out: RegistrationToken[] = [];
    for (const token of (await this.store.hgetall(SCOPE, TOKENS)).keys()) {
      const t = await this.get(token);
      if (t && (domain === undefined || t.domain === domain)) out.push(t);
    }
    return out.sort((a, b) => a.createdAt - b.createdAt);
  }

  /** False when there was no such token. */
  async revoke(token: string): Promise<boolean> {
    if (!(await this.get(token))) return false;
    await this.store.batch(SCOPE).hdel(TOKENS, token).del(usedColl(token)).exec();
    return true;
  }

  /** Whether `token` may create an account on `domain` now: undefined when it may, else why not. */
  async check(token: string, domain: string): Promise<TokenRefusal | undefined> {
    const t = await this.get(token);
    if (!t) return 'unknown';
    if (t.domain !== domain) return 'other-domain';
    if (t.expiresAt > 0 && this.now() >= t.expiresAt) return 'expired';
    if (t.used >= t.uses) return 'used-up';
    return undefined;
  }

  /**
   * Take one use of a token for a registration (its expiry was checked when the client presented it, XEP-0445 §4):
   * the use, or why there is none left.
   */
  async take(token: string, domain: string): Promise<TakenUse | TokenRefusal> {
    const t = await this.get(token);
    if (!t) return 'unknown';
    if (t.domain !== domain) return 'other-domain';
    if (t.used >= t.uses) return 'used-up';
    // The next number first; one given back below it is found by the second pass.
    for (let i = 0; i < t.uses; i++) {
      const n = ((t.used + i) % t.uses) + 1;
      if (await this.store.hsetnx(SCOPE, usedColl(token), String(n), pack(this.now()))) {
        return { release: () => this.store.hdel(SCOPE, usedColl(token), String(n)).then(() => undefined) };
      }
    }
    return 'used-up';
  }
}
