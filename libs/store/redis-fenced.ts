// Fenced writes on Redis: each write to a fenced scope runs as one script that
// compares the writer's fencing token with the scope's `fence` key (same hash
// tag, so same slot) and refuses an older one before touching anything. A
// newer token raises the fence, so from the first write or load of a new
// owner on, a paused or cut-off old owner can change nothing. Reads are not
// fenced: a stale reader can only act on what it read through a write.
import { Cluster, type Redis } from 'ioredis';
import { StaleFenceError, type Bytes, type LogTrim, type Store, type StoreBatch } from './store.ts';

// What an op does, by its code (ops: the unpacked array; KEYS offset by `base`): one reply in `r`.
const DISPATCH = `
  local op, k, a, b = ops[i], KEYS[base + ops[i + 1]], ops[i + 2], ops[i + 3]
  local r
  if op == 1 then r = redis.call('HSET', k, a, b)
  elseif op == 7 then r = redis.call('ZADD', k, a, b)
  elseif op == 2 then r = redis.call('HSETNX', k, a, b)
  elseif op == 3 then r = redis.call('HDEL', k, a)
  elseif op == 4 then r = redis.call('DEL', k)
  elseif op == 5 then r = redis.call('RPUSH', k, a)
  elseif op == 6 then r = redis.call('LTRIM', k, a, b)
  elseif op == 8 then r = redis.call('ZREMRANGEBYSCORE', k, a, b)
  elseif op == 9 then r = redis.call('ZREMRANGEBYRANK', k, a, b)
  elseif op == 10 then r = redis.call('HGETALL', k)
  else return redis.error_reply('unknown fenced op ' .. tostring(op)) end`;

// KEYS[1]: the scope's fence; KEYS[2…]: the keys the ops name by index.
// ARGV[1]: the token; ARGV[2]: the ops, one msgpack array of 4 slots each: op code, key index, a1, a2 (the
// arguments as strings: Lua numbers would round ids above 2^53 and print large ones in exponent form).
// One argument instead of five per op: what the client encodes and the server parses per write is what this
// path costs. Returns one reply per op (HGETALL: the flat field/value list).
const FENCED = `
local f = redis.call('GET', KEYS[1])
local t = ARGV[1]
if f and tonumber(f) > tonumber(t) then return redis.error_reply('STALE fencing token ' .. t .. ' is older than ' .. f) end
if f ~= t then redis.call('SET', KEYS[1], t) end
local ops = cmsgpack.unpack(ARGV[2])
local out = {}
local base = 0
for i = 1, #ops, 4 do${DISPATCH}
  out[#out + 1] = r
end
return out`;

// The writes of many scopes in one call (one event-loop turn's, on one Redis server): ARGV[1] is one msgpack
// array of groups [token, key count, op count, ops…], each over its own run of KEYS, its fence first. Each
// group is checked and applied on its own: {1, why} when its token is stale, else {0, replies}.
const FENCED_MANY = `
local ops = cmsgpack.unpack(ARGV[1])
local out = {}
local i, base = 1, 0
while i <= #ops do
  local t, nk, n = ops[i], ops[i + 1], ops[i + 2]
  i = i + 3
  local f = redis.call('GET', KEYS[base + 1])
  if f and tonumber(f) > tonumber(t) then
    out[#out + 1] = {1, 'fencing token ' .. t .. ' is older than ' .. f}
    i = i + 4 * n
  else
    if f ~= t then redis.call('SET', KEYS[base + 1], t) end
    local res = {}
    for _ = 1, n do${DISPATCH}
      res[#res + 1] = r
      i = i + 4
    end
    out[#out + 1] = {0, res}
  end
  base = base + nk
end
return out`;

/** At most this many scopes, and about this many bytes, in one call: one call runs alone on the server. */
const MAX_GROUPS = 256;
const MAX_CALL_BYTES = 512 * 1024;

const OP = { hset: 1, hsetnx: 2, hdel: 3, del: 4, rpush: 5, ltrim: 6, zadd: 7, zrembyscore: 8, zrembyrank: 9, hgetall: 10 } as const;

type Arg = string | number | Buffer;
type FencedClient = (Redis | Cluster) & {
  parleyFenced(numKeys: number, ...args: Arg[]): Promise<unknown[]>;
  parleyFencedBuffer(numKeys: number, ...args: Arg[]): Promise<unknown[]>;
  parleyFencedManyBuffer(numKeys: number, ...args: Arg[]): Promise<unknown[]>;
};


/** Ops on one scope gathered into one script call. */
class FencedOps {
  readonly keys: string[];
  /** Per op: code, key index, then its two arguments. */
  readonly items: Item[] = [];
  /** Their encoded size. */
  bytes = 0;
  readonly token: string;
  constructor(private readonly key: (coll: string) => string, fence: string, token: number) {
    this.keys = [fence];
    this.token = String(token);
  }

