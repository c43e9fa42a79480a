// Parley processes as real children (`node bin/parley.mjs start --config
// FILE`), so SIGKILL and SIGSTOP are the real thing. Each writes its stdout
// and stderr straight into a file of the run's directory (no pipe: a stopped
// test process can't stall a child, and the log is there to read after a
// crash); none outlives the test process.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const children = new Set<ChildProcess>();

function killAll(): void {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killAll();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

export type Role = 'c2s' | 'session';

export interface ParleyProcess {
  readonly nodeId: string;
  readonly role: Role;
  readonly logFile: string;
  /** host:port of the c2s TCP listener (c2s only), read from the process's `started` line. */
  readonly c2s?: { host: string; port: number };
  /** Port of its /metrics (0: none), read from the same line. */
  readonly metricsPort: number;
  readonly pid: number;
  alive(): boolean;
  /** The process's output so far. */
  log(): string;
  /** The last `lines` lines of it. */
  tail(lines?: number): string;
  signal(sig: NodeJS.Signals): void;
  /** SIGKILL (SIGCONT first would not matter: a stopped process dies too) and wait for the exit. */
  kill(): Promise<void>;
}

export interface StartOptions {
  nodeId: string;
  role: Role;
  dir: string;
  /** The configuration, without nodeId/role (added here). */
  config: Record<string, unknown>;
  /** Wraps the command (e.g. to run it in a network namespace). */
  wrap?: (argv: string[]) => string[];
  readyTimeoutMs?: number;
}

/** Start one process and wait for its `started` line. */
export async function startParley(o: StartOptions): Promise<ParleyProcess> {
  const file = join(o.dir, `${o.nodeId}.yaml`);
  const logFile = join(o.dir, `${o.nodeId}.log`);
  writeFileSync(file, stringify({ nodeId: o.nodeId, role: o.role, ...o.config }));
  const fd = openSync(logFile, 'a');
  const argv = [process.execPath, join(ROOT, 'bin/parley.mjs'), 'start', '--config', file];
  const [cmd, ...args] = o.wrap ? o.wrap(argv) : argv;
  // The children read their settings from the file alone.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  children.add(child);
  let exit: string | undefined;
  child.once('exit', (code, sig) => { exit = sig ?? `code ${code}`; children.delete(child); });
  child.once('error', (e) => { exit = `spawn error: ${e.message}`; });
  const log = () => { try { return readFileSync(logFile, 'utf8'); } catch { return ''; } };
  const tail = (n = 40) => log().split('\n').slice(-n - 1).join('\n');
  const deadline = Date.now() + (o.readyTimeoutMs ?? 60_000);
  let started: RegExpExecArray | null = null;
  while (!started) {
    if (exit) throw new Error(`${o.nodeId} exited during start-up (${exit}):\n${tail()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${o.nodeId} not started after ${(o.readyTimeoutMs ?? 60_000) / 1000} s:\n${tail()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
    started = /server: started [^\n]*/.exec(log());
  }
  const listen = / c2s=([\d.]+):(\d+)/.exec(started[0]);
  const metrics = / metrics=[\d.]+:(\d+)/.exec(started[0]);
  return {
    nodeId: o.nodeId,
    role: o.role,
    logFile,
    c2s: listen ? { host: listen[1], port: Number(listen[2]) } : undefined,
    metricsPort: metrics ? Number(metrics[1]) : 0,
    pid: child.pid!,
    alive: () => exit === undefined,
    log,
    tail,
    signal: (sig) => { if (exit === undefined) child.kill(sig); },
    async kill() {
      if (exit !== undefined) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
  };
}
