// Stored SCRAM credentials (RFC 5802 §3): only the salted-password derivatives
// are kept, so a database leak does not reveal passwords and PLAIN can still
// be checked by re-deriving StoredKey.
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

export interface ScramCredential {
  salt: string; // base64
  iterations: number;
  storedKey: string; // base64
  serverKey: string; // base64
}

export interface StoredCredentials {
  'SCRAM-SHA-1': ScramCredential;
  'SCRAM-SHA-256': ScramCredential;
}

export type ScramMechanism = keyof StoredCredentials;

/** RFC 7677 §4 recommends at least 4096; also the count faked for unknown users. */
export const DEFAULT_ITERATIONS = 4096;

export const SCRAM_HASH: Record<ScramMechanism, { digest: 'sha1' | 'sha256'; length: number }> = {
  'SCRAM-SHA-1': { digest: 'sha1', length: 20 },
  'SCRAM-SHA-256': { digest: 'sha256', length: 32 },
};

// RFC 3454 tables used by SASLprep (RFC 4013).
const NON_ASCII_SPACE = /[\u00a0\u1680\u2000-\u200b\u202f\u205f\u3000]/gu; // C.1.2
const MAPPED_TO_NOTHING = /[\u00ad\u034f\u1806\u180b-\u180d\u200c\u200d\u2060\ufe00-\ufe0f\ufeff]/gu; // B.1
const PROHIBITED = new RegExp(
  '[' +
    '\\u0000-\\u001f\\u007f' + // C.2.1
    '\\u0080-\\u009f\\u06dd\\u070f\\u180e\\u200c\\u200d\\u2028\\u2029\\u2060-\\u2063\\u206a-\\u206f\\ufeff\\ufff9-\\ufffc\\u{1d173}-\\u{1d17a}' + // C.2.2
    '\\ue000-\\uf8ff\\u{f0000}-\\u{ffffd}\\u{100000}-\\u{10fffd}' + // C.3
    '\\p{Noncharacter_Code_Point}' + // C.4
    '\\p{Cs}' + // C.5 (lone surrogates)
    '\\ufff9-\\ufffd' + // C.6
    '\\u2ff0-\\u2ffb' + // C.7
    '\\u0340\\u0341\\u200e\\u200f\\u202a-\\u202e' + // C.8
    '\\u{e0001}\\u{e0020}-\\u{e007f}' + // C.9
  ']', 'u');
// D.1 (RandALCat) exactly; D.2 (LCat) approximated as letters/spacing marks that are not RandALCat,
// because JS regexes cannot query Bidi_Class.
const RAND_AL = /[\u05be\u05c0\u05c3\u05d0-\u05ea\u05f0-\u05f4\u061b\u061f\u0621-\u063a\u0640-\u064a\u066d-\u066f\u0671-\u06d5\u06dd\u06e5\u06e6\u06fa-\u06fe\u0700-\u070d\u0710\u0712-\u072c\u0780-\u07a5\u07b1\u200f\ufb1d\ufb1f-\ufb28\ufb2a-\ufb36\ufb38-\ufb3c\ufb3e\ufb40\ufb41\ufb43\ufb44\ufb46-\ufbb1\ufbd3-\ufd3d\ufd50-\ufd8f\ufd92-\ufdc7\ufdf0-\ufdfc\ufe70-\ufe74\ufe76-\ufefc]/u;
const RAND_AL_G = new RegExp(RAND_AL.source, 'gu');
const L_CAT = /[\p{L}\p{Mc}]/u;

/**
 * SASLprep (RFC 4013). `stored` selects the stored-string profile, which also
 * refuses unassigned code points (RFC 3454 §7); queries allow them.
 * Throws RangeError on prohibited input.
 */
export function saslprep(input: string, stored = false): string {
  if (/^[\x20-\x7e]*$/.test(input)) return input; // printable ASCII is invariant
  const s = input.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '').normalize('NFKC');
  if (PROHIBITED.test(s)) throw new RangeError('SASLprep: prohibited character');
  if (stored && /\p{Cn}/u.test(s)) throw new RangeError('SASLprep: unassigned code point');
  if (RAND_AL.test(s)) {
    const chars = [...s];
    if (L_CAT.test(s.replace(RAND_AL_G, '')) || !RAND_AL.test(chars[0]) || !RAND_AL.test(chars[chars.length - 1]))
      throw new RangeError('SASLprep: bidirectional rule violated');
  }
  return s;
}

const hmac = (digest: string, key: Buffer, data: string | Buffer) => createHmac(digest, key).update(data).digest();
const hash = (digest: string, data: Buffer) => createHash(digest).update(data).digest();

/** ClientKey, StoredKey and ServerKey from a SaltedPassword (RFC 5802 §3). */
export function scramKeys(mechanism: ScramMechanism, saltedPassword: Buffer) {
  const { digest } = SCRAM_HASH[mechanism];
  const clientKey = hmac(digest, saltedPassword, 'Client Key');
  return { clientKey, storedKey: hash(digest, clientKey), serverKey: hmac(digest, saltedPassword, 'Server Key') };
}

async function saltedPassword(mechanism: ScramMechanism, prepped: string, salt: Buffer, iterations: number): Promise<Buffer> {
  const { digest, length } = SCRAM_HASH[mechanism];
  return pbkdf2Async(prepped, salt, iterations, length, digest);
}

/** One mechanism's credential with a caller-chosen salt (tests, migrations). */
export async function deriveScramCredential(
  mechanism: ScramMechanism, password: string, salt: Buffer, iterations = DEFAULT_ITERATIONS,
): Promise<ScramCredential> {
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new RangeError('iterations must be a positive integer');
  const { storedKey, serverKey } = scramKeys(mechanism, await saltedPassword(mechanism, saslprep(password, true), salt, iterations));
  return { salt: salt.toString('base64'), iterations, storedKey: storedKey.toString('base64'), serverKey: serverKey.toString('base64') };
}

/** Credentials for a new password; throws RangeError if SASLprep rejects it or it is empty. */
export async function deriveCredentials(password: string, iterations = DEFAULT_ITERATIONS): Promise<StoredCredentials> {
  if (saslprep(password, true) === '') throw new RangeError('empty password');
  const [sha1, sha256] = await Promise.all([
    deriveScramCredential('SCRAM-SHA-1', password, randomBytes(16), iterations),
    deriveScramCredential('SCRAM-SHA-256', password, randomBytes(16), iterations),
  ]);
  return { 'SCRAM-SHA-1': sha1, 'SCRAM-SHA-256': sha256 };
}

/** Check a plaintext password (PLAIN) against stored credentials, in constant time. */
export async function verifyPassword(creds: StoredCredentials, password: string): Promise<boolean> {
  const mechanism: ScramMechanism = creds['SCRAM-SHA-256'] ? 'SCRAM-SHA-256' : 'SCRAM-SHA-1';
  const cred = creds[mechanism];
  let prepped: string;
  try {
    prepped = saslprep(password);
  } catch {
    return false;
  }
  if (!cred || prepped === '') return false;
  const { storedKey } = scramKeys(mechanism, await saltedPassword(mechanism, prepped, Buffer.from(cred.salt, 'base64'), cred.iterations));
  const expected = Buffer.from(cred.storedKey, 'base64');
  return expected.length === storedKey.length && timingSafeEqual(expected, storedKey);
}
