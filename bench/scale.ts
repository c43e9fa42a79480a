// Scale-out: N authenticated, stream-managed connections held at once by a
// Parley cluster it starts itself (K c2s processes, S session processes,
// NATS, Redis), every user with a roster of `contacts` of whom half are
// online, so every login carries real presence (probes, broadcasts).
//
//   node --import tsx bench/scale.ts --connections 15000 --c2s 3 --sessions 2 --hold 60
//
// Phases: log everyone in; hold with server pings on, asserting that no
// connection drops; a chat and a presence step at fixed low rates; log a
// fraction out and in again (a reconnect with every contact online). Around
// each phase it reads, per role (c2s, session, NATS, Redis — every process):
// RSS and CPU from /proc, bus messages (every process's /metrics) and Redis
// commands (INFO commandstats), and Redis' used_memory (INFO memory). It
// prints the unit costs and writes bench/results/scale-parley-cluster-*.json
// in the bench's result format, which bench/capacity.ts reads.
//
// Connections come from worker processes (one process holds fewer than
// `ulimit -Hn` sockets), worker w binding 127.0.0.(sourceBase + w), so no
// source address runs out of ephemeral ports; worker w talks to c2s w mod K
// and user u belongs to worker (u − 1) mod W, so a user's contacts are spread
// over every c2s.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pack } from 'msgpackr';
import { deriveCredentials } from '../libs/auth/credentials.ts';
import { emptyItem, encodeItem } from '../services/session/im/roster.ts';
import { startCluster, type Cluster } from '../test/support/parley.ts';
import { measureBackground, perMessage, readCounters, redisUsedMemory, type Background, type PerMessage, type ServerCounters } from './lib/counters.ts';
import { Pool } from './lib/pool.ts';
import { cpuMs, rssBytes } from './lib/proc.ts';
import type { LoginReply, StepReply } from './lib/protocol.ts';
import { mergeHists, summarize, type LatencySummary } from './lib/stats.ts';
import { lineChart } from './lib/svg.ts';

const DOMAIN = 'localhost';
const PASSWORD = 'secret';
const PREFIX = 'scale';
/** Sockets one process may hold (`ulimit -Hn` here), less room for its own files and bus/store connections. */
const FD_PER_PROCESS = 19_000;

export interface ScaleOptions {
  connections: number;
  c2s: number;
  sessions: number;
  /** Load-generator processes; 0: enough for ≤ 4,000 connections each, a multiple of c2s. */
  workers: number;
  holdSeconds: number;
  /** The c2s' XEP-0199 keepalive, shortened so that every connection is pinged during the hold. */
  pingIntervalSeconds: number;
  pingTimeoutSeconds: number;
  /** Roster size; half of the contacts are online users, half are accounts that never log in. */
  contacts: number;
  /** Logins in flight, all workers together. */
  concurrency: number;
  sourceBase: number;
  settleSeconds: number;
  /** Chat step: messages/s between neighbouring contacts, for chatSeconds (0: skipped). */
  chatRate: number;
  chatSeconds: number;
  /** Presence step: changes/s, each fanned out to the sender's online contacts (0: skipped). */
  presenceRate: number;
  presenceSeconds: number;
  /** Fraction of users logged out and in again after the hold (0: skipped). */
  reloginFraction: number;
  out: string;
  quiet: boolean;
}

export const SCALE_DEFAULTS: ScaleOptions = {
  connections: 10_000, c2s: 3, sessions: 2, workers: 0, holdSeconds: 60, pingIntervalSeconds: 20, pingTimeoutSeconds: 15,
  contacts: 20, concurrency: 150, sourceBase: 40, settleSeconds: 5, chatRate: 500, chatSeconds: 10, presenceRate: 100, presenceSeconds: 10,
  reloginFraction: 0.1, out: 'bench/results', quiet: false,
};

export type Role = 'c2s' | 'session' | 'nats' | 'redis';
export const ROLES: readonly Role[] = ['c2s', 'session', 'nats', 'redis'];

