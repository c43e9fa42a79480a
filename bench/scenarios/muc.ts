// muc: one room of N occupants on conference.<domain> (bench/lib/muc.ts),
// occupants spread over the target's c2s listeners, --muc-senders of them
// posting groupchat messages at --muc-rate for --muc-seconds, every occupant
// timing what it receives. One result per room size: muc-<N>.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { autoBroadcast, PER_WORKER, runRoom } from '../lib/muc.ts';
import type { BenchOptions } from '../lib/options.ts';
import type { RunResult } from '../lib/run.ts';
import { buckets } from '../lib/stats.ts';
import { barChart } from '../lib/svg.ts';

export async function runMuc(o: BenchOptions, n: number, ports: number[]): Promise<RunResult> {
  const startedAt = new Date();
  const t0 = performance.now();
  const broadcast = o.mucBroadcast === 'auto' ? autoBroadcast(n) : o.mucBroadcast;
  const r = await runRoom({
    host: o.host, ports, domain: o.domain, service: `conference.${o.domain}`, prefix: o.usersPrefix, password: o.password,
    first: o.userOffset, occupants: n, rate: o.mucRate, seconds: o.mucSeconds, senders: o.mucSenders, drainSeconds: o.mucDrainSeconds,
    joinTimeoutSeconds: o.mucJoinTimeoutSeconds, broadcast, sourceBase: o.sourceBase, serverPids: o.pids,
    log: (l) => { if (!o.quiet) console.log(l); },
  });
  const name = `muc-${n}`;
  const done = !r.incomplete;
  const summary = {
    occupants: n, joined: r.joined, joinSeconds: r.joinSeconds, incomplete: r.incomplete,
    rate: done ? r.rate : null, sent: done ? r.sent : null, deliveredPerSec: done ? r.deliveredPerSecond : null,
    p50Ms: done ? r.p50Ms : null, p99Ms: done ? r.p99Ms : null, lost: done ? r.lost : null, disconnects: r.disconnects,
  };
  mkdirSync(o.out, { recursive: true });
  const base = join(o.out, `${name}-${o.target}-${startedAt.toISOString().replace(/[:.]/g, '-')}`);
  const { hist, ...details } = r;
  const result: RunResult = {
    scenario: name, target: o.target, startedAt: startedAt.toISOString(), options: o,
    generator: { workers: Math.ceil(n / PER_WORKER), workerMode: 'process', cpuPct: r.generatorCpuPct, serverCpuPct: r.serverCpuPct, wallMs: Math.round(performance.now() - t0), loadavg1: Math.round(loadavg()[0] * 100) / 100 },
    summary, details: { ...details, ports, histogram: buckets(hist) }, files: { json: `${base}.json`, svg: `${base}.svg` },
  };
  writeFileSync(result.files.json, JSON.stringify(result, null, 2) + '\n');
  writeFileSync(result.files.svg, barChart({ title: `muc latency, send to receipt — ${o.target} (${n} occupants, ${r.rate} msgs/s)`, xLabel: 'latency (ms, log)', yLabel: 'deliveries', logX: true }, buckets(hist), 'deliveries'));
  console.log(`${name} on ${o.target}: ${Object.entries(summary).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  console.log(`generator cpu ${r.generatorCpuPct}%${r.serverCpuPct === null ? '' : `, server cpu ${r.serverCpuPct}%`} during the messages; wrote ${result.files.json} and .svg`);
  return result;
}
