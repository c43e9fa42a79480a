// The chaos harness: a real cluster (3-node NATS, Redis Cluster of 3 masters
// + 3 replicas, 2 c2s and 3 session processes as child processes), two
// groups of chatting clients (with XEP-0198 and without), one fault, and the
// books: what was acknowledged, delivered, lost, duplicated, reordered, how
// long chat took to flow again, and whether any account ever had two actors.
//
// One case is `runCase({ title, fault })`: a fresh cluster, a warm-up with
// chat flowing in both groups at once (they share the fault), the fault, a
// while of chat after it, a settle period (every managed client's messages
// acknowledged, deliveries quiet), then the figures and the violations.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';
import { checkActivations, type ActivationReport } from './activations.ts';
import { ChatClient, type Endpoint } from './client.ts';
import { startEngines, type Engines } from './engines.ts';
import { account, SILENCE_MS, summarize, type RunFigures } from './ledger.ts';
import { createNamespace, type Namespace } from './netns.ts';
import { startParley, type ParleyProcess } from './processes.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** `PARLEY_CHAOS_LONG=1`: more clients, longer chat around the fault. */
export const LONG = process.env.PARLEY_CHAOS_LONG === '1';
/** Keep the run directories (configurations and process logs) instead of removing them. */
const KEEP = process.env.PARLEY_CHAOS_KEEP === '1';

export const DOMAIN = 'localhost';
const PASSWORD = 'secret';
const SHARDS = 1024;
/** Fast membership so that a case takes seconds: a silent process is dead after 1.5 s. */
export const CLUSTER = { shards: SHARDS, heartbeatMs: 250, memberTtlMs: 1500, handoffTimeoutMs: 3000 };

export interface Timing {
  /** Clients per group (each group half on one c2s, half on the other; every client chats with a partner on the other). */
  clients: number;
  /** Each client sends a message every `minMs`–`maxMs`. */
  minMs: number;
  maxMs: number;
  /** Chat before the fault, once every pair has exchanged a message. */
  warmupMs: number;
  /** Chat after the last pair flows again. */
  afterMs: number;
  /** Most time for every managed client's messages to be acknowledged at the end. */
  settleMs: number;
  /** An <r/> without <a/> for this long and the managed client takes its connection as dead. */
  ackTimeoutMs: number;
}

export const TIMING: Timing = LONG
  ? { clients: 60, minMs: 100, maxMs: 200, warmupMs: 10_000, afterMs: 30_000, settleMs: 30_000, ackTimeoutMs: 4000 }
  : { clients: 20, minMs: 100, maxMs: 200, warmupMs: 2000, afterMs: 3000, settleMs: 15_000, ackTimeoutMs: 4000 };

export interface ChaosCluster {
  readonly dir: string;
  readonly engines: Engines;
  readonly c2s: ParleyProcess[];
  readonly sessions: ParleyProcess[];
  /** The namespace session-3 runs in, when the case asked for one and it could be had. */
  readonly ns?: Namespace;
  readonly nsUnavailable?: string;
  /** The session process that holds the shards of the most chatting accounts (by rendezvous hashing over the three). */
  busiestSession(accounts: readonly string[]): ParleyProcess;
  /** A metric summed over the live processes whose /metrics answer. */
  metric(name: string): Promise<number>;
  stop(): Promise<void>;
}

const clusters = new Set<ChaosCluster>();
// Run directories go with the test process, however it ends (unless kept).
const dirs = new Set<string>();
const removeDirs = () => { if (!KEEP) for (const d of dirs) rmSync(d, { recursive: true, force: true }); dirs.clear(); };
process.on('exit', removeDirs);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    removeDirs();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

/** Stop whatever a case left running (a test that timed out does not run its `finally`). */
export async function stopAll(): Promise<void> {
  await Promise.all([...clusters].map((c) => c.stop()));
}

async function waitFor(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s`);
    await sleep(100);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `PARLEY_CHAOS_VERBOSE=1`: each phase of a case on stderr as it happens. */
const phase = (s: string) => { if (process.env.PARLEY_CHAOS_VERBOSE) process.stderr.write(`${new Date().toISOString().slice(11, 23)} chaos: ${s}\n`); };

async function scrape(p: ParleyProcess, host: string, name: string): Promise<number | undefined> {
  if (!p.metricsPort || !p.alive()) return undefined;
  try {
    const res = await fetch(`http://${host}:${p.metricsPort}/metrics`, { signal: AbortSignal.timeout(1000) });
    let sum = 0;
    for (const m of (await res.text()).matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
    return sum;
  } catch {
    return undefined;
  }
}

