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
// of traffic, then at most --drain seconds for the last deliveries.
import { fork, type ChildProcess } from 'node:child_process';
import { connect as tcpConnect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { pack } from 'msgpackr';
import * as hdr from 'hdr-histogram-js';
import { deriveCredentials } from '../libs/auth/credentials.ts';
import { clusterMetric, startCluster, type Cluster } from '../test/support/parley.ts';

const DOMAIN = 'localhost';
const PASSWORD = 'secret';
const SERVICE = `conference.${DOMAIN}`;
const PER_WORKER = 5000;

// ============================================================ worker

interface JoinCmd { type: 'join'; first: number; count: number; ports: number[]; room: string; source: string; owner: boolean; concurrency: number; fields: Record<string, string | string[]> }
interface SendCmd { type: 'send'; rate: number; seconds: number; senders: number }
interface ReportCmd { type: 'report' }
type Cmd = JoinCmd | SendCmd | ReportCmd;
type Reply =
  | { type: 'joined'; ms: number; failed: number }
  | { type: 'sent'; sent: number; firstAt: number; lastAt: number }
  | { type: 'report'; received: number; lastAt: number; hist: string; errors: number }
  | { type: 'fatal'; message: string };

const now = (): number => performance.timeOrigin + performance.now();
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');

class Occupant {
  private sock!: Socket;
  private buf = '';
  private tail = '';
  private joined = false;
  private seen110 = -1;
  constructor(readonly user: string, readonly nick: string, private readonly w: Worker) {}

  open(port: number, source: string, room: string, form: string | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const open = `<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
      let step = 0;
      const timer = setTimeout(() => reject(new Error(`${this.user}: no join within 120 s (step ${step})`)), 120_000);
      this.sock = tcpConnect({ port, host: '127.0.0.1', localAddress: source });
      this.sock.setNoDelay(true);
      this.sock.setEncoding('utf8');
      this.sock.on('error', (e) => { clearTimeout(timer); reject(e); });
      this.sock.on('close', () => { clearTimeout(timer); if (!this.joined) reject(new Error(`${this.user}: closed at step ${step}: ${this.buf.slice(-300)}`)); });
      this.sock.on('connect', () => this.sock.write(open));
      this.sock.on('data', (chunk: string) => {
        if (this.joined) return this.scan(chunk);
        this.buf += chunk;
        if (step === 4 && this.seen110 < 0) {
          // Search only the new part: while joining a big room the buffer fills with others' presence.
          this.seen110 = this.buf.indexOf('code="110"', Math.max(0, this.buf.length - chunk.length - 16));
          if (this.seen110 < 0 && this.buf.length > 1 << 20) this.buf = this.buf.slice(-64);
        }
        if (step === 0 && this.buf.includes('</stream:features>')) {
          step = 1;
          this.buf = '';
          this.sock.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${this.user}\0${PASSWORD}`).toString('base64')}</auth>`);
        } else if (step === 1 && this.buf.includes('<success')) {
          step = 2;
          this.buf = '';
          this.sock.write(open);
        } else if (step === 1 && this.buf.includes('<failure')) {
          clearTimeout(timer);
          reject(new Error(`${this.user}: authentication failed`));
        } else if (step === 2 && this.buf.includes('</stream:features>')) {
          step = 3;
          this.buf = '';
          this.sock.write(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>b</resource></bind></iq>`);
        } else if (step === 3 && this.buf.includes('</iq>')) {
          step = 4;
          this.buf = '';
          this.sock.write(`<presence to="${esc(room)}/${esc(this.nick)}"><x xmlns="http://jabber.org/protocol/muc"><history maxstanzas="0"/></x></presence>`);
        } else if (step === 4 && this.seen110 >= 0) {
          if (this.buf.indexOf('<subject', this.seen110) < 0) return;
          if (form === undefined) {
            step = 6;
          } else {
            step = 5;
            this.buf = '';
            this.sock.write(`<iq type="set" id="cfg" to="${esc(room)}"><query xmlns="http://jabber.org/protocol/muc#owner">${form}</query></iq>`);
            return;
          }
        } else if (step === 4 && this.buf.includes('type="error"', Math.max(0, this.buf.length - chunk.length - 16))) {
          clearTimeout(timer);
          reject(new Error(`${this.user}: join refused: ${this.buf.slice(0, 400)}`));
          return;
        } else if (step === 5 && this.buf.includes('id="cfg"')) {
          if (!this.buf.includes('type="result"')) {
            clearTimeout(timer);
            reject(new Error(`configuration refused: ${this.buf.slice(0, 400)}`));
            return;
          }
          step = 6;
        }
        if (step === 6) {
          clearTimeout(timer);
          this.joined = true;
          const rest = this.buf;
          this.buf = '';
          this.scan(rest);
          resolve();
        }
      });
    });
  }

  /** Only the benchmark bodies matter: one indexOf per chunk in the common case. */
  private scan(chunk: string): void {
    // Answer the server's keepalive pings (an idle receiver is pinged after c2s.pingIntervalSeconds).
    const p = chunk.indexOf('id="c2s-ping-');
    if (p >= 0) this.sock.write(`<iq type="result" id="${chunk.slice(p + 4, chunk.indexOf('"', p + 4))}" to="${DOMAIN}"/>`);
    const s = this.tail + chunk;
    let i = 0;
    for (;;) {
      const a = s.indexOf('<body>B:', i);
      if (a < 0) break;
      const e = s.indexOf('</body>', a);
      if (e < 0) { this.tail = s.slice(a); return; }
      const [ts] = s.slice(a + 8, e).split(':');
      this.w.record(now() - Number(ts));
      i = e + 7;
    }
    if (s.includes('type="error"')) this.w.errors++;
    this.tail = s.length > 16 ? s.slice(-16) : s;
  }

  send(xml: string): void { this.sock.write(xml); }
  close(): void { this.sock.destroy(); }
}

