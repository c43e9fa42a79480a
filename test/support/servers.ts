// Real infrastructure for tests: redis-server and nats-server on free ports
// (alone, or as a Redis Cluster, a Sentinel-watched primary, a NATS cluster),
// each in its own temp dir. Children never outlive the test process, and
// temp dirs are removed on stop (or at exit at the latest).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

const live = new Set<ChildProcess>();
const dirs = new Set<string>();

function cleanup(): void {
  for (const p of live) p.kill('SIGKILL');
  live.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}
process.on('exit', cleanup);
// 'exit' does not run when a signal kills us (e.g. the test runner's timeout);
// clean up, then let the signal take its default course.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    cleanup();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

/** A fresh temp dir, removed when the process exits. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  dirs.add(d);
  return d;
}

/** A port that was free a moment ago (the OS picks it; a race is unlikely in tests). */
/** Ports handed out by this process: a port is closed again before its server binds it, and must not be handed twice. */
const handedOut = new Set<number>();

/**
 * A free port on 127.0.0.1 for a server a test starts, below the ephemeral range (32768–60999) where the
 * kernel picks the source ports of outgoing connections, and never one this process handed out before: servers
 * started side by side (a cluster's six nodes) would otherwise be told the same just-closed port.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (handedOut.has(port)) continue;
    if (await canBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found in 20000–31999');
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.unref();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Start every server, or none: those that started are stopped when one fails (and nothing keeps the test alive). */
export async function startAll<T extends { stop(): Promise<void> }>(starts: Array<() => Promise<T>>): Promise<T[]> {
  const settled = await Promise.allSettled(starts.map((f) => f()));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
  await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop().catch(() => {}) : undefined)));
  throw failed.reason;
}

export interface Spawned {
  port: number;
  url: string;
  /** The running process's id (undefined while stopped): benchmarks read its memory and CPU from /proc. */
  readonly pid: number | undefined;
  /** SIGTERM, wait for exit, remove the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL (a crash); the temp dir stays for restart(). */
  kill(): Promise<void>;
  /** Stop if running, then start again on the same port and dir. */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open and nothing moves on them (a network partition, seen from a peer); resume() ends it. */
  pause(): void;
  resume(): void;
}

/** One probe connection: resolves true once `expect` shows up in what the server sends. */
function probe(port: number, send: string, expect: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    let got = '';
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => { if (send) sock.write(send); });
    sock.on('data', (d) => { got += d.toString('latin1'); if (got.includes(expect)) done(true); });
    sock.on('close', () => done(false));
  });
}

function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => p.once('exit', () => resolve()));
}

async function spawnServer(opts: {
  name: string; cmd: string; port: number; url: string; dir: string;
  args: string[]; ready: () => Promise<boolean>;
}): Promise<Spawned> {
  let proc: ChildProcess | null = null;

  const launch = async (): Promise<void> => {
    mkdirSync(opts.dir, { recursive: true });
    const p = spawn(opts.cmd, opts.args, { cwd: opts.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    live.add(p);
    // Keep the tail of the output for a useful error; reading also keeps the pipes from filling.
    let out = '';
    const keep = (d: Buffer) => { out = (out + d.toString()).slice(-4000); };
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    const failed: { error?: Error } = {};
    p.once('error', (e) => { failed.error = e; });
    p.once('exit', () => live.delete(p));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (failed.error) throw new Error(`${opts.name}: cannot start ${opts.cmd}: ${failed.error.message}`);
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${opts.name} exited during startup:\n${out}`);
      if (await opts.ready()) return;
      if (Date.now() > deadline) {
        p.kill('SIGKILL');
        throw new Error(`${opts.name} not ready on port ${opts.port} after 15s:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    proc = null;
    if (!p) return;
    p.kill(signal);
    if (signal !== 'SIGKILL') p.kill('SIGCONT'); // a paused process handles its SIGTERM only once it runs
    const t = setTimeout(() => p.kill('SIGKILL'), 5_000); // a stuck shutdown must not hang the suite
    await exited(p);
    clearTimeout(t);
  };

  await launch();
  return {
    port: opts.port,
    url: opts.url,
    get pid() { return (proc as ChildProcess | null)?.pid; },
    async stop() {
      await halt('SIGTERM');
      rmSync(opts.dir, { recursive: true, force: true });
      dirs.delete(opts.dir);
    },
    kill: () => halt('SIGKILL'),
    async restart() { await halt('SIGTERM'); await launch(); },
    pause: () => { proc?.kill('SIGSTOP'); },
    resume: () => { proc?.kill('SIGCONT'); },
  };
}

/** redis-server without persistence, on a free port. */
export async function startRedis(): Promise<Spawned> {
  const port = await freePort();
  const dir = tempDir('parley-redis');
  return spawnServer({
    name: 'redis-server', cmd: 'redis-server', port, dir, url: `redis://127.0.0.1:${port}`,
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    ready: () => probe(port, 'PING\r\n', '+PONG'),
  });
}

/** nats-server on a free port; with JetStream its store lives in the temp dir (kept across restart); `user`/`pass` required of clients when given. */
export async function startNats(opts: { jetstream?: boolean; user?: string; pass?: string } = {}): Promise<Spawned> {
  const port = await freePort();
  const dir = tempDir('parley-nats');
  return spawnServer({
    name: 'nats-server', cmd: 'nats-server', port, dir, url: `nats://127.0.0.1:${port}`,
    args: ['-a', '127.0.0.1', '-p', String(port), ...(opts.jetstream ? ['-js', '-sd', dir] : []),
      ...(opts.user !== undefined ? ['--user', opts.user, '--pass', opts.pass ?? ''] : [])],
    // The server greets every client with INFO once it accepts connections.
    ready: () => probe(port, '', 'INFO '),
  });
}

// ---------------------------------------------------------------- engines as large deployments run them

/** One command to one Redis node (a fresh connection, no retries); rejects when the node does not answer. */
export async function redisCommand(port: number, ...args: (string | number)[]): Promise<unknown> {
  const r = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 1000 });
  r.on('error', () => {}); // the rejection below reports it
  try {
    await r.connect();
    return await r.call(String(args[0]), ...args.slice(1).map(String));
  } finally {
    r.disconnect();
  }
}

