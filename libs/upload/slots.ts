// Upload slots (XEP-0363) in the store, written by the service that grants
// them (services/session/upload) and read by the sweep that deletes expired
// files; the URLs themselves carry what a PUT is checked against (signed).
// One scope per service domain:
//   {$upload:<service>}:slots          slot id → Slot (msgpack)
//   {$upload:<service>}:used:<owner>   slot id → [size, expires]: what counts toward the owner's quota
//   {$upload:<service>}:expiry         log, id = expiry ms × 1000 + n → [slot id, owner, file name]: what the sweep deletes, first due first
import { randomBytes } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import type { Store } from '../store/store.ts';

export interface Slot {
  readonly id: string;
  /** The bare JID that asked for it: its quota pays for it, nobody else's. */
  readonly owner: string;
  readonly size: number;
  /** Lower case, without parameters. */
  readonly contentType: string;
  readonly fileName: string;
  readonly created: number;
  /** The PUT URL is refused from then on. */
  readonly putUntil: number;
  /** The file is deleted from then on. */
  readonly expires: number;
}

/** An entry of the expiry log. */
export interface ExpiredSlot {
  readonly logId: number;
  readonly id: string;
  readonly owner: string;
  readonly fileName: string;
}

type Packed = [string, number, string, string, number, number, number];

export const uploadScope = (service: string): string => `$upload:${service}`;
const usedColl = (owner: string): string => `used:${owner}`;

/** 128 random bits, URL-safe: slot ids and PUT tokens cannot be guessed. */
export function unguessable(): string {
  return randomBytes(16).toString('base64url');
}

function encode(s: Slot): Uint8Array {
  return pack([s.owner, s.size, s.contentType, s.fileName, s.created, s.putUntil, s.expires] satisfies Packed);
}

function decode(id: string, raw: Uint8Array): Slot {
  const [owner, size, contentType, fileName, created, putUntil, expires] = unpack(raw) as Packed;
  return { id, owner, size, contentType, fileName, created, putUntil, expires };
}

export class Slots {
  private seq = 0;

  constructor(private readonly store: Store, readonly service: string) {}

  /** What the owner holds now: every slot granted whose file has not expired, its size and when it expires. */
  async held(owner: string, now = Date.now()): Promise<{ size: number; expires: number }[]> {
    const out: { size: number; expires: number }[] = [];
    for (const raw of (await this.store.hgetall(uploadScope(this.service), usedColl(owner))).values()) {
      const [size, expires] = unpack(raw) as [number, number];
      if (expires > now) out.push({ size, expires });
    }
    return out;
  }

  /** Record a granted slot, its quota charge and its expiry, in one batch. */
  async grant(slot: Slot): Promise<void> {
    const logId = slot.expires * 1000 + (this.seq++ % 1000);
    await this.store.batch(uploadScope(this.service))
      .hset('slots', slot.id, encode(slot))
      .hset(usedColl(slot.owner), slot.id, pack([slot.size, slot.expires]))
      .logAppend('expiry', logId, pack([slot.id, slot.owner, slot.fileName]))
      .exec();
  }

  async get(id: string): Promise<Slot | undefined> {
    const raw = await this.store.hget(uploadScope(this.service), 'slots', id);
    return raw ? decode(id, raw) : undefined;
  }

  /** Slots whose files expired before `now`, oldest first, at most `limit`. */
  async expired(now: number, limit: number): Promise<ExpiredSlot[]> {
    const entries = await this.store.logRange(uploadScope(this.service), 'expiry', { before: now * 1000, limit });
    return entries.map((e) => {
      const [id, owner, fileName] = unpack(e.value) as [string, string, string];
      return { logId: e.id, id, owner, fileName };
    });
  }

  /** Forget expired slots (their files deleted already) and what they counted toward quotas. */
  async forget(gone: ExpiredSlot[]): Promise<void> {
    if (gone.length === 0) return;
    const b = this.store.batch(uploadScope(this.service));
    for (const g of gone) b.hdel('slots', g.id).hdel(usedColl(g.owner), g.id);
    b.logTrim('expiry', { below: gone[gone.length - 1].logId + 1 });
    await b.exec();
  }
}