class Worker {
  readonly occupants: Occupant[] = [];
  private readonly hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  received = 0;
  lastAt = 0;
  errors = 0;
  room = '';

  record(ms: number): void {
    this.received++;
    this.lastAt = now();
    this.hist.recordValue(Math.max(1, Math.min(120_000_000, Math.round(ms * 1000))));
  }

  async join(c: JoinCmd): Promise<Reply> {
    const t0 = now();
    this.room = c.room;
    let failed = 0;
    let next = 0;
    const form = c.owner ? formXml(c.fields) : undefined;
    if (c.owner) {
      const o = new Occupant(`muc${c.first}`, `o${c.first}`, this);
      await o.open(c.ports[c.first % c.ports.length], c.source, c.room, form);
      this.occupants.push(o);
      return { type: 'joined', ms: now() - t0, failed };
    }
    await Promise.all(Array.from({ length: Math.min(c.concurrency, c.count) }, async () => {
      while (next < c.count) {
        const i = c.first + next++;
        const o = new Occupant(`muc${i}`, `o${i}`, this);
        try {
          await o.open(c.ports[i % c.ports.length], c.source, c.room, undefined);
          this.occupants.push(o);
        } catch (e) {
          failed++;
          if (failed <= 3) process.stderr.write(`${(e as Error).message}\n`);
        }
      }
    }));
    return { type: 'joined', ms: now() - t0, failed };
  }

  send(c: SendCmd): Promise<Reply> {
    return new Promise((resolve) => {
      const t0 = now();
      let sent = 0;
      const total = Math.round(c.rate * c.seconds);
      const senders = this.occupants.slice(0, Math.max(1, c.senders));
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((now() - t0) / 1000) * c.rate));
        while (sent < due) {
          const s = senders[sent % senders.length];
          s.send(`<message to="${esc(this.room)}" type="groupchat"><body>B:${now()}:${sent}</body></message>`);
          sent++;
        }
        if (sent >= total) {
          clearInterval(tick);
          resolve({ type: 'sent', sent, firstAt: t0, lastAt: now() });
        }
      }, 5);
    });
  }

  report(): Reply {
    return { type: 'report', received: this.received, lastAt: this.lastAt, hist: hdr.encodeIntoCompressedBase64(this.hist), errors: this.errors };
  }
}

