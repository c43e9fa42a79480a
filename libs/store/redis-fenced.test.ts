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
});
