// Composes one Parley process from its configuration: the embedded mode
// (in-process bus, lmdb) or any cluster role (NATS, Redis). The same services
// run in both; only the bus, the store and the membership differ.
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Server } from 'node:http';
import { Accounts, Domains } from '../libs/accounts/index.ts';
import { HostedDomains } from '../libs/accounts/hosts.ts';
import { ServedDomains } from '../libs/accounts/served.ts';
import { Subjects, type Bus } from '../libs/bus/bus.ts';
import { InProcessBus } from '../libs/bus/inprocess.ts';
import { NatsBus, natsServers } from '../libs/bus/nats.ts';
import { MemoryLeaseTable, RedisLeaseTable, type LeaseTable } from '../libs/cluster/lease.ts';
import { ComponentDirectory } from '../libs/components/index.ts';
import { RedisMembership, StaticMembership, type Membership } from '../libs/cluster/membership.ts';
import type { Config } from '../libs/config/schema.ts';
import { logger, setLogContext, setLogFormat, throttledWarn } from '../libs/log/index.ts';
import { stanzaErrorReplies } from '../libs/errors/index.ts';
import { Metrics, serveMetrics } from '../libs/metrics/index.ts';
import { connectRedis, openStore, type RedisClient } from '../libs/store/index.ts';
import { instrumentStore } from '../libs/store/instrumented.ts';
import { ReplicaWaiter } from '../libs/store/redis-replicas.ts';
import { replicasToWait } from '../libs/store/redis-store.ts';
import { MemoryStore } from '../libs/store/memory-store.ts';
import { overlayStore } from '../libs/store/overlay.ts';
import type { Store } from '../libs/store/store.ts';
import { loadOrCreateCertificate, secureContext } from '../libs/tls/index.ts';
import { RedisAuthCounters } from './c2s/auth-throttle.ts';
import { RedisWindowCounters } from '../libs/cluster/window-counters.ts';
import { C2sNode, newNodeId } from './c2s/c2s-node.ts';
import { ComponentListener } from './component/component-listener.ts';
import { listenError } from './listen-error.ts';
import { watchReadiness } from './readiness.ts';
import { S2sNode } from './s2s/s2s-node.ts';
import { purgeNodeSessionsOffline } from './session/directory.ts';
import { ClusterAdmin } from './admin/cluster-admin.ts';
import { serveAdminApi, API_PREFIX } from './admin/http-api.ts';
import { ActivityCounters, NodeAdmin } from './admin/node-admin.ts';
import type { AdminOperations, NodeReload } from './admin/operations.ts';
import { adminToken, writeAdminEndpoint } from './admin/token.ts';
import { loadDomainCertificates } from './c2s/certificates.ts';
import { ModuleRegistry } from './session/module.ts';
import { modules } from './session/modules/index.ts';
import { ServiceDomains } from './session/service-domains.ts';
import { SessionNode } from './session/session-node.ts';
import { uploadHeldBack } from '../libs/upload/index.ts';

const log = logger('server');

/** The version parley_build_info reports (package.json). */
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface RunningServer {
  readonly nodeId: string;
  readonly config: Config;
  readonly store: Store;
  readonly bus: Bus;
  readonly accounts: Accounts;
  readonly domains: Domains;
  readonly c2s?: C2sNode;
  readonly session?: SessionNode;
  readonly s2s?: S2sNode;
  /** The external component listener (a process with the c2s role, while components are configured). */
  readonly components?: ComponentListener;
  readonly metrics: Metrics;
  metricsPort(): number;
  /** The administration operations (services/admin), as this process runs them for the deployment. */
  readonly admin: AdminOperations;
  /** The admin API's base URL (empty when admin.enabled is false). */
  adminUrl(): string;
  /** Re-read the configuration file and apply what can change (SIGHUP). */
  reload(): Promise<NodeReload>;
  /** Graceful: hand shards over and close streams; otherwise just stop. */
  stop(graceful?: boolean): Promise<void>;
}

export function isEmbedded(config: Config): boolean {
  return config.bus.kind === 'inprocess';
}

