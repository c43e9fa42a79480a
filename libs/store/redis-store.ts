// The Store on Redis. A collection is the key `${prefix}{${scope}}:${coll}`:
// the braces make the scope the Redis Cluster hash tag, so all of one scope's
// keys share a slot and a batch over one scope can run as one MULTI.
// Hashes are Redis hashes, lists Redis lists, logs sorted sets scored by id
// (ZCOUNT answers a range's size in O(log n)); a member is the id's 8 bytes
// then the value, so equal values stay distinct. Values travel as Buffers.
import { Redis, type ChainableCommander } from 'ioredis';
import type { Bytes, LogEntry, LogRange, Store, StoreBatch } from './store.ts';

/** A client for the store and for other modules (membership, presence…). */
export function createRedisClient(url: string): Redis {
  return new Redis(url, {
    enableAutoPipelining: true, // concurrent commands from one tick share a round trip
    maxRetriesPerRequest: 3, // fail a request during an outage instead of queueing it forever
    lazyConnect: false,
    connectTimeout: 5_000,
  });
}

// ioredis only sends Buffers as binary; a plain Uint8Array would be stringified.
const buf = (v: Bytes): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));

/** ioredis reports per-command errors of a pipeline / MULTI as [err, result] pairs. */
function results(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('redis transaction aborted');
  return replies.map(([err, res]) => { if (err) throw err; return res; });
}

/** ZRANGEBYSCORE bounds for after < id < before. */
function bounds(q: Pick<LogRange, 'after' | 'before'>): [string, string] {
  return [q.after === undefined ? '-inf' : `(${q.after}`, q.before === undefined ? '+inf' : `(${q.before}`];
}

export function createRedisStore(opts: { url: string; keyPrefix?: string }): Store {
  const prefix = opts.keyPrefix ?? 'parley:';
  const r = createRedisClient(opts.url);
  const key = (scope: string, coll: string): string => `${prefix}{${scope}}:${coll}`;
  const toMap = (o: Record<string, Buffer>): Map<string, Bytes> => new Map(Object.entries(o));

  const batch = (scope: string): StoreBatch => {
    // Queued locally; exec sends MULTI … EXEC in one round trip.
    const ops: ((m: ChainableCommander) => void)[] = [];
    const b: StoreBatch = {
      hset(coll, field, value) { ops.push((m) => m.hset(key(scope, coll), field, buf(value))); return this; },
      hdel(coll, field) { ops.push((m) => m.hdel(key(scope, coll), field)); return this; },
      del(coll) { ops.push((m) => m.del(key(scope, coll))); return this; },
      rpush(coll, value) { ops.push((m) => m.rpush(key(scope, coll), buf(value))); return this; },
      async exec() {
        if (ops.length === 0) return;
        const m = r.multi();
        for (const op of ops) op(m);
        results(await m.exec());
      },
    };
    return b;
  };

  return {
    kind: 'redis',
    async hget(scope, coll, field) { return (await r.hgetBuffer(key(scope, coll), field)) ?? undefined; },
    async hgetall(scope, coll) { return toMap(await r.hgetallBuffer(key(scope, coll))); },
    async hset(scope, coll, field, value) { await r.hset(key(scope, coll), field, buf(value)); },
    async hdel(scope, coll, field) { return (await r.hdel(key(scope, coll), field)) > 0; },
    hlen: (scope, coll) => r.hlen(key(scope, coll)),
    async hsetnx(scope, coll, field, value) { return (await r.hsetnx(key(scope, coll), field, buf(value))) === 1; },

    rpush: (scope, coll, value) => r.rpush(key(scope, coll), buf(value)),
    lrange: (scope, coll, start, stop) => r.lrangeBuffer(key(scope, coll), start, stop),
    llen: (scope, coll) => r.llen(key(scope, coll)),
    async ltrim(scope, coll, start, stop) { await r.ltrim(key(scope, coll), start, stop); },

    async logAppend(scope, coll, id, value) {
      const head = Buffer.allocUnsafe(8);
      head.writeDoubleBE(id);
      await r.zadd(key(scope, coll), id, Buffer.concat([head, buf(value)]));
    },
    async logRange(scope, coll, q: LogRange = {}) {
      const [min, max] = bounds(q);
      const k = key(scope, coll);
      const limit = q.limit ?? -1;
      const members = q.reverse
        ? await r.zrevrangebyscoreBuffer(k, max, min, 'LIMIT', 0, limit)
        : await r.zrangebyscoreBuffer(k, min, max, 'LIMIT', 0, limit);
      return members.map((m): LogEntry => ({ id: m.readDoubleBE(0), value: m.subarray(8) }));
    },
    logCount(scope, coll, q = {}) {
      const [min, max] = bounds(q);
      return r.zcount(key(scope, coll), min, max);
    },
    async logTrim(scope, coll, t) {
      const k = key(scope, coll);
      let n = 0;
      if (t.below !== undefined) n += await r.zremrangebyscore(k, '-inf', `(${t.below}`);
      if (t.maxLength !== undefined) n += await r.zremrangebyrank(k, 0, -(t.maxLength + 1));
      if (t.oldest !== undefined && t.oldest > 0) n += await r.zremrangebyrank(k, 0, t.oldest - 1);
      return n;
    },

    async del(scope, coll) { await r.del(key(scope, coll)); },

    async load(scope, colls) {
      const p = r.pipeline();
      for (const c of colls) p.hgetallBuffer(key(scope, c));
      const res = results(await p.exec()) as Record<string, Buffer>[];
      return new Map(colls.map((c, i) => [c, toMap(res[i])]));
    },
    batch,
    async close() { await r.quit(); },
  };
}
