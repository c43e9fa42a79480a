// Fencing on Redis: a write carrying an older token than the account has seen
// is refused in the same round trip and changes nothing; a load raises the
// fence, so the previous owner cannot write after the new one has read.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openStore, type Store } from './index.ts';
import { StaleFenceError } from './store.ts';
import { startRedis, type Spawned } from '../../test/support/servers.ts';

const b = (s: string) => Buffer.from(s);
const str = (v: Uint8Array | undefined) => (v === undefined ? undefined : Buffer.from(v).toString());

describe('fenced writes on redis', () => {
  let srv: Spawned;
  let base: Store;
  const token = new Map<string, number>();
  let refused = 0;
  const as = (owner: string): Store => base.fenced!(() => token.get(owner), () => refused++);

  before(async () => {
    srv = await startRedis();
    base = await openStore({ kind: 'redis', url: srv.url });
  });
  after(async () => {
    await base.close();
    await srv.stop();
  });

  it('refuses every kind of write from an older owner once a newer one has written, and applies none of it', async () => {
    const scope = 'alice@example.com';
    token.set('old', 100);
    token.set('new', 200);
    const old = as('old');
    const fresh = as('new');
    await old.hset(scope, 'roster', 'bob', b('from old'));
    await fresh.hset(scope, 'roster', 'bob', b('from new'));
    const before = refused;
    const attempts: [string, () => Promise<unknown>][] = [
      ['hset', () => old.hset(scope, 'roster', 'bob', b('stale'))],
      ['hdel', () => old.hdel(scope, 'roster', 'bob')],
      ['hsetnx', () => old.hsetnx(scope, 'roster', 'carol', b('stale'))],
      ['rpush', () => old.rpush(scope, 'offline', b('stale'))],
      ['ltrim', () => old.ltrim(scope, 'offline', 1, 0)],
      ['logAppend', () => old.logAppend(scope, 'archive', 1, b('stale'))],
      ['logTrim', () => old.logTrim(scope, 'archive', { below: 10 })],
      ['del', () => old.del(scope, 'roster')],
      ['batch', () => old.batch(scope).hset('roster', 'bob', b('stale')).rpush('offline', b('stale')).exec()],
      ['load', () => old.load(scope, ['roster'])],
    ];
    for (const [op, f] of attempts) await assert.rejects(f(), (e: unknown) => e instanceof StaleFenceError && /200/.test(e.message), `${op} must be refused`);
    assert.equal(refused - before, attempts.length, 'each refusal is reported');
    assert.equal(str(await base.hget(scope, 'roster', 'bob')), 'from new');
    assert.equal(await base.hget(scope, 'roster', 'carol'), undefined);
    assert.equal(await base.llen(scope, 'offline'), 0);
    assert.equal(await base.logCount(scope, 'archive'), 0);
  });

  it('a load by the new owner raises the fence before it has written anything', async () => {
    const scope = 'bob@example.com';
    token.set('old', 300);
    token.set('new', 400);
    await as('old').hset(scope, 'account', 'x', b('1'));
    const loaded = await as('new').load(scope, ['account', 'roster']);
    assert.equal(str(loaded.get('account')!.get('x')), '1');
    assert.equal(loaded.get('roster')!.size, 0);
    await assert.rejects(as('old').hset(scope, 'account', 'x', b('2')), StaleFenceError);
    assert.equal(str(await base.hget(scope, 'account', 'x')), '1');
  });

  it('the same owner writes on, and a newer one again takes over; unfenced scopes are left alone', async () => {
    const scope = 'carol@example.com';
    token.set('a', 500);
    await as('a').hset(scope, 'roster', 'k', b('1'));
    await as('a').hset(scope, 'roster', 'k', b('2'));
    token.set('b', 501);
    await as('b').hset(scope, 'roster', 'k', b('3'));
    await assert.rejects(as('a').hset(scope, 'roster', 'k', b('4')), StaleFenceError);
    // '$' scopes carry no token here (tokenOf gives undefined for an owner we never set).
    await as('nobody').hset('$shared', 'config', 'k', b('v'));
    assert.equal(str(await base.hget('$shared', 'config', 'k')), 'v');
  });

  it('writes of many scopes in one turn go out as one call, each scope fenced on its own', async () => {
    token.set('old', 600);
    token.set('new', 700);
    const scopes = Array.from({ length: 40 }, (_, i) => `many${i}@example.com`);
    // The newer owner takes every other scope first.
    await Promise.all(scopes.filter((_, i) => i % 2 === 0).map((sc) => as('new').hset(sc, 'roster', 'k', b('new'))));
    const before = refused;
    const big = Buffer.alloc(70_000, 0xab); // a large value: the str32 form, and a call split by size
    const results = await Promise.allSettled(scopes.map((sc, i) => (i % 4 === 1
      ? as('old').batch(sc).hset('roster', 'k', b('old')).logAppend('archive', 1e15 + i, big).rpush('offline', b(`o${i}`)).exec()
      : as('old').hset(sc, 'roster', 'k', b('old')))));
    results.forEach((r, i) => {
      if (i % 2 === 0) assert.ok(r.status === 'rejected' && r.reason instanceof StaleFenceError && /700/.test(String(r.reason.message)), `scope ${i}: refused`);
      else assert.equal(r.status, 'fulfilled', `scope ${i}: applied`);
    });
    assert.equal(refused - before, 20, 'each refusal is reported once');
    for (const [i, sc] of scopes.entries()) {
      assert.equal(str(await base.hget(sc, 'roster', 'k')), i % 2 === 0 ? 'new' : 'old', `scope ${i}`);
      if (i % 4 === 1) {
        const [entry] = await base.logRange(sc, 'archive');
        assert.equal(entry.id, 1e15 + i, 'a large id kept exactly');
        assert.equal(Buffer.from(entry.value).equals(big), true);
        assert.deepEqual((await base.lrange(sc, 'offline', 0, -1)).map(str), [`o${i}`]);
      }
    }
    // Loads in one turn (binary replies) come back per scope.
    const loaded = await Promise.all(scopes.slice(1, 6).map((sc) => as('new').load(sc, ['roster'])));
    assert.deepEqual(loaded.map((m) => str(m.get('roster')!.get('k'))), ['old', 'new', 'old', 'new', 'old']);
  });
});