export async function openConfiguredStore(config: Config): Promise<Store> {
  if (config.store.kind === 'redis') return openStore(config.store);
  const path = resolve(config.store.path ?? join(config.dataDir, 'db'));
  mkdirSync(path, { recursive: true });
  return openStore({ kind: 'lmdb', path, sync: config.store.sync === 'commit' ? { every: 'commit' } : { every: 'interval', ms: config.store.syncIntervalMs } });
}

export interface ServerOptions {
  /** Reads the configuration again (`parley reload`, SIGHUP): the file the process started from. Without it a reload changes nothing. */
  readConfig?: () => Config;
}

export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const embedded = isEmbedded(config);
  if (embedded && config.role !== 'all') throw new Error('the in-process bus runs every role in one process: use role "all" or the NATS bus');
  if (!embedded && config.store.kind !== 'redis') throw new Error('a cluster (NATS bus) keeps its state in Redis: set store.kind to "redis"');
  if (config.role === 's2s' && !config.s2s.enabled) throw new Error('the s2s role runs federation: set s2s.enabled to true');
  const nodeId = config.nodeId ?? (embedded ? 'embedded' : newNodeId(config.role));
  // The process's entries say which process wrote them (log.level is applied by `parley start`, before this).
  setLogFormat(config.log.format);
  setLogContext({ role: config.role, node: nodeId });
  const runsC2s = config.role === 'all' || config.role === 'c2s';
  const runsSession = config.role === 'all' || config.role === 'session';
  const runsS2s = config.s2s.enabled && (config.role === 'all' || config.role === 's2s');
  const componentDomains = config.components.services.map((c) => c.domain);
  const hostedComponent = componentDomains.find((d) => config.domains.includes(d));
  if (hostedComponent) throw new Error(`${hostedComponent} is both a served domain (domains) and a component's (components.services): give the component a domain of its own`);
  mkdirSync(config.dataDir, { recursive: true });

  // A process exports the metrics of the roles it runs, and those every process has.
  const metrics = new Metrics(true, { c2s: runsC2s, session: runsSession, s2s: runsS2s });
  metrics.buildInfo.labels(VERSION, nodeId, config.role).set(1);
  // One process: the session directory lives and dies with it, so it stays in memory.
  const rawStore = embedded
    ? overlayStore(await openConfiguredStore(config), new MemoryStore(), (coll) => coll === 'sessions')
    : await openConfiguredStore(config);
  const storeOps = new Map<string, { observe(v: number): void }>();
  const store = config.metrics.enabled
    ? instrumentStore(rawStore, {
      observe: (op, seconds) => {
        let h = storeOps.get(op);
        if (!h) storeOps.set(op, (h = metrics.storeLatency.labels(op)));
        h.observe(seconds);
      },
    })
    : rawStore;
  const domains = new Domains(store);
  const hosts = new HostedDomains(config.domains, domains);
  await hosts.start(config.domainRefreshSeconds * 1000);
  const accounts = new Accounts(store, config.auth.scramIterations);
  const subjects = new Subjects(config.bus.kind === 'nats' ? config.bus.subjectPrefix : 'parley');
  let bus: Bus;
  try {
    bus = config.bus.kind === 'nats'
      ? await NatsBus.connect(natsServers(config.bus), nodeId, (e) => log.warn('bus error', { error: e }), { timeoutMs: config.bus.connectTimeoutMs })
      : new InProcessBus(nodeId);
  } catch (e) {
    hosts.stop();
    await store.close();
    throw e;
  }

  // Every process routes to components; only those holding a component's connection announce it.
  const components = componentDomains.length === 0 ? undefined
    : new ComponentDirectory(bus, subjects, componentDomains, nodeId, { announceMs: config.cluster.heartbeatMs, ttlMs: config.cluster.memberTtlMs });
  await components?.start();

  let redis: RedisClient | undefined;
  let sessionMembers: Membership;
  let c2sMembers: Membership;
  let s2sMembers: Membership;
  // Shard leases: one process alone holds every shard for good; a cluster leases them in Redis.
  let sessionLeases: LeaseTable;
  let s2sLeases: LeaseTable;
  const leaseTtlMs = embedded ? Infinity : config.cluster.memberTtlMs;
  if (embedded) {
    sessionLeases = new MemoryLeaseTable();
    s2sLeases = new MemoryLeaseTable();
    sessionMembers = new StaticMembership(nodeId);
    c2sMembers = new StaticMembership(nodeId);
    s2sMembers = new StaticMembership(nodeId);
    // One process: whatever sessions the last run left behind are gone.
    const purged = await purgeNodeSessionsOffline(store, nodeId);
    if (purged) log.info('cleared sessions of the previous run', { sessions: purged });
  } else {
    if (config.store.kind !== 'redis') throw new Error('unreachable: checked above');
    // Its own connection, so heartbeats never queue behind the store's traffic.
    redis = await connectRedis(config.store, { timeoutMs: config.store.connectTimeoutMs, commandTimeoutMs: config.store.commandTimeoutMs });
    const { heartbeatMs, memberTtlMs } = config.cluster;
    const onError = (e: unknown) => log.warn('membership heartbeat failed', { error: e });
    const prefix = config.store.keyPrefix;
    // `{members:…}` is the Redis Cluster hash tag: a group's set and its `:leaving` set share a slot (one script).
    const key = (group: string) => `${prefix}{members:${group}}`;
    sessionMembers = new RedisMembership(redis, { key: key('session'), self: runsSession ? nodeId : '', heartbeatMs, ttlMs: memberTtlMs, onError });
    c2sMembers = new RedisMembership(redis, { key: key('c2s'), self: runsC2s ? nodeId : '', heartbeatMs, ttlMs: memberTtlMs, onError });
    s2sMembers = new RedisMembership(redis, { key: key('s2s'), self: runsS2s ? nodeId : '', heartbeatMs, ttlMs: memberTtlMs, onError });
    // With replicas, a lease counts once a replica has it (the same wait as a confirmed message: store.waitReplicas).
    const replicas = replicasToWait(config.store, config.store.waitReplicas);
    const leaseWarn = throttledWarn(log, 10_000);
    const waiter = replicas > 0 ? new ReplicaWaiter(redis, replicas, config.store.waitTimeoutMs,
      (got) => leaseWarn('the lease table\'s primary lacks its replicas; trusting leases without them for a while', { replicas: got, wanted: replicas })) : undefined;
    const replicated = waiter && ((k: string) => waiter.wait(k));
    sessionLeases = new RedisLeaseTable(redis, `${prefix}{leases:session}`, replicated);
    s2sLeases = new RedisLeaseTable(redis, `${prefix}{leases:s2s}`, replicated);
  }

  let session: SessionNode | undefined;
  if (runsSession) {
    const offline = { stored: metrics.offline.labels('stored'), delivered: metrics.offline.labels('delivered') };
    session = new SessionNode({
      config, bus, subjects, store, hosts, membership: sessionMembers, c2sMembers: () => c2sMembers.members(),
      leases: sessionLeases, leaseTtlMs,
      onLeaseLost: (reason) => metrics.leasesLost.labels(reason).inc(),
      onLeaseLapsed: () => metrics.leasesLapsed.inc(),
      onStaleWrite: () => metrics.staleWrites.inc(),
      counters: { offline: (event, n) => offline[event].inc(n) },
      // A cluster counts rates in Redis: a domain's accounts live on every session process.
      rates: redis && config.store.kind === 'redis' ? new RedisWindowCounters(redis, config.store.keyPrefix) : undefined,
      // With no federation process alive, a stanza for another server bounces instead of vanishing on the bus.
      s2sAvailable: () => config.s2s.enabled && s2sMembers.members().length > 0,
      components,
    });
    c2sMembers.onChange((now, prev) => {
      for (const gone of prev) if (!now.includes(gone)) void session!.c2sGone(gone).catch((e: unknown) => log.error('cleanup failed', { node: gone, error: e }));
    });
  }
  await c2sMembers.start();
  // Session processes watch the federation processes (an s2s process starts its own membership).
  if (!runsS2s && config.s2s.enabled) await s2sMembers.start();
  if (session) await session.start();
  // A connection manager alone watches the session processes (which one holds a shard).
  else if (runsC2s) await sessionMembers.start();

  let s2s: S2sNode | undefined;
  if (runsS2s) {
    const fallbackCertificate = await loadOrCreateCertificate(config.dataDir, hosts.list(), config.c2s.tls);
    // Federation answers for the service domains the enabled modules declare (conference.<domain>, …) beside the hosted ones.
    const served = new ServedDomains(hosts, new ServiceDomains(new ModuleRegistry(modules, config).services, config, hosts), ...(components ? [components] : []));
    s2s = new S2sNode({
      config, bus, subjects, store, served, membership: s2sMembers, fallbackCertificate, leases: s2sLeases, leaseTtlMs, counters: metrics.s2sCounters(),
    });
    await s2s.start();
  }

  let componentListener: ComponentListener | undefined;
  let c2s: C2sNode | undefined;
  /** What `parley stats` rates: logins and client stanzas on this process. */
  const activity = new ActivityCounters();
  if (runsC2s) {
    const cert = await loadOrCreateCertificate(config.dataDir, hosts.list(), config.c2s.tls);
    const authFailures = metrics.authFailures;
    const authBlocks = { started: metrics.authBlocks.labels('started'), refused: metrics.authBlocks.labels('refused') };
    const resumptions = { success: metrics.smResumptions.labels('success'), failure: metrics.smResumptions.labels('failure') };
    const admissionRefused = { stream: metrics.admissionRefused.labels('stream'), login: metrics.admissionRefused.labels('login'), resumption: metrics.admissionRefused.labels('resumption') };
    c2s = new C2sNode({
      nodeId, config, bus, subjects, hosts, accounts, store, tls: secureContext(cert),
      onDrain: () => componentListener?.stop('this node is being drained: reconnect elsewhere'),
      sessionNodes: () => sessionMembers.members(),
      c2sNodes: () => c2sMembers.members(),
      // A cluster counts failed logins in Redis, so that every connection manager throttles the same addresses.
      authCounters: redis && config.store.kind === 'redis' ? new RedisAuthCounters(redis, config.store.keyPrefix) : undefined,
      metrics: {
        auth: (m, ok) => {
          if (ok) activity.logins++;
          metrics.auth.labels(m, ok ? 'success' : 'failure').inc();
        },
        stanzaIn: (k) => {
          activity.stanzas++;
          metrics.stanzaIn(k);
        },
        stanzaOut: (k, t) => metrics.stanzaOut(k, t),
        authFailed: () => authFailures.inc(),
        authBlocked: (event) => authBlocks[event].inc(),
        resumption: (ok) => resumptions[ok ? 'success' : 'failure'].inc(),
        admissionRefused: (what) => admissionRefused[what].inc(),
      },
    });
    await c2s.start();
    // Our entry lapsed: the session processes may have ended every session here (C2sNode.membershipExpired).
    if (c2sMembers instanceof RedisMembership) c2sMembers.onExpiry((expired) => c2s?.membershipExpired(expired));
  }

  if (runsC2s && components) {
    componentListener = new ComponentListener({
      config, bus, subjects, directory: components,
      // What components send to these domains goes to an actor on the shards: an account, a room, a domain itself.
      onShards: new ServedDomains(hosts, new ServiceDomains(new ModuleRegistry(modules, config).services, config, hosts)),
      s2sAvailable: () => config.s2s.enabled && s2sMembers.members().length > 0,
    });
    await componentListener.start();
  }

  // Administration: this process answers for what it holds; any process asks the others over the bus.
  const nodeAdmin = new NodeAdmin({
    nodeId, role: config.role, config, bus, subjects, c2s, session, counters: activity,
    reload: {
      read: options.readConfig ?? (() => config),
      prepareCertificates: c2s ? async (fresh) => {
        const fallback = secureContext(await loadOrCreateCertificate(fresh.dataDir, hosts.list(), fresh.c2s.tls));
        const certificates = loadDomainCertificates(fresh);
        return () => c2s!.installCertificates(fallback, certificates);
      } : undefined,
    },
  });
  await nodeAdmin.start();
  const admin = new ClusterAdmin({
    nodeId, config, bus, subjects, hosts, accounts,
    members: () => [...new Set([...sessionMembers.members(), ...c2sMembers.members(), ...(config.s2s.enabled ? s2sMembers.members() : [])])],
  });
  await admin.start();
  session?.useAdmin(admin);
  let adminHttp: Server | undefined;
  let adminUrl = '';
  if (config.admin.enabled) {
    adminHttp = await serveAdminApi({
      host: config.admin.host, port: config.admin.port, token: adminToken(config), maxRequestBytes: config.admin.maxRequestBytes, operations: admin,
    }).catch((e: unknown) => {
      throw listenError('the admin listener', 'admin', config.admin.host, config.admin.port, e);
    });
    const port = (adminHttp.address() as { port: number }).port;
    const host = config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host;
    adminUrl = `http://${host}:${port}${API_PREFIX}`;
    // Where `parley` finds this process (with the token file beside it).
    writeAdminEndpoint(config, { url: adminUrl, node: nodeId, pid: process.pid });
  }

  // /readyz, the parley_ready gauge and a log line when it changes: the bus, Redis, and whether a connection manager can take sessions.
  const readiness = watchReadiness(() => (!bus.healthy() ? 'the bus is not connected'
    : redis !== undefined && redis.status !== 'ready' ? `Redis is not connected (${redis.status})`
    : c2s?.unavailable()), config.metrics.enabled ? metrics.ready : undefined);

  let http: Server | undefined;
  if (config.metrics.enabled) {
    metrics.sources = {
      connections: () => c2s?.connectionCounts() ?? [],
      shardsOwned: () => session?.shards.ownedCount() ?? 0,
      actors: () => session?.actors.size ?? 0,
      mailboxDepth: () => session?.actors.mailboxDepth() ?? 0,
      busPublished: () => bus.published,
      stanzaErrors: stanzaErrorReplies,
      s2sLinks: () => s2s?.linksUp() ?? { out: 0, in: 0 },
      s2sQueued: () => s2s?.queued() ?? 0,
      rooms: () => session?.actors.rooms() ?? { rooms: 0, occupants: 0 },
    };
    const rttTimer = setInterval(() => void bus.rtt().then((s) => metrics.busRtt.set(s), () => {}), 10_000);
    rttTimer.unref();
    http = await serveMetrics(metrics, config.metrics.host, config.metrics.port, readiness).catch((e: unknown) => {
      throw listenError('the metrics listener', 'metrics', config.metrics.host, config.metrics.port, e);
    });
  }
  log.info('started', { node: nodeId, role: config.role, mode: embedded ? 'embedded' : 'cluster', domains: hosts.list().join(','), c2s: c2s ? `${config.c2s.tcp.host}:${c2s.tcpPort()}` : 'off',
    ...(c2s?.httpPort() ? { http: `${config.c2s.http.host}:${c2s.httpPort()}` } : {}),
    ...(c2s?.directTlsPort() ? { directTls: `${config.c2s.directTls.host}:${c2s.directTlsPort()}` } : {}),
    ...(s2s ? { s2s: `${config.s2s.listen.host}:${s2s.port()}` } : {}),
    ...(adminUrl ? { admin: adminUrl } : {}),
    ...(componentListener ? { components: `${config.components.listen.host}:${componentListener.port()}` } : {}),
    // An enabled upload service that cannot be offered says why once, here.
    ...(session && config.upload.enabled && uploadHeldBack(config) ? { upload: `off: ${uploadHeldBack(config)}` } : {}),
    metrics: http ? `${config.metrics.host}:${(http.address() as { port: number }).port}` : 'off' });

  let stopped = false;
  return {
    nodeId, config, store, bus, accounts, domains, c2s, session, s2s, components: componentListener, metrics,
    admin,
    adminUrl: () => adminUrl,
    reload: () => nodeAdmin.reload(),
    metricsPort: () => {
      const a = http?.address();
      return typeof a === 'object' && a ? a.port : 0;
    },
    async stop(graceful = true) {
      if (stopped) return;
      stopped = true;
      readiness.stop();
      adminHttp?.close();
      admin.stop();
      nodeAdmin.stop();
      componentListener?.stop();
      await c2s?.stop();
      await c2sMembers.stop();
      if (!session) await sessionMembers.stop();
      await s2s?.stop(graceful);
      await session?.stop(graceful);
      hosts.stop();
      http?.close();
      components?.stop();
      await bus.close();
      redis?.disconnect();
      await store.close();
    },
  };
}
