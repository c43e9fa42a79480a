// login: N users connect, authenticate, bind, fetch the roster and send initial
// presence, with at most --concurrency logins in flight — after an unmeasured
// pass that fills the clients' cache of salted passwords without logging in, so
// that no server starts the measured pass holding a logged-in account's state.
import { cpuMs } from '../lib/proc.ts';
import type { Ctx, ScenarioOutput } from '../lib/run.ts';
import { buckets } from '../lib/stats.ts';
import { barChart } from '../lib/svg.ts';

export async function login(ctx: Ctx): Promise<ScenarioOutput> {
  // A first, unmeasured pass: clients keep the SCRAM salted password of an account (RFC 5802 §5.1 suggests it),
  // so the measured pass times the server, not the generator's PBKDF2 — whatever salts each server chose. Each
  // stream of that pass ends at the first challenge: every server has read each account's credentials once, and
  // none has a session, an account actor or a roster in memory from it.
  await ctx.loginAll('salt warm-up', ctx.o.users, true);
  const pids = ctx.o.pids;
  const cpu0 = pids.length ? cpuMs(pids) : 0;
  const r = await ctx.loginAll('login');
  // The servers' CPU time per login: what a login costs, whatever else the machine is doing (unlike the rate).
  const serverCpuMsPerLogin = pids.length && r.ok ? Math.round(((cpuMs(pids) - cpu0) / r.ok) * 1000) / 1000 : null;
  await ctx.logoutAll();
  const rate = Math.round((r.ok / (r.elapsedMs / 1000)) * 10) / 10;
  return {
    summary: { loginsPerSec: rate, serverCpuMsPerLogin, warmUp: 'SCRAM salts only, no login', p50Ms: r.latency.p50Ms, p90Ms: r.latency.p90Ms, p99Ms: r.latency.p99Ms, ok: r.ok, failed: r.failed },
    details: { elapsedMs: Math.round(r.elapsedMs), latency: r.latency, errors: r.errors, histogram: buckets(r.hist) },
    svg: barChart({ title: `login latency — ${ctx.o.target} (${r.ok} users, ${rate}/s)`, xLabel: 'latency (ms, log)', yLabel: 'logins', logX: true }, buckets(r.hist), 'logins'),
  };
}
