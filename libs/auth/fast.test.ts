// FAST token slots (XEP-0484 §6.1) over the store: issue, use, rotation,
// expiry, the binding to client and mechanism, and the per-account limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory-store.ts';
import { FastTokens } from './fast.ts';

const NONE = 'HT-SHA-256-NONE';
const is = (t: string) => (candidate: string) => candidate === t;

function tokens(policy: Partial<ConstructorParameters<typeof FastTokens>[1]> = {}) {
  let now = 1_000_000;
  const store = new MemoryStore();
  const fast = new FastTokens(store, { tokenLifetimeSeconds: 100, rotateBeforeExpirySeconds: 10, maxClientsPerAccount: 3, ...policy }, () => now);
  return { fast, store, advance: (ms: number) => { now += ms; } };
}

test('a token is bound to its account, client and mechanism; a miss writes nothing', async () => {
  const { fast, store } = tokens();
  const { token, expiry } = await fast.issue('a@x', 'ua1', NONE);
  assert.equal(expiry.getTime(), 1_000_000 + 100_000);
  const before = await store.hgetall('a@x', 'fast');
  assert.equal(await fast.use('b@x', 'ua1', NONE, is(token)), undefined);
  assert.equal(await fast.use('a@x', 'ua2', NONE, is(token)), undefined);
  assert.equal(await fast.use('a@x', 'ua1', 'HT-SHA-256-EXPR', is(token)), undefined);
  assert.equal(await fast.use('a@x', 'ua1', NONE, is('nope')), undefined);
  assert.deepEqual(await store.hgetall('a@x', 'fast'), before);
  assert.equal((await fast.use('a@x', 'ua1', NONE, is(token)))?.token, token);
});

test('the older token works until the newer one is used, then never again', async () => {
  const { fast } = tokens();
  const a = (await fast.issue('a@x', 'ua', NONE)).token;
  assert.ok(await fast.use('a@x', 'ua', NONE, is(a))); // a moves to current
  const b = (await fast.issue('a@x', 'ua', NONE)).token; // b waits in next
  assert.ok(await fast.use('a@x', 'ua', NONE, is(a)));
  assert.ok(await fast.use('a@x', 'ua', NONE, is(b)));
  assert.equal(await fast.use('a@x', 'ua', NONE, is(a)), undefined);
  assert.ok(await fast.use('a@x', 'ua', NONE, is(b)));
});

test('rotation is due within rotateBeforeExpirySeconds of the expiry; an expired token is refused', async () => {
  const { fast, advance } = tokens();
  const t = (await fast.issue('a@x', 'ua', NONE)).token;
  assert.equal((await fast.use('a@x', 'ua', NONE, is(t)))?.rotationDue, false);
  advance(91_000);
  assert.equal((await fast.use('a@x', 'ua', NONE, is(t)))?.rotationDue, true);
  advance(9_000);
  assert.equal(await fast.use('a@x', 'ua', NONE, is(t)), undefined);
});

test('maxClientsPerAccount: a client past the limit drops the one whose tokens expire first', async () => {
  const { fast, store, advance } = tokens();
  const first = (await fast.issue('a@x', 'ua1', NONE)).token;
  advance(1000);
  await fast.issue('a@x', 'ua2', NONE);
  advance(1000);
  await fast.issue('a@x', 'ua3', NONE);
  advance(1000);
  await fast.issue('a@x', 'ua4', NONE);
  assert.deepEqual([...(await store.hgetall('a@x', 'fast')).keys()].sort(), ['ua2', 'ua3', 'ua4']);
  assert.equal(await fast.use('a@x', 'ua1', NONE, is(first)), undefined);
  // A client already holding tokens is not new: it takes no one's place.
  await fast.issue('a@x', 'ua2', NONE);
  assert.equal((await store.hgetall('a@x', 'fast')).size, 3);
});

test('invalidate ends the client\'s tokens', async () => {
  const { fast } = tokens();
  const t = (await fast.issue('a@x', 'ua', NONE)).token;
  await fast.invalidate('a@x', 'ua');
  assert.equal(await fast.use('a@x', 'ua', NONE, is(t)), undefined);
});