/** One role's figures: every process of it summed. */
export interface RoleFigures {
  processes: number;
  rssBeforeMiB: number;
  rssAfterLoginMiB: number;
  rssEndOfHoldMiB: number;
  /** RSS growth from before the logins to after them, per connection (one connection per user: also per online user). */
  bytesPerConnection: number;
  /** CPU time per login during the cold login phase, and per login during the reconnects (contacts online; net of the held connections' cost). */
  cpuMsPerLogin: number;
  cpuMsPerRelogin: number | null;
  /** CPU while the connections are held (pings, acks, heartbeats), µs per connection per second. */
  idleCpuUsPerConnSec: number;
  /** CPU per chat message and per presence change, µs, net of what the held connections cost meanwhile. */
  cpuUsPerMessage: number | null;
  cpuUsPerPresence: number | null;
}

export interface Counted extends PerMessage { ops: number; seconds: number }

export interface ScaleSummary {
  connections: number;
  failed: number;
  c2s: number;
  sessions: number;
  contacts: number;
  /** Logins per second over the cold login phase (first connect to last bind). */
  loginsPerSec: number;
  loginP50Ms: number;
  loginP99Ms: number;
  holdSeconds: number;
  /** Connections that dropped during the hold (asserted zero) and server pings answered meanwhile. */
  disconnects: number;
  pingsAnswered: number;
  /** Redis used_memory per account stored (credentials and a roster of `contacts`), and its growth per online user. */
  redisBytesPerAccount: number;
  /** The same split: an account without roster, and one roster item. */
  redisBytesPerAccountAlone: number;
  redisBytesPerRosterItem: number;
  redisBytesPerOnlineUser: number;
  busPerLogin: number | null;
  redisCommandsPerLogin: number | null;
  busPerRelogin: number | null;
  redisCommandsPerRelogin: number | null;
  busPerMessage: number | null;
  redisCommandsPerMessage: number | null;
  busPerPresence: number | null;
  redisCommandsPerPresence: number | null;
  /** Notifications a presence change produced (own copy included). */
  presenceFanOut: number | null;
  /** Bus messages and Redis commands a second per held connection (pings through the actors, acks, heartbeats). */
  idleBusPerConnSec: number | null;
  idleRedisPerConnSec: number | null;
  pingIntervalSeconds: number;
}

export interface ScaleResult {
  scenario: 'scale';
  target: 'parley-cluster';
  startedAt: string;
  options: ScaleOptions;
  generator: { workers: number; workerMode: 'process'; cpuPct: number; serverCpuPct: number | null; wallMs: number; loadavg1: number };
  summary: ScaleSummary;
  details: {
    roles: Record<Role, RoleFigures>;
    login: Counted & { latency: LatencySummary; errors: string[] };
    relogin: (Counted & { latency: LatencySummary; errors: string[] }) | null;
    hold: Counted;
    chat: (Counted & { received: number; p99Ms: number }) | null;
    presence: (Counted & { notifications: number; p99Ms: number }) | null;
    /** Before the logins (no connection), and during the hold (the idle cost, taken off the later phases). */
    background: Background;
    holdBackground: Background;
    redisUsedMemory: { empty: number; seeded: number; afterLogin: number; endOfHold: number };
    rssSamplesMiB: Record<Role, Array<[number, number]>>;
  };
  files: { json: string; svg: string };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 0): number => Math.round(x * 10 ** d) / 10 ** d;
const mib = (b: number): number => round(b / 2 ** 20, 1);

/** Online contacts of online user u (1…n): ±1…±4 and ±step — neighbours on other c2s, and one on the same worker (the chat partner). */
export function onlineContacts(u: number, n: number, step: number, count: number): number[] {
  const offsets = [1, 2, 3, 4, step];
  for (let d = 5; offsets.length < Math.ceil(count / 2); d++) if (d !== step) offsets.push(d);
  offsets.length = Math.min(offsets.length, Math.ceil(count / 2));
  const out = new Set<number>();
  const ring = (x: number): number => (((x % n) + n) % n) + 1;
  for (const d of offsets) for (const v of [ring(u - 1 + d), ring(u - 1 - d)]) if (v !== u) out.add(v);
  return [...out].slice(0, count);
}

