// A message archive: the messages of one archive (an account's bare JID),
// each under its archive id — the archive time in microseconds, kept
// increasing within the archive, so that id order is time order and a time
// filter is an id bound. Two engines: the store's ordered log (Redis in a
// cluster, lmdb embedded; store-archive.ts) and PostgreSQL with time-range
// partitions (postgres-archive.ts). Nothing above this interface knows which
// one runs.

export interface ArchivedMessage {
  /** Archive id: µs since the epoch, unique and increasing within its archive. */
  id: number;
  /** When it was archived, ms since the epoch. */
  stamp: number;
  /** The peer's bare JID. */
  with: string;
  dir: 'in' | 'out';
  /** The stanza as it was routed. */
  xml: string;
}

/** Exclusive id bounds, and a peer (bare JID) the messages must be with. */
export interface ArchiveBounds {
  after?: number;
  before?: number;
  with?: string;
}

export interface ArchiveRange extends ArchiveBounds {
  limit: number;
  /** Newest first. */
  reverse?: boolean;
}

export interface ArchiveTrim {
  /** Drop the messages with id < below. */
  below?: number;
  /** Drop this many of the oldest. */
  oldest?: number;
}

export interface MessageArchive {
  readonly kind: 'store' | 'postgres';
  /**
   * True when the engine itself drops messages by age (PostgreSQL drops whole partitions): the archive's
   * users then leave age limits to it.
   */
  readonly expiresByAge: boolean;
  /**
   * Keep a message. Idempotent: appending the same id to the same archive again (a retried write) keeps
   * one copy. Appends may land out of order (their ids are given beforehand, so order is kept by id); a read of
   * an archive in this process waits for every append issued to it before.
   */
  append(archive: string, m: ArchivedMessage): Promise<void>;
  /** Messages within the bounds, oldest first (newest first with `reverse`), at most `limit`. */
  range(archive: string, r: ArchiveRange): Promise<ArchivedMessage[]>;
  /** How many messages are within the bounds; undefined when the engine would have to scan to know (a peer filter). */
  count(archive: string, b: ArchiveBounds): Promise<number | undefined>;
  /** Drop old messages; resolves to how many went. */
  trim(archive: string, t: ArchiveTrim): Promise<number>;
  /** Drop the whole archive (the account is removed). */
  remove(archive: string): Promise<void>;
  /** Periodic upkeep (one process of the deployment): partitions made ahead, expired ones dropped. */
  maintain?(now: number): Promise<ArchiveUpkeep>;
  close(): Promise<void>;
}

export interface ArchiveUpkeep {
  created: string[];
  dropped: string[];
}