function formXml(fields: Record<string, string | string[]>): string {
  let s = '<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>http://jabber.org/protocol/muc#roomconfig</value></field>';
  for (const [k, v] of Object.entries(fields)) s += `<field var="${k}">${(Array.isArray(v) ? v : [v]).map((x) => `<value>${esc(x)}</value>`).join('')}</field>`;
  return `${s}</x>`;
}

function runWorker(): void {
  const w = new Worker();
  process.on('message', (m: Cmd) => {
    const done = (r: Reply) => process.send!(r);
    const fail = (e: unknown) => done({ type: 'fatal', message: e instanceof Error ? e.stack ?? e.message : String(e) });
    if (m.type === 'join') w.join(m).then(done, fail);
    else if (m.type === 'send') w.send(m).then(done, fail);
    else done(w.report());
  });
}

// ============================================================ main

class WorkerHandle {
  private waiting: ((r: Reply) => void) | undefined;
  constructor(readonly child: ChildProcess) {
    child.on('message', (r: Reply) => { const w = this.waiting; this.waiting = undefined; w?.(r); });
    child.on('exit', (code) => this.waiting?.({ type: 'fatal', message: `worker exited with ${code}` }));
  }
  ask<R extends Reply>(c: Cmd): Promise<R> {
    return new Promise((resolve, reject) => {
      this.waiting = (r) => (r.type === 'fatal' ? reject(new Error(r.message)) : resolve(r as R));
      this.child.send(c);
    });
  }
}

interface Result {
  occupants: number;
  broadcast: string;
  joinSeconds: number;
  rate: number;
  sent: number;
  expected: number;
  delivered: number;
  deliveredPerSecond: number;
  lost: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  busPerMessage: number;
}

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

