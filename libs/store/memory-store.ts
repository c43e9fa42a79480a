// A Store in process memory: for data that must not outlive the process (the
// embedded mode's session directory) and for tests. Same semantics as the
// durable stores, including Redis' list index rules.
import type { Bytes, LogEntry, LogRange, LogTrim, Store, StoreBatch } from './store.ts';

type Hash = Map<string, Bytes>;

/** Redis LRANGE/LTRIM index normalization: inclusive, negatives from the end. */
function span(len: number, start: number, stop: number): [number, number] {
  let a = start < 0 ? Math.max(0, len + start) : start;
  let b = stop < 0 ? len + stop : Math.min(stop, len - 1);
  if (a > b || a >= len) return [0, -1];
  a = Math.max(0, a);
  b = Math.max(-1, b);
  return [a, b];
}

/** First index whose id is greater than `x` (ids ascending). */
function firstAbove(ids: number[], x: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly hashes = new Map<string, Hash>();
  private readonly lists = new Map<string, Bytes[]>();
  /** Logs: ids ascending, values beside them. */
  private readonly logs = new Map<string, { ids: number[]; values: Bytes[] }>();

  private key(scope: string, coll: string): string {
    return `${scope}\u0000${coll}`;
  }

  private hash(scope: string, coll: string, create: boolean): Hash | undefined {
    const k = this.key(scope, coll);
    let h = this.hashes.get(k);
    if (!h && create) this.hashes.set(k, (h = new Map()));
    return h;
  }

  async hget(scope: string, coll: string, field: string): Promise<Bytes | undefined> {
    return this.hash(scope, coll, false)?.get(field);
  }

  async hgetall(scope: string, coll: string): Promise<Map<string, Bytes>> {
    return new Map(this.hash(scope, coll, false) ?? []);
  }

  async hset(scope: string, coll: string, field: string, value: Bytes): Promise<void> {
    this.hsetSync(scope, coll, field, value);
  }

  private hsetSync(scope: string, coll: string, field: string, value: Bytes): void {
    this.hash(scope, coll, true)!.set(field, value);
  }

  async hdel(scope: string, coll: string, field: string): Promise<boolean> {
    return this.hdelSync(scope, coll, field);
  }

  private hdelSync(scope: string, coll: string, field: string): boolean {
    const h = this.hash(scope, coll, false);
    if (!h) return false;
    const had = h.delete(field);
    if (h.size === 0) this.hashes.delete(this.key(scope, coll));
    return had;
  }

  async hlen(scope: string, coll: string): Promise<number> {
    return this.hash(scope, coll, false)?.size ?? 0;
  }

  async hsetnx(scope: string, coll: string, field: string, value: Bytes): Promise<boolean> {
    const h = this.hash(scope, coll, true)!;
    if (h.has(field)) return false;
    h.set(field, value);
    return true;
  }

  async rpush(scope: string, coll: string, value: Bytes): Promise<number> {
    return this.rpushSync(scope, coll, value);
  }

  private rpushSync(scope: string, coll: string, value: Bytes): number {
    const k = this.key(scope, coll);
    let l = this.lists.get(k);
    if (!l) this.lists.set(k, (l = []));
    return l.push(value);
  }

  async lrange(scope: string, coll: string, start: number, stop: number): Promise<Bytes[]> {
    const l = this.lists.get(this.key(scope, coll)) ?? [];
    const [a, b] = span(l.length, start, stop);
    return l.slice(a, b + 1);
  }

  async llen(scope: string, coll: string): Promise<number> {
    return this.lists.get(this.key(scope, coll))?.length ?? 0;
  }

  async ltrim(scope: string, coll: string, start: number, stop: number): Promise<void> {
    const k = this.key(scope, coll);
    const l = this.lists.get(k);
    if (!l) return;
    const [a, b] = span(l.length, start, stop);
    const kept = l.slice(a, b + 1);
    if (kept.length) this.lists.set(k, kept);
    else this.lists.delete(k);
  }

  async logAppend(scope: string, coll: string, id: number, value: Bytes): Promise<void> {
    this.logAppendSync(scope, coll, id, value);
  }

  private logAppendSync(scope: string, coll: string, id: number, value: Bytes): void {
    const k = this.key(scope, coll);
    let l = this.logs.get(k);
    if (!l) this.logs.set(k, (l = { ids: [], values: [] }));
    const i = firstAbove(l.ids, id - 1);
    if (l.ids[i] === id) l.values[i] = value;
    else {
      l.ids.splice(i, 0, id);
      l.values.splice(i, 0, value);
    }
  }

  private logSpan(scope: string, coll: string, r: LogRange): [number, number, { ids: number[]; values: Bytes[] } | undefined] {
    const l = this.logs.get(this.key(scope, coll));
    if (!l) return [0, 0, undefined];
    const from = r.after === undefined ? 0 : firstAbove(l.ids, r.after);
    const to = r.before === undefined ? l.ids.length : firstAbove(l.ids, r.before - 1);
    return [from, Math.max(from, to), l];
  }

  async logRange(scope: string, coll: string, r: LogRange = {}): Promise<LogEntry[]> {
    const [from, to, l] = this.logSpan(scope, coll, r);
    if (!l) return [];
    const n = Math.min(to - from, r.limit ?? Number.POSITIVE_INFINITY);
    const out: LogEntry[] = [];
    for (let k = 0; k < n; k++) {
      const i = r.reverse ? to - 1 - k : from + k;
      out.push({ id: l.ids[i], value: l.values[i] });
    }
    return out;
  }

  async logCount(scope: string, coll: string, r: LogRange = {}): Promise<number> {
    const [from, to] = this.logSpan(scope, coll, r);
    return to - from;
  }

  async logTrim(scope: string, coll: string, t: LogTrim): Promise<number> {
    return this.logTrimSync(scope, coll, t);
  }

  private logTrimSync(scope: string, coll: string, t: LogTrim): number {
    const k = this.key(scope, coll);
    const l = this.logs.get(k);
    if (!l) return 0;
    let drop = t.below === undefined ? 0 : firstAbove(l.ids, t.below - 1);
    if (t.maxLength !== undefined) drop = Math.max(drop, l.ids.length - t.maxLength);
    if (t.oldest !== undefined && t.oldest > 0) drop = Math.min(l.ids.length, drop + t.oldest);
    l.ids.splice(0, drop);
    l.values.splice(0, drop);
    if (l.ids.length === 0) this.logs.delete(k);
    return drop;
  }

  async del(scope: string, coll: string): Promise<void> {
    this.delSync(scope, coll);
  }

  private delSync(scope: string, coll: string): void {
    const k = this.key(scope, coll);
    this.hashes.delete(k);
    this.lists.delete(k);
    this.logs.delete(k);
  }

  async load(scope: string, colls: readonly string[]): Promise<Map<string, Map<string, Bytes>>> {
    const out = new Map<string, Map<string, Bytes>>();
    for (const c of colls) out.set(c, new Map(this.hash(scope, c, false) ?? []));
    return out;
  }

  batch(scope: string): StoreBatch {
    return new MemoryBatch(this, scope);
  }


  /** One op of a batch (MemoryBatch). */
  applySync(scope: string, op: 'hset' | 'hdel' | 'del' | 'rpush' | 'logAppend' | 'logTrim', coll: string, a: unknown, b: unknown): void {
    switch (op) {
      case 'hset': return this.hsetSync(scope, coll, a as string, b as Bytes);
      case 'hdel': this.hdelSync(scope, coll, a as string); return;
      case 'del': return this.delSync(scope, coll);
      case 'rpush': this.rpushSync(scope, coll, a as Bytes); return;
      case 'logAppend': return this.logAppendSync(scope, coll, a as number, b as Bytes);
      case 'logTrim': this.logTrimSync(scope, coll, a as LogTrim);
    }
  }

  async close(): Promise<void> {
    this.hashes.clear();
    this.lists.clear();
    this.logs.clear();
  }
}

/** A batch of writes applied together on exec (a class: no closures made per batch, which is made per write). */
class MemoryBatch implements StoreBatch {
  private readonly ops: Array<[op: 'hset' | 'hdel' | 'del' | 'rpush' | 'logAppend' | 'logTrim', coll: string, a?: unknown, b?: unknown]> = [];
  constructor(private readonly store: MemoryStore, private readonly scope: string) {}
  hset(coll: string, field: string, value: Bytes): this { this.ops.push(['hset', coll, field, value]); return this; }
  hdel(coll: string, field: string): this { this.ops.push(['hdel', coll, field]); return this; }
  del(coll: string): this { this.ops.push(['del', coll]); return this; }
  rpush(coll: string, value: Bytes): this { this.ops.push(['rpush', coll, value]); return this; }
  logAppend(coll: string, id: number, value: Bytes): this { this.ops.push(['logAppend', coll, id, value]); return this; }
  logTrim(coll: string, t: LogTrim): this { this.ops.push(['logTrim', coll, t]); return this; }
  async exec(): Promise<void> {
    for (const [op, coll, a, b] of this.ops) this.store.applySync(this.scope, op, coll, a, b);
  }
}
