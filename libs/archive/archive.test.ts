// Both archive engines answer the same reads the same way (the store's log in
// memory, and PostgreSQL in a database of the test's own); PostgreSQL's own
// duties: one copy of a retried append, appends batched into few INSERTs,
// partitions made ahead and dropped past retention.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory-store.ts';
import { createDatabase } from '../../test/support/postgres.ts';
import type { ArchivedMessage, MessageArchive } from './archive.ts';
import { partitionEnd, partitionSpan, PostgresArchive, type PostgresArchiveOptions } from './postgres-archive.ts';
import { StoreArchive } from './store-archive.ts';
import { openConfiguredArchive } from './index.ts';
import { loadConfig } from '../config/index.ts';
import { freePort } from '../../test/support/servers.ts';

const DAY = 86_400_000;
const pgOptions = (url: string, o: Partial<PostgresArchiveOptions> = {}): PostgresArchiveOptions => ({
  url, poolSize: 4, table: 'message_archive', partition: 'month', partitionsAhead: 2, retentionDays: 0,
  maxBatch: 500, batchMs: 2, connectTimeoutMs: 5000, statementTimeoutMs: 10_000, ...o,
});

const message = (id: number, peer: string, body: string): ArchivedMessage =>
  ({ id, stamp: Math.floor(id / 1000), with: peer, dir: 'in', xml: `<message from="${peer}/r" type="chat"><body>${body}</body></message>` });

async function exercise(engine: MessageArchive): Promise<void> {
  const t0 = Date.now() * 1000;
  const ids: number[] = [];
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 300; i++) {
    ids.push(t0 + i);
    writes.push(engine.append('alice@example.com', message(t0 + i, i % 3 === 0 ? 'carol@x' : 'bob@x', `m${i}`)));
  }
  writes.push(engine.append('dave@example.com', message(t0, 'bob@x', 'other archive')));
  await Promise.all(writes);
  const page = await engine.range('alice@example.com', { after: ids[99], limit: 50 });
  assert.deepEqual(page.map((m) => m.id), ids.slice(100, 150), 'forward from an id');
  assert.equal(page[0].xml, message(ids[100], 'bob@x', 'm100').xml);
  assert.equal(page[0].dir, 'in');
  assert.equal(page[0].stamp, Math.floor(ids[100] / 1000));
  const last = await engine.range('alice@example.com', { before: ids[200], limit: 10, reverse: true });
  assert.deepEqual(last.map((m) => m.id), ids.slice(190, 200).reverse(), 'backwards from an id, newest first');
  assert.equal(await engine.count('alice@example.com', {}), 300);
  assert.equal(await engine.count('alice@example.com', { after: ids[9], before: ids[20] }), 10);
  const carol = await engine.range('alice@example.com', { with: 'carol@x', limit: 1000 });
  assert.equal(carol.length, 100);
  assert.ok(carol.every((m) => m.with === 'carol@x'));
  const lastCarol = await engine.range('alice@example.com', { with: 'carol@x', limit: 3, reverse: true });
  assert.deepEqual(lastCarol.map((m) => m.id), [ids[297], ids[294], ids[291]]);
  const one = await engine.range('alice@example.com', { after: ids[42] - 1, before: ids[42] + 1, limit: 1 });
  assert.deepEqual(one.map((m) => m.id), [ids[42]], 'by id');
  // The same id again (a retried write) keeps one copy.
  await engine.append('alice@example.com', message(ids[42], 'bob@x', 'm42'));
  assert.equal(await engine.count('alice@example.com', {}), 300, 'a retried append is kept once');
  assert.equal(await engine.trim('alice@example.com', { oldest: 100 }), 100);
  assert.equal(await engine.trim('alice@example.com', { below: ids[150] }), 50);
  assert.deepEqual((await engine.range('alice@example.com', { limit: 1 })).map((m) => m.id), [ids[150]]);
  await engine.remove('alice@example.com');
  assert.equal(await engine.count('alice@example.com', {}), 0);
  assert.equal(await engine.count('dave@example.com', {}), 1, 'another archive is untouched');
}

test('the store engine: paging, counts, peers, ids, one copy per id, trims', async () => {
  const store = new MemoryStore();
  await exercise(new StoreArchive(store));
  await store.close();
});

test('the PostgreSQL engine: the same answers', async () => {
  const db = await createDatabase();
  const engine = new PostgresArchive(pgOptions(db.url));
  try {
    await engine.prepare();
    await exercise(engine);
    const peerCount = await engine.count('dave@example.com', { with: 'bob@x' });
    assert.equal(peerCount, 1, 'PostgreSQL counts with a peer filter');
  } finally {
    await engine.close();
    await db.drop();
  }
});

