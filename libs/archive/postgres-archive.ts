// The archive in PostgreSQL, for a cluster whose archives would not fit in
// Redis' memory. One table, range-partitioned on the archive id (the archive
// time in µs) by day or by month, partitions made a few intervals ahead;
// retention drops whole partitions (no DELETE, no vacuum of the hot table).
//
//   <table>(archive text, id bigint, stamp bigint, peer text, dir smallint, xml text)
//     PRIMARY KEY (archive, id)           -- one copy per (archive, id): a retried insert does nothing
//     INDEX (archive, peer, id)           -- `with` filters and their counts
//     PARTITION BY RANGE (id)             -- <table>_pYYYYMM or <table>_pYYYYMMDD, and <table>_default
//
// Appends are not written one by one: they queue, and the queue goes out as
// one INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING per `batchMs` (or
// as soon as `maxBatch` rows wait), several batches in flight on the pool.
// Each append's promise settles with its batch; a failed batch fails each of
// its appends (their writers retry them one by one, idempotently).
import pg from 'pg';
import { logger } from '../log/index.ts';
import type { ArchiveBounds, ArchivedMessage, ArchiveRange, ArchiveTrim, ArchiveUpkeep, MessageArchive } from './archive.ts';

const log = logger('archive-pg');

export interface PostgresArchiveOptions {
  /** postgres://user:password@host:port/database */
  url: string;
  /** Connections in the pool. */
  poolSize: number;
  /** The table (its partitions are named after it). */
  table: string;
  /** One partition per day or per month of archive time. */
  partition: 'day' | 'month';
  /** Partitions kept made ahead of the current one. */
  partitionsAhead: number;
  /** Partitions whose whole range is older than this many days are dropped (0: none). */
  retentionDays: number;
  /** Rows per INSERT at most. */
  maxBatch: number;
  /** How long an append waits for others to share its INSERT (0: until the next turn of the event loop). */
  batchMs: number;
  /** How long a new connection may take. */
  connectTimeoutMs: number;
  /** How long one statement may run before PostgreSQL cancels it. */
  statementTimeoutMs: number;
}

interface Pending {
  archive: string;
  m: ArchivedMessage;
  resolve: () => void;
  reject: (e: unknown) => void;
}

const US_PER_MS = 1000;
/** Advisory lock key taken while the schema and partitions change (any value of our own). */
const DDL_LOCK = 0x70617231;

/** Partition start (ms, UTC) of the interval holding `ms`, and the next one. */
export function partitionSpan(ms: number, interval: 'day' | 'month'): { from: number; to: number; suffix: string } {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const mo = d.getUTCMonth();
  const pad = (n: number) => String(n).padStart(2, '0');
  if (interval === 'month') return { from: Date.UTC(y, mo, 1), to: Date.UTC(y, mo + 1, 1), suffix: `${y}${pad(mo + 1)}` };
  const day = d.getUTCDate();
  return { from: Date.UTC(y, mo, day), to: Date.UTC(y, mo, day + 1), suffix: `${y}${pad(mo + 1)}${pad(day)}` };
}

/** The end (ms, UTC) of the range a partition suffix names: YYYYMM is a month, YYYYMMDD a day. */
export function partitionEnd(suffix: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})?$/.exec(suffix);
  if (!m) return undefined;
  const [y, mo, day] = [Number(m[1]), Number(m[2]) - 1, m[3] === undefined ? undefined : Number(m[3])];
  return day === undefined ? Date.UTC(y, mo + 1, 1) : Date.UTC(y, mo, day + 1);
}

/**
 * A connection that always has an error listener: PostgreSQL ending it (a restart, pg_terminate_backend) while
 * it is being opened or between the pool's own listeners emits 'error' with no one to hear it otherwise, which
 * ends the process. The pool and the query under way still get the error; this only keeps it from being unheard.
 */
class ListenedClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    this.on('error', (e) => log.debug('a PostgreSQL connection failed', { error: e }));
  }
}

export class PostgresArchive implements MessageArchive {
  readonly kind = 'postgres';
  readonly expiresByAge: boolean;
  private readonly pool: pg.Pool;
  private readonly t: string;
  private queue: Pending[] = [];
  private timer: NodeJS.Immediate | NodeJS.Timeout | undefined;
  /** Batches under way. */
  private readonly inFlight = new Set<Promise<void>>();
  /**
   * Appends not yet settled, per archive, and the reads waiting for them: batches run on several connections and
   * may commit out of order, so a read waits for every append to its archive issued before it, not only the last.
   */
  private readonly unsettled = new Map<string, { appends: number; readers: (() => void)[] }>();
  /** INSERT statements sent and rows in them (the bench reads these). */
  readonly stats = { inserts: 0, rows: 0 };
  private closed = false;

