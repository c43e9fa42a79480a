// The Store's behaviour, as one suite any backend must pass unchanged: the
// lmdb, memory and Redis stores in libs/store/store.test.ts, and Redis Cluster
// in test/cluster/engines.test.ts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Bytes, Store } from '../../libs/store/store.ts';

export const b = (s: string): Bytes => Buffer.from(s);
export const str = (v: Bytes | undefined): string | undefined => (v === undefined ? undefined : Buffer.from(v).toString());
export const strs = (vs: Bytes[]): string[] => vs.map((v) => Buffer.from(v).toString());
export const entries = (m: Map<string, Bytes>): [string, string][] =>
  [...m].map(([k, v]): [string, string] => [k, Buffer.from(v).toString()]).sort(([x], [y]) => (x < y ? -1 : 1));

/** Registers the suite under `store: <name>`; `open` runs once before it, its `close` once after. */
export function storeSuite(name: string, kind: Store['kind'], open: () => Promise<{ store: Store; close(): Promise<void> }>): void {
  describe(`store: ${name}`, () => {
    let store: Store;
    let close: () => Promise<void>;
    let n = 0;
    // Every test gets its own scope, so tests never see each other's data.
    const fresh = (): string => `user${++n}@example.com`;

    before(async () => ({ store, close } = await open()));
    after(async () => close());

    it('reports its kind', () => assert.equal(store.kind, kind));

    it('writes issued without waiting land in the order issued (hdel then hset of one field, del then rpush)', async () => {
      const s = fresh();
      await store.hset(s, 'occupants', 'nick', b('old'));
      const w: Promise<unknown>[] = [];
      for (let i = 0; i < 50; i++) {
        w.push(store.hdel(s, 'occupants', 'nick'));
        w.push(store.hset(s, 'occupants', 'nick', b(`v${i}`)));
      }
      w.push(store.del(s, 'q'), store.rpush(s, 'q', b('after-del')), store.logAppend(s, 'log', 1, b('one')), store.logTrim(s, 'log', { below: 2 }));
      await Promise.all(w);
      assert.equal(str(await store.hget(s, 'occupants', 'nick')), 'v49');
      assert.deepEqual((await store.lrange(s, 'q', 0, -1)).map(str), ['after-del']);
      assert.equal((await store.logRange(s, 'log')).length, 0);
    });

    it('hashes: hset, hget, hgetall, hdel, hlen, hsetnx', async () => {
      const s = fresh();
      assert.equal(await store.hget(s, 'roster', 'bob'), undefined);
      assert.deepEqual(entries(await store.hgetall(s, 'roster')), []);
      assert.equal(await store.hlen(s, 'roster'), 0);

      await store.hset(s, 'roster', 'bob', b('B1'));
      await store.hset(s, 'roster', 'carol', b('C'));
      await store.hset(s, 'roster', 'bob', b('B2')); // overwrite
      await store.hset(s, 'roster', 'empty', b(''));
      assert.equal(str(await store.hget(s, 'roster', 'bob')), 'B2');
      assert.equal(str(await store.hget(s, 'roster', 'empty')), '');
      assert.equal(await store.hlen(s, 'roster'), 3);
      assert.deepEqual(entries(await store.hgetall(s, 'roster')), [['bob', 'B2'], ['carol', 'C'], ['empty', '']]);

      assert.equal(await store.hdel(s, 'roster', 'carol'), true);
      assert.equal(await store.hdel(s, 'roster', 'carol'), false);
      assert.equal(await store.hget(s, 'roster', 'carol'), undefined);
      assert.equal(await store.hlen(s, 'roster'), 2);

      assert.equal(await store.hsetnx(s, 'roster', 'bob', b('X')), false);
      assert.equal(str(await store.hget(s, 'roster', 'bob')), 'B2');
      assert.equal(await store.hsetnx(s, 'roster', 'dave', b('D')), true);
      assert.equal(str(await store.hget(s, 'roster', 'dave')), 'D');
    });

    it('logs: append in id order, ranges both ways with exclusive bounds and limits, counts, trims, del', async () => {
      const s = fresh();
      const ids = (es: { id: number }[]) => es.map((e) => e.id);
      assert.deepEqual(await store.logRange(s, 'mam', {}), []);
      assert.equal(await store.logCount(s, 'mam'), 0);
      const base = 1_700_000_000_000_000; // µs stamps: large safe integers
      for (let i = 0; i < 10; i++) await store.logAppend(s, 'mam', base + i * 10, b(`v${i}`));
      await store.logAppend(s, 'mam', base + 90, b('v9')); // the same id again: still one entry
      const all = await store.logRange(s, 'mam');
      assert.deepEqual(ids(all), Array.from({ length: 10 }, (_, i) => base + i * 10));
      assert.deepEqual(strs(all.map((e) => e.value)), ['v0', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8', 'v9']);
      assert.deepEqual(ids(await store.logRange(s, 'mam', { after: base + 20, before: base + 60 })), [base + 30, base + 40, base + 50]);
      assert.deepEqual(ids(await store.logRange(s, 'mam', { after: base + 25, limit: 2 })), [base + 30, base + 40]);
      assert.deepEqual(ids(await store.logRange(s, 'mam', { before: base + 60, limit: 2, reverse: true })), [base + 50, base + 40]);
      assert.deepEqual(ids(await store.logRange(s, 'mam', { limit: 1, reverse: true })), [base + 90]);
      assert.deepEqual(ids(await store.logRange(s, 'mam', { after: base + 90 })), []);
      assert.equal(await store.logCount(s, 'mam'), 10);
      assert.equal(await store.logCount(s, 'mam', { after: base + 20, before: base + 60 }), 3);
      assert.equal(await store.logCount(s, 'mam', { after: base + 25 }), 7);
      assert.equal(await store.logTrim(s, 'mam', { below: base + 30 }), 3);
      assert.deepEqual(ids(await store.logRange(s, 'mam', { limit: 1 })), [base + 30]);
      assert.equal(await store.logTrim(s, 'mam', { maxLength: 5 }), 2);
      assert.deepEqual(ids(await store.logRange(s, 'mam')), [base + 50, base + 60, base + 70, base + 80, base + 90]);
      assert.equal(await store.logTrim(s, 'mam', { below: base + 55, oldest: 1 }), 2, 'below first, then the oldest of what is left');
      assert.deepEqual(ids(await store.logRange(s, 'mam')), [base + 70, base + 80, base + 90]);
      assert.equal(await store.logTrim(s, 'mam', { oldest: 0 }), 0);
      // a log beside a hash of the same scope: neither sees the other
      await store.hset(s, 'other', 'f', b('x'));
      await store.logAppend(s, 'q', 1, b('one'));
      assert.deepEqual(ids(await store.logRange(s, 'q')), [1]);
      await store.del(s, 'mam');
      assert.deepEqual(await store.logRange(s, 'mam'), []);
      assert.equal(await store.logCount(s, 'q'), 1);
    });

    it('lists: rpush, lrange (positive, negative, out of range), llen', async () => {
      const s = fresh();
      assert.deepEqual(await store.lrange(s, 'offline', 0, -1), []);
      assert.equal(await store.llen(s, 'offline'), 0);
      for (let i = 0; i < 5; i++) assert.equal(await store.rpush(s, 'offline', b(`m${i}`)), i + 1);
      assert.equal(await store.llen(s, 'offline'), 5);
      const r = async (a: number, z: number) => strs(await store.lrange(s, 'offline', a, z));
      assert.deepEqual(await r(0, -1), ['m0', 'm1', 'm2', 'm3', 'm4']);
      assert.deepEqual(await r(1, 3), ['m1', 'm2', 'm3']);
      assert.deepEqual(await r(0, 0), ['m0']);
      assert.deepEqual(await r(-2, -1), ['m3', 'm4']);
      assert.deepEqual(await r(-100, 1), ['m0', 'm1']);
      assert.deepEqual(await r(3, 100), ['m3', 'm4']);
      assert.deepEqual(await r(-3, 3), ['m2', 'm3']);
      assert.deepEqual(await r(5, 10), []);
      assert.deepEqual(await r(2, 1), []);
      assert.deepEqual(await r(0, -6), []);
    });

    it('lists: ltrim keeps a window; pushing after a trim appends', async () => {
      const s = fresh();
      for (let i = 0; i < 10; i++) await store.rpush(s, 'q', b(`m${i}`));
      await store.ltrim(s, 'q', 2, -3);
      assert.deepEqual(strs(await store.lrange(s, 'q', 0, -1)), ['m2', 'm3', 'm4', 'm5', 'm6', 'm7']);
      assert.equal(await store.llen(s, 'q'), 6);
      assert.equal(await store.rpush(s, 'q', b('m10')), 7);
      assert.deepEqual(strs(await store.lrange(s, 'q', 0, 1)), ['m2', 'm3']);
      await store.ltrim(s, 'q', -3, 100); // keep the last 3 (an archive cap)
      assert.deepEqual(strs(await store.lrange(s, 'q', 0, -1)), ['m6', 'm7', 'm10']);
      await store.ltrim(s, 'q', 0, -1); // no-op
      assert.equal(await store.llen(s, 'q'), 3);
      await store.ltrim(s, 'q', 5, 1); // empty window empties the list
      assert.equal(await store.llen(s, 'q'), 0);
      assert.deepEqual(await store.lrange(s, 'q', 0, -1), []);
      assert.equal(await store.rpush(s, 'q', b('again')), 1);
      assert.deepEqual(strs(await store.lrange(s, 'q', 0, -1)), ['again']);
      await store.ltrim(s, 'missing', 0, 1); // no error
    });

    it('del removes a hash or a list, not its neighbours', async () => {
      const s = fresh();
      await store.hset(s, 'roster', 'bob', b('B'));
      await store.hset(s, 'roster2', 'bob', b('B'));
      await store.rpush(s, 'offline', b('m'));
      await store.rpush(s, 'offline2', b('m'));
      await store.del(s, 'roster');
      await store.del(s, 'offline');
      await store.del(s, 'never-existed');
      assert.equal(await store.hlen(s, 'roster'), 0);
      assert.equal(await store.llen(s, 'offline'), 0);
      assert.equal(await store.hlen(s, 'roster2'), 1);
      assert.equal(await store.llen(s, 'offline2'), 1);
      assert.equal(await store.rpush(s, 'offline', b('m')), 1);
    });

    it('load reads several hashes; missing ones are empty maps', async () => {
      const s = fresh();
      await store.hset(s, 'account', 'password', b('pw'));
      await store.hset(s, 'roster', 'bob', b('B'));
      await store.hset(s, 'roster', 'carol', b('C'));
      const m = await store.load(s, ['account', 'roster', 'privacy']);
      assert.deepEqual([...m.keys()], ['account', 'roster', 'privacy']);
      assert.deepEqual(entries(m.get('account')!), [['password', 'pw']]);
      assert.deepEqual(entries(m.get('roster')!), [['bob', 'B'], ['carol', 'C']]);
      assert.equal(m.get('privacy')!.size, 0);
      assert.equal((await store.load(s, [])).size, 0);
    });

    it('batch applies nothing before exec and everything after', async () => {
      const s = fresh();
      await store.hset(s, 'roster', 'gone', b('G'));
      await store.hset(s, 'vcard', 'fn', b('old'));
      const batch = store.batch(s)
        .hset('roster', 'bob', b('B'))
        .hset('roster', 'carol', b('C'))
        .hdel('roster', 'gone')
        .del('vcard')
        .rpush('offline', b('m1'))
        .rpush('offline', b('m2'));
      assert.equal(await store.hget(s, 'roster', 'bob'), undefined);
      assert.equal(await store.llen(s, 'offline'), 0);
      await batch.exec();
      assert.deepEqual(entries(await store.hgetall(s, 'roster')), [['bob', 'B'], ['carol', 'C']]);
      assert.equal(await store.hlen(s, 'vcard'), 0);
      assert.deepEqual(strs(await store.lrange(s, 'offline', 0, -1)), ['m1', 'm2']);
      // A log entry and a mark in one batch (a delivery and its mark: services/session/tracked.ts).
      await store.batch(s).logAppend('smq', 7, b('seven')).hset('seen', 'src', b('7')).logAppend('smq', 8, b('eight')).exec();
      assert.deepEqual((await store.logRange(s, 'smq')).map((e) => [e.id, Buffer.from(e.value).toString()]), [[7, 'seven'], [8, 'eight']]);
      assert.equal(str(await store.hget(s, 'seen', 'src')), '7');
      // A trim and a record in one batch (an acknowledgement: services/session/sm/index.ts); the trim sees the append before it.
      await store.batch(s).logAppend('smq', 9, b('nine')).logTrim('smq', { below: 9 }).hset('smstate', 'r', b('acked 8')).exec();
      assert.deepEqual((await store.logRange(s, 'smq')).map((e) => e.id), [9]);
      assert.equal(str(await store.hget(s, 'smstate', 'r')), 'acked 8');
      await store.batch(s).logTrim('smq', { maxLength: 0 }).exec();
      assert.equal(await store.logCount(s, 'smq'), 0);
      await store.batch(s).exec(); // an empty batch is fine
      // Ops in a batch apply in order: del then hset leaves the new field only.
      await store.batch(s).hset('roster', 'x', b('X')).del('roster').hset('roster', 'y', b('Y')).exec();
      assert.deepEqual(entries(await store.hgetall(s, 'roster')), [['y', 'Y']]);
    });

    it('scopes are isolated, including scopes that prefix one another', async () => {
      const a = fresh(), a2 = `${a}.org`, g = '$domains';
      for (const s of [a, a2, g]) {
        await store.hset(s, 'roster', 'who', b(s));
        await store.rpush(s, 'offline', b(s));
      }
      await store.del(a, 'roster');
      await store.ltrim(a, 'offline', 1, 0);
      assert.equal(await store.hlen(a, 'roster'), 0);
      assert.equal(await store.llen(a, 'offline'), 0);
      for (const s of [a2, g]) {
        assert.deepEqual(entries(await store.hgetall(s, 'roster')), [['who', s]]);
        assert.deepEqual(strs(await store.lrange(s, 'offline', 0, -1)), [s]);
      }
      await store.del(g, 'roster');
      await store.del(g, 'offline');
    });

    it('values are raw bytes (all 256 byte values); fields may be any string', async () => {
      const s = fresh();
      const all = Uint8Array.from({ length: 256 }, (_, i) => i);
      const reversed = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
      const field = 'ünïcødé \u{1F600} \u0001 :{}';
      await store.hset(s, 'bin', field, all);
      await store.rpush(s, 'binl', all);
      await store.batch(s).hset('bin', 'r', reversed).rpush('binl', reversed).exec();
      const eq = (got: Bytes | undefined, want: Uint8Array) => assert.ok(got && Buffer.from(want).equals(got));
      eq(await store.hget(s, 'bin', field), all);
      const h = await store.hgetall(s, 'bin');
      eq(h.get(field), all);
      eq(h.get('r'), reversed);
      const l = await store.lrange(s, 'binl', 0, -1);
      eq(l[0], all);
      eq(l[1], reversed);
      // A subarray view must be stored as exactly its own bytes.
      await store.hset(s, 'bin', 'view', all.subarray(10, 20));
      eq(await store.hget(s, 'bin', 'view'), all.subarray(10, 20));
    });

    it('a 5,000-field hash loads with one call', async () => {
      const s = fresh();
      const N = 5000;
      const batch = store.batch(s);
      for (let i = 0; i < N; i++) batch.hset('roster', `contact${i}@example.net`, b(`item-${i}`));
      await batch.exec();
      assert.equal(await store.hlen(s, 'roster'), N);
      const m = (await store.load(s, ['roster'])).get('roster')!;
      assert.equal(m.size, N);
      for (const i of [0, 1, 2500, N - 1]) assert.equal(str(m.get(`contact${i}@example.net`)), `item-${i}`);
    });
  });
}
