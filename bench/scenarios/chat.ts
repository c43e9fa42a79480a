// chat: users in pairs exchange one-to-one messages at an aggregate rate that
// steps up until p99 exceeds --p99-limit-ms or a message is lost (not
// delivered within --loss-timeout-ms). The highest passing step is the
// sustained rate.
import { type Ctx, type ScenarioOutput, sleep, sum } from '../lib/run.ts';
import { Ctx as C } from '../lib/run.ts';
import type { StepReply } from '../lib/protocol.ts';
import type { LatencySummary } from '../lib/stats.ts';
import { lineChart } from '../lib/svg.ts';

interface StepRow { offered: number; sendRate: number; deliveredRate: number; sent: number; received: number; lost: number; skipped: number; misrouted: number; latency: LatencySummary; pass: boolean }

export async function chat(ctx: Ctx): Promise<ScenarioOutput> {
  const o = ctx.o;
  const r = await ctx.loginAll('chat login');
  const pairs = r.perWorker.map((n) => Math.floor(n / 2));
  const totalPairs = sum(pairs);
  if (!totalPairs) throw new Error('chat: no pair of users online');
  const rows: StepRow[] = [];
  for (const [step, offered] of o.rates.entries()) {
    const t = ctx.pool.total();
    let last = { sent: t.sent, received: t.received };
    const stop = ctx.progress(`chat ${offered}/s`, () => {
      const n = ctx.pool.total();
      const line = `sent ${n.sent - last.sent}/s recv ${n.received - last.received}/s online ${n.online}`;
      last = { sent: n.sent, received: n.received };
      return line;
    });
    const replies = await ctx.pool.all<StepReply>((i) => ({
      type: 'chat', step, rate: (offered * pairs[i]) / totalPairs, durationMs: o.stepSeconds * 1000, timeoutMs: o.lossTimeoutMs, payload: o.payload,
    }));
    stop();
    const m = C.mergeSteps(replies);
    const secs = m.sendMs / 1000;
    const lost = m.sent - m.received;
    const pass = lost === 0 && m.skipped === 0 && m.misrouted === 0 && m.latency.p99Ms <= o.p99LimitMs && m.sent >= offered * o.stepSeconds * 0.95;
    const row: StepRow = { offered, sendRate: Math.round(m.sent / secs), deliveredRate: Math.round(m.received / Math.max(secs, m.spanMs / 1000)), sent: m.sent, received: m.received, lost, skipped: m.skipped, misrouted: m.misrouted, latency: m.latency, pass };
    rows.push(row);
    ctx.log(`step ${offered}/s: sent ${row.sendRate}/s delivered ${row.deliveredRate}/s lost ${lost} skipped ${m.skipped} p50 ${m.latency.p50Ms} p99 ${m.latency.p99Ms} p99.9 ${m.latency.p999Ms} ms -> ${pass ? 'ok' : 'limit reached'}`);
    if (!pass) break;
    await sleep(1000);
  }
  await ctx.logoutAll();
  const best = [...rows].reverse().find((x) => x.pass);
  const series = (name: string, f: (l: LatencySummary) => number): { name: string; points: Array<[number, number]> } => ({ name, points: rows.map((x) => [x.offered, f(x.latency)]) });
  return {
    summary: { users: r.ok, maxSustainedRate: best?.offered ?? 0, deliveredAtMax: best?.deliveredRate ?? 0, p50AtMaxMs: best?.latency.p50Ms ?? null, p99AtMaxMs: best?.latency.p99Ms ?? null, firstFailingRate: rows.find((x) => !x.pass)?.offered ?? null },
    details: { steps: rows, loginLatency: r.latency, loginErrors: r.errors },
    svg: lineChart({ title: `chat latency vs offered rate — ${o.target} (${r.ok} users)`, xLabel: 'offered msgs/s (log)', yLabel: 'latency (ms, log)', logX: true, logY: true },
      [series('p50', (l) => l.p50Ms), series('p99', (l) => l.p99Ms), series('p99.9', (l) => l.p999Ms)]),
  };
}
