// Parley under test: the embedded mode in this process, or a cluster of real
// processes (NATS, Redis, c2s and session roles) started from the CLI.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../../libs/config/index.ts';
import { startServer, type RunningServer } from '../../services/server.ts';
import { freePort, startNats, startRedis, tempDir, type Spawned } from './servers.ts';
import { Accounts } from '../../libs/accounts/index.ts';
import { createRedisStore } from '../../libs/store/redis-store.ts';
import type { Store } from '../../libs/store/store.ts';

// Tests connect to self-signed certificates the server generates.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
process.removeAllListeners('warning');

export const DOMAIN = 'localhost';
export const PASSWORD = 'secret';

/** What every scenario needs: where clients connect, and a way to add users. */
export interface Deployment {
  readonly name: string;
  /** c2s ports; a cluster has several. */
  readonly ports: number[];
  addUser(local: string, password?: string): Promise<void>;
  /** The deployment's store, to seed data a test needs in bulk. */
  readonly store: Store;
  /** Envelopes published on the bus so far, all processes summed. */
  busPublished(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Test deployments let clients on loopback log in without TLS (the server's own default is TLS first, loopback
 * included): most tests speak plain XMPP to read the wire. This is the default here so every test written against
 * these helpers keeps working; a test of the secure default says `{ allowPlainOnLoopback: false }` (or passes its
 * own `tcp` / `http` settings, which win).
 */
export const PLAIN_ON_LOOPBACK = { allowPlainOnLoopback: true } as const;

/** The c2s section of a test deployment: plaintext logins on loopback unless `c2s` says otherwise, then `c2s` itself. */
export function testC2s(c2s: Record<string, unknown> | undefined, tcp: Record<string, unknown>): Record<string, unknown> {
  return {
    ...c2s,
    tcp: { ...PLAIN_ON_LOOPBACK, ...(c2s?.tcp as Record<string, unknown> | undefined), ...tcp },
    http: { ...PLAIN_ON_LOOPBACK, ...(c2s?.http as Record<string, unknown> | undefined) },
  };
}

export async function startEmbedded(overrides: Record<string, unknown> = {}): Promise<Deployment & { server: RunningServer }> {
  const dataDir = tempDir('parley-embedded');
  const base: Record<string, unknown> = { dataDir, domains: [DOMAIN], log: { level: 'warn' }, metrics: { port: 0 } };
  const c2s = testC2s(overrides.c2s as Record<string, unknown> | undefined, { host: '127.0.0.1', port: 0 });
  const config = loadConfig(undefined, {}, { ...base, ...overrides, c2s });
  const server = await startServer(config);
  return {
    name: 'embedded',
    server,
    ports: [server.c2s!.tcpPort()],
    store: server.store,
    busPublished: async () => server.bus.published,
    addUser: async (local, password = PASSWORD) => { await server.accounts.add(`${local}@${DOMAIN}`, password); },
    stop: () => server.stop(false),
  };
}

export interface ClusterProcess {
  role: 'c2s' | 'session';
  nodeId: string;
  port: number;
  /** Where its /metrics is served. */
  metricsPort: number;
  child: ChildProcess;
  log: string[];
}

export interface Cluster extends Deployment {
  nats: Spawned;
  redis: Spawned;
  processes: ClusterProcess[];
  /**
   * Start one more process of a role; `config` goes over the generated configuration (e.g. another store URL). Its
   * `c2s` section is merged into the generated one, and its `c2s.tcp.port`, when given, is the port listened on.
   */
  add(role: 'c2s' | 'session', nodeId?: string, config?: Record<string, unknown>): Promise<ClusterProcess>;
  kill(p: ClusterProcess, signal?: NodeJS.Signals): Promise<void>;
}

/** A metric's value summed over every live process of the cluster. */
export async function clusterMetric(c: Cluster, name: string): Promise<number> {
  let sum = 0;
  for (const p of c.processes) {
    if (p.child.exitCode !== null || p.child.signalCode !== null || !p.metricsPort) continue;
    const text = await (await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`)).text();
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
    if (m) sum += Number(m[1]);
  }
  return sum;
}

export const FAST_CLUSTER = { heartbeatMs: 250, memberTtlMs: 1500, handoffTimeoutMs: 3000 };

export async function startCluster(opts: { c2s?: number; session?: number; cluster?: Record<string, unknown>; config?: Record<string, unknown> } = {}): Promise<Cluster> {
  const [nats, redis] = await Promise.all([startNats(), startRedis()]);
  const dir = tempDir('parley-cluster');
  const processes: ClusterProcess[] = [];
  let seq = 0;

  const add = async (role: 'c2s' | 'session', nodeId = `${role}${++seq}`, config: Record<string, unknown> = {}): Promise<ClusterProcess> => {
    const own = config.c2s as { tcp?: { port?: number } } | undefined;
    const port = role === 'c2s' ? own?.tcp?.port ?? await freePort() : 0;
    const file = join(dir, `${nodeId}.yaml`);
    const extra = opts.config ?? {};
    writeFileSync(file, stringify({
      ...extra,
      nodeId, role, dataDir: join(dir, nodeId), domains: [DOMAIN], log: { level: 'info' },
      bus: { kind: 'nats', url: nats.url },
      store: { kind: 'redis', url: redis.url },
      metrics: { port: 0 },
      cluster: { ...FAST_CLUSTER, ...opts.cluster },
      ...config,
      c2s: testC2s({ ...(extra.c2s as Record<string, unknown> | undefined), ...own }, { host: '127.0.0.1', port }),
    }));
    const child = spawn(process.execPath, ['bin/parley.mjs', 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_TLS_REJECT_UNAUTHORIZED: '0' } });
    const p: ClusterProcess = { role, nodeId, port, metricsPort: 0, child, log: [] };
    processes.push(p);
    await new Promise<void>((resolve, reject) => {
      const onLine = (buf: Buffer) => {
        for (const line of buf.toString().split('\n')) {
          if (!line) continue;
          p.log.push(line);
          if (process.env.PARLEY_TEST_VERBOSE) process.stderr.write(`[${nodeId}] ${line}\n`);
          if (line.includes('server: started')) {
            p.metricsPort = Number(/metrics=[^ ]*:(\d+)/.exec(line)?.[1] ?? 0);
            resolve();
          }
        }
      };
      child.stdout!.on('data', onLine);
      child.stderr!.on('data', onLine);
      child.once('exit', (code) => reject(new Error(`${nodeId} exited with ${code}:\n${p.log.join('\n')}`)));
    });
    return p;
  };

  const kill = async (p: ClusterProcess, signal: NodeJS.Signals = 'SIGKILL') => {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    const exited = new Promise((r) => p.child.once('exit', r));
    p.child.kill(signal);
    await exited;
  };

  for (let i = 0; i < (opts.session ?? 2); i++) await add('session');
  for (let i = 0; i < (opts.c2s ?? 2); i++) await add('c2s');
  const store = createRedisStore({ url: redis.url });
  const accounts = new Accounts(store);

  const cluster: Cluster = {
    name: 'cluster',
    nats, redis, processes, add, kill, store,
    busPublished: () => clusterMetric(cluster, 'parley_bus_published_total'),
    get ports() { return processes.filter((p) => p.role === 'c2s' && p.child.exitCode === null && p.child.signalCode === null).map((p) => p.port); },
    addUser: async (local, password = PASSWORD) => { await accounts.add(`${local}@${DOMAIN}`, password); },
    stop: async () => {
      await Promise.all(processes.map((p) => kill(p, 'SIGKILL')));
      await store.close();
      await Promise.all([nats.stop(), redis.stop()]);
    },
  };
  return cluster;
}
