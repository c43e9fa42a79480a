// chat: users in pairs exchange one-to-one messages at an aggregate rate that
// steps up until p99 exceeds --p99-limit-ms or a message is lost (not
// delivered within --loss-timeout-ms). The highest passing step is the
// sustained rate. With --sm every stream has stream management (XEP-0198):
// a step also needs every message acknowledged by its end, and reports the
// ack latency. With --metrics-urls / --redis, each step reports the server's
// bus messages and Redis commands per message sent.
import { measureBackground, perMessage, readCounters, type PerMessage, type ServerCounters } from '../lib/counters.ts';
import { cpuMs } from '../lib/proc.ts';
import { type Ctx, type ScenarioOutput, sleep, sum } from '../lib/run.ts';
import { Ctx as C } from '../lib/run.ts';
import type { StepReply } from '../lib/protocol.ts';
import type { LatencySummary } from '../lib/stats.ts';
import { lineChart } from '../lib/svg.ts';

interface StepRow extends PerMessage {
  offered: number; sendRate: number; deliveredRate: number; sent: number; received: number; lost: number; skipped: number; misrouted: number; latency: LatencySummary;
  /** --sm: messages the server had not acknowledged when the step ended; send → covering <a h/>; our <r/> → <a h/>. */
  unacked: number | null; ackLatency: LatencySummary | null; requestLatency: LatencySummary | null;
  /** Server (--pids) CPU time per message sent, µs; bus messages and Redis commands per message sent (counters.ts). */
  serverCpuUsPerMsg: number | null;
  /** The same less the servers' CPU while idle (`idleCpuPct`) over the step's duration; with --metrics-urls / --redis. */
  serverCpuNetUsPerMsg: number | null;
  pass: boolean;
}

/** An overloaded server may not answer /metrics in time: that step's counts are then missing, not the run. */
async function tolerant(ctx: Ctx, metricsUrls: string[], redis: string): Promise<ServerCounters> {
  try {
    return await readCounters(metricsUrls, redis);
  } catch (e) {
    ctx.log(`warning: server counters not read: ${(e as Error).message}`);
    return { bus: null, redis: null, redisCpuMs: null };
  }
}

/** The highest rate that passed (bisection steps come in any order). */
function bestPassing(rows: readonly StepRow[]): StepRow | undefined {
  let best: StepRow | undefined;
  for (const x of rows) if (x.pass && (!best || x.offered > best.offered)) best = x;
  return best;
}

/** The lowest rate above `rate` that failed. */
function lowestFailingAbove(rows: readonly StepRow[], rate: number): number | undefined {
  let low: number | undefined;
  for (const x of rows) if (!x.pass && x.offered > rate && (low === undefined || x.offered < low)) low = x.offered;
  return low;
}

/** A bisection rate rounded to two significant digits, so that reports compare like with like. */
function roundRate(r: number): number {
  const unit = 10 ** Math.max(0, Math.floor(Math.log10(r)) - 1);
  return Math.round(r / unit) * unit;
}

/** Seconds of silence after login over which the servers' background counters are measured. */
const BACKGROUND_MS = 3000;

