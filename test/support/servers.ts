// Real infrastructure for tests: redis-server and nats-server on free ports,
// each in its own temp dir. Children never outlive the test process, and
// temp dirs are removed on stop (or at exit at the latest).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const live = new Set<ChildProcess>();
const dirs = new Set<string>();

function cleanup(): void {
  for (const p of live) p.kill('SIGKILL');
  live.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}
process.on('exit', cleanup);
// 'exit' does not run when a signal kills us (e.g. the test runner's timeout);
// clean up, then let the signal take its default course.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    cleanup();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

/** A fresh temp dir, removed when the process exits. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  dirs.add(d);
  return d;
}

/** A port that was free a moment ago (the OS picks it; a race is unlikely in tests). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface Spawned {
  port: number;
  url: string;
  /** SIGTERM, wait for exit, remove the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL (a crash); the temp dir stays for restart(). */
  kill(): Promise<void>;
  /** Stop if running, then start again on the same port and dir. */
  restart(): Promise<void>;
}

/** One probe connection: resolves true once `expect` shows up in what the server sends. */
function probe(port: number, send: string, expect: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host: '127.0.0.1' });
    let got = '';
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => { if (send) sock.write(send); });
    sock.on('data', (d) => { got += d.toString('latin1'); if (got.includes(expect)) done(true); });
    sock.on('close', () => done(false));
  });
}

function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => p.once('exit', () => resolve()));
}

async function spawnServer(opts: {
  name: string; cmd: string; port: number; url: string; dir: string;
  args: string[]; ready: () => Promise<boolean>;
}): Promise<Spawned> {
  let proc: ChildProcess | null = null;

  const launch = async (): Promise<void> => {
    mkdirSync(opts.dir, { recursive: true });
    const p = spawn(opts.cmd, opts.args, { cwd: opts.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    proc = p;
    live.add(p);
    // Keep the tail of the output for a useful error; reading also keeps the pipes from filling.
    let out = '';
    const keep = (d: Buffer) => { out = (out + d.toString()).slice(-4000); };
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    const failed: { error?: Error } = {};
    p.once('error', (e) => { failed.error = e; });
    p.once('exit', () => live.delete(p));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (failed.error) throw new Error(`${opts.name}: cannot start ${opts.cmd}: ${failed.error.message}`);
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${opts.name} exited during startup:\n${out}`);
      if (await opts.ready()) return;
      if (Date.now() > deadline) {
        p.kill('SIGKILL');
        throw new Error(`${opts.name} not ready on port ${opts.port} after 15s:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    proc = null;
    if (!p) return;
    p.kill(signal);
    const t = setTimeout(() => p.kill('SIGKILL'), 5_000); // a stuck shutdown must not hang the suite
    await exited(p);
    clearTimeout(t);
  };

  await launch();
  return {
    port: opts.port,
    url: opts.url,
    async stop() {
      await halt('SIGTERM');
      rmSync(opts.dir, { recursive: true, force: true });
      dirs.delete(opts.dir);
    },
    kill: () => halt('SIGKILL'),
    async restart() { await halt('SIGTERM'); await launch(); },
  };
}

/** redis-server without persistence, on a free port. */
export async function startRedis(): Promise<Spawned> {
  const port = await freePort();
  const dir = tempDir('parley-redis');
  return spawnServer({
    name: 'redis-server', cmd: 'redis-server', port, dir, url: `redis://127.0.0.1:${port}`,
    args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    ready: () => probe(port, 'PING\r\n', '+PONG'),
  });
}

/** nats-server on a free port; with JetStream its store lives in the temp dir (kept across restart). */
export async function startNats(opts: { jetstream?: boolean } = {}): Promise<Spawned> {
  const port = await freePort();
  const dir = tempDir('parley-nats');
  return spawnServer({
    name: 'nats-server', cmd: 'nats-server', port, dir, url: `nats://127.0.0.1:${port}`,
    args: ['-a', '127.0.0.1', '-p', String(port), ...(opts.jetstream ? ['-js', '-sd', dir] : [])],
    // The server greets every client with INFO once it accepts connections.
    ready: () => probe(port, '', 'INFO '),
  });
}