/** Poll `check` every 100 ms until it holds; throws `what` (and the last error) after `ms`. */
async function until(what: string, ms: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what} not reached after ${ms} ms${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Lines `key:value` of an INFO / CLUSTER INFO reply. */
function infoField(text: unknown, field: string): string | undefined {
  return new RegExp(`^${field}:(.*?)\\r?$`, 'm').exec(String(text))?.[1];
}

/** Run a command to its end (redis-cli); rejects with its output when it fails. */
function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(p);
    let out = '';
    p.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    p.once('error', (e) => { live.delete(p); reject(new Error(`cannot run ${cmd}: ${e.message}`)); });
    p.once('exit', (code) => {
      live.delete(p);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${out.slice(-4000)}`));
    });
  });
}

/** A redis-server on a free port in its own dir, started with the arguments `argsFor` gives. */
async function startRedisNode(name: string, argsFor: (dir: string, port: number) => string[] | Promise<string[]>): Promise<Spawned> {
  const port = await freePort();
  const dir = tempDir(`parley-${name}`);
  return spawnServer({
    name, cmd: 'redis-server', port, dir, url: `redis://127.0.0.1:${port}`,
    args: await argsFor(dir, port),
    ready: () => probe(port, 'PING\r\n', '+PONG'),
  });
}

/**
 * A data node's arguments: AOF on, so a node killed and restarted comes back with its data; a replica's
 * first sync starts at once (the default waits 5 s for more replicas to share one transfer).
 */
const dataNode = (dir: string, port: number, ...extra: string[]): string[] =>
  ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--dir', dir,
    '--repl-diskless-sync-delay', '0', ...extra];

