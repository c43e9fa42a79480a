// Fenced writes on Redis: each write to a fenced scope runs as one script that
// compares the writer's fencing token with the scope's `fence` key (same hash
// tag, so same slot) and refuses an older one before touching anything. A
// newer token raises the fence, so from the first write or load of a new
// owner on, a paused or cut-off old owner can change nothing. Reads are not
// fenced: a stale reader can only act on what it read through a write.
import type { Cluster, Redis } from 'ioredis';
import { StaleFenceError, type Bytes, type Store, type StoreBatch } from './store.ts';

// KEYS[1]: the scope's fence; KEYS[2…]: the keys the ops name by index.
// ARGV[1]: the token; then ops of 5 slots each: name, key index, a1, a2, a3.
// Returns one reply per op (HGETALL: the flat field/value list).
const FENCED = `
local f = redis.call('GET', KEYS[1])
local t = ARGV[1]
if f and tonumber(f) > tonumber(t) then return redis.error_reply('STALE fencing token ' .. t .. ' is older than ' .. f) end
if f ~= t then redis.call('SET', KEYS[1], t) end
local out = {}
for i = 2, #ARGV, 5 do
  local op, k, a, b, c = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local r
  if op == 'hset' then r = redis.call('HSET', k, a, b)
  elseif op == 'hsetnx' then r = redis.call('HSETNX', k, a, b)
  elseif op == 'hdel' then r = redis.call('HDEL', k, a)
  elseif op == 'del' then r = redis.call('DEL', k)
  elseif op == 'rpush' then r = redis.call('RPUSH', k, a)
  elseif op == 'ltrim' then r = redis.call('LTRIM', k, a, b)
  elseif op == 'zadd' then r = redis.call('ZADD', k, a, b)
  elseif op == 'zrembyscore' then r = redis.call('ZREMRANGEBYSCORE', k, a, b)
  elseif op == 'zrembyrank' then r = redis.call('ZREMRANGEBYRANK', k, a, b)
  elseif op == 'hgetall' then r = redis.call('HGETALL', k)
  else return redis.error_reply('unknown fenced op ' .. op) end
  out[#out + 1] = r
end
return out`;

type Arg = string | number | Buffer;
type FencedClient = (Redis | Cluster) & {
  parleyFenced(numKeys: number, ...args: Arg[]): Promise<unknown[]>;
  parleyFencedBuffer(numKeys: number, ...args: Arg[]): Promise<unknown[]>;
};

const buf = (v: Bytes): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));

/** Ops on one scope gathered into one script call. */
class FencedOps {
  readonly keys: string[] = [];
  readonly args: Arg[] = [];
  constructor(private readonly key: (coll: string) => string, fence: string, token: number) {
    this.keys.push(fence);
    this.args.push(String(token));
  }

  add(op: string, coll: string, a: Arg = '', b: Arg = '', c: Arg = ''): this {
    const k = this.key(coll);
    let i = this.keys.indexOf(k);
    if (i < 0) i = this.keys.push(k) - 1;
    this.args.push(op, i + 1, a, b, c);
    return this;
  }
}

/**
 * The fenced view of a Redis store. `key` is the store's own key scheme; writes for scopes `tokenOf` knows go
 * through the script, the rest (and every read) to `base`. `onStale` hears each refusal (log, metric).
 */