  get empty(): boolean {
    return this.items.length === 0;
  }

  add(op: keyof typeof OP, coll: string, a: OpArg = '', b: OpArg = ''): this {
    const k = this.key(coll);
    let i = this.keys.indexOf(k);
    if (i < 0) {
      // Key indexes travel as positive fixints.
      if (this.keys.length >= 127) throw new RangeError('a fenced batch names at most 126 collections');
      i = this.keys.push(k) - 1;
    }
    // Numbers go as their decimal text; strings and bytes are written straight into the call's one buffer.
    const ai = typeof a === 'number' ? String(a) : a;
    const bi = typeof b === 'number' ? String(b) : b;
    this.items.push(OP[op], i + 1, ai, bi);
    this.bytes += 2 + strBytes(ai) + strBytes(bi);
    return this;
  }

  /** The ops as one msgpack array (FENCED's ARGV[2]). */
  encode(): Buffer {
    const w = new Writer(5 + this.bytes);
    w.array(this.items.length);
    w.items(this.items);
    return w.out;
  }
}

/** Several scopes' ops as FENCED_MANY's ARGV[1]. */
function encodeMany(groups: readonly FencedOps[]): Buffer {
  let bytes = 5;
  let count = 0;
  for (const g of groups) {
    bytes += strBytes(g.token) + numBytes(g.keys.length) + numBytes(g.items.length / 4) + g.bytes;
    count += 3 + g.items.length;
  }
  const w = new Writer(bytes);
  w.array(count);
  for (const g of groups) w.items([g.token, g.keys.length, g.items.length / 4]).items(g.items);
  return w.out;
}

/** msgpack as Redis' cmsgpack reads it: arrays, unsigned integers and str8/16/32 (bin types it does not know). */
class Writer {
  readonly out: Buffer;
  private o = 0;
  constructor(size: number) {
    this.out = Buffer.allocUnsafe(size);
  }

  array(n: number): this {
    this.out[this.o] = 0xdd;
    this.out.writeUInt32BE(n, this.o + 1);
    this.o += 5;
    return this;
  }

  items(items: readonly Item[]): this {
    const out = this.out;
    for (const it of items) {
      if (typeof it === 'number') {
        if (it < 0x80) {
          out[this.o++] = it;
        } else if (it < 0x10000) {
          out[this.o] = 0xcd;
          out.writeUInt16BE(it, this.o + 1);
          this.o += 3;
        } else {
          out[this.o] = 0xce;
          out.writeUInt32BE(it, this.o + 1);
          this.o += 5;
        }
      } else if (typeof it === 'string') {
        this.head(Buffer.byteLength(it));
        this.o += out.write(it, this.o);
      } else if (it instanceof Uint8Array) {
        this.head(it.length);
        out.set(it, this.o);
        this.o += it.length;
      } else {
        // A log entry: its id as a big-endian double, then its value (libs/store/redis-store.ts logMember).
        this.head(8 + it.value.length);
        out.writeDoubleBE(it.id, this.o);
        out.set(it.value, this.o + 8);
        this.o += 8 + it.value.length;
      }
    }
    return this;
  }

  /** A str8/16/32 header for n bytes. */
  private head(n: number): void {
    const out = this.out;
    if (n < 0x100) {
      out[this.o++] = 0xd9;
      out[this.o++] = n;
    } else if (n < 0x10000) {
      out[this.o++] = 0xda;
      out.writeUInt16BE(n, this.o);
      this.o += 2;
    } else {
      out[this.o++] = 0xdb;
      out.writeUInt32BE(n, this.o);
      this.o += 4;
    }
  }
}

/** A log entry's member: written as one string, without copying its value first. */
interface IdValue { readonly id: number; readonly value: Uint8Array }
type Item = number | string | Uint8Array | IdValue;
type OpArg = string | number | Uint8Array | IdValue;

/** The encoded size of a string item, header included. */
function strBytes(it: string | Uint8Array | IdValue): number {
  const n = typeof it === 'string' ? Buffer.byteLength(it) : it instanceof Uint8Array ? it.length : 8 + it.value.length;
  return strHead(n) + n;
}

const numBytes = (n: number): number => (n < 0x80 ? 1 : n < 0x10000 ? 3 : 5);

function addTrim(o: FencedOps, coll: string, t: LogTrim): void {
  if (t.below !== undefined) o.add('zrembyscore', coll, '-inf', `(${t.below}`);
  if (t.maxLength !== undefined) o.add('zrembyrank', coll, 0, -(t.maxLength + 1));
  if (t.oldest !== undefined && t.oldest > 0) o.add('zrembyrank', coll, 0, t.oldest - 1);
}

