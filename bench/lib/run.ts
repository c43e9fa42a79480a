// Runs one scenario against one target: starts the workers, prints a progress
// line per second, writes bench/results/<scenario>-<target>-<time>.{json,svg}.
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { BenchOptions } from './options.ts';
import { Pool } from './pool.ts';
import { CpuMeter } from './proc.ts';
import type { LoginReply, StepReply } from './protocol.ts';
import { mergeHists, summarize, type Histogram, type LatencySummary } from './stats.ts';

export type Figure = number | string | null;

export interface ScenarioOutput {
  /** Headline figures, compared across targets by compare.ts. */
  summary: Record<string, Figure>;
  details: unknown;
  svg: string;
}

export interface RunResult {
  scenario: string;
  target: string;
  startedAt: string;
  options: BenchOptions;
  /** loadavg1 at the end: a busy machine (other jobs) explains outliers on a 2-core box. */
  generator: { workers: number; workerMode: string; cpuPct: number; serverCpuPct: number | null; wallMs: number; loadavg1: number };
  summary: Record<string, Figure>;
  details: unknown;
  files: { json: string; svg: string };
}

export class Ctx {
  readonly cpu: CpuMeter;
  constructor(readonly o: BenchOptions, readonly pool: Pool) {
    this.cpu = new CpuMeter(o.pids, () => pool.childPids());
  }

  log(line: string): void { if (!this.o.quiet) console.log(line); }

  /** Prints `line()` once a second until the returned stop function is called. */
  progress(label: string, line: (elapsedS: number) => string): () => void {
    const t0 = performance.now();
    const meter = new CpuMeter(this.o.pids, () => this.pool.childPids());
    const timer = setInterval(() => {
      const { generatorPct, serverPct } = meter.read();
      meter.start();
      const s = Math.round((performance.now() - t0) / 1000);
      this.log(`[${label} ${s}s] ${line(s)} | cpu gen ${generatorPct}%${serverPct === null ? '' : ` srv ${serverPct}%`}`);
    }, 1000);
    return () => clearInterval(timer);
  }

  /**
   * Logs in users offset..offset+n-1, split in contiguous blocks (chat pairs stay within a worker). `saltOnly`: each
   * stream stops after the server's first SCRAM challenge, once the client has cached that account's salted password
   * (PLAIN: right after the features); no account logs in, so no server keeps anything of a logged-in session.
   */
  async loginAll(label: string, n = this.o.users, saltOnly = false): Promise<{ ok: number; failed: number; errors: string[]; hist: Histogram; latency: LatencySummary; elapsedMs: number; perWorker: number[] }> {
    const W = this.pool.size;
    const per = Math.ceil(n / W);
    let lastOnline = 0;
    const stop = this.progress(label, () => {
      const t = this.pool.total();
      const line = `online ${t.online}/${n} failed ${t.failed} (+${t.online - lastOnline}/s)`;
      lastOnline = t.online;
      return line;
    });
    const t0 = performance.now();
    const replies = await this.pool.all<LoginReply>((i) => ({
      type: 'login',
      users: Array.from({ length: Math.max(0, Math.min(per, n - i * per)) }, (_, k) => this.o.userOffset + i * per + k),
      concurrency: Math.max(1, Math.ceil(this.o.concurrency / W)),
      roster: this.o.roster, presence: this.o.presence, timeoutMs: this.o.loginTimeoutMs, smRequestEvery: this.o.sm ? this.o.smRequestEvery : 0, saltOnly,
    }));
    const elapsedMs = performance.now() - t0;
    stop();
    const hist = mergeHists(replies.map((r) => r.hist));
    const errors = [...new Set(replies.flatMap((r) => r.errors))];
    const out = { ok: sum(replies.map((r) => r.ok)), failed: sum(replies.map((r) => r.failed)), errors, hist, latency: summarize(hist), elapsedMs, perWorker: replies.map((r) => r.ok) };
    this.log(`${label}: ${out.ok} ${saltOnly ? 'salts cached' : 'logged in'}, ${out.failed} failed in ${(elapsedMs / 1000).toFixed(1)} s; latency p50 ${out.latency.p50Ms} ms p99 ${out.latency.p99Ms} ms`);
    for (const e of errors) this.log(`  error: ${e}`);
    return out;
  }