export async function startChaosCluster(opts: { namespace?: boolean } = {}): Promise<ChaosCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-chaos-'));
  dirs.add(dir);
  const engines = await startEngines({ clustered: true });
  let ns: Namespace | undefined;
  let nsUnavailable: string | undefined;
  if (opts.namespace && process.env.PARLEY_CHAOS_NO_NETNS === '1') {
    nsUnavailable = 'PARLEY_CHAOS_NO_NETNS=1';
  } else if (opts.namespace) {
    const made = await createNamespace(engines.clientPorts());
    if ('unavailable' in made) nsUnavailable = made.unavailable;
    else ns = made;
  }
  const started: ParleyProcess[] = [];
  const base = (nodeId: string, level: 'debug' | 'info') => {
    mkdirSync(join(dir, nodeId), { recursive: true });
    return {
      dataDir: join(dir, nodeId),
      domains: [DOMAIN],
      // Session processes log each actor activation with its lease's fencing token at debug level.
      log: { level },
      ...engines.config,
      c2s: { tcp: { host: '127.0.0.1', port: 0, allowPlainOnLoopback: true } },
      metrics: { host: '127.0.0.1', port: 0 },
      cluster: CLUSTER,
      // Each pair exchanges 5–10 messages a second between users who are not contacts: past the default limit on
      // messages to strangers (spam.strangerRate), which is not what these cases test.
      spam: { strangerRate: { enabled: false } },
    };
  };
  const cluster: ChaosCluster = {
    dir, engines, ns, nsUnavailable,
    c2s: [],
    sessions: [],
    busiestSession(accounts) {
      const ids = cluster.sessions.map((p) => p.nodeId);
      const count = new Map<string, number>();
      for (const a of accounts) {
        const o = ownerOf(shardOf(a, SHARDS), ids)!;
        count.set(o, (count.get(o) ?? 0) + 1);
      }
      const best = [...count].sort((a, b) => b[1] - a[1])[0][0];
      return cluster.sessions.find((p) => p.nodeId === best)!;
    },
    async metric(name) {
      let sum = 0;
      for (const p of [...cluster.c2s, ...cluster.sessions]) {
        const host = ns && p.nodeId === 'session-3' ? ns.innerAddress : '127.0.0.1';
        sum += (await scrape(p, host, name)) ?? 0;
      }
      return sum;
    },
    async stop() {
      clusters.delete(cluster);
      await Promise.all(started.map((p) => p.kill()));
      await ns?.close();
      await engines.stop();
      if (!KEEP) rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    },
  };
  clusters.add(cluster);
  try {
    cluster.sessions.push(...await Promise.all([1, 2, 3].map(async (i) => {
      const nodeId = `session-${i}`;
      const inNs = ns && i === 3;
      const config = base(nodeId, 'debug');
      const p = await startParley({
        nodeId, role: 'session', dir,
        config: inNs ? { ...config, metrics: { host: ns!.innerAddress, port: 0 } } : config,
        wrap: inNs ? ns!.wrap : undefined,
      });
      started.push(p);
      return p;
    })));
    cluster.c2s.push(...await Promise.all([1, 2].map(async (i) => {
      const p = await startParley({ nodeId: `c2s-${i}`, role: 'c2s', dir, config: base(`c2s-${i}`, process.env.PARLEY_CHAOS_C2S_DEBUG ? 'debug' : 'info') });
      started.push(p);
      return p;
    })));
    // Every shard served before anyone chats: the three session processes have settled their ownership.
    await waitFor('all shards owned by the session processes', 30_000, async () => (await cluster.metric('parley_shards_owned')) === SHARDS);
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/**
 * Whether the other session processes counted `victim` out since `since` (a `membership changed` line
 * without it): proof that a pause or a partition lasted long enough to be a fault at all.
 */
export function countedOut(c: ChaosCluster, victim: ParleyProcess, since: number): boolean {
  const from = new Date(since).toISOString();
  return c.sessions.filter((p) => p !== victim).some((p) => p.log().split('\n').some((l) => {
    const m = / membership changed; .*members=(\S+)/.exec(l);
    return m !== null && l.slice(0, from.length) >= from && !m[1].split(',').includes(victim.nodeId);
  }));
}

/** Accounts prefix1…prefixN, through the operator's command. */
async function addUsers(c: ChaosCluster, prefix: string, count: number): Promise<void> {
  await run(process.execPath, [join(ROOT, 'bin/parley.mjs'), 'user', 'bulk-add', '--domain', DOMAIN, '--prefix', prefix, '--count', String(count),
    '--password', PASSWORD, '--config', join(c.dir, 'c2s-1.yaml')], { cwd: ROOT, timeout: 60_000, env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_'))) });
}

export interface Group {
  flavour: 'sm' | 'plain';
  clients: ChatClient[];
  /** Sender → recipient, both directions of every couple. */
  pairs: [ChatClient, ChatClient][];
}

async function startGroup(c: ChaosCluster, flavour: 'sm' | 'plain', t: Timing): Promise<Group> {
  const prefix = flavour === 'sm' ? 'sm' : 'pl';
  await addUsers(c, prefix, t.clients);
  const half = t.clients / 2;
  const ep = (p: ParleyProcess): Endpoint => p.c2s!;
  const clients = Array.from({ length: t.clients }, (_, i) => {
    const [own, other] = i < half ? [c.c2s[0], c.c2s[1]] : [c.c2s[1], c.c2s[0]];
    return new ChatClient({
      user: `${prefix}${i + 1}`, password: PASSWORD, domain: DOMAIN, resource: 'chaos',
      streamManagement: flavour === 'sm',
      endpoints: () => [ep(own), ep(other)],
      ackTimeoutMs: t.ackTimeoutMs,
      stepTimeoutMs: 10_000,
    });
  });
  await Promise.all(clients.map((x) => x.start()));
  const pairs: [ChatClient, ChatClient][] = [];
  for (let i = 0; i < half; i++) {
    pairs.push([clients[i], clients[i + half]], [clients[i + half], clients[i]]);
  }
  return { flavour, clients, pairs };
}

export interface CaseResult {
  title: string;
  fault: string;
  sm: RunFigures;
  plain: RunFigures;
  activations: ActivationReport;
  /** Server-side counters at the end (live processes only). */
  server: string;
  /** What the managed run breaks of its promises; empty when it kept them all. */
  violations: string[];
  lines: string[];
  seconds: number;
}

export interface CaseSpec {
  title: string;
  /** Run session-3 in a network namespace (case d). */
  namespace?: boolean;
  /** Chat must flow again in every managed pair within this long of the fault's start. */
  flowBoundMs: number;
  /** Inflict the fault; resolves with what was done once it is over (a pause healed, a kill done). */
  fault: (c: ChaosCluster, chatting: readonly string[]) => Promise<string>;
}

const LOCK = join(tmpdir(), 'parley-chaos.lock');

/**
 * One chaos cluster at a time on this machine: the test runner runs two files at once, and two clusters
 * of 14 processes and 80 clients on two cores would measure each other. Waits at most `maxWaitMs`
 * (then goes ahead, said on stderr); a lock whose holder died is taken over.
 */
async function exclusive(maxWaitMs: number): Promise<() => void> {
  const deadline = Date.now() + maxWaitMs;
  let said = false;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      const release = () => { try { rmSync(LOCK, { recursive: true, force: true }); } catch { /* gone */ } process.off('exit', release); };
      process.on('exit', release);
      return release;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder = 0;
    try { holder = Number(readFileSync(join(LOCK, 'pid'), 'utf8')); } catch { /* being written */ }
    let alive = true;
    if (holder) try { process.kill(holder, 0); } catch { alive = false; }
    if (!alive) {
      rmSync(LOCK, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      process.stderr.write(`chaos: another chaos run (pid ${holder}) still holds ${LOCK} after ${maxWaitMs / 1000} s; going ahead beside it\n`);
      return () => {};
    }
    if (!said) phase(`waiting for the chaos run of pid ${holder} to end`);
    said = true;
    await sleep(250);
  }
}

/** A fresh cluster, both groups chatting, the fault, and the books. */
export async function runCase(spec: CaseSpec, t: Timing = TIMING): Promise<CaseResult> {
  const release = await exclusive(LONG ? 600_000 : 90_000);
  try {
    return await runExclusive(spec, t);
  } finally {
    release();
  }
}

async function runExclusive(spec: CaseSpec, t: Timing): Promise<CaseResult> {
  const began = Date.now();
  phase(`${spec.title}: starting the cluster`);
  const c = await startChaosCluster({ namespace: spec.namespace });
  phase(`cluster up in ${Date.now() - began} ms`);
  const groups: Group[] = [];
  try {
    groups.push(await startGroup(c, 'sm', t), await startGroup(c, 'plain', t));
    const all = groups.flatMap((g) => g.pairs);
    for (const [s, r] of all) s.chat(r.full, t.minMs, t.maxMs);
    phase('clients logged in and chatting');
    // Warm-up: every pair has delivered at least one message, then a while of steady chat.
    await waitFor('chat flowing in every pair before the fault', 30_000, () => all.every(([s, r]) => r.deliveries.some((d) => d.from === s.bare.split('@')[0])));
    await sleep(t.warmupMs);

    phase('fault');
    const faultAt = Date.now();
    const chatting = groups.flatMap((g) => g.clients.map((x) => x.bare));
    const fault = await spec.fault(c, chatting);
    phase(`fault done: ${fault}`);
    // Chat flowing in every pair again — a message typed after the fault delivered, and one arrived lately —
    // for at least SILENCE_MS after the fault is over (a fault may bite late: leases run out ⅔ TTL after a
    // failed renewal); or give up at the bound plus a margin.
    const faultOver = Date.now();
    const flowing = (s: ChatClient, r: ChatClient) => {
      const from = s.bare.split('@')[0];
      const now = Date.now();
      return r.deliveries.some((d) => d.from === from && (s.typed[d.seq] ?? 0) >= faultAt) &&
        r.deliveries.some((d) => d.from === from && now - d.at < SILENCE_MS / 2);
    };
    await waitFor('', spec.flowBoundMs + 10_000, () => Date.now() - faultAt > spec.flowBoundMs + 10_000 ||
      (Date.now() - faultOver >= SILENCE_MS && all.every(([s, r]) => flowing(s, r)))).catch(() => {});
    phase(`flowing again (or gave up) after ${Date.now() - faultAt} ms`);
    await sleep(t.afterMs);
    phase('settling');

    // Settle: no more typing; every managed client's messages acknowledged; then deliveries quiet for a while.
    for (const g of groups) for (const x of g.clients) x.stopChat();
    const chatEnd = Date.now();
    const sm = groups[0];
    let asked = 0;
    await waitFor('', t.settleMs, () => {
      if (Date.now() - asked >= 500) {
        asked = Date.now();
        for (const x of sm.clients) if (x.outstanding > 0) x.requestAck();
      }
      return sm.clients.every((x) => x.isOnline && x.outstanding === 0);
    }).catch(() => {});
    let last = -1;
    await waitFor('', 10_000, async () => {
      const n = groups.reduce((a, g) => a + g.clients.reduce((b, x) => b + x.deliveries.length, 0), 0);
      if (n === last) return true;
      last = n;
      await sleep(1500);
      return false;
    }).catch(() => {});

    phase('settled; counting');
    const smFig = account('sm', sm.pairs, faultAt, chatEnd);
    const plainFig = account('plain', groups[1].pairs, faultAt, chatEnd);
    const logs = c.sessions.map((p) => ({ nodeId: p.nodeId, text: p.log() }));
    const activations = checkActivations(logs, new Set(chatting));
    const server = `leases lost ${await c.metric('parley_shard_leases_lost_total')}, stale writes refused ${await c.metric('parley_store_stale_writes_total')}, ` +
      `process faults ${await c.metric('parley_process_faults_total')} (live processes)`;

    const violations: string[] = [];
    const pairsWith = (f: (p: RunFigures['pairs'][number]) => boolean, show: (p: RunFigures['pairs'][number]) => string) =>
      smFig.pairs.filter(f).slice(0, 5).map((p) => `${p.from} → ${p.to}: ${show(p)}`).join('; ');
    if (smFig.lost > 0) violations.push(`${smFig.lost} acknowledged messages never delivered (${pairsWith((p) => p.lost.length > 0, (p) => `#${p.lost.slice(0, 8).join(', #')}`)})`);
    if (smFig.dupAfterAck > 0) violations.push(`${smFig.dupAfterAck} messages delivered again after the recipient acknowledged them (${pairsWith((p) => p.dupAfterAck > 0, (p) => String(p.dupAfterAck))})`);
    if (smFig.reordered > 0) violations.push(`${smFig.reordered} messages delivered out of their sender's order (${pairsWith((p) => p.reordered > 0, (p) => String(p.reordered))})`);
    if (smFig.neverFlowed > 0) violations.push(`${smFig.neverFlowed} pairs never delivered a message typed after the fault`);
    const late = Math.max(smFig.firstAfterMaxMs, smFig.recoveredMaxMs);
    if (smFig.silentAtEnd > 0) violations.push(`${smFig.silentAtEnd} pairs were still silent when the chat ended, ${((chatEnd - faultAt) / 1000).toFixed(1)} s after the fault`);
    else if (late > spec.flowBoundMs) violations.push(`chat flowed steadily again only ${(late / 1000).toFixed(1)} s after the fault (bound ${spec.flowBoundMs / 1000} s)`);
    for (const e of smFig.protocolErrors.slice(0, 5)) violations.push(`XEP-0198 broken: ${e}`);
    // A managed client whose messages the server never acknowledged keeps them pending (and sends them again on its next
    // resumption): chat has not recovered for it, even when the messages arrived.
    const pending = sm.clients.filter((x) => x.isOnline && x.outstanding > 0);
    if (pending.length) {
      violations.push(`${pending.reduce((a, x) => a + x.outstanding, 0)} stanzas still unacknowledged ${t.settleMs / 1000} s after the chat stopped, ` +
        `from ${pending.length} clients (${pending.slice(0, 5).map((x) => `${x.bare} ${x.outstanding}`).join(', ')})`);
    }
    const offline = sm.clients.filter((x) => !x.isOnline);
    if (offline.length) violations.push(`${offline.length} managed clients could not get back online: ${offline.slice(0, 3).map((x) => `${x.bare} (${x.events.slice(-3).join(' | ')})`).join('; ')}`);
    violations.push(...activations.violations.slice(0, 10));

    const seconds = (Date.now() - began) / 1000;
    const lines = [
      `${spec.title}: ${fault} (${seconds.toFixed(0)} s)`,
      `  ${summarize(smFig)}`,
      `  ${summarize(plainFig)}`,
      `  actors: ${activations.activations} activations logged (${activations.watchedActivations} of chatting accounts, ${activations.moved} accounts on more than one process); ${server}`,
    ];
    if (violations.length) {
      lines.push(`  VIOLATIONS (managed run):`, ...violations.map((v) => `   - ${v}`));
      // The clients on the wrong end of a violation tell what they saw.
      const involved = new Set(smFig.pairs.filter((p) => p.lost.length || p.dupAfterAck || p.reordered || p.recoveredMs > spec.flowBoundMs).flatMap((p) => [p.from, p.to]));
      for (const x of pending) involved.add(x.bare);
      lines.push(...explain(c, sm.clients.filter((x) => involved.has(x.bare) || !x.isOnline)));
    }
    return { title: spec.title, fault, sm: smFig, plain: plainFig, activations, server, violations, lines, seconds };
  } catch (e) {
    process.stdout.write(explain(c, groups.flatMap((g) => g.clients)).join('\n') + '\n');
    throw e;
  } finally {
    phase('stopping');
    await Promise.all(groups.flatMap((g) => g.clients.map((x) => x.stop())));
    await c.stop();
    phase('stopped');
  }
}

/** For a failure: the tail of every process's log and the last events of the clients that fared worst. */
function explain(c: ChaosCluster, clients: readonly ChatClient[]): string[] {
  const out: string[] = [`  run directory: ${c.dir}${KEEP ? '' : ' (removed; PARLEY_CHAOS_KEEP=1 keeps it)'}`];
  for (const p of [...c.c2s, ...c.sessions]) {
    const tail = p.log().split('\n').filter((l) => l && !l.includes(' debug ')).slice(-15);
    out.push(`  --- ${p.nodeId} (${p.alive() ? 'alive' : 'dead'}), last lines above debug:`, ...tail.map((l) => `    ${l}`));
  }
  for (const x of clients.slice(0, 4)) out.push(`  --- ${x.bare} (${x.smState()}):`, ...x.events.slice(-12).map((e) => `    ${e}`));
  return out;
}
