// The archive in the store's ordered log `{archive}:mam`: a sorted set in
// Redis (the cluster without PostgreSQL), a key range in lmdb (embedded).
// An entry is msgpack [stamp, with, dir, xml] under its archive id; appending
// the same id again writes the same entry (ZADD of the same member, the same
// lmdb key), so a retried append keeps one copy. A peer filter reads the log
// in chunks and keeps what matches; counting with one would be a scan, so it
// is not counted.
import { pack, unpack } from 'msgpackr';
import type { Store } from '../store/store.ts';
import type { ArchiveBounds, ArchivedMessage, ArchiveRange, ArchiveTrim, MessageArchive } from './archive.ts';

/** The store collection of an archive (read by export and import too). */
export const ARCHIVE_LOG = 'mam';
const SCAN_CHUNK = 200;

export const encodeArchived = (m: ArchivedMessage): Uint8Array => pack([m.stamp, m.with, m.dir === 'in' ? 0 : 1, m.xml]);
export function decodeArchived(id: number, b: Uint8Array): ArchivedMessage {
  const [stamp, w, dir, xml] = unpack(b) as [number, string, number, string];
  return { id, stamp, with: w, dir: dir === 0 ? 'in' : 'out', xml };
}

export class StoreArchive implements MessageArchive {
  readonly kind = 'store';
  readonly expiresByAge = false;

  constructor(private readonly store: Store) {}

  append(archive: string, m: ArchivedMessage): Promise<void> {
    return this.store.logAppend(archive, ARCHIVE_LOG, m.id, encodeArchived(m));
  }

  async range(archive: string, r: ArchiveRange): Promise<ArchivedMessage[]> {
    const read = async (after: number | undefined, before: number | undefined, limit: number) =>
      (await this.store.logRange(archive, ARCHIVE_LOG, { after, before, limit, reverse: r.reverse })).map((e) => decodeArchived(e.id, e.value));
    if (r.with === undefined) return read(r.after, r.before, r.limit);
    // With a peer: chunks from the range's start until the page is full or the range ends.
    const out: ArchivedMessage[] = [];
    let cursor = r.reverse ? r.before : r.after;
    for (;;) {
      const chunk = r.reverse ? await read(r.after, cursor, SCAN_CHUNK) : await read(cursor, r.before, SCAN_CHUNK);
      for (const m of chunk) {
        if (m.with !== r.with) continue;
        out.push(m);
        if (out.length === r.limit) return out;
      }
      if (chunk.length < SCAN_CHUNK) return out;
      cursor = chunk[chunk.length - 1].id;
    }
  }

  async count(archive: string, b: ArchiveBounds): Promise<number | undefined> {
    if (b.with !== undefined) return undefined;
    return this.store.logCount(archive, ARCHIVE_LOG, { after: b.after, before: b.before });
  }

  trim(archive: string, t: ArchiveTrim): Promise<number> {
    return this.store.logTrim(archive, ARCHIVE_LOG, t);
  }

  remove(archive: string): Promise<void> {
    return this.store.del(archive, ARCHIVE_LOG);
  }

  /** The store is closed by whoever opened it. */
  async close(): Promise<void> {}
}

const byStore = new WeakMap<Store, StoreArchive>();

/** The store archive over `store` (one per store: it holds nothing but the store). */
export function storeArchive(store: Store): StoreArchive {
  let a = byStore.get(store);
  if (!a) byStore.set(store, (a = new StoreArchive(store)));
  return a;
}
