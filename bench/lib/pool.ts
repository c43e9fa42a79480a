// Starts the generator workers and routes commands/replies. Workers are
// threads by default; `process` mode forks children instead, because threads
// share one descriptor table (ulimit -n) and one process tops out below it.
import { Worker } from 'node:worker_threads';
import { fork, type ChildProcess } from 'node:child_process';
import type { Command, Counters, Reply, WorkerInit } from './protocol.ts';

export type WorkerMode = 'thread' | 'process';

interface Handle { post(m: WorkerInit | Command): void; kill(): void; pid: number | null }

export class Pool {
  readonly counters: Counters[];
  private waiting: Array<((r: Reply) => void) | null>;
  /** Set when a worker died: later commands fail at once instead of hanging. */
  private dead: Array<string | null>;
  private constructor(private readonly handles: Handle[]) {
    this.counters = handles.map(() => ({ online: 0, failed: 0, sent: 0, received: 0, disconnects: 0, pings: 0 }));
    this.waiting = handles.map(() => null);
    this.dead = handles.map(() => null);
  }

  /** Resolves once every worker has loaded, so start-up compilation is not counted as load-generation CPU. */
  static async start(inits: WorkerInit[], mode: WorkerMode): Promise<Pool> {
    const url = new URL('../worker.ts', import.meta.url);
    const tsxApi = import.meta.resolve('tsx/esm/api');
    const pool: Pool = new Pool(inits.map((init, i) => {
      const onMessage = (m: Reply): void => pool.receive(i, m);
      if (mode === 'thread') {
        // `--import tsx` does not reach worker threads in Node 20: register tsx's loader inside the worker first.
        const w = new Worker(`import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`, { eval: true });
        w.on('message', onMessage);
        w.on('error', (e) => onMessage({ type: 'fatal', message: e.stack ?? String(e) }));
        w.on('exit', (code) => onMessage({ type: 'fatal', message: `worker ${i} exited with ${code}` }));
        return { post: (m) => w.postMessage(m), kill: () => { w.removeAllListeners('exit'); void w.terminate(); }, pid: null };
      }
      const c: ChildProcess = fork(url, [], { execArgv: ['--import', 'tsx'], serialization: 'advanced', stdio: 'inherit' });
      c.on('message', (m) => onMessage(m as Reply));
      c.on('exit', (code) => onMessage({ type: 'fatal', message: `worker ${i} exited with ${code}` }));
      return { post: (m) => c.send(m), kill: () => { c.removeAllListeners('exit'); c.kill(); }, pid: c.pid ?? null };
    }));
    await pool.all((i) => inits[i]);
    return pool;
  }

  get size(): number { return this.handles.length; }
  childPids(): number[] { return this.handles.flatMap((h) => (h.pid ? [h.pid] : [])); }

  private receive(i: number, m: Reply): void {
    if (m.type === 'progress') { this.counters[i] = m.counters; return; }
    const w = this.waiting[i];
    this.waiting[i] = null;
    if (m.type === 'fatal' && !w) { this.dead[i] ??= m.message; return; }
    w?.(m);
  }

  /** Sends each worker its command and waits for all replies. */
  all<R extends Reply>(cmd: (i: number) => Command | WorkerInit): Promise<R[]> {
    return Promise.all(this.handles.map((h, i) => new Promise<R>((resolve, reject) => {
      const dead = this.dead[i];
      if (dead) { reject(new Error(`worker ${i}: ${dead}`)); return; }
      this.waiting[i] = (r) => (r.type === 'fatal' ? reject(new Error(`worker ${i}: ${r.message}`)) : resolve(r as R));
      h.post(cmd(i));
    })));
  }

  total(): Counters {
    const t: Counters = { online: 0, failed: 0, sent: 0, received: 0, disconnects: 0, pings: 0 };
    for (const c of this.counters) for (const k of Object.keys(t) as Array<keyof Counters>) t[k] += c[k];
    return t;
  }

  close(): void { for (const h of this.handles) h.kill(); }
}
