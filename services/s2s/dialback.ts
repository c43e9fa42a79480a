// Server Dialback keys (XEP-0220, generated as XEP-0185 recommends):
// HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream id), hex.
// Any s2s process may be asked to verify a key another one issued, so the
// secret is shared: configured, or generated once and kept in the store.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../../libs/store/store.ts';
import { el, text, type Element } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';

export class DialbackKeys {
  private readonly hmacKey: Buffer;

  constructor(secret: string) {
    this.hmacKey = createHash('sha256').update(secret).digest();
  }

  /** The key an originating server sends to a receiving server on the stream with this id. */
  key(receiving: string, originating: string, streamId: string): string {
    return createHmac('sha256', this.hmacKey).update(`${receiving} ${originating} ${streamId}`).digest('hex');
  }

  /** True when we issued this key for (receiving, originating, stream id). */
  check(receiving: string, originating: string, streamId: string, key: string): boolean {
    const expected = Buffer.from(this.key(receiving, originating, streamId));
    const given = Buffer.from(key.trim());
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** The cluster's dialback secret: the first process to start writes it, every other one reads it. */
export async function sharedDialbackSecret(store: Store): Promise<string> {
  await store.hsetnx('$s2s', 'config', 'dialback-secret', Buffer.from(randomBytes(32).toString('base64url')));
  const v = await store.hget('$s2s', 'config', 'dialback-secret');
  if (!v) throw new Error('the dialback secret could not be stored');
  return Buffer.from(v).toString('utf8');
}

/**
 * Our answer, as the authoritative server, to `<db:verify from=receiving
 * to=us id=…>key</db:verify>`: did we issue this key for a stream to them?
 */
export function verifyAnswer(keys: DialbackKeys, hosts: { has(domain: string): boolean }, request: Element): string {
  const { from = '', to = '', id = '' } = request.attrs;
  const valid = from !== '' && id !== '' && hosts.has(to) && keys.check(from, to, id, text(request));
  return serialize(el('db:verify', { from: to, to: from, id, type: valid ? 'valid' : 'invalid' }));
}