/** Offline contacts: accounts n+1…n+m (m = n/2) that never log in; online u gets `count` of them in a run, each listed by 2·count users. */
export function offlineContacts(u: number, n: number, count: number): number[] {
  const m = Math.max(count, Math.ceil(n / 2));
  return Array.from({ length: count }, (_, d) => n + 1 + ((Math.floor((u - 1) / 2) + d) % m));
}

interface Seeded { accounts: number; rosterItems: number; bytesPerAccount: number; bytesPerRosterItem: number }

async function seed(c: Cluster, n: number, contacts: number, step: number): Promise<Seeded> {
  const creds = pack(await deriveCredentials(PASSWORD, 4096));
  const empty = new Uint8Array(0);
  const half = Math.floor(contacts / 2);
  const offline = Math.max(contacts - half, Math.ceil(n / 2));
  const rosters = new Map<number, Set<number>>();
  const link = (a: number, b: number): void => {
    for (const [x, y] of [[a, b], [b, a]]) { let s = rosters.get(x); if (!s) rosters.set(x, (s = new Set())); s.add(y); }
  };
  for (let u = 1; u <= n; u++) {
    for (const v of onlineContacts(u, n, step, half)) link(u, v);
    for (const v of offlineContacts(u, n, contacts - half)) link(u, v);
  }
  const item = encodeItem({ ...emptyItem(), subscription: 'both', inRoster: true });
  const total = n + offline;
  const each = async (f: (u: number) => Promise<unknown>): Promise<void> => {
    for (let i = 1; i <= total; i += 500) await Promise.all(Array.from({ length: Math.min(500, total - i + 1) }, (_, k) => f(i + k)));
  };
  // Accounts, then rosters: Redis' memory is read in between, to tell an account's fixed cost from a contact's.
  const mem0 = await redisUsedMemory(redisAt(c));
  await each(async (u) => {
    await c.store.hset(`${PREFIX}${u}@${DOMAIN}`, 'account', 'creds', creds);
    await c.store.hset(`$domain:${DOMAIN}`, 'users', `${PREFIX}${u}`, empty);
  });
  const mem1 = await redisUsedMemory(redisAt(c));
  let items = 0;
  await each(async (u) => {
    const b = c.store.batch(`${PREFIX}${u}@${DOMAIN}`);
    for (const v of rosters.get(u) ?? []) { b.hset('roster', `${PREFIX}${v}@${DOMAIN}`, item); items++; }
    await b.exec();
  });
  const mem2 = await redisUsedMemory(redisAt(c));
  return { accounts: total, rosterItems: items, bytesPerAccount: Math.round((mem1 - mem0) / total), bytesPerRosterItem: Math.round((mem2 - mem1) / Math.max(1, items)) };
}

