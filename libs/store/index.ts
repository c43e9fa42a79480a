// The store: pick a backend from configuration; everything above sees only `Store`.
import type { Store } from './store.ts';
import { openLmdbStore, type LmdbSync } from './lmdb-store.ts';
import { connectRedis, createRedisStore, type RedisTarget, type ReplicaWait } from './redis-store.ts';

export type { Bytes, Store, StoreBatch } from './store.ts';
export { openLmdbStore, type LmdbSync } from './lmdb-store.ts';
export { createRedisStore, createRedisClient, connectRedis, describeRedisTarget, type RedisClient, type RedisTarget } from './redis-store.ts';

export type StoreConfig =
  | { kind: 'lmdb'; path: string; sync?: LmdbSync }
  | (RedisTarget & { kind: 'redis'; keyPrefix?: string; connectTimeoutMs?: number; commandTimeoutMs?: number; waitReplicas?: ReplicaWait; waitTimeoutMs?: number });

/** Opens the store; Redis must answer within `connectTimeoutMs` (default 10 s), or this rejects naming it. */
export async function openStore(cfg: StoreConfig): Promise<Store> {
  if (cfg.kind === 'lmdb') return openLmdbStore(cfg.path, cfg.sync);
  const client = await connectRedis(cfg, { timeoutMs: cfg.connectTimeoutMs ?? 10_000, commandTimeoutMs: cfg.commandTimeoutMs });
  return createRedisStore({ ...cfg, client, keyPrefix: cfg.keyPrefix, waitReplicas: cfg.waitReplicas ?? 'auto' });
}
