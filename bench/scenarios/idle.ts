// idle: C authenticated, available connections that then stay silent. The
// server's RSS (sum over --pids) before and after gives bytes per connection.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { type Ctx, type ScenarioOutput, sleep } from '../lib/run.ts';
import { rssBytes } from '../lib/proc.ts';
import { lineChart } from '../lib/svg.ts';

export async function idle(ctx: Ctx): Promise<ScenarioOutput> {
  const { pids, settleSeconds, holdSeconds } = ctx.o;
  if (!pids.length) ctx.log('idle: no --pids given, server memory will not be measured');
  const rss = (): number => (pids.length ? rssBytes(pids) : 0);
  // A server just started is still allocating (Erlang schedulers, Lua modules): let it settle first.
  await sleep(settleSeconds * 1000);
  const before = rss();
  const beforeEach = pids.map((p) => rssBytes([p]));
  const t0 = performance.now();
  const samples: Array<[number, number]> = [[0, before / 2 ** 20]];
  const sampler = setInterval(() => samples.push([(performance.now() - t0) / 1000, rss() / 2 ** 20]), 1000);
  const r = await ctx.loginAll('idle connect');
  const online = (): number => ctx.pool.total().online;
  const stop = ctx.progress('idle hold', () => `online ${online()} rss ${(rss() / 2 ** 20).toFixed(1)} MiB`);
  await sleep(settleSeconds * 1000);
  const after = rss();
  const afterEach = pids.map((p) => rssBytes([p]));
  await sleep(holdSeconds * 1000);
  const end = rss();
  const stillOnline = online();
  stop();
  clearInterval(sampler);
  await ctx.logoutAll();
  const perConn = r.ok ? Math.round((after - before) / r.ok) : null;
  // Per process (a cluster's roles): `name bytes` each, named after the process's configuration file or command.
  const perProcess = r.ok ? pids.map((p, i) => `${processName(p)} ${Math.round((afterEach[i] - beforeEach[i]) / r.ok)}`).join(', ') : null;
  return {
    summary: { connections: r.ok, failed: r.failed, bytesPerConn: pids.length ? perConn : null, bytesPerConnEach: pids.length > 1 ? perProcess : null, rssBeforeMiB: mib(before), rssAfterMiB: mib(after), rssEndMiB: mib(end), droppedDuringHold: r.ok - stillOnline },
    details: { loginLatency: r.latency, errors: r.errors, rssSamplesMiB: samples },
    svg: lineChart({ title: `server RSS — ${ctx.o.target} (${r.ok} idle connections)`, xLabel: 'seconds', yLabel: 'RSS (MiB)' }, [{ name: 'RSS', points: samples }]),
  };
}

/** The process's configuration file's base name (Parley's roles), else its command. */
function processName(pid: number): string {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const config = args[args.indexOf('--config') + 1];
    return args.includes('--config') && config ? basename(config).replace(/\.\w+$/, '') : basename(args[0]);
  } catch {
    return String(pid);
  }
}

const mib = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;
