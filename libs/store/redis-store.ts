// The Store on Redis. A collection is the key `${prefix}{${scope}}:${coll}`:
// the braces make the scope the Redis Cluster hash tag, so all of one scope's
// keys share a slot and a batch over one scope can run as one MULTI.
// Hashes are Redis hashes, lists Redis lists, logs sorted sets scored by id
// (ZCOUNT answers a range's size in O(log n)); a member is the id's 8 bytes
// then the value, so equal values stay distinct. Values travel as Buffers.
//
// The client is one server, a Redis Cluster or a Sentinel-watched primary
// (redis-target.ts); every MULTI, pipeline and script Parley sends touches one
// hash slot, which is all Redis Cluster allows.
import { Cluster, Redis, type ChainableCommander, type RedisOptions } from 'ioredis';
import { logger, throttledWarn } from '../log/index.ts';
import { outageOptions } from './redis-outage.ts';
import { DEFAULT_REDIS_URL, describeRedisTarget, parseRedisAddress, redisMode, type RedisTarget } from './redis-target.ts';
import { fencedRedisStore } from './redis-fenced.ts';
import { ReplicaWaiter } from './redis-replicas.ts';
import type { Bytes, LogEntry, LogRange, Store, StoreBatch } from './store.ts';

export type { RedisTarget, SentinelTarget } from './redis-target.ts';
export { describeRedisTarget } from './redis-target.ts';

/** What Parley talks to: one server (or a Sentinel-watched primary), or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisClientOptions {
  /** Milliseconds one TCP connection attempt may take. */
  connectTimeoutMs?: number;
  /** How long a command may wait, for a reconnection included, before it fails (redis-outage.ts). */
  commandTimeoutMs?: number;
  /** During an outage every reconnect attempt fails alike: log one such error per this many ms. */
  errorLogIntervalMs?: number;
}

const log = logger('redis');

/** ioredis wraps "no node answered" in an error whose message hides the cause. */
function errorText(e: Error): string {
  const last = (e as { lastNodeError?: unknown }).lastNodeError;
  if (last instanceof Error) return `${e.message} (${errorText(last)})`;
  // A socket error can come without a message (an AggregateError of each address tried, a bare reset).
  if (e instanceof AggregateError && e.errors.length) return e.errors.map((x) => (x instanceof Error ? errorText(x) : String(x))).join('; ');
  return e.message || (e as { code?: string }).code || e.name;
}

interface Watch { quiet: boolean; down: boolean; lastError?: Error }

/**
 * On a Cluster, ioredis files an auto-pipelined script command (defineCommand) under the slot of its first
 * argument, the key count, not of its first key; the pipeline then holds keys of other nodes and is refused
 * whole ("All keys in the pipeline should belong to the same slots allocation group"), plain commands beside
 * it included. Scripts defined on a Cluster client therefore go out on their own; EVAL is filed correctly.
 */
function skipAutoPipelineForScripts(c: Cluster): void {
  const define = c.defineCommand.bind(c);
  c.defineCommand = (name, definition) => {
    c.options.autoPipeliningIgnoredCommands = [...(c.options.autoPipeliningIgnoredCommands ?? []), name];
    define(name, definition);
  };
}

