// Resource sampling from /proc: the target server's RSS and CPU, the generator's own CPU.
import { readFileSync } from 'node:fs';

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** Resident set size in bytes, summed over pids (VmRSS from /proc/<pid>/status). */
export function rssBytes(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (m) total += Number(m[1]) * 1024;
  }
  return total;
}

/** CPU time (user+system, ms) consumed so far by pids, all threads included. */
export function cpuMs(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime
    } catch { /* process gone */ }
  }
  return total;
}

/** Measures CPU use between start() and read(), as % of one core, for the generator and the target. */
export class CpuMeter {
  private t0 = 0;
  private gen0 = 0;
  private srv0 = 0;
  constructor(private readonly serverPids: readonly number[], private readonly childPids: () => number[]) { this.start(); }
  private gen(): number {
    const u = process.cpuUsage(); // whole process, worker threads included
    return (u.user + u.system) / 1000 + cpuMs(this.childPids());
  }
  start(): void { this.t0 = performance.now(); this.gen0 = this.gen(); this.srv0 = cpuMs(this.serverPids); }
  read(): { generatorPct: number; serverPct: number | null; wallMs: number } {
    const wall = Math.max(1, performance.now() - this.t0);
    return {
      generatorPct: Math.round(((this.gen() - this.gen0) / wall) * 1000) / 10,
      serverPct: this.serverPids.length ? Math.round(((cpuMs(this.serverPids) - this.srv0) / wall) * 1000) / 10 : null,
      wallMs: Math.round(wall),
    };
  }
}
