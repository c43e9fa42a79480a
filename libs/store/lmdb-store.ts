// The Store on lmdb: one embedded, durable database in a data directory.
//
// Keys are ordered-binary arrays, so one collection is one contiguous key range:
//   hash field   [scope, coll, field]   (field: string)
//   list item    [scope, coll, seq]     (seq: number; numbers sort before strings)
//   list meta    [scope, coll]          (16 bytes: head seq, next seq)
//   log entry    [scope, coll, id]      (id: number, no meta: a log is its key range)
// A list is dense between head and next, so rpush, llen and index lookups are
// O(1) and ltrim only touches what it removes. A log append is a plain put:
// no read, no transaction, batched with every other write of the turn.
// Values are stored as raw bytes.
//
// lmdb is multi-process safe: the CLI may open the same directory while the
// server runs. Every read-modify-write runs inside `transaction`, which holds
// lmdb's (cross-process) write lock, so concurrent writers cannot interleave.
// Write promises resolve once the transaction is committed (lmdb's default
// overlappingSync: visible to all processes, survives a process crash; the OS
// flush follows in order).
import { open, type Key, type RootDatabase } from 'lmdb';
import { logger } from '../log/index.ts';
import type { Bytes, LogEntry, LogRange, LogTrim, Store, StoreBatch } from './store.ts';

const log = logger('store');

type Db = RootDatabase<Buffer, Key>;

/** Sorts after every encoded string and number, closing a [scope, coll, …] range. */
const END = new Uint8Array([0xff]);

const buf = (v: Bytes): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));

interface ListMeta { head: number; next: number }

/**
 * When commits reach the disk. A commit is visible to every process and survives a crash of this one either
 * way (lmdb writes through the OS page cache); what the flush adds is surviving a crash of the machine.
 * Flushing every commit stalls the write thread on the disk, and writes that queue behind it stall
 * deliveries (measured: chat p99 from 46 ms to 240 ms at 6,000 msg/s with the archive on).
 */
export type LmdbSync = { every: 'commit' } | { every: 'interval'; ms: number };

