// Multi-user chat load: one room of N occupants spread over 2 c2s processes
// (a real cluster: NATS, Redis, c2s and session processes), senders posting
// at a fixed rate, every occupant timing what it receives.
//
//   node --import tsx bench/muc.ts --occupants 1000
//   node --import tsx bench/muc.ts --occupants 10,1000,20000 --seconds 10
//
// Prints, per room size: join time, messages delivered per second (room
// messages × occupants that got them), p50/p99 latency from send to receipt,
// losses, and bus messages per room message. Connections come from worker
// processes (one process holds fewer than 20k sockets), each from its own
// source address 127.0.0.x. Every run is bounded: a fixed number of seconds
// of traffic, then at most --drain seconds for the last deliveries. The room
// and its occupants are bench/lib/muc.ts, shared with the `muc` scenario of
// bench/compare.ts (which runs the same room against ejabberd and Prosody).
import { parseArgs } from 'node:util';
import { pack } from 'msgpackr';
import { deriveCredentials } from '../libs/auth/credentials.ts';
import { clusterMetric, startCluster, type Cluster } from '../test/support/parley.ts';
import { autoBroadcast, runRoom, type Broadcast, type RoomResult } from './lib/muc.ts';

const DOMAIN = 'localhost';
const PASSWORD = 'secret';
const SERVICE = `conference.${DOMAIN}`;

async function seedUsers(c: Cluster, n: number): Promise<void> {
  const creds = pack(await deriveCredentials(PASSWORD, 4096));
  const empty = new Uint8Array(0);
  for (let i = 0; i < n; i += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, n - i) }, (_, k) => Promise.all([
      c.store.hset(`muc${i + k}@${DOMAIN}`, 'account', 'creds', creds),
      c.store.hset(`$domain:${DOMAIN}`, 'users', `muc${i + k}`, empty),
    ])));
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      occupants: { type: 'string', default: '10,1000' },
      seconds: { type: 'string', default: '10' },
      rate: { type: 'string', default: '0' },
      senders: { type: 'string', default: '10' },
      drain: { type: 'string', default: '30' },
      'join-timeout': { type: 'string', default: '600' },
      broadcast: { type: 'string', default: 'auto' },
      sessions: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
    },
  });
  const sizes = values.occupants!.split(',').map(Number);
  const biggest = Math.max(...sizes);
  process.stderr.write(`starting a cluster: nats, redis, 2 c2s, ${values.sessions} session process(es)\n`);
  const c = await startCluster({
    c2s: 2, session: Number(values.sessions),
    // Production membership timing: the tests' fast TTL (1.5 s) declares a c2s dead when a loaded 2-core box starves it.
    cluster: { heartbeatMs: 1000, memberTtlMs: 5000, handoffTimeoutMs: 10_000 },
    config: {
      log: { level: 'warn' },
      muc: { maxOccupantsLimit: Math.max(100_000, biggest + 100), maxHistory: 0 },
      // Keepalive pings of idle receivers (every minute) would be traffic of their own: out of the way for the run.
      c2s: { maxConnections: 100_000, pingIntervalSeconds: 3600 },
      session: { maxMailbox: 100_000 },
    } as Record<string, Record<string, unknown>>,
  });
  const results: RoomResult[] = [];
  let seeded = 0;
  try {
    for (const n of sizes) {
      const broadcast = values.broadcast === 'auto' ? autoBroadcast(n) : (values.broadcast as Broadcast);
      process.stderr.write(`room of ${n} occupants (presence broadcast: ${broadcast})…\n`);
      if (n > seeded) await seedUsers(c, n);
      seeded = Math.max(seeded, n);
      const r = await runRoom({
        host: '127.0.0.1', ports: c.ports, domain: DOMAIN, service: SERVICE, prefix: 'muc', password: PASSWORD, first: 0, occupants: n,
        rate: Number(values.rate), seconds: Number(values.seconds), senders: Number(values.senders), drainSeconds: Number(values.drain),
        joinTimeoutSeconds: Number(values['join-timeout']), broadcast, sourceBase: 10, serverPids: c.processes.flatMap((p) => (p.child.pid ? [p.child.pid] : [])),
        counter: () => clusterMetric(c, 'parley_bus_published_total'), log: (l) => process.stderr.write(`${l}\n`),
      });
      if (r.incomplete) throw new Error(`room of ${n}: ${r.incomplete}: ${r.errors.join('; ')}`);
      results.push(r);
      const { hist: _h, latency: _l, ...line } = r;
      process.stderr.write(`${JSON.stringify(line)}\n`);
    }
  } catch (e) {
    // What the servers said about it.
    for (const p of c.processes) for (const l of p.log.filter((x) => /warn|error/.test(x)).slice(-5)) process.stderr.write(`[${p.nodeId}] ${l}\n`);
    throw e;
  } finally {
    await c.stop();
  }
  if (values.json) {
    console.log(JSON.stringify(results.map(({ hist: _h, ...r }) => r)));
    return;
  }
  console.log('occupants  broadcast   join s  msgs/s  sent  delivered/s  lost  p50 ms  p99 ms  max ms  bus/msg');
  for (const r of results) {
    console.log(`${String(r.occupants).padStart(9)}  ${r.broadcast.padEnd(10)}  ${String(r.joinSeconds).padStart(6)}  ${String(r.rate).padStart(6)}  ${String(r.sent).padStart(4)}  ${String(r.deliveredPerSecond).padStart(11)}  ${String(r.lost).padStart(4)}  ${String(r.p50Ms).padStart(6)}  ${String(r.p99Ms).padStart(6)}  ${String(r.maxMs).padStart(6)}  ${String(r.counterPerMessage).padStart(7)}`);
  }
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
