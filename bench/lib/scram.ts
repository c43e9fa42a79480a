// SASL client side: SCRAM-SHA-1/256 (RFC 5802/7677) and PLAIN (RFC 4616),
// built on node:crypto. Salted passwords are cached because benchmark users
// often share a password and (for peers we provision) a salt: PBKDF2 would
// otherwise dominate the generator's CPU during login storms.
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';

export type Mechanism = 'SCRAM-SHA-256' | 'SCRAM-SHA-1' | 'PLAIN';
export const MECHANISMS: readonly Mechanism[] = ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'];

const saltedCache = new Map<string, Promise<Buffer>>();

function salted(hash: 'sha1' | 'sha256', password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const key = `${hash}:${iterations}:${salt.toString('base64')}:${password}`;
  let p = saltedCache.get(key);
  if (!p) {
    const len = hash === 'sha1' ? 20 : 32;
    // Async pbkdf2 runs on libuv's pool so one login does not stall every socket.
    p = new Promise((resolve, reject) => pbkdf2(password, salt, iterations, len, hash, (e, k) => (e ? reject(e) : resolve(k))));
    if (saltedCache.size > 10_000) saltedCache.clear();
    saltedCache.set(key, p);
  }
  return p;
}

const hmac = (hash: string, key: Buffer, data: string): Buffer => createHmac(hash, key).update(data).digest();
const escapeName = (u: string): string => u.replace(/=/g, '=3D').replace(/,/g, '=2C');

/** One SASL exchange; `initial()` gives the <auth/> payload, `challenge()` answers each server challenge. */
export interface SaslClient {
  initial(): string;
  challenge(data: Buffer): Promise<string>;
  /** Checks the additional data of <success/> (the SCRAM server signature). */
  verify(data: Buffer): boolean;
}

/** `cnonce` is only given by tests (RFC 7677 vector); otherwise random. */
export function saslClient(mech: Mechanism, user: string, password: string, cnonce = randomBytes(18).toString('base64')): SaslClient {
  if (mech === 'PLAIN') {
    return {
      initial: () => Buffer.from(`\0${user}\0${password}`).toString('base64'),
      challenge: () => Promise.reject(new Error('PLAIN got a challenge')),
      verify: () => true,
    };
  }
  const hash = mech === 'SCRAM-SHA-1' ? 'sha1' : 'sha256';
  const firstBare = `n=${escapeName(user)},r=${cnonce}`;
  let serverSignature: Buffer | null = null;
  return {
    initial: () => Buffer.from(`n,,${firstBare}`).toString('base64'),
    async challenge(data) {
      const serverFirst = data.toString();
      const attrs = new Map(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)] as const));
      const nonce = attrs.get('r');
      const salt = attrs.get('s');
      const iterations = Number(attrs.get('i'));
      if (!nonce?.startsWith(cnonce) || !salt || !(iterations > 0)) throw new Error(`bad SCRAM server-first: ${serverFirst}`);
      const sp = await salted(hash, password, Buffer.from(salt, 'base64'), iterations);
      const clientKey = hmac(hash, sp, 'Client Key');
      const storedKey = createHash(hash).update(clientKey).digest();
      const withoutProof = `c=biws,r=${nonce}`;
      const authMessage = `${firstBare},${serverFirst},${withoutProof}`;
      const signature = hmac(hash, storedKey, authMessage);
      for (let i = 0; i < clientKey.length; i++) clientKey[i] ^= signature[i];
      serverSignature = hmac(hash, hmac(hash, sp, 'Server Key'), authMessage);
      return Buffer.from(`${withoutProof},p=${clientKey.toString('base64')}`).toString('base64');
    },
    verify(data) {
      const m = /(?:^|,)v=([^,]+)/.exec(data.toString());
      if (!serverSignature || !m) return false;
      const got = Buffer.from(m[1], 'base64');
      return got.length === serverSignature.length && timingSafeEqual(got, serverSignature);
    },
  };
}

/** Prosody-style stored credentials for SCRAM (used to write account files directly). */
export async function scramCredentials(hash: 'sha1' | 'sha256', password: string, salt: string, iterations: number): Promise<{ storedKey: Buffer; serverKey: Buffer }> {
  const sp = await salted(hash, password, Buffer.from(salt), iterations);
  return { storedKey: createHash(hash).update(hmac(hash, sp, 'Client Key')).digest(), serverKey: hmac(hash, sp, 'Server Key') };
}
