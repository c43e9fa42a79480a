// Parley on the engines large deployments run: a Redis Cluster (3 masters,
// 3 replicas), a Redis primary and replica under three sentinels, and a NATS
// cluster of three servers. The store passes its behaviour suite on Redis
// Cluster; a session and a c2s process keep delivering after a NATS server
// and a Redis master are killed; the store answers again after Sentinel
// promotes the replica; and an unreachable engine at start-up is one line.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../../libs/config/index.ts';
import { openStore, type Store } from '../../libs/store/index.ts';
import { startServer, type RunningServer } from '../../services/server.ts';
import { connect, isMessageWithBody, xml, type TestClient } from '../support/clients.ts';
import { DOMAIN } from '../support/parley.ts';
import {
  freePort, redisCommand, startNatsCluster, startRedisCluster, startRedisSentinel, tempDir,
  type NatsClusterHandle, type RedisClusterHandle, type RedisSentinelHandle,
} from '../support/servers.ts';
import { b, storeSuite, str } from '../support/store-contract.ts';

// One Redis Cluster for the whole file: the suites that only read and write
// run before the one that kills a master.
let redisCluster: Promise<RedisClusterHandle> | undefined;
const cluster = (): Promise<RedisClusterHandle> => (redisCluster ??= startRedisCluster({ nodeTimeoutMs: 2000 }));
after(async () => { await (await redisCluster)?.stop(); });

storeSuite('Redis Cluster (3 masters, 3 replicas)', 'redis', async () => {
  const rc = await cluster();
  // Two seeds: the client learns the other nodes from them.
  const store = await openStore({ kind: 'redis', cluster: rc.seeds.slice(0, 2), connectTimeoutMs: 10_000 });
  return { store, close: () => store.close() };
});

