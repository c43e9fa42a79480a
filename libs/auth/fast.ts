// FAST tokens (XEP-0484): secrets the server hands a client after a full
// login, so that its next logins take one round trip (an HT mechanism, see
// sasl.ts). A token belongs to one account, one client (the SASL2
// user-agent id) and one mechanism, and expires. Each client has two slots
// (XEP-0484 §6.1): `next`, the token issued last and not used yet, and
// `current`, the one in use. Using `next` moves it to `current` and so
// invalidates the older token: a token replayed after its successor was used
// is refused.
//
// Keys: {alice@example.com}:fast  <user-agent id> → msgpack(FastRecord), so an
// account's tokens go with it and every connection manager of a cluster reads
// the same ones. The token itself is kept (an HMAC key cannot be checked from a
// hash of it): the collection is as sensitive as a password.
import { pack, unpack } from 'msgpackr';
import { randomBytesPooled } from './random.ts';
import type { Store } from '../store/store.ts';

export const FAST_COLLECTION = 'fast';

export interface FastPolicy {
  /** Seconds a token is valid from when it was issued. */
  tokenLifetimeSeconds: number;
  /** A token used with less than this left is replaced by a new one in the same <success/>. */
  rotateBeforeExpirySeconds: number;
  /** Clients (user-agent ids) holding tokens for one account; issuing past it drops the one expiring first. */
  maxClientsPerAccount: number;
}

interface Slot {
  token: string;
  mechanism: string;
  /** ms since the epoch */
  expiry: number;
}

interface FastRecord {
  current?: Slot;
  next?: Slot;
}

export interface IssuedToken {
  token: string;
  expiry: Date;
}

/** A successful check: the slot's expiry, and whether the token is due to be replaced. */
export interface TokenUse {
  expiry: number;
  rotationDue: boolean;
}

export class FastTokens {
  constructor(private readonly store: Store, private readonly policy: FastPolicy, private readonly now: () => number = Date.now) {}

  private async read(bare: string, client: string): Promise<FastRecord | undefined> {
    const v = await this.store.hget(bare, FAST_COLLECTION, client);
    return v ? (unpack(v) as FastRecord) : undefined;
  }

  /** A new token in the client's `next` slot; one issued before and never used is replaced (XEP-0484 §6). */
  async issue(bare: string, client: string, mechanism: string): Promise<IssuedToken> {
    const now = this.now();
    const record = (await this.read(bare, client)) ?? await this.makeRoom(bare, client);
    const slot: Slot = { token: randomBytesPooled(32).toString('base64url'), mechanism, expiry: now + this.policy.tokenLifetimeSeconds * 1000 };
    const current = record.current && record.current.expiry > now ? record.current : undefined;
    await this.store.hset(bare, FAST_COLLECTION, client, pack({ current, next: slot } satisfies FastRecord));
    return { token: slot.token, expiry: new Date(slot.expiry) };
  }

  /** A client new to this account: past the limit, the client whose tokens expire first loses them. */
  private async makeRoom(bare: string, client: string): Promise<FastRecord> {
    const all = await this.store.hgetall(bare, FAST_COLLECTION);
    if (all.size < this.policy.maxClientsPerAccount) return {};
    const expiries = [...all].filter(([id]) => id !== client).map(([id, v]) => {
      const r = unpack(v) as FastRecord;
      return [id, Math.max(r.current?.expiry ?? 0, r.next?.expiry ?? 0)] as const;
    }).sort((a, b) => a[1] - b[1]);
    const drop = expiries.slice(0, all.size - this.policy.maxClientsPerAccount + 1);
    const batch = this.store.batch(bare);
    for (const [id] of drop) batch.hdel(FAST_COLLECTION, id);
    if (drop.length) await batch.exec();
    return {};
  }

  /**
   * The token (as `matches` recognizes it) of this account and client for this
   * mechanism, unexpired, or undefined; nothing is written unless it matched.
   * A match in `next` moves it to `current`, which invalidates the older token.
   */
  async use(bare: string, client: string, mechanism: string, matches: (token: string) => boolean): Promise<(TokenUse & { token: string }) | undefined> {
    const record = await this.read(bare, client);
    if (!record) return undefined;
    const now = this.now();
    const valid = (s: Slot | undefined): s is Slot => s !== undefined && s.mechanism === mechanism && s.expiry > now;
    // Both are compared, whichever matches, so the time taken does not tell which slot holds what.
    const inNext = valid(record.next) && matches(record.next.token);
    const inCurrent = valid(record.current) && matches(record.current.token);
    let slot: Slot;
    if (inNext) {
      slot = record.next!;
      await this.store.hset(bare, FAST_COLLECTION, client, pack({ current: slot } satisfies FastRecord));
    } else if (inCurrent) {
      slot = record.current!;
    } else {
      return undefined;
    }
    return { token: slot.token, expiry: slot.expiry, rotationDue: slot.expiry - now < this.policy.rotateBeforeExpirySeconds * 1000 };
  }

  /** <fast invalidate='true'/>: this client's tokens are gone. */
  async invalidate(bare: string, client: string): Promise<void> {
    await this.store.hdel(bare, FAST_COLLECTION, client);
  }
}