export function fencedRedisStore(
  base: Store, client: Redis | Cluster, key: (scope: string, coll: string) => string,
  tokenOf: (scope: string) => number | undefined, onStale?: (e: StaleFenceError) => void,
): Store {
  const r = client as FencedClient;
  if (typeof r.parleyFenced !== 'function') r.defineCommand('parleyFenced', { lua: FENCED });
  const fenceKey = (scope: string): string => key(scope, 'fence');

  const run = async (scope: string, ops: FencedOps, binary = false): Promise<unknown[]> => {
    try {
      return binary
        ? await r.parleyFencedBuffer(ops.keys.length, ...ops.keys, ...ops.args)
        : await r.parleyFenced(ops.keys.length, ...ops.keys, ...ops.args);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (msg.includes('STALE fencing token')) {
        const err = new StaleFenceError(scope, msg.replace(/^.*?STALE /, ''));
        onStale?.(err);
        throw err;
      }
      throw e;
    }
  };
  /** The ops for a scope, or undefined when the scope is not fenced. */
  const ops = (scope: string): FencedOps | undefined => {
    const token = tokenOf(scope);
    return token === undefined ? undefined : new FencedOps((coll) => key(scope, coll), fenceKey(scope), token);
  };
  const idBytes = (id: number, value: Bytes): Buffer => {
    const head = Buffer.allocUnsafe(8);
    head.writeDoubleBE(id);
    return Buffer.concat([head, buf(value)]);
  };

  const view: Store = {
    ...base,
    kind: base.kind,
    async hset(scope, coll, field, value) {
      const o = ops(scope);
      if (!o) return base.hset(scope, coll, field, value);
      await run(scope, o.add('hset', coll, field, buf(value)));
    },
    async hdel(scope, coll, field) {
      const o = ops(scope);
      if (!o) return base.hdel(scope, coll, field);
      return Number((await run(scope, o.add('hdel', coll, field)))[0]) > 0;
    },
    async hsetnx(scope, coll, field, value) {
      const o = ops(scope);
      if (!o) return base.hsetnx(scope, coll, field, value);
      return Number((await run(scope, o.add('hsetnx', coll, field, buf(value))))[0]) === 1;
    },
    async rpush(scope, coll, value) {
      const o = ops(scope);
      if (!o) return base.rpush(scope, coll, value);
      return Number((await run(scope, o.add('rpush', coll, buf(value))))[0]);
    },
    async ltrim(scope, coll, start, stop) {
      const o = ops(scope);
      if (!o) return base.ltrim(scope, coll, start, stop);
      await run(scope, o.add('ltrim', coll, start, stop));
    },
    async logAppend(scope, coll, id, value) {
      const o = ops(scope);
      if (!o) return base.logAppend(scope, coll, id, value);
      await run(scope, o.add('zadd', coll, id, idBytes(id, value)));
    },
    async logTrim(scope, coll, t) {
      const o = ops(scope);
      if (!o) return base.logTrim(scope, coll, t);
      if (t.below !== undefined) o.add('zrembyscore', coll, '-inf', `(${t.below}`);
      if (t.maxLength !== undefined) o.add('zrembyrank', coll, 0, -(t.maxLength + 1));
      if (t.oldest !== undefined && t.oldest > 0) o.add('zrembyrank', coll, 0, t.oldest - 1);
      if (o.args.length === 1) return 0;
      return (await run(scope, o)).reduce((n: number, x) => n + Number(x), 0);
    },
    async del(scope, coll) {
      const o = ops(scope);
      if (!o) return base.del(scope, coll);
      await run(scope, o.add('del', coll));
    },
    async load(scope, colls) {
      const o = ops(scope);
      if (!o) return base.load(scope, colls);
      // Loading raises the fence: from here on the previous owner's writes are refused.
      for (const c of colls) o.add('hgetall', c);
      const res = (await run(scope, o, true)) as Buffer[][];
      return new Map(colls.map((c, i) => {
        const flat = res[i];
        const m = new Map<string, Bytes>();
        for (let j = 0; j < flat.length; j += 2) m.set(flat[j].toString(), flat[j + 1]);
        return [c, m];
      }));
    },
    batch(scope): StoreBatch {
      const o = ops(scope);
      if (!o) return base.batch(scope);
      const b: StoreBatch = {
        hset(coll, field, value) { o.add('hset', coll, field, buf(value)); return this; },
        hdel(coll, field) { o.add('hdel', coll, field); return this; },
        del(coll) { o.add('del', coll); return this; },
        rpush(coll, value) { o.add('rpush', coll, buf(value)); return this; },
        logAppend(coll, id, value) { o.add('zadd', coll, id, idBytes(id, value)); return this; },
        async exec() {
          if (o.args.length === 1) return;
          await run(scope, o);
        },
      };
      return b;
    },
  };
  delete (view as Partial<Store>).fenced;
  return view;
}
