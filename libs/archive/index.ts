// Message archives: pick the engine from configuration; everything above sees only `MessageArchive`.
import type { Config } from '../config/schema.ts';
import { PostgresArchive } from './postgres-archive.ts';

export type { ArchiveBounds, ArchivedMessage, ArchiveRange, ArchiveTrim, ArchiveUpkeep, MessageArchive } from './archive.ts';
export { ARCHIVE_LOG, decodeArchived, encodeArchived, storeArchive, StoreArchive } from './store-archive.ts';
export { PostgresArchive, type PostgresArchiveOptions } from './postgres-archive.ts';

/**
 * The PostgreSQL archive when `archive.postgres` is configured, its table and partitions made (undefined
 * otherwise: archives stay in the store). Rejects when PostgreSQL cannot be reached.
 */
export async function openConfiguredArchive(config: Config): Promise<PostgresArchive | undefined> {
  const pgc = config.archive.postgres;
  if (!pgc) return undefined;
  const { retentionDays, upkeepSeconds: _, ...rest } = pgc;
  const archive = new PostgresArchive({ ...rest, retentionDays: retentionDays ?? config.mam.maxAgeDays });
  try {
    await archive.prepare();
  } catch (e) {
    await archive.close().catch(() => undefined);
    throw new Error(`the PostgreSQL archive (archive.postgres.url) could not be prepared: ${e instanceof Error ? e.message : String(e)}`);
  }
  return archive;
}