  async logoutAll(): Promise<void> { await this.pool.all(() => ({ type: 'logout' })); }

  /** Merges per-worker step replies. */
  static mergeSteps(r: StepReply[]): Omit<StepReply, 'hist' | 'type' | 'ackHist' | 'requestHist'> & { latency: LatencySummary; hist: Histogram; ackLatency: LatencySummary; requestLatency: LatencySummary } {
    const hist = mergeHists(r.map((x) => x.hist));
    const f = (k: 'sent' | 'skipped' | 'received' | 'late' | 'misrouted' | 'self' | 'smSent' | 'acked'): number => sum(r.map((x) => x[k]));
    return {
      sent: f('sent'), skipped: f('skipped'), received: f('received'), late: f('late'), misrouted: f('misrouted'), self: f('self'), smSent: f('smSent'), acked: f('acked'),
      sendMs: Math.max(...r.map((x) => x.sendMs)), spanMs: Math.max(...r.map((x) => x.spanMs)), latency: summarize(hist), hist,
      ackLatency: summarize(mergeHists(r.map((x) => x.ackHist))), requestLatency: summarize(mergeHists(r.map((x) => x.requestHist))),
    };
  }
}

export const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type Scenario = (ctx: Ctx) => Promise<ScenarioOutput>;

export async function runScenario(name: string, scenario: Scenario, o: BenchOptions): Promise<RunResult> {
  const startedAt = new Date();
  const ws = o.transport === 'ws';
  const pool = await Pool.start(Array.from({ length: o.workers }, (_, i) => ({
    type: 'init' as const, id: i,
    endpoint: { host: o.host, port: o.port, localAddress: `127.0.0.${o.sourceBase + i}`, ...(ws ? { wsUrl: o.wsUrl } : {}) },
    domain: o.domain, prefix: o.usersPrefix, password: o.password, mech: o.mech,
  })), o.workerMode);
  if (o.workerMode === 'thread' && o.users > 19_000) console.warn('warning: threads share one descriptor table (ulimit -n); use --worker-mode process beyond ~19k connections');
  const ctx = new Ctx(o, pool);
  try {
    const out = await scenario(ctx);
    const cpu = ctx.cpu.read();
    mkdirSync(o.out, { recursive: true });
    const base = join(o.out, `${name}-${o.target}-${startedAt.toISOString().replace(/[:.]/g, '-')}`);
    const result: RunResult = {
      scenario: name, target: o.target, startedAt: startedAt.toISOString(), options: o,
      generator: { workers: o.workers, workerMode: o.workerMode, cpuPct: cpu.generatorPct, serverCpuPct: cpu.serverPct, wallMs: cpu.wallMs, loadavg1: Math.round(loadavg()[0] * 100) / 100 },
      summary: out.summary, details: out.details, files: { json: `${base}.json`, svg: `${base}.svg` },
    };
    writeFileSync(result.files.json, JSON.stringify(result, null, 2) + '\n');
    writeFileSync(result.files.svg, out.svg);
    console.log(`${name} on ${o.target}: ${Object.entries(out.summary).map(([k, v]) => `${k}=${v}`).join(' ')}`);
    console.log(`generator cpu ${cpu.generatorPct}% of a core over ${(cpu.wallMs / 1000).toFixed(1)} s${cpu.serverPct === null ? '' : `, server cpu ${cpu.serverPct}%`}; wrote ${result.files.json} and .svg`);
    return result;
  } finally {
    pool.close();
  }
}