export async function openLmdbStore(path: string, sync: LmdbSync = { every: 'commit' }): Promise<Store> {
  // strictAsyncOrder: a transaction (hdel, rpush, del) runs in order with plain puts (hset, logAppend), not after
  // every queued put — otherwise an hdel issued before an hset of the same field would land after it.
  const db: Db = open<Buffer, Key>({ path, encoding: 'binary', keyEncoding: 'ordered-binary', strictAsyncOrder: true, noSync: sync.every === 'interval' });
  // lmdb's env.sync (mdb_env_sync) runs off the main thread; its type is missing from the package's declarations.
  const flush = (): Promise<void> => new Promise((resolve) => (db as unknown as { sync(cb: (e?: Error) => void): void }).sync((e) => {
    if (e) log.warn('flushing the store to disk failed', { error: e });
    resolve();
  }));
  let flusher: NodeJS.Timeout | undefined;
  if (sync.every === 'interval') {
    flusher = setInterval(() => void flush(), sync.ms);
    flusher.unref();
  }

  // --- helpers that must run inside a write transaction (or a batch's) ---

  const readMeta = (scope: string, coll: string): ListMeta => {
    const m = db.get([scope, coll]);
    return m ? { head: m.readDoubleLE(0), next: m.readDoubleLE(8) } : { head: 0, next: 0 };
  };
  const writeMeta = (scope: string, coll: string, { head, next }: ListMeta): void => {
    // An emptied list disappears, as in Redis.
    if (head >= next) { db.removeSync([scope, coll]); return; }
    const m = Buffer.allocUnsafe(16);
    m.writeDoubleLE(head, 0);
    m.writeDoubleLE(next, 8);
    db.putSync([scope, coll], m);
  };
  const rpushTx = (scope: string, coll: string, value: Bytes): number => {
    const m = readMeta(scope, coll);
    db.putSync([scope, coll, m.next], buf(value));
    writeMeta(scope, coll, { head: m.head, next: m.next + 1 });
    return m.next + 1 - m.head;
  };
  const delTx = (scope: string, coll: string): void => {
    for (const k of db.getKeys({ start: [scope, coll], end: [scope, coll, END] })) db.removeSync(k);
  };
  const hsetTx = (scope: string, coll: string, field: string, value: Bytes): void => {
    db.putSync([scope, coll, field], buf(value));
  };
  const hdelTx = (scope: string, coll: string, field: string): boolean => db.removeSync([scope, coll, field]);

  // --- reads (each runs in one lmdb read snapshot) ---

  const hgetall = (scope: string, coll: string): Map<string, Bytes> => {
    const out = new Map<string, Bytes>();
    // Starting at '' skips the list meta and items, which are not hash fields.
    for (const { key, value } of db.getRange({ start: [scope, coll, ''], end: [scope, coll, END] })) {
      out.set((key as Key[])[2] as string, value);
    }
    return out;
  };
  /** Redis LRANGE/LTRIM index normalization: inclusive [from, to] or null when empty. */
  const span = (len: number, start: number, stop: number): [number, number] | null => {
    if (start < 0) start = Math.max(0, start + len);
    if (stop < 0) stop += len;
    if (stop >= len) stop = len - 1;
    return start > stop ? null : [start, stop];
  };

  // Log ids are non-negative safe integers; these bounds enclose all of them and no string field.
  const LOW = -1;
  const HIGH = Number.MAX_SAFE_INTEGER + 1;
  const logKeys = (scope: string, coll: string, q: Pick<LogRange, 'after' | 'before'>) =>
    ({ start: [scope, coll, q.after ?? LOW] as Key, end: [scope, coll, q.before ?? HIGH] as Key });
  const logRange = (scope: string, coll: string, q: LogRange): LogEntry[] => {
    const { start, end } = logKeys(scope, coll, q);
    const out: LogEntry[] = [];
    const limit = q.limit ?? Number.POSITIVE_INFINITY;
    // Forwards `start` is inclusive and `end` exclusive; backwards the roles swap. Drop the exclusive bound by hand.
    const range = q.reverse ? db.getRange({ start: end, end: start, reverse: true }) : db.getRange({ start, end });
    for (const { key, value } of range) {
      const id = (key as Key[])[2] as number;
      if (id === q.after || id === q.before) continue;
      out.push({ id, value });
      if (out.length >= limit) break;
    }
    return out;
  };

  const logTrimTx = (scope: string, coll: string, t: LogTrim): number => {
    const drop: Key[] = [];
    if (t.below !== undefined) for (const k of db.getKeys(logKeys(scope, coll, { before: t.below }))) drop.push(k);
    if (t.maxLength !== undefined) {
      const excess = db.getKeysCount(logKeys(scope, coll, {})) - t.maxLength;
      if (excess > drop.length) {
        drop.length = 0;
        for (const k of db.getKeys({ ...logKeys(scope, coll, {}), limit: excess })) drop.push(k);
      }
    }
    if (t.oldest !== undefined && t.oldest > 0) {
      for (const k of db.getKeys({ ...logKeys(scope, coll, {}), offset: drop.length, limit: t.oldest })) drop.push(k);
    }
    for (const k of drop) db.removeSync(k);
    return drop.length;
  };

  /** A put in a batch: kept for the no-transaction path, and as an op should the batch need a transaction. */
  const batchPut = (puts: [Key, Buffer][], ops: (() => void)[], k: Key, value: Bytes): void => {
    const v = buf(value);
    puts.push([k, v]);
    ops.push(() => db.putSync(k, v));
  };

  const batch = (scope: string): StoreBatch => {
    const ops: (() => void)[] = [];
    // Plain puts issued in one turn commit in one lmdb transaction anyway (its write batching): a batch of puts only
    // (a queue entry and its delivery mark) needs no transaction of its own, which costs a commit of its own.
    const puts: [Key, Buffer][] = [];
    let reads = false;
    // Method shorthand and arrows passed as arguments only: the loader names every other function it creates, per call.
    const b: StoreBatch = {
      hset(coll, field, value) { batchPut(puts, ops, [scope, coll, field], value); return this; },
      hdel(coll, field) { reads = true; ops.push(() => hdelTx(scope, coll, field)); return this; },
      del(coll) { reads = true; ops.push(() => delTx(scope, coll)); return this; },
      rpush(coll, value) { reads = true; ops.push(() => rpushTx(scope, coll, value)); return this; },
      logAppend(coll, id, value) { batchPut(puts, ops, [scope, coll, id], value); return this; },
      logTrim(coll, t) { reads = true; ops.push(() => { logTrimTx(scope, coll, t); }); return this; },
      async exec() {
        if (ops.length === 0) return;
        if (!reads) {
          await Promise.all(puts.map(([k, v]) => db.put(k, v)));
          return;
        }
        await db.transaction(() => { for (const op of ops) op(); });
      },
    };
    return b;
  };

  return {
    kind: 'lmdb',
    async hget(scope, coll, field) { return db.get([scope, coll, field]); },
    async hgetall(scope, coll) { return hgetall(scope, coll); },
    async hset(scope, coll, field, value) { await db.put([scope, coll, field], buf(value)); },
    hdel: (scope, coll, field) => db.transaction(() => hdelTx(scope, coll, field)),
    async hlen(scope, coll) { return db.getKeysCount({ start: [scope, coll, ''], end: [scope, coll, END] }); },
    hsetnx: (scope, coll, field, value) => db.transaction(() => {
      if (db.doesExist([scope, coll, field])) return false;
      hsetTx(scope, coll, field, value);
      return true;
    }),

    rpush: (scope, coll, value) => db.transaction(() => rpushTx(scope, coll, value)),
    async lrange(scope, coll, start, stop) {
      const m = readMeta(scope, coll);
      const s = span(m.next - m.head, start, stop);
      if (!s) return [];
      return db.getRange({ start: [scope, coll, m.head + s[0]], end: [scope, coll, m.head + s[1] + 1] })
        .map(({ value }) => value as Bytes).asArray;
    },
    async llen(scope, coll) { const m = readMeta(scope, coll); return m.next - m.head; },
    async ltrim(scope, coll, start, stop) {
      await db.transaction(() => {
        const m = readMeta(scope, coll);
        const s = span(m.next - m.head, start, stop);
        const keep: ListMeta = s ? { head: m.head + s[0], next: m.head + s[1] + 1 } : { head: m.next, next: m.next };
        for (let seq = m.head; seq < keep.head; seq++) db.removeSync([scope, coll, seq]);
        for (let seq = keep.next; seq < m.next; seq++) db.removeSync([scope, coll, seq]);
        writeMeta(scope, coll, keep);
      });
    },

    async logAppend(scope, coll, id, value) { await db.put([scope, coll, id], buf(value)); },
    async logRange(scope, coll, q = {}) { return logRange(scope, coll, q); },
    async logCount(scope, coll, q = {}) {
      const n = db.getKeysCount(logKeys(scope, coll, q));
      return q.after !== undefined && db.doesExist([scope, coll, q.after]) ? n - 1 : n;
    },
    // Inside a transaction, so it sees every write issued before it (a trim right after an append).
    logTrim(scope, coll, t) { return db.transaction(() => logTrimTx(scope, coll, t)); },

    async del(scope, coll) { await db.transaction(() => delTx(scope, coll)); },

    async load(scope, colls) {
      // Synchronous reads in one turn share one lmdb read snapshot: a consistent view.
      return new Map(colls.map((c) => [c, hgetall(scope, c)]));
    },
    batch,
    async close() {
      if (flusher) {
        clearInterval(flusher);
        await flush();
      }
      await db.close();
    },
  };
}
