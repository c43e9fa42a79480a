// One multi-user chat room under load, against any XMPP server: N occupants
// (accounts PREFIX<first>…) spread over the server's c2s listeners join one
// room, a few of them post groupchat messages at a fixed rate for a bounded
// number of seconds, and every occupant times what it receives. Used by the
// `muc` scenario (bench/scenarios/muc.ts: compare.ts, cli.ts) and by
// bench/muc.ts (a Parley cluster it starts itself).
//
// Connections come from worker processes (bench/lib/muc-worker.ts, at most
// PER_WORKER occupants each: one process holds fewer than 20k sockets), each
// from its own source address 127.0.0.x. Bounded: joins stop at a deadline,
// traffic lasts `seconds`, then at most `drainSeconds` for the last deliveries.
import { fork, type ChildProcess } from 'node:child_process';
import { CpuMeter } from './proc.ts';
import { mergeHists, summarize, type Histogram, type LatencySummary } from './stats.ts';

export const PER_WORKER = 5000;

/** Per-worker cumulative counters. */
export interface MucCounters { joined: number; failed: number; received: number; sent: number; skipped: number; disconnects: number; lastAt: number }

export type MucCmd =
  | { type: 'join'; users: number[]; host: string; ports: number[]; source: string; domain: string; prefix: string; password: string; room: string; concurrency: number; deadline: number; form?: Record<string, string | string[]> }
  | { type: 'send'; room: string; rate: number; seconds: number; senders: number }
  | { type: 'report' };

export type MucReply =
  | { type: 'joined'; joined: number; failed: number; errors: string[] }
  | { type: 'sent'; sent: number; skipped: number; firstAt: number }
  | { type: 'report'; counters: MucCounters; hist: string }
  | { type: 'progress'; counters: MucCounters }
  | { type: 'ready' }
  | { type: 'fatal'; message: string };

export type Broadcast = 'all' | 'moderators';

export interface RoomOptions {
  host: string;
  /** The target's c2s listeners: occupant i connects to ports[i % ports.length]. */
  ports: number[];
  domain: string;
  /** The MUC service, e.g. conference.localhost. */
  service: string;
  prefix: string;
  password: string;
  /** Occupants are accounts PREFIX<first> … PREFIX<first+occupants-1>; the first creates and configures the room. */
  first: number;
  occupants: number;
  /** Groupchat messages a second (all senders together); 0 picks 40,000 deliveries a second, at most 2,000 messages. */
  rate: number;
  seconds: number;
  senders: number;
  drainSeconds: number;
  joinTimeoutSeconds: number;
  /** Whose presence the room broadcasts: above a few thousand occupants every join to everyone is N² stanzas. */
  broadcast: Broadcast;
  /** Worker w binds 127.0.0.(sourceBase + w). */
  sourceBase: number;
  /** Server processes whose CPU is sampled during the traffic. */
  serverPids: number[];
  /** A counter read before and after the traffic (bus messages), reported per room message. */
  counter?: () => Promise<number>;
  log: (line: string) => void;
}

export interface RoomResult {
  occupants: number;
  joined: number;
  /** Why the messages were not sent (not everyone joined in time), else null. */
  incomplete: string | null;
  broadcast: Broadcast;
  joinSeconds: number;
  rate: number;
  sent: number;
  skipped: number;
  expected: number;
  delivered: number;
  deliveredPerSecond: number;
  lost: number;
  /** Occupants the server disconnected during the run. */
  disconnects: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  counterPerMessage: number | null;
  generatorCpuPct: number;
  serverCpuPct: number | null;
  latency: LatencySummary;
  hist: Histogram;
  errors: string[];
}

export const autoRate = (n: number): number => Math.max(1, Math.min(2000, Math.round(40_000 / n)));
export const autoBroadcast = (n: number): Broadcast => (n > 2000 ? 'moderators' : 'all');

/** What the owner submits: room size, presence broadcast, not listed (occupants ask for no history when they join). */
export function roomFields(n: number, broadcast: Broadcast): Record<string, string | string[]> {
  return {
    'muc#roomconfig_maxusers': String(n + 10),
    'muc#roomconfig_presencebroadcast': broadcast === 'all' ? ['moderator', 'participant', 'visitor'] : ['moderator'],
    'muc#roomconfig_publicroom': '0',
  };
}

class WorkerHandle {
  counters: MucCounters = { joined: 0, failed: 0, received: 0, sent: 0, skipped: 0, disconnects: 0, lastAt: 0 };
  private waiting: ((r: MucReply) => void) | undefined;
  private dead: string | undefined;
  readonly child: ChildProcess;
  /** Resolves once the worker has loaded (its start-up is not join time). */
  readonly ready: Promise<void>;
  constructor() {
    let ready: () => void = () => {};
    this.ready = new Promise((r) => { ready = r; });
    this.child = fork(new URL('./muc-worker.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (r: MucReply) => {
      if (r.type === 'progress') { this.counters = r.counters; return; }
      if (r.type === 'ready') { ready(); return; }
      const w = this.waiting;
      this.waiting = undefined;
      w?.(r);
    });
    this.child.on('exit', (code, signal) => {
      this.dead = `muc worker exited (${code ?? signal})`;
      ready();
      this.waiting?.({ type: 'fatal', message: this.dead });
    });
  }
  ask<T extends MucReply['type']>(c: MucCmd): Promise<Extract<MucReply, { type: T }>> {
    return new Promise((resolve, reject) => {
      if (this.dead) { reject(new Error(this.dead)); return; }
      this.waiting = (r) => (r.type === 'fatal' ? reject(new Error(r.message)) : resolve(r as Extract<MucReply, { type: T }>));
      this.child.send(c);
    });
  }
}

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round1 = (x: number): number => Math.round(x * 10) / 10;