/** Poll `fn` every 200 ms until it resolves truthy; resolves to the milliseconds it took. */
async function within(ms: number, what: string, fn: () => Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  let last: unknown;
  for (;;) {
    try {
      if (await fn()) return Date.now() - t0;
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms${last instanceof Error ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('start-up with an engine unreachable', () => {
  /** `parley start` on a configuration; resolves to its exit code and standard error. */
  const start = (config: Record<string, unknown>): Promise<{ code: number | null; stderr: string }> => {
    const file = join(tempDir('parley-engines-cli'), 'parley.yaml');
    writeFileSync(file, stringify({ role: 'session', dataDir: join(file, '..', 'data'), domains: [DOMAIN], metrics: { enabled: false }, ...config }));
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, ['bin/parley.mjs', 'start', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      const kill = setTimeout(() => p.kill('SIGKILL'), 20_000);
      p.on('error', reject);
      p.on('exit', (code) => { clearTimeout(kill); resolve({ code, stderr }); });
    });
  };

  it('Redis: one line naming Redis and its URL (password hidden), and a non-zero exit', async () => {
    const port = await freePort();
    const r = await start({ bus: { kind: 'nats', url: 'nats://127.0.0.1:1' }, store: { kind: 'redis', url: `redis://:hunter2@127.0.0.1:${port}`, connectTimeoutMs: 1000 } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`^parley: cannot reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port} within 1 s: .*ECONNREFUSED.*\\n$`));
    assert.doesNotMatch(r.stderr, /hunter2|ioredis/);
  });

  it('NATS: one line naming every server of the list, with Redis Cluster reachable', async () => {
    const rc = await cluster();
    const [p1, p2] = [await freePort(), await freePort()];
    const r = await start({ bus: { kind: 'nats', servers: [`nats://127.0.0.1:${p1}`, `nats://127.0.0.1:${p2}`], connectTimeoutMs: 1000 }, store: { kind: 'redis', cluster: rc.seeds } });
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr, `parley: cannot reach NATS at nats://127.0.0.1:${p1}, nats://127.0.0.1:${p2} within 1 s: connection refused\n`);
  });
});

describe('a session and a c2s process on a NATS cluster and a Redis Cluster, through a NATS server and a Redis master dying', () => {
  let nats: NatsClusterHandle;
  let rc: RedisClusterHandle;
  const servers: RunningServer[] = [];
  const clients: TestClient[] = [];
  const logged: string[] = [];
  const write = process.stderr.write.bind(process.stderr);

  const startProcess = (role: 'session' | 'c2s'): Promise<RunningServer> => startServer(loadConfig(undefined, {}, {
    nodeId: `engines-${role}`, role, dataDir: tempDir(`parley-engines-${role}`), domains: [DOMAIN],
    bus: { kind: 'nats', servers: nats.servers },
    store: { kind: 'redis', cluster: rc.seeds },
    c2s: { tcp: { host: '127.0.0.1', port: 0, allowPlainOnLoopback: true } },
    metrics: { enabled: false },
    // Well beyond a Redis failover (node timeout + election, ~4 s here), so no process looks dead and no
    // shard lease lapses meanwhile.
    cluster: { heartbeatMs: 250, memberTtlMs: 10_000, handoffTimeoutMs: 3000 },
  }));

  before(async () => {
    // What an operator would read: the processes' log lines (and anything ioredis prints itself).
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      logged.push(String(chunk));
      return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stderr.write;
    [nats, rc] = await Promise.all([startNatsCluster(), cluster()]);
    servers.push(await startProcess('session'));
    servers.push(await startProcess('c2s'));
    await servers[1].accounts.add(`ea@${DOMAIN}`, 'secret');
    await servers[1].accounts.add(`eb@${DOMAIN}`, 'secret');
  });
  after(async () => {
    process.stderr.write = write;
    for (const c of clients) await c.stop();
    for (const s of servers.reverse()) await s.stop(false).catch(() => {});
    await nats?.stop();
  });

  it('messages flow again within a bounded time, in order once they do', async () => {
    const port = servers[1].c2s!.tcpPort();
    const alice = await connect(port, 'ea', { resource: 'phone', password: 'secret' });
    const bob = await connect(port, 'eb', { resource: 'desk', password: 'secret' });
    clients.push(alice, bob);
    await bob.send(xml('presence'));
    let n = 0;
    /** Alice sends numbered messages to Bob every 300 ms until one arrives. */
    const flows = (tag: string, ms: number) => within(ms, `a message from alice reaching bob (${tag})`, async () => {
      const body = `${tag} ${++n}`;
      await alice.send(xml('message', { to: bob.jid, type: 'chat' }, xml('body', {}, body)));
      return bob.waitFor((s) => s.is('message') && (s.getChildText('body') ?? '').startsWith(`${tag} `), 300).then(() => true, () => false);
    });
    await flows('before', 10_000);

    const session = await nats.nodeOf('engines-session');
    assert.ok(session, 'the session process is connected to one of the NATS servers');
    const key = `parley:{eb@${DOMAIN}}:mam`;
    const master = await rc.masterOf(key);
    await Promise.all([session.kill(), master.kill()]);

    // Messages need the bus (their archive and queues are written behind them); a login reads Bob's account
    // and writes his session, on the dead master's slots until its replica takes over.
    const [resumed, login, promoted] = await Promise.all([
      flows('after', 20_000),
      within(20_000, 'bob logging in again', async () => { clients.push(await connect(port, 'eb', { resource: 'laptop', password: 'secret' })); return true; }),
      within(20_000, 'a replica serving the killed master\'s slots', async () => (await rc.masterOf(key)) !== master),
    ]);
    write(`engines: after the kills, messages flowed again in ${resumed} ms, a replica took over in ${promoted} ms, bob logged in again in ${login} ms\n`);

    // Steady again: every message arrives, in order, from the live NATS servers.
    const from = bob.received.length;
    for (let i = 0; i < 20; i++) await alice.send(xml('message', { to: bob.jid, type: 'chat' }, xml('body', {}, `steady ${i}`)));
    await bob.waitFor(isMessageWithBody('steady 19'), 10_000);
    const steady = bob.received.slice(from).map((s) => s.getChildText('body')).filter((t) => t?.startsWith('steady '));
    assert.deepEqual(steady, Array.from({ length: 20 }, (_, i) => `steady ${i}`));
    for (const name of ['engines-session', 'engines-c2s']) {
      const now = await nats.nodeOf(name);
      assert.ok(now && now !== session, `${name} is connected to a live NATS server`);
    }
    const log = logged.join('');
    assert.match(log, /nats: disconnected; reconnecting/, 'the bus reconnect is logged');
    assert.doesNotMatch(log, /Unhandled error event/, 'no ioredis error event went unhandled');
    assert.doesNotMatch(log, /slots allocation group/, 'no auto-pipelined batch mixed the slots of two nodes');

    // Restarted, the old master rejoins as its successor's replica and the NATS server rejoins the routes.
    await Promise.all([master.restart(), session.restart()]);
    await Promise.all([rc.waitOk(), nats.waitRoutes()]);
    await within(10_000, 'the old master serving as a replica', async () => /^role:slave/m.test(String(await redisCommand(master.port, 'INFO', 'replication'))));
    await flows('restarted', 10_000);
  });
});

describe('Redis under Sentinel: the primary dies, the replica is promoted', () => {
  let s: RedisSentinelHandle;
  let store: Store;
  before(async () => {
    s = await startRedisSentinel({ downAfterMs: 1000 });
    store = await openStore({ kind: 'redis', sentinel: { masterName: s.masterName, sentinels: s.sentinels } });
  });
  after(async () => {
    await store?.close();
    await s?.stop();
  });

  it('the store works, and works again after the failover with what was acknowledged by the replica', async () => {
    await store.hset('carol@example.com', 'roster', 'dave@example.com', b('before'));
    assert.equal(str(await store.hget('carol@example.com', 'roster', 'dave@example.com')), 'before');
    // Replication is asynchronous: WAIT until the replica has the write, as a failover can only keep that.
    assert.equal(await redisCommand(s.primary.port, 'WAIT', 1, 5000), 1);
    await s.primary.kill();
    const back = await within(20_000, 'the store answering after the failover', async () => {
      await store.hset('carol@example.com', 'roster', 'erin@example.com', b('after'));
      return true;
    });
    assert.equal(await s.primaryPort(), s.replica.port, 'the sentinels name the replica as primary');
    assert.equal(str(await store.hget('carol@example.com', 'roster', 'dave@example.com')), 'before');
    assert.equal(str(await store.hget('carol@example.com', 'roster', 'erin@example.com')), 'after');
    assert.ok(back < 20_000, `answered ${back} ms after the kill`);
  });
});