async function runSize(c: Cluster, n: number, o: { seconds: number; rate: number; senders: number; drain: number; broadcast: string; seeded: number }): Promise<Result> {
  if (n > o.seeded) await seedUsers(c, n);
  const ports = c.ports;
  const room = `bench${n}-${Date.now().toString(36)}@${SERVICE}`;
  const roles = o.broadcast === 'all' ? ['moderator', 'participant', 'visitor'] : ['moderator'];
  const fields = {
    'muc#roomconfig_maxusers': String(n + 10),
    'muc#roomconfig_presencebroadcast': roles,
    'muc#maxhistoryfetch': '0',
    'muc#roomconfig_publicroom': '0',
  };
  const workers: WorkerHandle[] = [];
  const count = Math.max(1, Math.ceil(n / PER_WORKER));
  for (let w = 0; w < count; w++) {
    workers.push(new WorkerHandle(fork(new URL(import.meta.url), ['--worker'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })));
  }
  try {
    const t0 = now();
    // The owner creates and configures the room first; then every worker fills its share.
    const owner = await workers[0].ask<Extract<Reply, { type: 'joined' }>>({ type: 'join', first: 0, count: 1, ports, room, source: '127.0.0.10', owner: true, concurrency: 1, fields });
    const joins = [Promise.resolve(owner)];
    for (let w = 0; w < count; w++) {
      const first = w * PER_WORKER + (w === 0 ? 1 : 0);
      const share = Math.min((w + 1) * PER_WORKER, n) - first;
      if (share > 0) joins.push(workers[w].ask({ type: 'join', first, count: share, ports, room, source: `127.0.0.${10 + w}`, owner: false, concurrency: 100, fields }));
    }
    const joined = await Promise.all(joins);
    const failed = joined.reduce((a, j) => a + j.failed, 0);
    if (failed > 0) throw new Error(`${failed} occupants could not join`);
    const joinSeconds = (now() - t0) / 1000;
    await sleep(1000);
    const bus0 = await clusterMetric(c, 'parley_bus_published_total');
    const rate = o.rate || Math.max(1, Math.min(2000, Math.round(40_000 / n)));
    const sent = await workers[0].ask<Extract<Reply, { type: 'sent' }>>({ type: 'send', rate, seconds: o.seconds, senders: o.senders });
    const expected = sent.sent * n;
    // Drain: until everything arrived or nothing arrived for 2 s (bounded by --drain).
    let reports: Extract<Reply, { type: 'report' }>[] = [];
    const deadline = now() + o.drain * 1000;
    let last = -1;
    let still = 0;
    for (;;) {
      await sleep(500);
      reports = await Promise.all(workers.map((w) => w.ask<Extract<Reply, { type: 'report' }>>({ type: 'report' })));
      const got = reports.reduce((a, r) => a + r.received, 0);
      if (got >= expected || now() > deadline) break;
      still = got === last ? still + 1 : 0;
      if (still >= 4) break;
      last = got;
    }
    const busPerMessage = ((await clusterMetric(c, 'parley_bus_published_total')) - bus0) / Math.max(1, sent.sent);
    const delivered = reports.reduce((a, r) => a + r.received, 0);
    const lastAt = Math.max(...reports.map((r) => r.lastAt));
    const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
    for (const r of reports) hist.add(hdr.decodeFromCompressedBase64(r.hist));
    const ms = (q: number) => Math.round(hist.getValueAtPercentile(q) / 100) / 10;
    return {
      occupants: n, broadcast: o.broadcast, joinSeconds: Math.round(joinSeconds * 10) / 10, rate, sent: sent.sent, expected, delivered,
      deliveredPerSecond: Math.round(delivered / Math.max(0.001, (lastAt - sent.firstAt) / 1000)),
      lost: expected - delivered, p50Ms: ms(50), p99Ms: ms(99), maxMs: Math.round(hist.maxValue / 100) / 10,
      busPerMessage: Math.round(busPerMessage * 100) / 100,
    };
  } finally {
    for (const w of workers) w.child.kill('SIGKILL');
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      occupants: { type: 'string', default: '10,1000' },
      seconds: { type: 'string', default: '10' },
      rate: { type: 'string', default: '0' },
      senders: { type: 'string', default: '10' },
      drain: { type: 'string', default: '30' },
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
  const results: Result[] = [];
  let seeded = 0;
  try {
    for (const n of sizes) {
      // Above a few thousand, every join broadcast to everyone is N² presence stanzas: large rooms broadcast moderators only.
      const broadcast = values.broadcast === 'auto' ? (n > 2000 ? 'moderators' : 'all') : values.broadcast!;
      process.stderr.write(`room of ${n} occupants (presence broadcast: ${broadcast})…\n`);
      const r = await runSize(c, n, { seconds: Number(values.seconds), rate: Number(values.rate), senders: Number(values.senders), drain: Number(values.drain), broadcast, seeded });
      seeded = Math.max(seeded, n);
      results.push(r);
      process.stderr.write(`${JSON.stringify(r)}\n`);
    }
  } catch (e) {
    // What the servers said about it.
    for (const p of c.processes) for (const l of p.log.filter((x) => /warn|error/.test(x)).slice(-5)) process.stderr.write(`[${p.nodeId}] ${l}\n`);
    throw e;
  } finally {
    await c.stop();
  }
  if (values.json) {
    console.log(JSON.stringify(results));
    return;
  }
  console.log('occupants  broadcast   join s  msgs/s  sent  delivered/s  lost  p50 ms  p99 ms  max ms  bus/msg');
  for (const r of results) {
    console.log(`${String(r.occupants).padStart(9)}  ${r.broadcast.padEnd(10)}  ${String(r.joinSeconds).padStart(6)}  ${String(r.rate).padStart(6)}  ${String(r.sent).padStart(4)}  ${String(r.deliveredPerSecond).padStart(11)}  ${String(r.lost).padStart(4)}  ${String(r.p50Ms).padStart(6)}  ${String(r.p99Ms).padStart(6)}  ${String(r.maxMs).padStart(6)}  ${String(r.busPerMessage).padStart(7)}`);
  }
}

if (process.argv.includes('--worker')) runWorker();
else main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