  constructor(private readonly o: PostgresArchiveOptions) {
    if (!/^[a-z_][a-z0-9_]{0,40}$/.test(o.table)) throw new Error(`archive table name '${o.table}' must be a lower-case SQL identifier`);
    this.t = o.table;
    this.expiresByAge = o.retentionDays > 0;
    this.pool = new pg.Pool({
      connectionString: o.url, max: o.poolSize, connectionTimeoutMillis: o.connectTimeoutMs,
      statement_timeout: o.statementTimeoutMs, application_name: 'parley-archive', Client: ListenedClient,
    });
    // An idle connection that breaks is dropped by the pool; without a listener its error would end the process.
    this.pool.on('error', (e) => log.warn('an idle PostgreSQL connection failed', { error: e }));
  }

  /** Create the table and the partitions from now on (every process may; one at a time under an advisory lock). */
  async prepare(now = Date.now()): Promise<ArchiveUpkeep> {
    const t = this.t;
    await this.ddl(async (c) => {
      await c.query(`CREATE TABLE IF NOT EXISTS ${t} (
        archive text NOT NULL, id bigint NOT NULL, stamp bigint NOT NULL, peer text NOT NULL, dir smallint NOT NULL, xml text NOT NULL,
        PRIMARY KEY (archive, id)) PARTITION BY RANGE (id)`);
      await c.query(`CREATE INDEX IF NOT EXISTS ${t}_peer ON ${t} (archive, peer, id)`);
      // Rows outside every partition (a clock far off, upkeep that fell behind) land here rather than fail.
      await c.query(`CREATE TABLE IF NOT EXISTS ${t}_default PARTITION OF ${t} DEFAULT`);
    });
    return this.maintain(now);
  }

  /** Make the partitions from now to `partitionsAhead` intervals on; drop those past retention. */
  async maintain(now = Date.now()): Promise<ArchiveUpkeep> {
    const t = this.t;
    const created: string[] = [];
    const dropped: string[] = [];
    await this.ddl(async (c) => {
      const existing = new Set((await c.query<{ name: string }>(
        `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname = $1 AND p.relnamespace = current_schema()::regnamespace`, [t])).rows.map((r) => r.name));
      let at = now;
      for (let i = 0; i <= this.o.partitionsAhead; i++) {
        const span = partitionSpan(at, this.o.partition);
        at = span.to;
        const name = `${t}_p${span.suffix}`;
        if (existing.has(name)) continue;
        try {
          await c.query('SAVEPOINT p');
          await c.query(`CREATE TABLE ${name} PARTITION OF ${t} FOR VALUES FROM (${span.from * US_PER_MS}) TO (${span.to * US_PER_MS})`);
          await c.query('RELEASE SAVEPOINT p');
          created.push(name);
        } catch (e) {
          // Overlapping one of the other interval (the setting changed) or rows of its range in the default partition.
          await c.query('ROLLBACK TO SAVEPOINT p');
          log.warn('could not create an archive partition', { partition: name, error: e });
        }
      }
      if (this.o.retentionDays <= 0) return;
      const horizon = now - this.o.retentionDays * 86_400_000;
      for (const name of existing) {
        const end = name.startsWith(`${t}_p`) ? partitionEnd(name.slice(t.length + 2)) : undefined;
        if (end === undefined || end > horizon) continue;
        await c.query(`DROP TABLE ${name}`);
        dropped.push(name);
      }
      await c.query(`DELETE FROM ${t}_default WHERE id < $1`, [horizon * US_PER_MS]);
    });
    if (created.length || dropped.length) log.info('archive partitions', { created, dropped });
    return { created, dropped };
  }

