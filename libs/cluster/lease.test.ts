// The lease rules on a fake clock: grants, renewals, the holder's own deadline
// (⅔ of the TTL from the renewal's request), fencing tokens that only grow.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { LeaseKeeper, MemoryLeaseTable, RedisLeaseTable, type Clock } from './lease.ts';
import { startRedis } from '../../test/support/servers.ts';

class FakeClock implements Clock {
  t = 1000;
  now(): number { return this.t; }
}

function keeper(table: MemoryLeaseTable, owner: string, clock: Clock, lost: [number, string][] = [], events: string[] = []): LeaseKeeper {
  return new LeaseKeeper(table, owner, {
    ttlMs: 3000, renewMs: 1000, clock,
    onLost: (s, reason) => lost.push([s, reason]),
    onLapsed: (s) => events.push(`lapsed ${s}`),
    onRegained: (s, fresh) => events.push(`regained ${s}${fresh ? ' fresh' : ''}`),
  });
}

describe('shard leases', () => {
  test('one holder at a time; the next one gets a larger token once the lease expires on the table', async () => {
    const clock = new FakeClock();
    const table = new MemoryLeaseTable(clock);
    const a = keeper(table, 'a', clock);
    const b = keeper(table, 'b', clock);
    const ta = await a.acquire(7);
    assert.equal(typeof ta, 'number');
    assert.equal(await b.acquire(7), undefined, 'b must not get a lease a holds');
    clock.t += 2999;
    assert.equal(await b.acquire(7), undefined, 'not before the TTL has run out on the table');
    clock.t += 1;
    const tb = await b.acquire(7);
    assert.ok(tb !== undefined && tb > ta!, `the new token ${tb} must be larger than ${ta}`);
    assert.equal(table.holder(7), 'b');
  });

  test('the holder stops trusting its lease after ⅔ of the TTL counted from the request, before the table lets it go', async () => {
    const clock = new FakeClock();
    const table = new MemoryLeaseTable(clock);
    const lost: [number, string][] = [];
    const events: string[] = [];
    const a = keeper(table, 'a', clock, lost, events);
    await a.acquire(1);
    assert.equal(a.valid(1), true);
    clock.t += 1999;
    assert.equal(a.valid(1), true);
    clock.t += 1;
    assert.equal(a.valid(1), false, 'trust ends at 2000 ms of a 3000 ms lease');
    assert.equal(table.holder(1), 'a', 'the table still holds it for a: nobody else can have it yet');
    a.expire();
    assert.deepEqual(events, ['lapsed 1'], 'it lapses: the holder acts no more and asks for a renewal');
    assert.equal(a.lapsed(1), true);
    assert.deepEqual(lost, []);
    // No renewal gets through for a whole TTL: it has certainly expired on the table.
    table.down = true;
    clock.t += 3000;
    await a.renew();
    assert.deepEqual(lost, [[1, 'expired']]);
    await a.stop(false);
  });

  test('a lapsed lease that a renewal finds still ours goes on with its token; one the table let expire comes back fresh', async () => {
    const clock = new FakeClock();
    const table = new MemoryLeaseTable(clock);
    const events: string[] = [];
    const lost: [number, string][] = [];
    const a = keeper(table, 'a', clock, lost, events);
    const t1 = await a.acquire(1);
    const t2 = await a.acquire(2);
    clock.t += 2500; // a stall: both lapse, the table still holds them for a
    a.expire();
    await a.renew();
    assert.deepEqual(events.sort(), ['lapsed 1', 'lapsed 2', 'regained 1', 'regained 2'].sort());
    assert.equal(a.token(1), t1);
    assert.equal(a.valid(1) && a.valid(2), true);
    events.length = 0;
    clock.t += 3500; // past the TTL on the table, nobody took them
    a.expire();
    await a.renew();
    assert.deepEqual(events.sort(), ['lapsed 1', 'lapsed 2', 'regained 1 fresh', 'regained 2 fresh'].sort());
    assert.ok(a.token(2)! > t2!, 'a new grant has a new token');
    assert.deepEqual(lost, []);
  });

  test('renewals keep the token and push the deadline; a renewal that fails leaves the deadline where it was', async () => {
    const clock = new FakeClock();
    const table = new MemoryLeaseTable(clock);
    const lost: [number, string][] = [];
    const a = keeper(table, 'a', clock, lost);
    const t0 = await a.acquire(3);
    for (let i = 0; i < 5; i++) {
      clock.t += 1000;
      await a.renew();
      assert.equal(a.valid(3), true);
      assert.equal(a.token(3), t0, 'a renewal keeps the token');
    }
    table.down = true;
    clock.t += 1000;
    await a.renew();
    assert.equal(a.valid(3), true, 'one failed renewal is within the margin');
    clock.t += 1000;
    await a.renew();
    assert.equal(a.valid(3), false);
    assert.equal(a.lapsed(3), true);
    table.down = false;
    await a.renew();
    assert.equal(a.valid(3), true, 'the table answers again and the lease was never let go');
    assert.equal(a.token(3), t0);
    assert.deepEqual(lost, []);
    await a.stop(false);
  });

  test('a holder that paused past the TTL finds its lease taken and keeps its old token for fencing', async () => {
    const clock = new FakeClock();
    const table = new MemoryLeaseTable(clock);
    const lostA: [number, string][] = [];
    const a = keeper(table, 'a', clock, lostA);
    const b = keeper(table, 'b', clock);
    const ta = await a.acquire(5);
    // a is stopped for 10 s: no renewal runs, b takes the shard when the lease expires.
    clock.t += 10_000;
    const tb = await b.acquire(5);
    assert.ok(tb !== undefined && tb > ta!);
    // a wakes: before any timer, an envelope asks whether it may act.
    assert.equal(a.valid(5), false, 'the paused holder must not act');
    await a.renew();
    assert.deepEqual(lostA, [[5, 'taken']]);
    assert.equal(a.token(5), ta, 'its late writes still carry the old token, which the store refuses');
    assert.equal(b.valid(5), true);
  });

  test('a renewal answered after the trust window has passed does not revive the lease', async () => {
    const clock = new FakeClock();
    const table = new MemoryLeaseTable(clock);
    const lost: [number, string][] = [];
    const a = keeper(table, 'a', clock, lost);
    await a.acquire(9);
    // The request leaves now; the process stalls 2.5 s before it reads the answer.
    const slow = { acquire: async (o: string, s: readonly number[], ttl: number) => { const r = await table.acquire(o, s, ttl); clock.t += 2500; return r; }, release: table.release.bind(table) };
    const a2 = new LeaseKeeper(slow, 'a', { ttlMs: 3000, renewMs: 1000, clock, onLost: (s, r) => lost.push([s, r]) });
    await a2.acquire(9);
    assert.equal(a2.valid(9), false, 'counted from the request: 2000 ms of trust, 2500 ms gone');
  });

  test('release hands the lease over at once; acquiring many shards takes one table call', async () => {
    const clock = new FakeClock();
    const table = new MemoryLeaseTable(clock);
    let calls = 0;
    const counting = { acquire: (o: string, s: readonly number[], ttl: number) => { calls++; return table.acquire(o, s, ttl); }, release: table.release.bind(table) };
    const a = new LeaseKeeper(counting, 'a', { ttlMs: 3000, renewMs: 1000, clock, onLost: () => {} });
    const b = keeper(table, 'b', clock);
    const tokens = await Promise.all(Array.from({ length: 64 }, (_, s) => a.acquire(s)));
    assert.equal(calls, 1);
    assert.equal(new Set(tokens).size, 64, 'each grant has its own token');
    await a.release(10);
    assert.equal(a.valid(10), false);
    assert.ok((await b.acquire(10))! > Math.max(...(tokens as number[])));
  });
});

