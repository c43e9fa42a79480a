// Message archive engines under load: how many messages a second one process
// archives, what a MAM page costs to read, and the space a message takes —
// PostgreSQL (archive.postgres, batched INSERTs into time partitions) against
// the cluster's default, Redis (a sorted set per account, in memory). Each
// engine gets a server of its own: a database created and dropped here on the
// local PostgreSQL (PARLEY_TEST_POSTGRES), a redis-server on a free port.
//   node --import tsx bench/archive-pg.ts [--engine pg|redis|both] [--messages 200000] [--accounts 2000]
//                                        [--inflight 5000] [--queries 2000] [--bytes 300]
import { parseArgs } from 'node:util';
import { PostgresArchive } from '../libs/archive/postgres-archive.ts';
import { StoreArchive } from '../libs/archive/store-archive.ts';
import type { ArchivedMessage, MessageArchive } from '../libs/archive/archive.ts';
import { createRedisClient, createRedisStore } from '../libs/store/redis-store.ts';
import { createDatabase } from '../test/support/postgres.ts';
import { startRedis } from '../test/support/servers.ts';

const { values } = parseArgs({ options: {
  engine: { type: 'string', default: 'both' },
  messages: { type: 'string', default: '200000' },
  accounts: { type: 'string', default: '2000' },
  inflight: { type: 'string', default: '5000' },
  queries: { type: 'string', default: '2000' },
  bytes: { type: 'string', default: '300' },
} });
const MESSAGES = Number(values.messages);
const ACCOUNTS = Number(values.accounts);
const INFLIGHT = Number(values.inflight);
const QUERIES = Number(values.queries);
const BYTES = Number(values.bytes);

const account = (i: number) => `user${i}@example.com`;
const peers = ['alice@example.net', 'bob@example.net', 'carol@example.net', 'dave@example.net'];
function message(id: number, n: number): ArchivedMessage {
  const peer = peers[n % peers.length];
  const head = `<message from="${peer}/phone" to="x@example.com" type="chat" id="m${n}"><body>`;
  const tail = '</body></message>';
  return { id, stamp: Math.floor(id / 1000), with: peer, dir: n % 2 ? 'in' : 'out', xml: head + 'x'.repeat(Math.max(0, BYTES - head.length - tail.length)) + tail };
}

const percentile = (xs: number[], p: number) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

async function run(name: string, engine: MessageArchive, size: () => Promise<number>): Promise<void> {
  // Writes: MESSAGES spread over ACCOUNTS, each account's ids increasing, at most INFLIGHT unacknowledged (the
  // actors of a busy process, each with a message whose archive write is under way).
  const last = new Array<number>(ACCOUNTS).fill(0);
  let issued = 0;
  let failed = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    let open = 0;
    const pump = () => {
      while (open < INFLIGHT && issued < MESSAGES) {
        const a = issued % ACCOUNTS;
        const id = last[a] = Math.max(last[a] + 1, Date.now() * 1000);
        const n = issued++;
        open++;
        engine.append(account(a), message(id, n)).catch(() => { failed++; }).finally(() => {
          open--;
          if (issued === MESSAGES && open === 0) resolve();
          else if (open === INFLIGHT - 1) setImmediate(pump);
        });
      }
    };
    pump();
  });
  const writeS = (performance.now() - t0) / 1000;
  // Reads: one MAM page as the mam module reads it (51 messages, the count, the first's index), newest first.
  const page: number[] = [];
  const peerPage: number[] = [];
  for (let q = 0; q < QUERIES; q++) {
    const a = account((q * 7919) % ACCOUNTS);
    let t = performance.now();
    const got = await engine.range(a, { limit: 51, reverse: true });
    await engine.count(a, {});
    if (got.length) await engine.count(a, { before: got[Math.min(49, got.length - 1)].id });
    page.push(performance.now() - t);
    t = performance.now();
    await engine.range(a, { with: peers[q % peers.length], limit: 51 });
    await engine.count(a, { with: peers[q % peers.length] });
    peerPage.push(performance.now() - t);
  }
  const bytes = await size();
  const ms = (xs: number[], p: number) => percentile(xs, p).toFixed(2);
  const extra = engine instanceof PostgresArchive ? ` (${engine.stats.inserts} INSERTs, ${(engine.stats.rows / engine.stats.inserts).toFixed(0)} rows each)` : '';
  console.log(`${name}: ${MESSAGES} messages of ${BYTES} B into ${ACCOUNTS} archives in ${writeS.toFixed(2)} s = ${Math.round(MESSAGES / writeS)} messages/s${extra}${failed ? `, ${failed} FAILED` : ''}`);
  console.log(`${name}: page of 50 with count and index: p50 ${ms(page, 0.5)} ms, p99 ${ms(page, 0.99)} ms; by peer: p50 ${ms(peerPage, 0.5)} ms, p99 ${ms(peerPage, 0.99)} ms (${QUERIES} each, one at a time)`);
  console.log(`${name}: ${(bytes / MESSAGES).toFixed(0)} B per message stored (${(bytes / 1048576).toFixed(1)} MiB)`);
}

const engines = values.engine === 'both' ? ['pg', 'redis'] : [values.engine!];
for (const e of engines) {
  if (e === 'pg') {
    const db = await createDatabase('parley_bench');
    const engine = new PostgresArchive({
      url: db.url, poolSize: 10, table: 'message_archive', partition: 'month', partitionsAhead: 2, retentionDays: 0,
      maxBatch: 500, batchMs: 2, connectTimeoutMs: 10_000, statementTimeoutMs: 60_000,
    });
    try {
      await engine.prepare();
      await run('postgresql', engine, async () => Number((await db.query<{ n: string }>(
        "SELECT sum(pg_total_relation_size(c.oid)) AS n FROM pg_class c WHERE c.relname LIKE 'message_archive%' AND c.relkind = 'r'")).rows[0].n));
    } finally {
      await engine.close();
      await db.drop();
    }
  } else if (e === 'redis') {
    const redis = await startRedis();
    const client = createRedisClient({ url: redis.url });
    const store = createRedisStore({ url: redis.url });
    try {
      const before = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
      await run('redis', new StoreArchive(store), async () => Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]) - before);
    } finally {
      await store.close();
      client.disconnect();
      await redis.stop();
    }
  } else {
    throw new Error(`--engine pg, redis or both, not ${e}`);
  }
}