  private async ddl(work: (c: pg.PoolClient) => Promise<void>): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1)', [DDL_LOCK]);
      await work(c);
      await c.query('COMMIT');
    } catch (e) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      c.release();
    }
  }

  append(archive: string, m: ArchivedMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the archive is closed'));
    const p = new Promise<void>((resolve, reject) => { this.queue.push({ archive, m, resolve, reject }); });
    if (this.queue.length >= this.o.maxBatch) this.flush();
    else if (this.timer === undefined) this.timer = this.o.batchMs > 0 ? setTimeout(() => this.flush(), this.o.batchMs) : setImmediate(() => this.flush());
    const u = this.unsettled.get(archive);
    if (u) u.appends++;
    else this.unsettled.set(archive, { appends: 1, readers: [] });
    const settle = () => {
      const v = this.unsettled.get(archive)!;
      if (--v.appends > 0) return;
      this.unsettled.delete(archive);
      for (const r of v.readers) r();
    };
    p.then(settle, settle);
    return p;
  }

  /** Send what waits, `maxBatch` rows per INSERT. */
  private flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    while (this.queue.length) {
      const batch = this.queue.length <= this.o.maxBatch ? this.queue : this.queue.slice(0, this.o.maxBatch);
      this.queue = this.queue.length <= this.o.maxBatch ? [] : this.queue.slice(this.o.maxBatch);
      const done = this.insert(batch).then(() => { for (const p of batch) p.resolve(); }, (e: unknown) => { for (const p of batch) p.reject(e); });
      this.inFlight.add(done);
      void done.finally(() => this.inFlight.delete(done));
    }
  }

  private async insert(batch: Pending[]): Promise<void> {
    const n = batch.length;
    const archives = new Array<string>(n);
    const ids = new Array<string>(n);
    const stamps = new Array<string>(n);
    const peers = new Array<string>(n);
    const dirs = new Array<number>(n);
    const xmls = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const { archive, m } = batch[i];
      archives[i] = archive;
      ids[i] = String(m.id);
      stamps[i] = String(m.stamp);
      peers[i] = m.with;
      dirs[i] = m.dir === 'in' ? 0 : 1;
      xmls[i] = m.xml;
    }
    this.stats.inserts++;
    this.stats.rows += n;
    // Arrays as six parameters: one prepared statement whatever the batch size.
    await this.pool.query({
      name: `${this.t}-append`,
      text: `INSERT INTO ${this.t} (archive, id, stamp, peer, dir, xml)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::smallint[], $6::text[])
             ON CONFLICT (archive, id) DO NOTHING`,
      values: [archives, ids, stamps, peers, dirs, xmls],
    });
  }

  /** Reads of an archive see the appends issued to it before (a failed one is its writer's to report). */
  private async settled(archive: string): Promise<void> {
    const u = this.unsettled.get(archive);
    if (u === undefined) return;
    if (this.timer !== undefined) this.flush();
    await new Promise<void>((resolve) => u.readers.push(resolve));
  }

  private where(archive: string, b: ArchiveBounds): { sql: string; values: unknown[] } {
    const values: unknown[] = [archive];
    let sql = 'archive = $1';
    if (b.after !== undefined) sql += ` AND id > $${values.push(String(b.after))}`;
    if (b.before !== undefined) sql += ` AND id < $${values.push(String(b.before))}`;
    if (b.with !== undefined) sql += ` AND peer = $${values.push(b.with)}`;
    return { sql, values };
  }

  async range(archive: string, r: ArchiveRange): Promise<ArchivedMessage[]> {
    await this.settled(archive);
    const { sql, values } = this.where(archive, r);
    const res = await this.pool.query<{ id: string; stamp: string; peer: string; dir: number; xml: string }>(
      `SELECT id, stamp, peer, dir, xml FROM ${this.t} WHERE ${sql} ORDER BY id ${r.reverse ? 'DESC' : 'ASC'} LIMIT $${values.push(r.limit)}`, values);
    return res.rows.map((row) => ({ id: Number(row.id), stamp: Number(row.stamp), with: row.peer, dir: row.dir === 0 ? 'in' : 'out', xml: row.xml }));
  }

  async count(archive: string, b: ArchiveBounds): Promise<number> {
    await this.settled(archive);
    const { sql, values } = this.where(archive, b);
    const res = await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${this.t} WHERE ${sql}`, values);
    return Number(res.rows[0].n);
  }

  async trim(archive: string, t: ArchiveTrim): Promise<number> {
    await this.settled(archive);
    let n = 0;
    if (t.below !== undefined) n += (await this.pool.query(`DELETE FROM ${this.t} WHERE archive = $1 AND id < $2`, [archive, String(t.below)])).rowCount ?? 0;
    if (t.oldest !== undefined && t.oldest > 0) {
      n += (await this.pool.query(
        `DELETE FROM ${this.t} WHERE archive = $1 AND id IN (SELECT id FROM ${this.t} WHERE archive = $1 ORDER BY id LIMIT $2)`, [archive, t.oldest])).rowCount ?? 0;
    }
    return n;
  }

  async remove(archive: string): Promise<void> {
    await this.settled(archive);
    await this.pool.query(`DELETE FROM ${this.t} WHERE archive = $1`, [archive]);
  }

  /** Send what waits and wait for every batch under way. */
  async drain(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.drain();
    this.closed = true;
    await this.pool.end();
  }
}