export async function chat(ctx: Ctx): Promise<ScenarioOutput> {
  const o = ctx.o;
  const r = await ctx.loginAll('chat login');
  const pairs = r.perWorker.map((n) => Math.floor(n / 2));
  const totalPairs = sum(pairs);
  if (!totalPairs) throw new Error('chat: no pair of users online');
  const rows: StepRow[] = [];
  const counting = o.metricsUrls.length > 0 || o.redis !== '';
  // The servers' CPU while nothing is sent (timers, renewals) is a cost per second, not per message: measured here
  // and taken off the per-message CPU figure as well.
  const idle0 = { at: performance.now(), cpu: o.pids.length ? cpuMs(o.pids) : 0 };
  const background = counting ? await measureBackground(o.metricsUrls, o.redis, BACKGROUND_MS) : { busPerSec: null, redisPerSec: null };
  const idleCpuPct = counting && o.pids.length ? Math.round(((cpuMs(o.pids) - idle0.cpu) / (performance.now() - idle0.at)) * 1000) / 10 : null;
  if (counting) ctx.log(`background: bus ${background.busPerSec?.toFixed(1) ?? '-'}/s redis ${background.redisPerSec ? Object.values(background.redisPerSec).reduce((a, b) => a + b, 0).toFixed(0) : '-'}/s server cpu ${idleCpuPct ?? '-'}%`);
  const runStep = async (step: number, offered: number): Promise<StepRow> => {
    const t = ctx.pool.total();
    let last = { sent: t.sent, received: t.received };
    const stop = ctx.progress(`chat ${offered}/s`, () => {
      const n = ctx.pool.total();
      const line = `sent ${n.sent - last.sent}/s recv ${n.received - last.received}/s online ${n.online}`;
      last = { sent: n.sent, received: n.received };
      return line;
    });
    let before: ServerCounters, after: ServerCounters, countedSecs: number, cpu0: number, cpu1: number, replies: StepReply[];
    try {
      before = await tolerant(ctx, o.metricsUrls, o.redis);
      const c0 = performance.now();
      cpu0 = o.pids.length ? cpuMs(o.pids) : 0;
      replies = await ctx.pool.all<StepReply>((i) => ({
        type: 'chat', step, rate: (offered * pairs[i]) / totalPairs, durationMs: o.stepSeconds * 1000, timeoutMs: o.lossTimeoutMs, payload: o.payload,
      }));
      cpu1 = o.pids.length ? cpuMs(o.pids) : 0;
      after = await tolerant(ctx, o.metricsUrls, o.redis);
      countedSecs = (performance.now() - c0) / 1000;
    } finally {
      stop();
    }
    const m = C.mergeSteps(replies);
    const secs = m.sendMs / 1000;
    const lost = m.sent - m.received;
    const unacked = o.sm ? m.smSent - m.acked : null;
    const pass = lost === 0 && m.skipped === 0 && m.misrouted === 0 && !unacked && m.latency.p99Ms <= o.p99LimitMs && m.sent >= offered * o.stepSeconds * 0.95;
    const row: StepRow = {
      offered, sendRate: Math.round(m.sent / secs), deliveredRate: Math.round(m.received / Math.max(secs, m.spanMs / 1000)), sent: m.sent, received: m.received, lost, skipped: m.skipped, misrouted: m.misrouted, latency: m.latency,
      unacked, ackLatency: o.sm ? m.ackLatency : null, requestLatency: o.sm ? m.requestLatency : null,
      serverCpuUsPerMsg: o.pids.length && m.sent ? Math.round(((cpu1 - cpu0) * 1000) / m.sent) : null,
      serverCpuNetUsPerMsg: idleCpuPct !== null && m.sent ? Math.round(((cpu1 - cpu0 - (idleCpuPct / 100) * countedSecs * 1000) * 1000) / m.sent) : null, ...perMessage(before, after, m.sent, countedSecs, background), pass,
    };
    rows.push(row);
    const sm = o.sm ? ` acked ${m.acked}/${m.smSent} ack p50 ${m.ackLatency.p50Ms} p99 ${m.ackLatency.p99Ms} ms (r→a p50 ${m.requestLatency.p50Ms} p99 ${m.requestLatency.p99Ms} ms)` : '';
    const cost = [row.serverCpuUsPerMsg !== null ? `server cpu ${row.serverCpuUsPerMsg} µs/msg${row.serverCpuNetUsPerMsg !== null ? ` (net ${row.serverCpuNetUsPerMsg})` : ''}` : '', row.busPerMsg !== null ? `bus ${row.busPerMsg}/msg (net ${row.busNetPerMsg})` : '', row.redisPerMsg !== null ? `redis ${row.redisPerMsg}/msg (net ${row.redisNetPerMsg}, cpu ${row.redisCpuUsPerMsg} µs/msg)` : ''].filter(Boolean).join(' ');
    ctx.log(`step ${offered}/s: sent ${row.sendRate}/s delivered ${row.deliveredRate}/s lost ${lost} skipped ${m.skipped} p50 ${m.latency.p50Ms} p99 ${m.latency.p99Ms} p99.9 ${m.latency.p999Ms} ms${sm}${cost ? ` | ${cost}` : ''} -> ${pass ? 'ok' : 'limit reached'}`);
    await sleep(1000);
    return row;
  };
  let step = 0;
  for (const offered of o.rates) {
    if (!(await runStep(step++, offered)).pass) break;
  }
  // The rates step coarsely (doubling by default): bisect between the highest passing and the first failing rate
  // until they are within --precision of each other, so that a ratio between servers means what it says.
  for (;;) {
    const lo = bestPassing(rows)?.offered;
    const hi = lowestFailingAbove(rows, lo ?? 0);
    if (lo === undefined || hi === undefined || o.precision <= 0 || hi - lo <= lo * o.precision) break;
    const mid = roundRate((lo + hi) / 2);
    if (mid <= lo || mid >= hi) break;
    await runStep(step++, mid);
  }
  await ctx.logoutAll();
  const best = bestPassing(rows);
  const series = (name: string, f: (l: LatencySummary) => number): { name: string; points: Array<[number, number]> } => ({ name, points: [...rows].sort((a, b) => a.offered - b.offered).map((x) => [x.offered, f(x.latency)]) });
  // The first step (1,000 msgs/s by default) is the fixed-rate figure: latency and cost per message at a load every target holds.
  const first = rows[0];
  return {
    summary: {
      users: r.ok, precision: o.precision, sm: o.sm ? `every ${o.smRequestEvery}` : 'off', maxSustainedRate: best?.offered ?? 0, deliveredAtMax: best?.deliveredRate ?? 0, p50AtMaxMs: best?.latency.p50Ms ?? null, p99AtMaxMs: best?.latency.p99Ms ?? null, firstFailingRate: lowestFailingAbove(rows, best?.offered ?? 0) ?? null,
      firstRate: first?.offered ?? null, p50AtFirstMs: first?.latency.p50Ms ?? null, p99AtFirstMs: first?.latency.p99Ms ?? null,
      ackP50AtFirstMs: first?.ackLatency?.p50Ms ?? null, ackP99AtFirstMs: first?.ackLatency?.p99Ms ?? null, unackedAtFirst: first?.unacked ?? null,
      serverCpuUsPerMsgAtFirst: first?.serverCpuUsPerMsg ?? null, busPerMsgAtFirst: first?.busNetPerMsg ?? null, redisPerMsgAtFirst: first?.redisNetPerMsg ?? null, redisCpuUsPerMsgAtFirst: first?.redisCpuUsPerMsg ?? null,
    },
    details: { background: { ...background, serverCpuPct: idleCpuPct }, steps: rows, loginLatency: r.latency, loginErrors: r.errors },
    svg: lineChart({ title: `chat latency vs offered rate — ${o.target} (${r.ok} users)`, xLabel: 'offered msgs/s (log)', yLabel: 'latency (ms, log)', logX: true, logY: true },
      [series('p50', (l) => l.p50Ms), series('p99', (l) => l.p99Ms), series('p99.9', (l) => l.p999Ms)]),
  };
}
