// The store: pick a backend from configuration; everything above sees only `Store`.
import type { Store } from './store.ts';
import { openLmdbStore, type LmdbSync } from './lmdb-store.ts';
import { createRedisStore } from './redis-store.ts';

export type { Bytes, Store, StoreBatch } from './store.ts';
export { openLmdbStore, type LmdbSync } from './lmdb-store.ts';
export { createRedisStore, createRedisClient } from './redis-store.ts';

export type StoreConfig =
  | { kind: 'lmdb'; path: string; sync?: LmdbSync }
  | { kind: 'redis'; url: string; keyPrefix?: string };

export async function openStore(cfg: StoreConfig): Promise<Store> {
  return cfg.kind === 'lmdb' ? openLmdbStore(cfg.path, cfg.sync) : createRedisStore(cfg);
}
