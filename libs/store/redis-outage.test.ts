// A Redis outage seen from Parley's client (redis-outage.ts), on a real
// redis-server: a restart of about 1.5 s under a steady stream of commands
// fails none of them; an outage longer than store.commandTimeoutMs fails the
// commands issued during it after that long, cleanly, and the client works
// again once Redis is back.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRedis, type Spawned } from '../../test/support/servers.ts';
import { setLogLevel } from '../log/index.ts';
import { createRedisClient, createRedisStore } from './redis-store.ts';

setLogLevel('error');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let redis: Spawned;
before(async () => { redis = await startRedis(); });
after(async () => { await redis?.stop(); });

test('a 1.5 s restart under load fails no command: each waits for the reconnection', async () => {
  const client = createRedisClient(redis.url, { commandTimeoutMs: 5_000 });
  const store = createRedisStore({ client, keyPrefix: 'outage:' });
  try {
    await store.hset('alice@example.com', 'smstate', 'before', Buffer.from('x'));
    const writes: Promise<unknown>[] = [];
    let n = 0;
    // A steady load: a write every 10 ms, across the whole outage.
    const load = setInterval(() => { const i = n++; writes.push(store.logAppend('alice@example.com', 'smq:s1', i + 1, Buffer.from(`stanza ${i}`))); }, 10);
    await sleep(100);
    const down = Date.now();
    await redis.kill();
    await sleep(1500);
    await redis.restart();
    const outage = Date.now() - down;
    await sleep(200);
    clearInterval(load);
    const results = await Promise.allSettled(writes);
    const failed = results.filter((r) => r.status === 'rejected');
    assert.deepEqual(failed.map((r) => String((r as PromiseRejectedResult).reason)), [], `no command failed during a ${outage} ms outage`);
    // Redis ran without persistence: what was written before the kill is gone, what was issued during the outage landed after it.
    const landed = await store.logCount('alice@example.com', 'smq:s1');
    assert.ok(landed >= 100, `the writes queued during the outage were applied (${landed} of ${writes.length})`);
  } finally {
    await store.close();
  }
});

test('an outage longer than store.commandTimeoutMs fails each command after that long; Redis back, the client works', async () => {
  const client = createRedisClient(redis.url, { commandTimeoutMs: 400 });
  const store = createRedisStore({ client, keyPrefix: 'outage:' });
  try {
    await store.hset('bob@example.com', 'account', 'x', Buffer.from('1'));
    await redis.kill();
    const t0 = Date.now();
    await assert.rejects(store.hget('bob@example.com', 'account', 'x'), /Command timed out/);
    const waited = Date.now() - t0;
    assert.ok(waited >= 350 && waited < 2_000, `failed after ${waited} ms, about commandTimeoutMs`);
    await redis.restart();
    await store.hset('bob@example.com', 'account', 'y', Buffer.from('2'));
    assert.deepEqual(Buffer.from((await store.hget('bob@example.com', 'account', 'y'))!).toString(), '2');
  } finally {
    await store.close();
  }
});
