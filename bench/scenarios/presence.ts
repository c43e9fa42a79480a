// presence: every online user sends presence changes (status carries a token)
// at an aggregate --rate. Counts every notification that comes back — the
// sender's own echo always, roster contacts' copies when rosters are populated
// (see --roster-setup) — and their latency.
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { Ctx, ScenarioOutput } from '../lib/run.ts';
import { Ctx as C } from '../lib/run.ts';
import type { StepReply } from '../lib/protocol.ts';
import { buckets } from '../lib/stats.ts';
import { barChart } from '../lib/svg.ts';

/** What a --roster-setup module's default export receives. */
export interface RosterSetupContext { domain: string; prefix: string; users: number[]; password: string }
export type RosterSetup = (ctx: RosterSetupContext) => Promise<void>;

export async function presence(ctx: Ctx): Promise<ScenarioOutput> {
  const o = ctx.o;
  if (o.rosterSetup) {
    const mod = (await import(pathToFileURL(resolve(o.rosterSetup)).href)) as { default: RosterSetup };
    await mod.default({ domain: o.domain, prefix: o.usersPrefix, password: o.password, users: Array.from({ length: o.users }, (_, i) => o.userOffset + i) });
  }
  const r = await ctx.loginAll('presence login');
  const online = r.ok;
  let last = ctx.pool.total();
  const stop = ctx.progress(`presence ${o.rate}/s`, () => {
    const n = ctx.pool.total();
    const line = `sent ${n.sent - last.sent}/s notifications ${n.received - last.received}/s`;
    last = n;
    return line;
  });
  const replies = await ctx.pool.all<StepReply>((i) => ({ type: 'presence', step: 0, rate: (o.rate * r.perWorker[i]) / Math.max(1, online), durationMs: o.seconds * 1000, timeoutMs: o.lossTimeoutMs }));
  stop();
  await ctx.logoutAll();
  const m = C.mergeSteps(replies);
  const secs = m.sendMs / 1000;
  return {
    summary: { users: r.ok, sentPerSec: secs ? Math.round(m.sent / secs) : 0, notificationsPerSec: secs ? Math.round(m.received / secs) : 0, fanOut: m.sent ? Math.round((m.received / m.sent) * 100) / 100 : 0, selfEchoes: m.self, late: m.late, p50Ms: m.latency.p50Ms, p99Ms: m.latency.p99Ms },
    details: { sent: m.sent, received: m.received, skipped: m.skipped, latency: m.latency, histogram: buckets(m.hist), loginLatency: r.latency },
    svg: barChart({ title: `presence notification latency — ${o.target}`, xLabel: 'latency (ms, log)', yLabel: 'notifications', logX: true }, buckets(m.hist), 'notifications'),
  };
}
