// Resumption ids and the h counter's arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryStore } from '../../../libs/store/memory-store.ts';
import { checkResumptionId, makeResumptionId, resumptionSecret, unwrapCount } from './resumption-id.ts';

test('a resumption id names its account and session, and nothing else verifies', () => {
  const secret = randomBytes(32);
  const id = makeResumptionId(secret, 'alice@example.com', 'sid-1');
  assert.match(id, /^[A-Za-z0-9_-]+$/);
  assert.equal(checkResumptionId(secret, 'alice@example.com', id), 'sid-1');
  assert.equal(checkResumptionId(secret, 'mallory@example.com', id), undefined, 'bound to the account');
  assert.equal(checkResumptionId(randomBytes(32), 'alice@example.com', id), undefined, 'another key');
  const raw = Buffer.from(id, 'base64url');
  raw[raw.length - 3] ^= 0x40;
  assert.equal(checkResumptionId(secret, 'alice@example.com', raw.toString('base64url')), undefined, 'tampered');
  // Forging: the same bare JID and another session id without the key.
  const forged = Buffer.concat([Buffer.from('alice@example.com\u0000sid-2\u0000'), Buffer.alloc(16)]).toString('base64url');
  assert.equal(checkResumptionId(secret, 'alice@example.com', forged), undefined);
  for (const junk of ['', 'x', '!!!', 'a'.repeat(5000)]) assert.equal(checkResumptionId(secret, 'alice@example.com', junk), undefined);
});

test('the key is made once and shared by everyone reading the same store', async () => {
  const store = new MemoryStore();
  const a = await resumptionSecret(store);
  assert.equal(a.length, 32);
  const other = new MemoryStore();
  await other.hset('$sm', 'config', 'secret', await store.hget('$sm', 'config', 'secret') as Uint8Array);
  assert.deepEqual(await resumptionSecret(other), a, 'another process over the same data');
});

test('h wraps at 2^32 (XEP-0198 §4)', () => {
  assert.equal(unwrapCount(5, 0), 5);
  assert.equal(unwrapCount(0, 0), 0);
  assert.equal(unwrapCount(3, 2 ** 32 - 2), 2 ** 32 + 3, 'past the wrap');
  assert.equal(unwrapCount(2 ** 32 - 1, 2 ** 32 - 5), 2 ** 32 - 1);
  assert.equal(unwrapCount(7, 3 * 2 ** 32 + 5), 3 * 2 ** 32 + 7);
});
