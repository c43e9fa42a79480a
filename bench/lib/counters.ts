// Server-side counters read around a step, to divide by the messages sent in
// it: Parley's bus messages (parley_bus_published_total, summed over every
// process's /metrics) and Redis commands (INFO commandstats, per command).
// Everything the servers do meanwhile is included (heartbeats, shard lease
// renewals: on a cluster thousands of Redis commands a second of their own),
// so a background rate is measured while nothing is sent and taken off too.
import net from 'node:net';

export interface ServerCounters {
  /** Bus messages published, all processes; null without --metrics-urls. */
  bus: number | null;
  /** Calls per Redis command (without the INFO that read them); null without --redis. */
  redis: Record<string, number> | null;
  /** Redis' own CPU time (used_cpu_user + used_cpu_sys), ms; null without --redis. */
  redisCpuMs: number | null;
}

export async function busPublished(urls: readonly string[]): Promise<number> {
  let total = 0;
  for (const u of urls) {
    const res = await fetch(u, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`${u}: HTTP ${res.status}`);
    const m = /^parley_bus_published_total (\S+)$/m.exec(await res.text());
    if (!m) throw new Error(`${u}: no parley_bus_published_total`);
    total += Number(m[1]);
  }
  return total;
}

/** `INFO cpu commandstats` over one short-lived connection: calls per command and Redis' CPU time. */
export async function redisInfo(hostPort: string, timeoutMs = 5000): Promise<{ commands: Record<string, number>; cpuMs: number }> {
  const text = await redisInfoText(hostPort, 'cpu commandstats', timeoutMs);
  const cpu = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(text)?.[1] ?? 0);
  return { commands: parseCommandStats(text), cpuMs: (cpu('used_cpu_user') + cpu('used_cpu_sys')) * 1000 };
}

/** Redis' `used_memory` (bytes its allocator holds for data and buffers) from `INFO memory`. */
export async function redisUsedMemory(hostPort: string, timeoutMs = 5000): Promise<number> {
  const text = await redisInfoText(hostPort, 'memory', timeoutMs);
  const m = /^used_memory:(\d+)/m.exec(text);
  if (!m) throw new Error(`redis ${hostPort}: no used_memory in INFO memory`);
  return Number(m[1]);
}

/** `INFO <sections>` over one short-lived connection (inline command, RESP bulk reply). */
function redisInfoText(hostPort: string, sections: string, timeoutMs: number): Promise<string> {
  const i = hostPort.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`redis ${hostPort}: no answer to INFO in ${timeoutMs} ms`)); }, timeoutMs);
    let buf = Buffer.alloc(0);
    sock.on('connect', () => sock.write(`INFO ${sections}\r\n`));
    sock.on('error', (e) => { clearTimeout(timer); reject(new Error(`redis ${hostPort}: ${e.message}`)); });
    sock.on('data', (b: Buffer) => {
      buf = Buffer.concat([buf, b]);
      const nl = buf.indexOf('\r\n');
      if (nl < 0) return;
      if (buf[0] !== 0x24) { clearTimeout(timer); sock.destroy(); reject(new Error(`redis ${hostPort}: ${buf.toString('utf8', 0, nl)}`)); return; }
      const len = Number(buf.toString('latin1', 1, nl));
      if (buf.length < nl + 2 + len) return;
      clearTimeout(timer);
      sock.end();
      resolve(buf.toString('utf8', nl + 2, nl + 2 + len));
    });
  });
}

/** `cmdstat_hset:calls=12,usec=…` lines → { hset: 12 }, leaving out INFO itself. */
export function parseCommandStats(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (m[1] !== 'info') out[m[1]] = Number(m[2]);
  return out;
}

export async function readCounters(metricsUrls: readonly string[], redis: string): Promise<ServerCounters> {
  const [bus, info] = await Promise.all([
    metricsUrls.length ? busPublished(metricsUrls) : Promise.resolve(null),
    redis ? redisInfo(redis) : Promise.resolve(null),
  ]);
  return { bus, redis: info?.commands ?? null, redisCpuMs: info?.cpuMs ?? null };
}

/** Bus messages and Redis commands a second while nothing is sent (leases, heartbeats): the background to take off. */
export interface Background { busPerSec: number | null; redisPerSec: Record<string, number> | null }

export async function measureBackground(metricsUrls: readonly string[], redis: string, ms: number): Promise<Background> {
  const a = await readCounters(metricsUrls, redis);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const b = await readCounters(metricsUrls, redis);
  const secs = (performance.now() - t0) / 1000;
  const busPerSec = a.bus !== null && b.bus !== null ? (b.bus - a.bus) / secs : null;
  const redisPerSec = a.redis && b.redis ? Object.fromEntries(Object.entries(b.redis).map(([k, v]) => [k, (v - (a.redis?.[k] ?? 0)) / secs]).filter(([, v]) => (v as number) > 0)) : null;
  return { busPerSec, redisPerSec };
}

export interface PerMessage {
  busPerMsg: number | null; redisPerMsg: number | null;
  /** The same, less the background for the step's duration. */
  busNetPerMsg: number | null; redisNetPerMsg: number | null;
  /** The busiest Redis commands, net of the background, per message. */
  redisTop: Record<string, number> | null;
  /** Redis' CPU time per message, µs (background included). */
  redisCpuUsPerMsg: number | null;
}

/** What happened between two readings `secs` apart, per `per` messages: in all, and net of the background. */
export function perMessage(a: ServerCounters, b: ServerCounters, per: number, secs: number, bg: Background): PerMessage {
  const r = (x: number): number => Math.round((x / Math.max(1, per)) * 1000) / 1000;
  const out: PerMessage = { busPerMsg: null, redisPerMsg: null, busNetPerMsg: null, redisNetPerMsg: null, redisTop: null, redisCpuUsPerMsg: null };
  if (a.redisCpuMs !== null && b.redisCpuMs !== null) out.redisCpuUsPerMsg = Math.round(((b.redisCpuMs - a.redisCpuMs) * 1000) / Math.max(1, per));
  if (a.bus !== null && b.bus !== null) {
    out.busPerMsg = r(b.bus - a.bus);
    out.busNetPerMsg = r(b.bus - a.bus - (bg.busPerSec ?? 0) * secs);
  }
  if (a.redis && b.redis) {
    const names = new Set([...Object.keys(a.redis), ...Object.keys(b.redis)]);
    const delta = [...names].map((k) => [k, (b.redis?.[k] ?? 0) - (a.redis?.[k] ?? 0)] as const);
    const net = delta.map(([k, v]) => [k, v - (bg.redisPerSec?.[k] ?? 0) * secs] as const).sort((x, y) => y[1] - x[1]);
    out.redisPerMsg = r(delta.reduce((n, [, v]) => n + v, 0));
    out.redisNetPerMsg = r(net.reduce((n, [, v]) => n + v, 0));
    out.redisTop = Object.fromEntries(net.slice(0, 8).filter(([, v]) => r(v) > 0).map(([k, v]) => [k, r(v)]));
  }
  return out;
}
