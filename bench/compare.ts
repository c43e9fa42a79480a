// Runs the chosen scenarios against each baseline and Parley in one go and
// prints headline figures with ratios to ejabberd:
//   node --import tsx bench/compare.ts [--targets ejabberd,prosody,parley] [--scenarios login,idle,chat,muc]
//     [--login-users 500] [--idle-connections 2000] [--chat-users 200] [--presence-users 200] [--muc-sizes 10,1000,20000]
//     [--port 15222] [--http-port 15280] [--keep] [any bench/cli.ts option, e.g. --rates, --step-seconds, --transport ws, --sm]
//     [--root DIR (the Parley targets run that checkout's server)] [--server-counters (Parley: bus messages and Redis commands per chat message)]
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OPTION_SPEC, toOptions } from './lib/options.ts';
import { runScenario, type Figure, type RunResult } from './lib/run.ts';
import { lineChart, type Series } from './lib/svg.ts';
import { SCENARIOS } from './scenarios/index.ts';
import { runMuc } from './scenarios/muc.ts';
import { PEERS } from './peers/index.ts';
import type { Peer, PeerOptions, Started } from './peers/common.ts';
import { isAvailable as parleyAvailable } from './peers/parley.ts';

const { values } = parseArgs({
  options: {
    ...OPTION_SPEC,
    targets: { type: 'string', default: 'ejabberd,prosody,parley,parley-cluster' },
    scenarios: { type: 'string', default: 'login,idle,chat' },
    'login-users': { type: 'string', default: '500' },
    'idle-connections': { type: 'string', default: '2000' },
    'chat-users': { type: 'string', default: '200' },
    'presence-users': { type: 'string', default: '200' },
    'http-port': { type: 'string', default: '15280' },
    keep: { type: 'boolean', default: false },
    root: { type: 'string', default: '' },
    'server-counters': { type: 'boolean', default: false },
  },
});
// compare's own default: shorter chat steps keep three targets within ~10 minutes.
if (!process.argv.includes('--step-seconds')) values['step-seconds'] = '8';

const scenarios = values.scenarios.split(',').filter(Boolean);
for (const s of scenarios) if (!SCENARIOS[s] && s !== 'muc') throw new Error(`unknown scenario ${s}`);
const sizes: Record<string, number> = { login: Number(values['login-users']), idle: Number(values['idle-connections']), chat: Number(values['chat-users']), presence: Number(values['presence-users']) };
const users = Math.max(0, ...scenarios.filter((s) => s !== 'muc').map((s) => sizes[s]));
const mucSizes = toOptions(values, 'muc').mucSizes;
// muc: one fresh server per room size, with that many accounts; Parley's cluster spreads occupants over 2 c2s processes.
const LISTENERS: Record<string, number> = { 'parley-cluster': 2 };
// Each listener is one server process, and a process holds at most `ulimit -Hn` descriptors.
const fdLimit = Number(execFileSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim()) || Infinity;
const port = process.argv.includes('--port') ? Number(values.port) : 15222; // peers listen off 5222 unless told
const httpPort = Number(values['http-port']);

/** Headline metrics: [scenario, key, higher is better]. */
const METRICS: Array<[string, string, boolean]> = [
  ['login', 'loginsPerSec', true], ['login', 'serverCpuMsPerLogin', false], ['login', 'p50Ms', false], ['login', 'p99Ms', false],
  ['idle', 'bytesPerConn', false], ['idle', 'bytesPerConnEach', false], ['idle', 'rssAfterMiB', false],
  ['chat', 'maxSustainedRate', true], ['chat', 'p99AtMaxMs', false],
  ['chat', 'p50AtFirstMs', false], ['chat', 'p99AtFirstMs', false], ['chat', 'serverCpuUsPerMsgAtFirst', false],
  ...(values.sm ? [['chat', 'ackP50AtFirstMs', false], ['chat', 'ackP99AtFirstMs', false]] as Array<[string, string, boolean]> : []),
  ...(values['server-counters'] ? [['chat', 'busPerMsgAtFirst', false], ['chat', 'redisPerMsgAtFirst', false], ['chat', 'redisCpuUsPerMsgAtFirst', false]] as Array<[string, string, boolean]> : []),
  ['presence', 'notificationsPerSec', true], ['presence', 'p99Ms', false],
];