const redisAt = (c: Cluster): string => c.redis.url.replace(/^redis:\/\//, '');

export async function runScale(opts: Partial<ScaleOptions> = {}): Promise<ScaleResult> {
  const o: ScaleOptions = { ...SCALE_DEFAULTS, ...opts };
  const log = (l: string): void => { if (!o.quiet) process.stderr.write(`${l}\n`); };
  const W = o.workers || Math.max(o.c2s, Math.ceil(o.connections / 4000 / o.c2s) * o.c2s);
  if (Math.ceil(o.connections / o.c2s) > FD_PER_PROCESS) throw new Error(`${o.connections} connections over ${o.c2s} c2s is more than ${FD_PER_PROCESS} per process (ulimit -Hn): add c2s processes`);
  if (Math.ceil(o.connections / W) > FD_PER_PROCESS) throw new Error(`more than ${FD_PER_PROCESS} connections per generator process: add workers`);
  if (o.sourceBase + W > 254) throw new Error('source addresses past 127.0.0.254');
  const step = Math.max(5, W);
  const startedAt = new Date();
  const t0 = performance.now();
  log(`starting a cluster: nats, redis, ${o.c2s} c2s, ${o.sessions} session process(es)`);
  const c = await startCluster({
    c2s: o.c2s, session: o.sessions,
    // Production membership timing: the tests' fast TTL declares a process dead when a loaded 2-core box starves it.
    cluster: { heartbeatMs: 1000, memberTtlMs: 10_000, handoffTimeoutMs: 10_000 },
    config: {
      c2s: {
        maxConnections: FD_PER_PROCESS, pingIntervalSeconds: o.pingIntervalSeconds, pingTimeoutSeconds: o.pingTimeoutSeconds,
        // The bench measures what a login costs, not the admission buckets that pace a storm of them.
        admission: { enabled: false },
      },
      limits: { bytesPerSecond: 1_000_000_000 },
    },
  });
  let pool: Pool | null = null;
  let died = (): string[] => [];
  try {
    const pidsOf = (role: Role): number[] => role === 'nats' ? [c.nats.pid ?? 0] : role === 'redis' ? [c.redis.pid ?? 0]
      : c.processes.filter((p) => p.role === role).map((p) => p.child.pid ?? 0);
    const pids = Object.fromEntries(ROLES.map((r) => [r, pidsOf(r)])) as Record<Role, number[]>;
    const allPids = ROLES.flatMap((r) => pids[r]);
    const rss = (): Record<Role, number> => Object.fromEntries(ROLES.map((r) => [r, rssBytes(pids[r])])) as Record<Role, number>;
    const cpu = (): Record<Role, number> => Object.fromEntries(ROLES.map((r) => [r, cpuMs(pids[r])])) as Record<Role, number>;
    const metricsUrls = c.processes.map((p) => `http://127.0.0.1:${p.metricsPort}/metrics`);
    const counters = (): Promise<ServerCounters> => readCounters(metricsUrls, redisAt(c));
    const samples = Object.fromEntries(ROLES.map((r) => [r, [] as Array<[number, number]>])) as Record<Role, Array<[number, number]>>;
    const sampler = setInterval(() => {
      const gone = c.processes.find((x) => x.child.exitCode !== null || x.child.signalCode !== null);
      if (gone) return; // reported by the phase that notices it
      const m = rss();
      for (const r of ROLES) samples[r].push([round((performance.now() - t0) / 1000, 1), mib(m[r])]);
    }, 1000);
    died = () => c.processes.filter((x) => x.child.exitCode !== null || x.child.signalCode !== null)
      .map((x) => `${x.nodeId} exited (${x.child.exitCode ?? x.child.signalCode}): ${x.log.slice(-8).join(' | ')}`);

    const memEmpty = await redisUsedMemory(redisAt(c));
    log(`seeding ${o.connections} online users and their offline contacts, ${o.contacts} contacts each`);
    const seeded = await seed(c, o.connections, o.contacts, step);
    const memSeeded = await redisUsedMemory(redisAt(c));
    log(`${W} generator processes from 127.0.0.${o.sourceBase}…`);
    pool = await Pool.start(Array.from({ length: W }, (_, w) => ({
      type: 'init' as const, id: w, domain: DOMAIN, prefix: PREFIX, password: PASSWORD, mech: 'SCRAM-SHA-256' as const,
      endpoint: { host: '127.0.0.1', port: c.ports[w % o.c2s], localAddress: `127.0.0.${o.sourceBase + w}` },
    })), 'process');
    const p = pool;
    const genCpu = (): number => cpuMs(p.childPids());
    const gen0 = genCpu();
    const srv0 = cpuMs(allPids);
    await sleep(o.settleSeconds * 1000);
    const rssBefore = rss();
    const background = await measureBackground(metricsUrls, redisAt(c), 3000);

    const progress = (label: string): (() => void) => {
      const timer = setInterval(() => {
        const t = p.total();
        log(`[${label}] online ${t.online} failed ${t.failed} disconnects ${t.disconnects} pings ${t.pings} | rss c2s ${mib(rssBytes(pids.c2s))} session ${mib(rssBytes(pids.session))} MiB`);
      }, 5000);
      return () => clearInterval(timer);
    };
    /** Runs `body` between two readings of the counters and the CPU per role. */
    /**
     * Runs `body` between two readings of the counters and the CPU per role. Counts are taken net of `bg` (a rate a
     * second) and the CPU net of `idleCpu` (ms a second per role): after the hold, what the held connections cost
     * anyway (pings through the actors) is not put on the messages, presence changes and reconnects.
     */
    let idleCpu: Record<Role, number> = { c2s: 0, session: 0, nats: 0, redis: 0 };
    let bg: Background = background;
    const measured = async <T>(body: () => Promise<T>, ops: (value: T) => number): Promise<{ value: T; counted: Counted; cpu: Record<Role, number>; raw: [ServerCounters, ServerCounters] }> => {
      const [a, ca, ta] = [await counters(), cpu(), performance.now()];
      const value = await body();
      const [b, cb] = [await counters(), cpu()];
      const seconds = (performance.now() - ta) / 1000;
      const n = ops(value);
      return {
        value, raw: [a, b], counted: { ops: n, seconds: round(seconds, 1), ...perMessage(a, b, n, seconds, bg) },
        cpu: Object.fromEntries(ROLES.map((r) => [r, Math.max(0, cb[r] - ca[r] - idleCpu[r] * seconds)])) as Record<Role, number>,
      };
    };
    const loginUsers = async (users: number[][], label: string) => {
      const stop = progress(label);
      const t = performance.now();
      const replies = await p.all<LoginReply>((w) => ({
        type: 'login', users: users[w], concurrency: Math.max(1, Math.ceil(o.concurrency / W)), roster: true, presence: true,
        timeoutMs: 120_000, smRequestEvery: 5,
      }));
      stop();
      const ok = replies.reduce((n, r) => n + r.ok, 0);
      const failed = replies.reduce((n, r) => n + r.failed, 0);
      return { ok, failed, ms: performance.now() - t, latency: summarize(mergeHists(replies.map((r) => r.hist))), errors: [...new Set(replies.flatMap((r) => r.errors))] };
    };

    // Cold logins: user u on worker (u − 1) mod W.
    const blocks = Array.from({ length: W }, (_, w) => Array.from({ length: Math.ceil((o.connections - w) / W) }, (_, k) => w + 1 + k * W));
    log(`logging in ${o.connections} users, ${o.concurrency} in flight`);
    const login = await measured(() => loginUsers(blocks, 'login'), (v) => v.ok);
    const loginResult = login.value;
    log(`logged in ${loginResult.ok}, ${loginResult.failed} failed in ${(loginResult.ms / 1000).toFixed(1)} s (p50 ${loginResult.latency.p50Ms} ms, p99 ${loginResult.latency.p99Ms} ms)`);
    for (const e of loginResult.errors) log(`  error: ${e}`);
    if (loginResult.failed) throw new Error(`${loginResult.failed} logins failed: ${loginResult.errors.join('; ')}`);
    await sleep(o.settleSeconds * 1000);
    const rssAfter = rss();
    const memAfterLogin = await redisUsedMemory(redisAt(c));

    // Hold: nothing sent; the c2s pings every stream silent for pingIntervalSeconds.
    log(`holding ${loginResult.ok} connections for ${o.holdSeconds} s (server pings every ${o.pingIntervalSeconds} s of silence)`);
    const pings0 = p.total().pings;
    const hold = await measured(async () => { const stop = progress('hold'); await sleep(o.holdSeconds * 1000); stop(); }, () => loginResult.ok * o.holdSeconds);
    const held = p.total();
    // From here the held connections' own traffic is the background.
    {
      const [a, b] = hold.raw;
      const secs = hold.counted.seconds;
      bg = {
        busPerSec: a.bus !== null && b.bus !== null ? (b.bus - a.bus) / secs : null,
        redisPerSec: a.redis && b.redis ? Object.fromEntries(Object.entries(b.redis).map(([k, v]) => [k, (v - (a.redis?.[k] ?? 0)) / secs])) : null,
      };
      idleCpu = Object.fromEntries(ROLES.map((r) => [r, hold.cpu[r] / secs])) as Record<Role, number>;
    }
    const rssEnd = rss();
    const memEnd = await redisUsedMemory(redisAt(c));
    if (held.disconnects || held.online !== loginResult.ok) throw new Error(`${held.disconnects} connections dropped during the hold (${held.online} of ${loginResult.ok} online)`);

    let chat: ScaleResult['details']['chat'] = null;
    let chatCpu: Record<Role, number> | null = null;
    if (o.chatRate > 0 && o.chatSeconds > 0) {
      log(`chat: ${o.chatRate} msgs/s between neighbouring contacts for ${o.chatSeconds} s`);
      const sentIn = (rs: StepReply[]): number => rs.reduce((n, r) => n + r.sent, 0);
      const m = await measured(() => p.all<StepReply>(() => ({ type: 'chat', step: 1, rate: o.chatRate / W, durationMs: o.chatSeconds * 1000, timeoutMs: 10_000, payload: 0 })), sentIn);
      const sent = sentIn(m.value);
      const received = m.value.reduce((n, r) => n + r.received, 0);
      chat = { ...m.counted, received, p99Ms: summarize(mergeHists(m.value.map((r) => r.hist))).p99Ms };
      chatCpu = m.cpu;
      if (received < sent) throw new Error(`chat: ${sent - received} of ${sent} messages not delivered`);
    }
    let presence: ScaleResult['details']['presence'] = null;
    let presenceCpu: Record<Role, number> | null = null;
    if (o.presenceRate > 0 && o.presenceSeconds > 0) {
      log(`presence: ${o.presenceRate} changes/s for ${o.presenceSeconds} s`);
      const m = await measured(() => p.all<StepReply>(() => ({ type: 'presence', step: 2, rate: o.presenceRate / W, durationMs: o.presenceSeconds * 1000, timeoutMs: 10_000 })), (rs) => rs.reduce((n, r) => n + r.sent, 0));
      const notifications = m.value.reduce((n, r) => n + r.received, 0);
      presence = { ...m.counted, notifications, p99Ms: summarize(mergeHists(m.value.map((r) => r.hist))).p99Ms };
      presenceCpu = m.cpu;
    }
    let relogin: ScaleResult['details']['relogin'] = null;
    let reloginCpu: Record<Role, number> | null = null;
    if (o.reloginFraction > 0) {
      const per = Math.max(1, Math.floor((loginResult.ok / W) * o.reloginFraction));
      log(`reconnects: ${per * W} users log out and in again, their contacts online`);
      const out = await p.all<{ type: 'logout'; closed: number; users: number[] }>(() => ({ type: 'logout', count: per }));
      await sleep(2000);
      const m = await measured(() => loginUsers(out.map((r) => r.users), 'relogin'), (v) => v.ok);
      if (m.value.failed) throw new Error(`${m.value.failed} reconnects failed: ${m.value.errors.join('; ')}`);
      relogin = { ...m.counted, latency: m.value.latency, errors: m.value.errors };
      reloginCpu = m.cpu;
    }
    const final = p.total();
    if (final.disconnects) throw new Error(`${final.disconnects} connections dropped after the hold`);
    clearInterval(sampler);
    await p.all(() => ({ type: 'logout' }));

    const n = loginResult.ok;
    const roles = Object.fromEntries(ROLES.map((r) => [r, {
      processes: pids[r].length,
      rssBeforeMiB: mib(rssBefore[r]), rssAfterLoginMiB: mib(rssAfter[r]), rssEndOfHoldMiB: mib(rssEnd[r]),
      bytesPerConnection: Math.round((rssAfter[r] - rssBefore[r]) / n),
      cpuMsPerLogin: round(login.cpu[r] / n, 3),
      cpuMsPerRelogin: relogin && reloginCpu ? round(reloginCpu[r] / Math.max(1, relogin.ops), 3) : null,
      idleCpuUsPerConnSec: round((hold.cpu[r] * 1000) / (n * o.holdSeconds), 3),
      cpuUsPerMessage: chat && chatCpu ? round((chatCpu[r] * 1000) / Math.max(1, chat.ops), 1) : null,
      cpuUsPerPresence: presence && presenceCpu ? round((presenceCpu[r] * 1000) / Math.max(1, presence.ops), 1) : null,
    } satisfies RoleFigures])) as Record<Role, RoleFigures>;
    const summary: ScaleSummary = {
      connections: n, failed: loginResult.failed, c2s: o.c2s, sessions: o.sessions, contacts: o.contacts,
      loginsPerSec: Math.round(n / (loginResult.ms / 1000)), loginP50Ms: loginResult.latency.p50Ms, loginP99Ms: loginResult.latency.p99Ms,
      holdSeconds: o.holdSeconds, disconnects: held.disconnects, pingsAnswered: held.pings - pings0,
      redisBytesPerAccount: Math.round((memSeeded - memEmpty) / seeded.accounts), redisBytesPerAccountAlone: seeded.bytesPerAccount,
      redisBytesPerRosterItem: seeded.bytesPerRosterItem, redisBytesPerOnlineUser: Math.round((memAfterLogin - memSeeded) / n),
      busPerLogin: login.counted.busNetPerMsg, redisCommandsPerLogin: login.counted.redisNetPerMsg,
      busPerRelogin: relogin?.busNetPerMsg ?? null, redisCommandsPerRelogin: relogin?.redisNetPerMsg ?? null,
      busPerMessage: chat?.busNetPerMsg ?? null, redisCommandsPerMessage: chat?.redisNetPerMsg ?? null,
      busPerPresence: presence?.busNetPerMsg ?? null, redisCommandsPerPresence: presence?.redisNetPerMsg ?? null,
      presenceFanOut: presence && presence.ops ? round(presence.notifications / presence.ops, 2) : null,
      // The hold's counts are per connection-second already (ops = connections × seconds), background included: it is the idle cost.
      idleBusPerConnSec: hold.counted.busPerMsg, idleRedisPerConnSec: hold.counted.redisPerMsg,
      pingIntervalSeconds: o.pingIntervalSeconds,
    };
    const wallMs = performance.now() - t0;
    mkdirSync(o.out, { recursive: true });
    const base = join(o.out, `scale-parley-cluster-${startedAt.toISOString().replace(/[:.]/g, '-')}`);
    const result: ScaleResult = {
      scenario: 'scale', target: 'parley-cluster', startedAt: startedAt.toISOString(), options: o,
      generator: { workers: W, workerMode: 'process', cpuPct: round(((genCpu() - gen0) / wallMs) * 100, 1), serverCpuPct: round(((cpuMs(allPids) - srv0) / wallMs) * 100, 1), wallMs: Math.round(wallMs), loadavg1: round(loadavg()[0], 2) },
      summary,
      details: {
        roles, login: { ...login.counted, latency: loginResult.latency, errors: loginResult.errors }, relogin, hold: hold.counted, chat, presence, background, holdBackground: bg,
        redisUsedMemory: { empty: memEmpty, seeded: memSeeded, afterLogin: memAfterLogin, endOfHold: memEnd }, rssSamplesMiB: samples,
      },
      files: { json: `${base}.json`, svg: `${base}.svg` },
    };
    writeFileSync(result.files.json, JSON.stringify(result, null, 2) + '\n');
    writeFileSync(result.files.svg, lineChart({ title: `RSS per role — ${n} connections, ${o.c2s} c2s, ${o.sessions} session`, xLabel: 'seconds', yLabel: 'RSS (MiB)' },
      ROLES.map((r) => ({ name: r, points: samples[r] }))));
    return result;
  } catch (e) {
    // A server process that died says why in its last lines; the others' warnings and errors tell the rest.
    const why = died();
    const warnings = c.processes.flatMap((x) => x.log.filter((l) => /\b(warn|error)\b/i.test(l)).slice(-3).map((l) => `[${x.nodeId}] ${l}`));
    throw new Error([(e as Error).message, ...why, ...warnings].join('\n'));
  } finally {
    pool?.close();
    await c.stop();
  }
}

export function printScale(r: ScaleResult): void {
  const s = r.summary;
  console.log(`scale: ${s.connections} connections (stream management on, ${s.contacts} contacts, half online) over ${s.c2s} c2s + ${s.sessions} session; ` +
    `${s.loginsPerSec} logins/s (p99 ${s.loginP99Ms} ms); held ${s.holdSeconds} s: ${s.disconnects} disconnects, ${s.pingsAnswered} server pings answered`);
  console.log('role      procs  RSS before→after MiB  bytes/conn  CPU ms/login  ms/relogin  idle µs/conn·s  µs/msg  µs/presence');
  for (const role of ROLES) {
    const f = r.details.roles[role];
    console.log(`${role.padEnd(8)}  ${String(f.processes).padStart(5)}  ${`${f.rssBeforeMiB}→${f.rssAfterLoginMiB}`.padStart(20)}  ${String(f.bytesPerConnection).padStart(10)}  ${String(f.cpuMsPerLogin).padStart(12)}  ${String(f.cpuMsPerRelogin).padStart(10)}  ${String(f.idleCpuUsPerConnSec).padStart(14)}  ${String(f.cpuUsPerMessage).padStart(6)}  ${String(f.cpuUsPerPresence).padStart(11)}`);
  }
  console.log(`redis: ${s.redisBytesPerAccount} B per account stored (${s.redisBytesPerAccountAlone} without roster, ${s.redisBytesPerRosterItem} per roster item), +${s.redisBytesPerOnlineUser} B per online user; ` +
    `per login ${s.busPerLogin} bus msgs, ${s.redisCommandsPerLogin} Redis commands (reconnect: ${s.busPerRelogin}, ${s.redisCommandsPerRelogin}); ` +
    `per chat msg ${s.busPerMessage}, ${s.redisCommandsPerMessage}; per presence change ${s.busPerPresence}, ${s.redisCommandsPerPresence} (fan-out ${s.presenceFanOut}); ` +
    `idle per connection·s ${s.idleBusPerConnSec} bus, ${s.idleRedisPerConnSec} Redis`);
  console.log(`generator ${r.generator.workers} processes, cpu ${r.generator.cpuPct}%, servers ${r.generator.serverCpuPct}%, loadavg ${r.generator.loadavg1}; wrote ${r.files.json}`);
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      connections: { type: 'string' }, c2s: { type: 'string' }, sessions: { type: 'string' }, workers: { type: 'string' },
      hold: { type: 'string' }, 'ping-interval': { type: 'string' }, 'ping-timeout': { type: 'string' }, contacts: { type: 'string' },
      concurrency: { type: 'string' }, 'source-base': { type: 'string' }, 'chat-rate': { type: 'string' }, 'chat-seconds': { type: 'string' },
      'presence-rate': { type: 'string' }, 'presence-seconds': { type: 'string' }, 'relogin-fraction': { type: 'string' },
      settle: { type: 'string' }, out: { type: 'string' }, quiet: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (v.help) {
    console.log(`node --import tsx bench/scale.ts [--connections ${SCALE_DEFAULTS.connections}] [--c2s 3] [--sessions 2] [--hold 60] [--workers 0 (auto)]
  [--ping-interval 20 --ping-timeout 15] [--contacts 20] [--concurrency 150] [--source-base 40]
  [--chat-rate 500 --chat-seconds 10] [--presence-rate 100 --presence-seconds 10] [--relogin-fraction 0.1] [--settle 5] [--out bench/results] [--quiet]`);
    return;
  }
  const num = (x: string | undefined, d: number): number => {
    if (x === undefined) return d;
    const n = Number(x);
    if (!Number.isFinite(n) || n < 0) throw new Error(`not a number: ${x}`);
    return n;
  };
  const d = SCALE_DEFAULTS;
  const r = await runScale({
    connections: num(v.connections, d.connections), c2s: num(v.c2s, d.c2s), sessions: num(v.sessions, d.sessions), workers: num(v.workers, d.workers),
    holdSeconds: num(v.hold, d.holdSeconds), pingIntervalSeconds: num(v['ping-interval'], d.pingIntervalSeconds), pingTimeoutSeconds: num(v['ping-timeout'], d.pingTimeoutSeconds),
    contacts: num(v.contacts, d.contacts), concurrency: num(v.concurrency, d.concurrency), sourceBase: num(v['source-base'], d.sourceBase),
    chatRate: num(v['chat-rate'], d.chatRate), chatSeconds: num(v['chat-seconds'], d.chatSeconds), presenceRate: num(v['presence-rate'], d.presenceRate),
    presenceSeconds: num(v['presence-seconds'], d.presenceSeconds), reloginFraction: num(v['relogin-fraction'], d.reloginFraction),
    settleSeconds: num(v.settle, d.settleSeconds), out: v.out ?? d.out, quiet: v.quiet ?? false,
  });
  printScale(r);
}

if (import.meta.url === `file://${process.argv[1]}`) main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
