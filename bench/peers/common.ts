// Shared plumbing for the baseline servers: a private temp directory, a
// foreground child process, waiting for its port, and stopping exactly it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PeerOptions {
  users: number;
  userOffset: number;
  prefix: string;
  password: string;
  domain: string;
  /** c2s port (plain TCP) */
  port: number;
  /** HTTP port for RFC 7395 WebSocket */
  httpPort: number;
  /** Keep the temp directory (config, logs, data) after stop() for inspection. */
  keep: boolean;
  /** c2s listeners, on port, port+1, …: only parley-cluster has more than one (one c2s process each). */
  listeners: number;
  /** Parley only: the checkout whose bin/parley.mjs runs (another commit's worktree, to compare); '' = this one. */
  root: string;
  /** Parley only: serve /metrics (each process on a free port) so bus messages can be counted. */
  metrics: boolean;
  /** Parley only: flags for node before bin/parley.mjs in every server process (e.g. --cpu-prof, not allowed in NODE_OPTIONS). */
  nodeArgs: string[];
}

export const PEER_DEFAULTS: PeerOptions = { users: 2000, userOffset: 1, prefix: 'user', password: 'secret', domain: 'localhost', port: 15222, httpPort: 15280, keep: false, listeners: 1, root: '', metrics: false, nodeArgs: [] };

export interface Started {
  pids: number[]; port: number; /** Every c2s listener (port is the first). */ ports: number[]; wsUrl: string | null; dir: string;
  /** Parley with `metrics`: every process's /metrics. */
  metricsUrls?: string[];
  /** parley-cluster: its Redis, host:port. */
  redis?: string;
}

/** A port nothing listens on now (the kernel's choice); the server binds it a moment later. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

export interface Peer {
  readonly name: string;
  start(): Promise<Started>;
  stop(): Promise<void>;
}

export const makeTempDir = (name: string): string => mkdtempSync(join(tmpdir(), `parley-bench-${name}-`));

export function waitForPort(port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); resolve(); });
      s.once('error', () => {
        s.destroy();
        if (!alive()) reject(new Error(`server exited before listening on ${port}`));
        else if (Date.now() > deadline) reject(new Error(`port ${port} not listening after ${timeoutMs} ms`));
        else setTimeout(attempt, 200);
      });
    };
    attempt();
  });
}

/** Fails early with a clear message instead of benchmarking whatever already listens there. */
export function assertPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', () => reject(new Error(`port ${port} is already in use`)));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve()));
  });
}

/** A foreground server process with its output in dir/stdout.log (or dir/`log`). */
export class Proc {
  readonly child: ChildProcess;
  exited = false;
  constructor(cmd: string, args: string[], opts: { dir: string; log?: string; env?: NodeJS.ProcessEnv; onLine?: (line: string) => void }) {
    const log = createWriteStream(join(opts.dir, opts.log ?? 'stdout.log'));
    // `ulimit -n` to the hard limit: the soft default (1024) would cap the server, not the benchmark.
    this.child = spawn('/bin/sh', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"', cmd, ...args], { cwd: opts.dir, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    const onData = (b: Buffer): void => {
      log.write(b);
      if (!opts.onLine) return;
      const lines = (partial + b.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) opts.onLine(l);
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    this.child.on('exit', () => { this.exited = true; log.end(); });
  }
  get pid(): number {
    if (!this.child.pid) throw new Error('server process has no pid');
    return this.child.pid;
  }
  /** SIGTERM, then SIGKILL after `graceMs`: only this child, never by name. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await done;
    clearTimeout(t);
  }
}

export function cleanup(dir: string, keep: boolean): void {
  if (!keep) rmSync(dir, { recursive: true, force: true });
}