/** The server running now: stopped (only it) on Ctrl-C or SIGTERM before exiting. */
let running: Peer | null = null;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`${sig}: stopping ${running?.name ?? 'nothing'}`);
    void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

const results: Record<string, RunResult[]> = {};
const skipped: Record<string, string> = {};
/** Figures a target could not produce (e.g. a room too large for one process), by target and scenario. */
const notRun: Record<string, Record<string, string>> = {};
for (const target of values.targets.split(',').filter(Boolean)) {
  const make = PEERS[target];
  if (!make) { skipped[target] = 'unknown target'; continue; }
  if (target.startsWith('parley') && !parleyAvailable(values.root)) { skipped[target] = '`parley user bulk-add` not available yet'; console.log(`skipping parley: ${skipped[target]}`); continue; }
  const peer = make({ users, port, httpPort, keep: values.keep, prefix: values['users-prefix'], password: values.password, domain: values.domain, root: values.root, metrics: values['server-counters'] });
  results[target] = [];
  notRun[target] = {};
  // A fresh server (same account count) per scenario: no figure depends on what ran before it.
  for (const s of scenarios) {
    if (s === 'muc') {
      if (!(await mucRuns(target, make))) break;
      continue;
    }
    console.log(`\n=== ${target} ${s}: starting with ${users} accounts`);
    let started: Started;
    try {
      running = peer;
      started = await peer.start();
    } catch (e) {
      await peer.stop(); // whatever it had started, and its temp directory
      console.error(`${target} did not start: ${(e as Error).message}`);
      skipped[target] = 'did not start';
      break;
    }
    try {
      if (values.transport === 'ws' && !started.wsUrl) { skipped[target] = 'no WebSocket endpoint'; break; }
      const o = {
        ...toOptions({ ...values, users: String(sizes[s]) }, s), port: started.port, pids: started.pids, target, wsUrl: started.wsUrl ?? '',
        ...(values['server-counters'] ? { metricsUrls: started.metricsUrls ?? [], redis: started.redis ?? '' } : {}),
      };
      results[target].push(await runScenario(s, SCENARIOS[s], o));
    } catch (e) {
      console.error(`${target} ${s} failed: ${(e as Error).message}`);
    } finally {
      await peer.stop();
    }
  }
  if (skipped[target]) delete results[target];
}

/** Every room size against a fresh server with that many accounts; false when the target would not start. */
async function mucRuns(target: string, make: (o: Partial<PeerOptions>) => Peer): Promise<boolean> {
  const listeners = LISTENERS[target] ?? 1;
  for (const n of mucSizes) {
    const perProcess = Math.ceil(n / listeners);
    if (perProcess + 100 > fdLimit) {
      notRun[target][`muc-${n}`] = `${perProcess} connections on one server process: over the descriptor limit (ulimit -Hn ${fdLimit})`;
      console.log(`\n=== ${target} muc ${n}: not run: ${notRun[target][`muc-${n}`]}`);
      continue;
    }
    console.log(`\n=== ${target} muc ${n}: starting with ${n} accounts, ${listeners} c2s listener(s)`);
    const peer = make({ users: n, port, httpPort, keep: values.keep, prefix: values['users-prefix'], password: values.password, domain: values.domain, listeners, root: values.root });
    let started: Started;
    try {
      running = peer;
      started = await peer.start();
    } catch (e) {
      await peer.stop();
      console.error(`${target} did not start: ${(e as Error).message}`);
      skipped[target] = 'did not start';
      return false;
    }
    try {
      const o = { ...toOptions({ ...values, users: String(n) }, 'muc'), port: started.port, pids: started.pids, target };
      const r = await runMuc(o, n, started.ports);
      results[target].push(r);
      if (r.summary.incomplete) notRun[target][`muc-${n}`] = String(r.summary.incomplete);
    } catch (e) {
      console.error(`${target} muc ${n} failed: ${(e as Error).message}`);
      notRun[target][`muc-${n}`] = `failed: ${(e as Error).message.slice(0, 200)}`;
    } finally {
      await peer.stop();
    }
  }
  return true;
}