export async function runRoom(o: RoomOptions): Promise<RoomResult> {
  const n = o.occupants;
  const room = `bench${n}-${Date.now().toString(36)}@${o.service}`;
  const count = Math.max(1, Math.ceil(n / PER_WORKER));
  const workers = Array.from({ length: count }, () => new WorkerHandle());
  const total = (k: keyof MucCounters): number => workers.reduce((a, w) => a + w.counters[k], 0);
  const ticker = (label: string, line: () => string): NodeJS.Timeout => {
    const t0 = now();
    return setInterval(() => o.log(`[muc ${n} ${label} ${Math.round((now() - t0) / 1000)}s] ${line()}`), 1000);
  };
  const base = { host: o.host, ports: o.ports, domain: o.domain, prefix: o.prefix, password: o.password, room };
  try {
    await Promise.all(workers.map((w) => w.ready));
    const t0 = now();
    const deadline = Date.now() + o.joinTimeoutSeconds * 1000;
    let tick = ticker('join', () => `joined ${total('joined')}/${n} failed ${total('failed')}`);
    // The owner creates and configures the room first; then every worker fills its share.
    const owner = await workers[0].ask<'joined'>({ type: 'join', ...base, users: [o.first], source: `127.0.0.${o.sourceBase}`, concurrency: 1, deadline, form: roomFields(n, o.broadcast) });
    const joins = [Promise.resolve(owner)];
    for (let w = 0; w < count; w++) {
      const lo = Math.max(1, w * PER_WORKER);
      const hi = Math.min((w + 1) * PER_WORKER, n);
      const users = Array.from({ length: Math.max(0, hi - lo) }, (_, k) => o.first + lo + k);
      if (users.length && owner.joined) joins.push(workers[w].ask<'joined'>({ type: 'join', ...base, users, source: `127.0.0.${o.sourceBase + w}`, concurrency: 100, deadline }));
    }
    const joined = await Promise.all(joins);
    clearInterval(tick);
    const errors = joined.flatMap((j) => j.errors);
    const joinSeconds = round1((now() - t0) / 1000);
    const inRoom = joined.reduce((a, j) => a + j.joined, 0);
    const result = (extra: Partial<RoomResult>): RoomResult => ({
      occupants: n, joined: inRoom, incomplete: null, broadcast: o.broadcast, joinSeconds, rate: 0, sent: 0, skipped: 0, expected: 0, delivered: 0,
      deliveredPerSecond: 0, lost: 0, disconnects: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, counterPerMessage: null, generatorCpuPct: 0, serverCpuPct: null,
      latency: summarize(mergeHists([])), hist: mergeHists([]), errors, ...extra,
    });
    if (inRoom < n) {
      const why = Date.now() >= deadline ? `${inRoom} of ${n} joined within ${o.joinTimeoutSeconds} s` : `${n - inRoom} of ${n} could not join`;
      const first = errors.length ? ` (first error: ${errors[0].slice(0, 200)})` : '';
      o.log(`muc ${n}: ${why}${first}`);
      return result({ incomplete: `${why}${first}` });
    }
    o.log(`muc ${n}: all joined in ${joinSeconds} s`);
    await sleep(1000);
    const c0 = o.counter ? await o.counter() : 0;
    const rate = o.rate || autoRate(n);
    const cpu = new CpuMeter(o.serverPids, () => workers.flatMap((w) => (w.child.pid ? [w.child.pid] : [])));
    let last = 0;
    tick = ticker('send', () => { const r = total('received'); const s = `${rate} msgs/s, deliveries ${r - last}/s`; last = r; return s; });
    const sent = await workers[0].ask<'sent'>({ type: 'send', room, rate, seconds: o.seconds, senders: o.senders });
    const expected = sent.sent * n;
    // Drain: until everything arrived, nothing arrived for 5 s (a busy server may pause a few seconds), or drainSeconds passed.
    let reports: Array<Extract<MucReply, { type: 'report' }>> = [];
    const drainEnd = now() + o.drainSeconds * 1000;
    let prev = -1;
    let still = 0;
    for (;;) {
      await sleep(500);
      reports = await Promise.all(workers.map((w) => w.ask<'report'>({ type: 'report' })));
      const got = reports.reduce((a, r) => a + r.counters.received, 0);
      if (got >= expected || now() > drainEnd) break;
      still = got === prev ? still + 1 : 0;
      if (still >= 10) break;
      prev = got;
    }
    clearInterval(tick);
    const load = cpu.read();
    const counted = o.counter ? ((await o.counter()) - c0) / Math.max(1, sent.sent) : null;
    const delivered = reports.reduce((a, r) => a + r.counters.received, 0);
    const lastAt = Math.max(...reports.map((r) => r.counters.lastAt));
    const hist = mergeHists(reports.map((r) => r.hist));
    const latency = summarize(hist);
    return result({
      rate, sent: sent.sent, skipped: sent.skipped, expected, delivered,
      deliveredPerSecond: Math.round(delivered / Math.max(0.001, (lastAt - sent.firstAt) / 1000)),
      lost: expected - delivered, disconnects: reports.reduce((a, r) => a + r.counters.disconnects, 0),
      p50Ms: latency.p50Ms, p99Ms: latency.p99Ms, maxMs: latency.maxMs,
      counterPerMessage: counted === null ? null : Math.round(counted * 100) / 100,
      generatorCpuPct: load.generatorPct, serverCpuPct: load.serverPct, latency, hist,
    });
  } finally {
    for (const w of workers) w.child.kill('SIGKILL');
  }
}
