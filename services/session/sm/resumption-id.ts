// XEP-0198 resumption ids: what any c2s node may hand to any session process
// to find a waiting session, and what nobody can forge or guess. The id names
// the account and the session (the session id at <enable/>) and carries an
// HMAC-SHA-256 over both with a key every session process shares (kept in the
// store, like the dialback secret): a resumption for another account's session,
// or with an id that was never issued, fails like an unknown one.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../../../libs/store/store.ts';

const MAC_BYTES = 16;
const secrets = new WeakMap<Store, Promise<Buffer>>();

/** The cluster's resumption key: created by whichever process asks first, then read by all. */
export function resumptionSecret(store: Store): Promise<Buffer> {
  let p = secrets.get(store);
  if (!p) {
    p = (async () => {
      await store.hsetnx('$sm', 'config', 'secret', randomBytes(32));
      const s = await store.hget('$sm', 'config', 'secret');
      if (!s) throw new Error('the stream management secret could not be stored');
      return Buffer.from(s);
    })();
    p.catch(() => secrets.delete(store));
    secrets.set(store, p);
  }
  return p;
}

function mac(secret: Buffer, bare: string, smid: string): Buffer {
  return createHmac('sha256', secret).update(`${bare}\u0000${smid}`).digest().subarray(0, MAC_BYTES);
}

export function makeResumptionId(secret: Buffer, bare: string, smid: string): string {
  return Buffer.concat([Buffer.from(`${bare}\u0000${smid}\u0000`), mac(secret, bare, smid)]).toString('base64url');
}

/** The session id a resumption id names, when it is authentic and names this account; undefined otherwise. */
export function checkResumptionId(secret: Buffer, bare: string, id: string): string | undefined {
  if (id.length > 1024 || !/^[A-Za-z0-9_-]+$/.test(id)) return undefined;
  const raw = Buffer.from(id, 'base64url');
  if (raw.length <= MAC_BYTES + 2) return undefined;
  const body = raw.subarray(0, raw.length - MAC_BYTES).toString();
  const parts = body.split('\u0000');
  if (parts.length !== 3 || parts[2] !== '' || parts[0] !== bare || parts[1] === '') return undefined;
  const given = raw.subarray(raw.length - MAC_BYTES);
  return timingSafeEqual(given, mac(secret, bare, parts[1])) ? parts[1] : undefined;
}

/** XEP-0198 §4: `h` counts modulo 2^32. The full count `h` stands for, given a count it cannot be below. */
export function unwrapCount(h: number, floor: number): number {
  return floor + ((h - floor) % 2 ** 32 + 2 ** 32) % 2 ** 32;
}