const targets = Object.keys(results);
const get = (t: string, s: string, k: string): Figure => results[t].find((r) => r.scenario === s)?.summary[k] ?? null;
const rows: string[][] = [['scenario', 'metric', ...targets.map((t) => (t === 'ejabberd' || !targets.includes('ejabberd') ? t : `${t} (x ejabberd)`))]];
if (scenarios.includes('muc')) {
  for (const n of mucSizes) for (const [k, higher] of [['deliveredPerSec', true], ['p50Ms', false], ['p99Ms', false], ['lost', false], ['joinSeconds', false]] as const) METRICS.push([`muc-${n}`, k, higher]);
}
for (const [s, k, higher] of METRICS) {
  if (!scenarios.includes(s) && !(s.startsWith('muc-') && scenarios.includes('muc'))) continue;
  const base = targets.includes('ejabberd') ? get('ejabberd', s, k) : null;
  rows.push([s, `${k} (${higher ? 'higher' : 'lower'} is better)`, ...targets.map((t) => {
    const v = get(t, s, k);
    if (v === null) return notRun[t]?.[s] ? 'not run*' : '-';
    // Two decimals, or two significant digits below 0.1 (a latency 1,000 times lower is not "0.00x").
    const x = typeof v === 'number' && typeof base === 'number' && base !== 0 ? v / base : null;
    const ratio = x !== null && t !== 'ejabberd' ? ` (${x === 0 || x >= 0.1 ? x.toFixed(2) : x.toPrecision(2)}x)` : '';
    return `${v}${ratio}`;
  })]);
}
rows.push(['all', 'generator cpu % (avg)', ...targets.map((t) => results[t].map((r) => `${r.scenario} ${r.generator.cpuPct}`).join(', '))]);
rows.push(['all', 'server cpu % (avg)', ...targets.map((t) => results[t].map((r) => `${r.scenario} ${r.generator.serverCpuPct ?? '-'}`).join(', '))]);
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const table = rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ')).join('\n');
console.log(`\n${table}`);
for (const [t, why] of Object.entries(skipped)) console.log(`(${t} skipped: ${why})`);
for (const [t, m] of Object.entries(notRun)) for (const [s, why] of Object.entries(m)) console.log(`(* ${t} ${s}: ${why})`);

const stamp = new Date().toISOString().replace(/[:.]/g, '-');
mkdirSync(values.out, { recursive: true });
const base = join(values.out, `compare-${stamp}`);
const summary = Object.fromEntries(targets.map((t) => [t, Object.fromEntries(results[t].map((r) => [r.scenario, r.summary]))]));
writeFileSync(`${base}.json`, JSON.stringify({ startedAt: stamp, users, scenarios, mucSizes, skipped, notRun, summary, table: rows, runs: Object.fromEntries(targets.map((t) => [t, results[t].map((r) => r.files.json)])) }, null, 2) + '\n');
// Chart: chat p99 against offered rate, one line per target.
const series: Series[] = targets.flatMap((t) => {
  const steps = (results[t].find((r) => r.scenario === 'chat')?.details as { steps?: Array<{ offered: number; latency: { p99Ms: number } }> } | undefined)?.steps ?? [];
  return steps.length ? [{ name: `${t} p99`, points: [...steps].sort((a, b) => a.offered - b.offered).map((x): [number, number] => [x.offered, x.latency.p99Ms]) }] : [];
});
writeFileSync(`${base}.svg`, lineChart({ title: 'chat p99 latency vs offered rate', xLabel: 'offered msgs/s (log)', yLabel: 'p99 (ms, log)', logX: true, logY: true }, series));
console.log(`wrote ${base}.json and .svg`);