test('PostgreSQL: appends share INSERTs; a batch retried after it landed unseen is stored once', async () => {
  const db = await createDatabase();
  const engine = new PostgresArchive(pgOptions(db.url, { maxBatch: 100 }));
  try {
    await engine.prepare();
    const t0 = Date.now() * 1000;
    const batch = Array.from({ length: 1000 }, (_, i) => message(t0 + i, 'bob@x', `m${i}`));
    await Promise.all(batch.map((m) => engine.append('alice@example.com', m)));
    assert.equal(engine.stats.rows, 1000);
    assert.ok(engine.stats.inserts <= 12, `1000 appends in one turn take ~10 INSERTs, not 1000 (${engine.stats.inserts})`);
    // A process that died after its INSERT committed but before it heard so: the writer tries the same rows again.
    await Promise.all(batch.slice(500).map((m) => engine.append('alice@example.com', m)));
    const rows = await db.query<{ n: string; d: string }>('SELECT count(*) AS n, count(DISTINCT id) AS d FROM message_archive WHERE archive = $1', ['alice@example.com']);
    assert.deepEqual(rows.rows[0], { n: '1000', d: '1000' });
  } finally {
    await engine.close();
    await db.drop();
  }
});

test('PostgreSQL: partitions are made ahead; retention drops whole partitions past it, and their messages with them', async () => {
  const db = await createDatabase();
  const now = Date.UTC(2026, 11, 7, 12);
  const engine = new PostgresArchive(pgOptions(db.url, { partition: 'day', partitionsAhead: 3, retentionDays: 30 }));
  try {
    // Started 40 days ago: partitions from then on, messages written then.
    const then = now - 40 * DAY;
    const made = await engine.prepare(then);
    assert.deepEqual(made.created, ['message_archive_p20261028', 'message_archive_p20261029', 'message_archive_p20261030', 'message_archive_p20261031']);
    await engine.append('alice@example.com', message(then * 1000, 'bob@x', 'old'));
    await engine.append('alice@example.com', message((then + DAY) * 1000, 'bob@x', 'old too'));
    const partitionOf = async (id: number) => (await db.query<{ p: string }>('SELECT tableoid::regclass::text AS p FROM message_archive WHERE id = $1', [id])).rows[0]?.p;
    assert.equal(await partitionOf(then * 1000), 'message_archive_p20261028');
    // Today's upkeep: today's partitions appear, those ended more than 30 days ago go.
    const upkeep = await engine.maintain(now);
    assert.deepEqual(upkeep.created, ['message_archive_p20261207', 'message_archive_p20261208', 'message_archive_p20261209', 'message_archive_p20261210']);
    assert.deepEqual(upkeep.dropped.sort(), ['message_archive_p20261028', 'message_archive_p20261029', 'message_archive_p20261030', 'message_archive_p20261031']);
    const left = await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_class WHERE relname LIKE 'message_archive_p202610%'");
    assert.equal(left.rows[0].n, '0', 'the tables are gone');
    await engine.append('alice@example.com', message(now * 1000, 'bob@x', 'new'));
    assert.deepEqual((await engine.range('alice@example.com', { limit: 10 })).map((m) => m.xml.includes('new')), [true], 'only the recent message is left');
    assert.equal(await partitionOf(now * 1000), 'message_archive_p20261207');
  } finally {
    await engine.close();
    await db.drop();
  }
});

test('partition spans: months and days in UTC, named so that upkeep reads their end back', () => {
  const dec = partitionSpan(Date.UTC(2026, 11, 31, 23, 59), 'month');
  assert.deepEqual(dec, { from: Date.UTC(2026, 11, 1), to: Date.UTC(2027, 0, 1), suffix: '202612' });
  assert.equal(partitionEnd(dec.suffix), dec.to);
  const day = partitionSpan(Date.UTC(2028, 1, 29, 5), 'day');
  assert.deepEqual(day, { from: Date.UTC(2028, 1, 29), to: Date.UTC(2028, 2, 1), suffix: '20280229' });
  assert.equal(partitionEnd(day.suffix), day.to);
  assert.equal(partitionEnd('default'), undefined);
});

test('configuration: archive.postgres is optional; a table name that is not a plain SQL identifier is refused; PostgreSQL that does not answer stops start-up naming the key, not the password', async () => {
  assert.equal(loadConfig(undefined, {}, {}).archive.postgres, undefined, 'archives stay in the store by default');
  const c = loadConfig(undefined, {}, { mam: { maxAgeDays: 90 }, archive: { postgres: { url: 'postgres://x@127.0.0.1/db' } } }).archive.postgres!;
  assert.deepEqual([c.poolSize, c.partition, c.partitionsAhead, c.retentionDays, c.maxBatch, c.batchMs], [10, 'month', 2, undefined, 500, 2]);
  assert.throws(() => loadConfig(undefined, {}, { archive: { postgres: { url: 'postgres://x@127.0.0.1/db', table: 'archive; DROP TABLE x' } } }), /table/);
  const port = await freePort();
  const cfg = loadConfig(undefined, {}, { archive: { postgres: { url: `postgres://parley:hunter2@127.0.0.1:${port}/db`, connectTimeoutMs: 2000 } } });
  await assert.rejects(openConfiguredArchive(cfg), (e: Error) => {
    assert.match(e.message, /^the PostgreSQL archive \(archive\.postgres\.url\) could not be prepared: .*ECONNREFUSED/);
    assert.doesNotMatch(e.message, /hunter2/);
    return true;
  });
});