describe('the lease table on Redis', () => {
  test('grants and renews on the server\'s clock; with replicas, a grant no replica confirmed fails like an unreachable table', async () => {
    const srv = await startRedis();
    const redis = new Redis(srv.url);
    try {
      let confirmed = true;
      const asked: string[] = [];
      const table = new RedisLeaseTable(redis, 'test{leases:session}', async (key) => { asked.push(key); return confirmed; });
      const a = await table.acquire('a', [1, 2], 3000);
      assert.deepEqual([...a.keys()], [1, 2]);
      assert.deepEqual(await table.acquire('b', [1], 3000), new Map(), 'held by a');
      const renewed = await table.acquire('a', [1], 3000);
      assert.equal(renewed.get(1), a.get(1), 'a renewal keeps its token');
      confirmed = false;
      await assert.rejects(table.acquire('a', [1], 3000), /no replica/);
      assert.ok(asked.every((k) => k === 'test{leases:session}') && asked.length === 4, 'asked about the table\'s own key, every call');
      // The keeper treats it as a failed renewal: the lease lapses once its trust runs out, nothing is granted meanwhile.
      const clock = new FakeClock();
      const lost: [number, string][] = [];
      const events: string[] = [];
      const k = new LeaseKeeper(table, 'c', { ttlMs: 3000, renewMs: 1000, clock, onLost: (s, r) => lost.push([s, r]), onLapsed: (s) => events.push(`lapsed ${s}`) });
      assert.equal(await k.acquire(7), undefined, 'not granted while no replica confirms it');
      confirmed = true;
      assert.ok((await k.acquire(7))! > 0);
      assert.equal(k.valid(7), true);
    } finally {
      redis.disconnect();
      await srv.stop();
    }
  });
});
