// The store: small primitives over named collections inside a *scope*.
// A scope is a bare JID (all of one user's data) or a global name starting
// with '$' ('$domains', '$node:c2s-1'). In Redis a collection is the key
// `{scope}:coll`, so every key of one scope shares a Redis Cluster hash tag
// and a batch over one scope runs as one MULTI in one slot. In lmdb a
// collection is the key range [scope, coll, …].
//
// Values are opaque bytes; typed layers (accounts, sessions, rosters…) encode
// them with msgpack. Nothing above this interface knows which backend runs.

export type Bytes = Uint8Array;

export interface LogEntry {
  id: number;
  value: Bytes;
}

export interface LogTrim {
  below?: number;
  maxLength?: number;
  oldest?: number;
}

export interface LogRange {
  after?: number;
  before?: number;
  limit?: number;
  reverse?: boolean;
}

export interface StoreBatch {
  hset(coll: string, field: string, value: Bytes): this;
  hdel(coll: string, field: string): this;
  del(coll: string): this;
  rpush(coll: string, value: Bytes): this;
  logAppend(coll: string, id: number, value: Bytes): this;
  logTrim(coll: string, trim: LogTrim): this;
  /** Apply every queued operation atomically, in one round trip. */
  exec(): Promise<void>;
}

export interface Store {
  readonly kind: 'lmdb' | 'redis' | 'memory';

  hget(scope: string, coll: string, field: string): Promise<Bytes | undefined>;
  hgetall(scope: string, coll: string): Promise<Map<string, Bytes>>;
  hset(scope: string, coll: string, field: string, value: Bytes): Promise<void>;
  /** Returns true when the field existed. */
  hdel(scope: string, coll: string, field: string): Promise<boolean>;
  hlen(scope: string, coll: string): Promise<number>;
  /** Set the field only if absent; true when it was set. */
  hsetnx(scope: string, coll: string, field: string, value: Bytes): Promise<boolean>;

  /** Ordered lists (offline queues, archives). Index semantics as Redis LRANGE (inclusive, negative from the end). */
  rpush(scope: string, coll: string, value: Bytes): Promise<number>;
  lrange(scope: string, coll: string, start: number, stop: number): Promise<Bytes[]>;
  llen(scope: string, coll: string): Promise<number>;
  /** Keep only [start, stop] like Redis LTRIM. */
  ltrim(scope: string, coll: string, start: number, stop: number): Promise<void>;

  /**
   * Ordered logs (archives, unacknowledged queues): entries keyed by a
   * numeric id (a safe integer; one writer appends in increasing order), read
   * by id range without loading the log. An append reads nothing first, so it
   * needs no transaction: lmdb batches it with other writes, Redis pipelines it.
   */
  logAppend(scope: string, coll: string, id: number, value: Bytes): Promise<void>;
  /** Entries with after < id < before (bounds optional), oldest first or newest first when `reverse`, at most `limit`. */
  logRange(scope: string, coll: string, range?: LogRange): Promise<LogEntry[]>;
  /** How many entries have after < id < before. */
  logCount(scope: string, coll: string, range?: Pick<LogRange, 'after' | 'before'>): Promise<number>;
  /**
   * Drop the entries with id < below, then the oldest beyond maxLength, then the `oldest` oldest; resolves to
   * how many went. `maxLength` counts the whole log (lmdb walks it); a caller that knows its count uses `oldest`.
   */
  logTrim(scope: string, coll: string, trim: LogTrim): Promise<number>;

  /** Delete a whole collection (hash, list or log). */
  del(scope: string, coll: string): Promise<void>;

  /** Read several whole hashes of one scope in one round trip (an actor's activation). */
  load(scope: string, colls: readonly string[]): Promise<Map<string, Map<string, Bytes>>>;

  /** Operations on one scope applied atomically (Redis MULTI / one lmdb transaction). */
  batch(scope: string): StoreBatch;

  /**
   * A view of this store whose writes (and `load`) for a scope carry the fencing token `tokenOf(scope)` gives,
   * and are refused with a StaleFenceError when the scope has seen a newer one (undefined: that scope is not
   * fenced). Absent where a single process owns every scope (lmdb, memory): nothing to fence there.
   */
  fenced?(tokenOf: (scope: string) => number | undefined, onStale?: (e: StaleFenceError) => void): Store;

  /**
   * Resolves once what this store wrote for `scope` so far is on a replica too (Redis with replicas: `WAIT`,
   * bounded by a timeout): true, or true without waiting where the replicas are known to lag (bounded, logged);
   * false when it cannot be known (the primary dropped the connection: it may be failing over, and what it
   * acknowledged last may be gone). Absent where a write is durable once acknowledged (lmdb) or nothing is replicated.
   */
  replicated?(scope: string): Promise<boolean>;

  close(): Promise<void>;
}

/** A write refused because a newer owner of the scope has written (or loaded) with a newer fencing token. */
export class StaleFenceError extends Error {
  readonly code = 'STALE_FENCE';
  constructor(readonly scope: string, message: string) {
    super(`refused a write to ${scope}: ${message}`);
    this.name = 'StaleFenceError';
  }
}
