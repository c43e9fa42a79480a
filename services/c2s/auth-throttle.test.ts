// The login throttle's counting rules: back-off steps, the block, the bounded
// map of the embedded mode, and what an address is counted under.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey, backoffMs, MemoryAuthCounters, type CountRule } from './auth-throttle.ts';

const rule: CountRule = { windowMs: 60_000, backoffAfter: 2, blockAfter: 4, blockMs: 10_000, baseMs: 100, maxMs: 250 };

test('back-off: none up to the threshold, then doubling up to the cap', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 60].map((n) => backoffMs(n, rule)), [0, 0, 100, 200, 250, 250]);
});

test('memory counters: a window, a block once, and at most max entries', async () => {
  const m = new MemoryAuthCounters(3);
  const now = Date.now();
  const counts = [];
  for (let i = 0; i < 5; i++) counts.push(await m.fail('a:1.2.3.4', rule, now));
  assert.deepEqual(counts.map((c) => c.failures), [1, 2, 3, 4, 5]);
  assert.deepEqual(counts.map((c) => c.blockedNow), [false, false, false, true, false]);
  assert.equal(counts[4].blockedUntil, now + rule.blockMs);
  assert.equal(counts[2].retryAt, now + 100);
  assert.deepEqual(await m.standing('a:1.2.3.4'), { retryAt: now + 250, blockedUntil: now + rule.blockMs });
  // The window over (and the block), the address starts afresh.
  assert.equal((await m.fail('a:1.2.3.4', rule, now + 60_001)).failures, 1);
  for (const k of ['a', 'b', 'c', 'd']) await m.fail(`u:${k}`, rule, now);
  assert.equal(m.size, 3);
  assert.deepEqual(await m.standing('a:1.2.3.4'), { retryAt: 0, blockedUntil: 0 }, 'the oldest was forgotten');
});

test('addresses: IPv4 as is, v4-mapped unmapped, IPv6 by network', () => {
  assert.equal(addressKey('203.0.113.7', 64), '203.0.113.7');
  assert.equal(addressKey('::ffff:203.0.113.7', 64), '203.0.113.7');
  assert.equal(addressKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 64), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8:1:2::9', 64), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:db8:1:2ff::9', 56), '2001:db8:1:200::/56');
  assert.equal(addressKey('fe80::1%eth0', 64), 'fe80::/64');
  assert.equal(addressKey('::1', 128), '::1');
});