const strHead = (n: number): number => (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);

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

  const stale = (scope: string, why: string): StaleFenceError => {
    const err = new StaleFenceError(scope, why);
    onStale?.(err);
    return err;
  };
  const runOne = async (scope: string, ops: FencedOps, binary: boolean): Promise<unknown[]> => {
    try {
      return binary
        ? await r.parleyFencedBuffer(ops.keys.length, ...ops.keys, ops.token, ops.encode())
        : await r.parleyFenced(ops.keys.length, ...ops.keys, ops.token, ops.encode());
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (msg.includes('STALE fencing token')) throw stale(scope, msg.replace(/^.*?STALE /, ''));
      throw e;
    }
  };

  // On one server (not a Cluster, whose scripts must keep to one slot) the writes of one event-loop turn go out
  // as one script call: at a high message rate the client's and the server's cost per call is the cost per turn.
  interface Queued { scope: string; ops: FencedOps; binary: boolean; resolve(r: unknown[]): void; reject(e: unknown): void }
  let queue: Queued[] = [];
  const flush = (): void => {
    const all = queue;
    queue = [];
    for (let from = 0; from < all.length;) {
      let to = from;
      let bytes = 0;
      while (to < all.length && to - from < MAX_GROUPS && (to === from || bytes + all[to].ops.bytes <= MAX_CALL_BYTES)) bytes += all[to++].ops.bytes;
      const batch = all.slice(from, to);
      from = to;
      if (batch.length === 1) {
        const q = batch[0];
        runOne(q.scope, q.ops, q.binary).then(q.resolve, q.reject);
        continue;
      }
      const keys: string[] = [];
      for (const q of batch) for (const k of q.ops.keys) keys.push(k);
      r.parleyFencedManyBuffer(keys.length, ...keys, encodeMany(batch.map((q) => q.ops))).then((replies) => {
        batch.forEach((q, i) => {
          const [status, body] = replies[i] as [number, unknown];
          if (status === 1) q.reject(stale(q.scope, String(body)));
          else q.resolve(body as unknown[]);
        });
      }, (e: unknown) => {
        for (const q of batch) q.reject(e);
      });
    }
  };
  const batched = !(client instanceof Cluster);
  if (batched && typeof r.parleyFencedManyBuffer !== 'function') r.defineCommand('parleyFencedMany', { lua: FENCED_MANY });
  const run = (scope: string, ops: FencedOps, binary = false): Promise<unknown[]> => {
    if (!batched) return runOne(scope, ops, binary);
    return new Promise((resolve, reject) => {
      if (queue.length === 0) setImmediate(flush);
      queue.push({ scope, ops, binary, resolve, reject });
    });
  };

  /** The ops for a scope, or undefined when the scope is not fenced. */
  const ops = (scope: string): FencedOps | undefined => {
    const token = tokenOf(scope);
    return token === undefined ? undefined : new FencedOps((coll) => key(scope, coll), fenceKey(scope), token);
  };

  const view: Store = {
    ...base,
    kind: base.kind,
    async hset(scope, coll, field, value) {
      const o = ops(scope);
      if (!o) return base.hset(scope, coll, field, value);
      await run(scope, o.add('hset', coll, field, value));
    },
    async hdel(scope, coll, field) {
      const o = ops(scope);
      if (!o) return base.hdel(scope, coll, field);
      return Number((await run(scope, o.add('hdel', coll, field)))[0]) > 0;
    },
    async hsetnx(scope, coll, field, value) {
      const o = ops(scope);
      if (!o) return base.hsetnx(scope, coll, field, value);
      return Number((await run(scope, o.add('hsetnx', coll, field, value)))[0]) === 1;
    },
    async rpush(scope, coll, value) {
      const o = ops(scope);
      if (!o) return base.rpush(scope, coll, value);
      return Number((await run(scope, o.add('rpush', coll, value)))[0]);
    },
    async ltrim(scope, coll, start, stop) {
      const o = ops(scope);
      if (!o) return base.ltrim(scope, coll, start, stop);
      await run(scope, o.add('ltrim', coll, start, stop));
    },
    async logAppend(scope, coll, id, value) {
      const o = ops(scope);
      if (!o) return base.logAppend(scope, coll, id, value);
      await run(scope, o.add('zadd', coll, id, { id, value }));
    },
    async logTrim(scope, coll, t) {
      const o = ops(scope);
      if (!o) return base.logTrim(scope, coll, t);
      addTrim(o, coll, t);
      if (o.empty) return 0;
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
        hset(coll, field, value) { o.add('hset', coll, field, value); return this; },
        hdel(coll, field) { o.add('hdel', coll, field); return this; },
        del(coll) { o.add('del', coll); return this; },
        rpush(coll, value) { o.add('rpush', coll, value); return this; },
        logAppend(coll, id, value) { o.add('zadd', coll, id, { id, value }); return this; },
        logTrim(coll, t) { addTrim(o, coll, t); return this; },
        async exec() {
          if (o.empty) return;
          await run(scope, o);
        },
      };
      return b;
    },
  };
  delete (view as Partial<Store>).fenced;
  return view;
}
