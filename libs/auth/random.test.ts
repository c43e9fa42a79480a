import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytesPooled } from './random.ts';

test('pooled random bytes: the asked length, never repeated across many draws and pool refills', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const b = randomBytesPooled(12);
    assert.equal(b.length, 12);
    seen.add(b.toString('hex'));
  }
  assert.equal(seen.size, 5000);
  // A copy, not a view: the pool being refilled does not change what was handed out.
  const kept = randomBytesPooled(16);
  const before = kept.toString('hex');
  for (let i = 0; i < 600; i++) randomBytesPooled(16);
  assert.equal(kept.toString('hex'), before);
  assert.throws(() => randomBytesPooled(257), RangeError);
});