function build(target: string | RedisTarget, opts: RedisClientOptions, quiet: boolean): { client: RedisClient; watch: Watch } {
  const t: RedisTarget = typeof target === 'string' ? { url: target } : target;
  const common: RedisOptions = {
    ...outageOptions(opts.commandTimeoutMs), // wait for a reconnection, boundedly, instead of failing after 3 attempts
    connectTimeout: opts.connectTimeoutMs ?? 5_000,
  };
  let client: RedisClient;
  switch (redisMode(t)) {
    case 'cluster': {
      const seeds = t.cluster!.map((a) => parseRedisAddress(a));
      const auth = seeds.find((s) => s.password !== undefined || s.username !== undefined);
      client = new Cluster(seeds.map(({ host, port }) => ({ host, port })), {
        enableAutoPipelining: true, // concurrent commands from one tick share a round trip per node
        // After a master dies, learn its successor within a second rather than the default five: until the slot map
        // is refreshed, commands for its slots wait on the dead node's connection until they time out.
        slotsRefreshInterval: 1000,
        slotsRefreshTimeout: 500,
        // Nodes learnt from the cluster get the seeds' credentials and TLS too.
        redisOptions: { ...common, username: auth?.username, password: auth?.password, ...(seeds.some((s) => s.tls) ? { tls: {} } : {}) },
      });
      skipAutoPipelineForScripts(client);
      break;
    }
    case 'sentinel': {
      const s = t.sentinel!;
      const sentinels = s.sentinels.map((a) => parseRedisAddress(a, 26379));
      const auth = sentinels.find((x) => x.password !== undefined || x.username !== undefined);
      client = new Redis({
        ...common,
        enableAutoPipelining: true,
        sentinels: sentinels.map(({ host, port }) => ({ host, port })),
        name: s.masterName,
        username: s.username,
        password: s.password,
        sentinelUsername: auth?.username,
        sentinelPassword: auth?.password,
        ...(sentinels.some((x) => x.tls) ? { sentinelTLS: {} } : {}),
        // A primary demoted while still reachable (a manual failover, a partition that healed) refuses writes:
        // reconnect, which asks the sentinels again, and send the command anew. (ioredis' failoverDetector
        // would watch the sentinels instead, over connections whose errors nobody can listen to, and that
        // outlive quit().)
        reconnectOnError: (e) => (e.message.startsWith('READONLY') ? 2 : false),
      });
      break;
    }
    default:
      client = new Redis(t.url ?? DEFAULT_REDIS_URL, { ...common, enableAutoPipelining: true });
  }
  // An 'error' event without a listener is printed by ioredis on every reconnect attempt; log it here, throttled.
  const watch: Watch = { quiet, down: false };
  const what = describeRedisTarget(t);
  const warn = throttledWarn(log, opts.errorLogIntervalMs ?? 10_000);
  client.on('error', (e: Error) => {
    watch.lastError = e;
    if (watch.quiet) return;
    // The first error after being up is always written, as the audit event; the repeats during the outage are throttled.
    const first = !watch.down;
    watch.down = true;
    warn('connection error', first ? { event: 'store-disconnected', redis: what, error: errorText(e) } : { redis: what, error: errorText(e) }, first);
  });
  // A Cluster reports each node's errors apart; its 'error' is for the cluster as a whole.
  if (client instanceof Cluster) {
    client.on('node error', (e: Error, node: string) => {
      watch.lastError = e;
      if (!watch.quiet) warn('node error', { redis: what, node, error: errorText(e) });
    });
  }
  client.on('ready', () => {
    if (watch.down) log.info('connected again', { event: 'store-reconnected', redis: what });
    watch.down = false;
    watch.quiet = false;
  });
  return { client, watch };
}

/** A client for the store and for other modules (membership…): a URL, or any RedisTarget. */
export function createRedisClient(target: string | RedisTarget, opts: RedisClientOptions = {}): RedisClient {
  return build(target, opts, false).client;
}

/**
 * A client that has answered: waits up to `timeoutMs` for it to be ready
 * (Redis reachable, a Cluster's slots known). Otherwise it is closed and the
 * error names the engine, its addresses and the last connection error; the
 * attempts meanwhile are not logged, so a start-up failure is one line.
 */
export async function connectRedis(target: string | RedisTarget, opts: RedisClientOptions & { timeoutMs: number }): Promise<RedisClient> {
  const { client, watch } = build(target, opts, true);
  await new Promise<void>((resolve, reject) => {
    const onReady = (): void => { clearTimeout(timer); resolve(); };
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      client.disconnect();
      const t = typeof target === 'string' ? { url: target } : target;
      const why = watch.lastError ? errorText(watch.lastError) : `no connection became ready (status ${client.status})`;
      reject(new Error(`cannot reach ${describeRedisTarget(t)} within ${opts.timeoutMs / 1000} s: ${why}`));
    }, opts.timeoutMs);
    client.once('ready', onReady);
  });
  return client;
}