export interface RedisClusterHandle {
  /** Every node's URL: what `store.cluster` takes. */
  seeds: string[];
  /** The six nodes; kill() a master and its replica takes over after `nodeTimeoutMs`. */
  nodes: Spawned[];
  nodeTimeoutMs: number;
  /** The hash slot of a key (CLUSTER KEYSLOT). */
  slotOf(key: string): Promise<number>;
  /** The node a live node names as master of the key's slot now. */
  masterOf(key: string): Promise<Spawned>;
  /** Until every live node reports cluster_state:ok. */
  waitOk(ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A Redis Cluster of three masters and three replicas (`redis-cli --cluster
 * create … --cluster-replicas 1`), each node in its own dir with its bus on a
 * free port; resolves once every node says cluster_state:ok and every replica
 * is in sync. `cluster-require-full-coverage no`: the slots of live masters
 * keep answering while a dead master's replica takes over.
 */
export async function startRedisCluster(opts: { nodeTimeoutMs?: number } = {}): Promise<RedisClusterHandle> {
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 2000;
  const nodes = await startAll(Array.from({ length: 6 }, () => () => startRedisNode('redis-cluster', async (dir, port) => dataNode(dir, port,
    '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(await freePort()),
    '--cluster-node-timeout', String(nodeTimeoutMs), '--cluster-require-full-coverage', 'no'))));
  const handle: RedisClusterHandle = {
    seeds: nodes.map((n) => n.url),
    nodes,
    nodeTimeoutMs,
    async slotOf(key) { return Number(await anyNode('CLUSTER', 'KEYSLOT', key)); },
    async masterOf(key) {
      const slot = await handle.slotOf(key);
      const ranges = await anyNode('CLUSTER', 'SLOTS') as [number, number, [string, number, string]][];
      const range = ranges.find(([from, to]) => slot >= from && slot <= to);
      const node = nodes.find((n) => n.port === Number(range?.[2][1]));
      if (!node) throw new Error(`no master serves slot ${slot}`);
      return node;
    },
    waitOk: (ms = 15_000) => until('cluster_state:ok on every live node', ms, async () => {
      const states = await Promise.all(nodes.map((n) => redisCommand(n.port, 'CLUSTER', 'INFO').then((i) => infoField(i, 'cluster_state'), () => 'down')));
      return states.every((s) => s === 'ok' || s === 'down') && states.includes('ok');
    }),
    stop: async () => { await Promise.all(nodes.map((n) => n.stop())); },
  };
  /** A command to the first node that answers. */
  async function anyNode(...args: (string | number)[]): Promise<unknown> {
    let last: unknown;
    for (const n of nodes) {
      try { return await redisCommand(n.port, ...args); } catch (e) { last = e; }
    }
    throw last;
  }
  try {
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes']);
    await until('a joined Redis Cluster with its replicas in sync', 20_000, async () => {
      for (const n of nodes) {
        const info = await redisCommand(n.port, 'CLUSTER', 'INFO');
        if (infoField(info, 'cluster_state') !== 'ok' || infoField(info, 'cluster_known_nodes') !== '6') return false;
        const repl = await redisCommand(n.port, 'INFO', 'replication');
        if (infoField(repl, 'role') === 'slave' && infoField(repl, 'master_link_status') !== 'up') return false;
      }
      return true;
    });
  } catch (e) {
    await handle.stop();
    throw e;
  }
  return handle;
}

export interface RedisSentinelHandle {
  /** The name the sentinels monitor the primary under. */
  masterName: string;
  /** `127.0.0.1:port` of each sentinel: what `store.sentinel.sentinels` takes. */
  sentinels: string[];
  primary: Spawned;
  replica: Spawned;
  sentinelNodes: Spawned[];
  /** The port the sentinels name as primary now. */
  primaryPort(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A primary, its replica, and three sentinels (quorum 2) that call the
 * primary down after `downAfterMs` without an answer and promote the replica.
 */
export async function startRedisSentinel(opts: { downAfterMs?: number } = {}): Promise<RedisSentinelHandle> {
  const masterName = 'parley';
  const downAfterMs = opts.downAfterMs ?? 1000;
  const primary = await startRedisNode('redis-primary', (dir, port) => dataNode(dir, port));
  const replica = await startRedisNode('redis-replica', (dir, port) => dataNode(dir, port, '--replicaof', '127.0.0.1', String(primary.port)));
  const started: Spawned[] = [primary, replica];
  try {
    // Sentinels learn the replica from the primary's INFO: let it be attached first.
    await until('the replica in sync', 10_000, async () => infoField(await redisCommand(replica.port, 'INFO', 'replication'), 'master_link_status') === 'up');
    const sentinelNodes = await Promise.all([0, 1, 2].map(() => startRedisNode('redis-sentinel', (dir, port) => {
      // Sentinel rewrites its file with what it learns; restart() reads it back.
      const conf = join(dir, 'sentinel.conf');
      writeFileSync(conf, [
        `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${primary.port} 2`,
        `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
        `sentinel failover-timeout ${masterName} 10000`,
        `sentinel parallel-syncs ${masterName} 1`,
      ].join('\n') + '\n');
      return [conf, '--sentinel'];
    })));
    started.push(...sentinelNodes);
    await until('three sentinels that know the replica and each other', 15_000, async () => {
      for (const s of sentinelNodes) {
        const replicas = await redisCommand(s.port, 'SENTINEL', 'REPLICAS', masterName) as unknown[];
        const others = await redisCommand(s.port, 'SENTINEL', 'SENTINELS', masterName) as unknown[];
        if (replicas.length < 1 || others.length < 2) return false;
      }
      return true;
    });
    const handle: RedisSentinelHandle = {
      masterName,
      sentinels: sentinelNodes.map((s) => `127.0.0.1:${s.port}`),
      primary, replica, sentinelNodes,
      async primaryPort() {
        let last: unknown;
        for (const s of sentinelNodes) {
          try {
            const [, port] = await redisCommand(s.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName) as [string, string];
            return Number(port);
          } catch (e) { last = e; }
        }
        throw last;
      },
      stop: async () => { await Promise.all(started.map((n) => n.stop())); },
    };
    return handle;
  } catch (e) {
    await Promise.all(started.map((n) => n.stop()));
    throw e;
  }
}

export interface NatsClusterHandle {
  /** Every server's client URL: what `bus.servers` takes. */
  servers: string[];
  nodes: (Spawned & { name: string; monitorPort: number })[];
  /** The node a client connection of this name (a Parley nodeId) is on, if any. */
  nodeOf(clientName: string): Promise<(Spawned & { name: string; monitorPort: number }) | undefined>;
  /** Until every live node has a route to every other live node. */
  waitRoutes(ms?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Three nats-servers in one cluster (routes between all), JetStream on with a store dir each. */
export async function startNatsCluster(): Promise<NatsClusterHandle> {
  const ports = await Promise.all([0, 1, 2].map(async () => ({ client: await freePort(), route: await freePort(), monitor: await freePort() })));
  const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(',');
  const nodes = await startAll(ports.map((p, i) => async () => {
    const name = `nats-${i + 1}`;
    const dir = tempDir(`parley-${name}`);
    const s = await spawnServer({
      name, cmd: 'nats-server', port: p.client, dir, url: `nats://127.0.0.1:${p.client}`,
      args: ['-a', '127.0.0.1', '-p', String(p.client), '-m', String(p.monitor), '--server_name', name,
        '--cluster_name', 'parley', '--cluster', `nats://127.0.0.1:${p.route}`, '--routes', routes, '-js', '-sd', dir],
      ready: () => probe(p.client, '', 'INFO '),
    });
    return Object.assign(s, { name, monitorPort: p.monitor });
  }));
  const monitor = async (n: { monitorPort: number }, path: string): Promise<Record<string, unknown> | undefined> => {
    try {
      const res = await fetch(`http://127.0.0.1:${n.monitorPort}${path}`, { signal: AbortSignal.timeout(1000) });
      return await res.json() as Record<string, unknown>;
    } catch {
      return undefined; // a dead node
    }
  };
  const handle: NatsClusterHandle = {
    servers: nodes.map((n) => n.url),
    nodes,
    async nodeOf(clientName) {
      for (const n of nodes) {
        const connz = await monitor(n, '/connz?limit=1024');
        if ((connz?.connections as { name?: string }[] | undefined)?.some((c) => c.name === clientName)) return n;
      }
      return undefined;
    },
    waitRoutes: (ms = 15_000) => until('routes between all live NATS servers', ms, async () => {
      const counts = await Promise.all(nodes.map((n) => monitor(n, '/routez').then((r) => r?.num_routes as number | undefined)));
      const alive = counts.filter((c) => c !== undefined);
      return alive.length > 0 && alive.every((c) => c === alive.length - 1);
    }),
    stop: async () => { await Promise.all(nodes.map((n) => n.stop())); },
  };
  try {
    await handle.waitRoutes();
  } catch (e) {
    await handle.stop();
    throw e;
  }
  return handle;
}

// A TCP relay in its own process: bytes both ways, one process for every
// connection, so pause() cuts exactly the clients that go through it.
const RELAY = `const net = require('node:net');
const [port, target] = process.argv.slice(1).map(Number);
net.createServer((c) => {
  const u = net.connect(target, '127.0.0.1');
  c.pipe(u); u.pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
  c.on('close', () => u.destroy()); u.on('close', () => c.destroy());
}).listen(port, '127.0.0.1');`;

/**
 * A relay to a server on `target` (url: same scheme as `target.url`). Point one
 * process at it and pause() the relay to cut that process, and no other, off
 * the server: the server keeps running for everyone else.
 */
export async function startRelay(target: { port: number; url: string }): Promise<Spawned> {
  const port = await freePort();
  return spawnServer({
    name: 'relay', cmd: process.execPath, port, dir: tempDir('parley-relay'), url: target.url.replace(`:${target.port}`, `:${port}`),
    args: ['-e', RELAY, String(port), String(target.port)],
    ready: () => new Promise((resolve) => {
      const sock = createConnection({ port, host: '127.0.0.1' });
      sock.once('connect', () => { sock.destroy(); resolve(true); });
      sock.once('error', () => resolve(false));
    }),
  });
}