// ioredis only sends Buffers as binary; a plain Uint8Array would be stringified.
const buf = (v: Bytes): Buffer => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));

/** ioredis reports per-command errors of a pipeline / MULTI as [err, result] pairs. */
function results(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('redis transaction aborted');
  return replies.map(([err, res]) => { if (err) throw err; return res; });
}

/** A log entry as a sorted-set member: the id's 8 bytes, then the value (equal values stay distinct). */
function logMember(id: number, value: Bytes): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeDoubleBE(id);
  return Buffer.concat([head, buf(value)]);
}

/** ZRANGEBYSCORE bounds for after < id < before. */
function bounds(q: Pick<LogRange, 'after' | 'before'>): [string, string] {
  return [q.after === undefined ? '-inf' : `(${q.after}`, q.before === undefined ? '+inf' : `(${q.before}`];
}

/** How many replicas `replicated()` waits for: 'auto' is one with a Redis Cluster or Sentinel, none with one server. */
export type ReplicaWait = 'auto' | number;

export function replicasToWait(target: RedisTarget, wait: ReplicaWait | undefined): number {
  if (typeof wait === 'number') return wait;
  return redisMode(target) === 'url' ? 0 : 1;
}

/** The store over a client of its own, or over `client` (closed with the store). */
export function createRedisStore(opts: RedisTarget & { keyPrefix?: string; client?: RedisClient; waitReplicas?: ReplicaWait; waitTimeoutMs?: number }): Store {
  const prefix = opts.keyPrefix ?? 'parley:';
  const r = opts.client ?? createRedisClient(opts);
  const key = (scope: string, coll: string): string => `${prefix}{${scope}}:${coll}`;
  const replicas = opts.client && opts.waitReplicas === undefined ? 0 : replicasToWait(opts, opts.waitReplicas);
  const waitMs = opts.waitTimeoutMs ?? 100;
  const short = throttledWarn(log, 10_000);
  const waiter = replicas > 0 ? new ReplicaWaiter(r, replicas, waitMs, (got) =>
    short('a primary lacks its replicas; confirming without waiting for them for a while', { replicas: got, wanted: replicas, waitTimeoutMs: waitMs })) : undefined;
  const toMap = (o: Record<string, Buffer>): Map<string, Bytes> => new Map(Object.entries(o));

  const batch = (scope: string): StoreBatch => {
    // Queued locally; exec sends MULTI … EXEC in one round trip.
    const ops: ((m: ChainableCommander) => void)[] = [];
    const b: StoreBatch = {
      hset(coll, field, value) { ops.push((m) => m.hset(key(scope, coll), field, buf(value))); return this; },
      hdel(coll, field) { ops.push((m) => m.hdel(key(scope, coll), field)); return this; },
      del(coll) { ops.push((m) => m.del(key(scope, coll))); return this; },
      rpush(coll, value) { ops.push((m) => m.rpush(key(scope, coll), buf(value))); return this; },
      logAppend(coll, id, value) { ops.push((m) => m.zadd(key(scope, coll), id, logMember(id, value))); return this; },
      logTrim(coll, t) {
        const k = key(scope, coll);
        if (t.below !== undefined) ops.push((m) => m.zremrangebyscore(k, '-inf', `(${t.below}`));
        if (t.maxLength !== undefined) ops.push((m) => m.zremrangebyrank(k, 0, -(t.maxLength! + 1)));
        if (t.oldest !== undefined && t.oldest > 0) ops.push((m) => m.zremrangebyrank(k, 0, t.oldest! - 1));
        return this;
      },
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
      await r.zadd(key(scope, coll), id, logMember(id, value));
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
    fenced(tokenOf, onStale) { return fencedRedisStore(this, r, key, tokenOf, onStale); },
    ...(replicas > 0 ? { replicated: (scope: string) => waiter!.wait(key(scope, 'fence')) } : {}),
    async close() { await r.quit(); },
  };
}
