// What a modern login costs: round trips and server CPU per login for a phone
// that binds a resource and turns on stream management and carbons, three ways:
//   legacy  RFC 6120 SASL (SCRAM-SHA-256), stream restart, bind, <enable/>, carbons iq
//   sasl2   XEP-0388 SASL2 (SCRAM-SHA-256) with XEP-0386 Bind2 enabling both inline
//   fast    SASL2 with a XEP-0484 FAST token (HT-SHA-256-NONE) and Bind2
// Each login waits for every answer before its next step, as a client does;
// a round trip is one such wait (the stream header included). The server is a
// Parley process of its own (bench/peers/parley.ts: embedded mode, plaintext
// on loopback, so TLS, which costs every variant the same, is left out), and
// its CPU is read from /proc around each measured pass. The generator caches
// SCRAM salted passwords, and the FAST tokens are fetched in an unmeasured pass.
//   node --import tsx bench/login-sasl2.ts [--users 300] [--concurrency 8]
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { htInitial } from '../test/support/sasl2.ts';
import { freePort } from '../test/support/servers.ts';
import { cpuMs } from './lib/proc.ts';
import { saslClient } from './lib/scram.ts';
import { parley } from './peers/parley.ts';

const { values } = parseArgs({ options: { users: { type: 'string', default: '300' }, concurrency: { type: 'string', default: '8' } } });
const USERS = Number(values.users);
const CONCURRENCY = Number(values.concurrency);
const DOMAIN = 'localhost';
const PASSWORD = 'secret';
const OPEN = `<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
const SASL2 = 'urn:xmpp:sasl:2';
const BIND2_SM_CARBONS = "<bind xmlns='urn:xmpp:bind:0'><tag>bench</tag><enable xmlns='urn:xmpp:carbons:2'/><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>";

/** One connection: write, then wait for a pattern; each wait is a round trip. */
class Conn {
  private buf = '';
  private waiter: { re: RegExp; resolve: (s: string) => void; reject: (e: Error) => void } | undefined;
  roundTrips = 0;
  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => { this.buf += d; this.check(); });
    socket.on('error', (e) => this.waiter?.reject(e));
  }

  static open(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1' }, () => resolve(new Conn(s)));
      s.once('error', reject);
    });
  }

  private check(): void {
    const w = this.waiter;
    if (!w) return;
    const m = w.re.exec(this.buf);
    if (!m) return;
    this.waiter = undefined;
    const out = this.buf.slice(0, m.index + m[0].length);
    this.buf = this.buf.slice(m.index + m[0].length);
    w.resolve(out);
  }

  ask(data: string, re: RegExp): Promise<string> {
    this.roundTrips++;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${re} in time; have: ${this.buf.slice(0, 500)}`)), 15_000);
      this.waiter = { re, resolve: (s) => { clearTimeout(t); resolve(s); }, reject };
      this.socket.write(data);
      this.check();
    });
  }
}

const text = (out: string, name: string): string => new RegExp(`<${name}[^>]*>([^<]*)</${name}>`).exec(out)?.[1] ?? '';
const FAILED = /<failure|<stream:error/;
function must(out: string, what: string): string {
  if (FAILED.test(out)) throw new Error(`${what}: ${out}`);
  return out;
}

async function legacy(c: Conn, user: string): Promise<void> {
  await c.ask(OPEN, /<\/stream:features>/);
  const sasl = saslClient('SCRAM-SHA-256', user, PASSWORD);
  const ch = must(await c.ask(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>${sasl.initial()}</auth>`, /<\/challenge>|<failure[^]*?<\/failure>/), 'auth');
  const resp = await sasl.challenge(Buffer.from(text(ch, 'challenge'), 'base64'));
  must(await c.ask(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${resp}</response>`, /<\/success>|<success[^>]*\/>|<failure[^]*?<\/failure>/), 'response');
  await c.ask(OPEN, /<\/stream:features>/);
  must(await c.ask("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>", /<\/iq>|<iq [^>]*id="b"[^>]*\/>/), 'bind');
  must(await c.ask("<enable xmlns='urn:xmpp:sm:3' resume='true'/>", /<enabled [^>]*\/>|<failed[^]*?<\/failed>/), 'sm');
  // Stream management is on: the carbons result comes numbered; it is what is waited for.
  must(await c.ask("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>", /<iq [^>]*id="c"[^>]*\/>|<iq [^>]*id="c"[^>]*>[^]*?<\/iq>/), 'carbons');
}

async function sasl2(c: Conn, user: string, extra = ''): Promise<string> {
  await c.ask(OPEN, /<\/stream:features>/);
  const sasl = saslClient('SCRAM-SHA-256', user, PASSWORD);
  const ch = must(await c.ask(`<authenticate xmlns='${SASL2}' mechanism='SCRAM-SHA-256'><initial-response>${sasl.initial()}</initial-response>${extra}${BIND2_SM_CARBONS}</authenticate>`,
    /<\/challenge>|<failure[^]*?<\/failure>/), 'authenticate');
  const resp = await sasl.challenge(Buffer.from(text(ch, 'challenge'), 'base64'));
  return must(await c.ask(`<response xmlns='${SASL2}'>${resp}</response>`, /<\/success>|<failure[^]*?<\/failure>/), 'response');
}

const tokens = new Map<string, { token: string; ua: string }>();

async function fast(c: Conn, user: string): Promise<void> {
  const t = tokens.get(user)!;
  await c.ask(OPEN, /<\/stream:features>/);
  must(await c.ask(`<authenticate xmlns='${SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${htInitial(user, t.token)}</initial-response>`
    + `<user-agent id='${t.ua}'/><fast xmlns='urn:xmpp:fast:0'/>${BIND2_SM_CARBONS}</authenticate>`, /<\/success>|<failure[^]*?<\/failure>/), 'fast');
}

/** Logs every user in with `login`, CONCURRENCY at a time; the connections stay open until `close`. */
async function pass(port: number, pids: number[], login: (c: Conn, user: string) => Promise<unknown>) {
  const conns: Conn[] = [];
  const times: number[] = [];
  let next = 1;
  const cpu0 = cpuMs(pids);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next <= USERS) {
      const user = `user${next++}`;
      const started = performance.now();
      const c = await Conn.open(port);
      await login(c, user);
      times.push(performance.now() - started);
      conns.push(c);
    }
  }));
  const wallMs = performance.now() - t0;
  const cpu = cpuMs(pids) - cpu0;
  times.sort((a, b) => a - b);
  return {
    roundTrips: conns[0].roundTrips,
    serverCpuMsPerLogin: Math.round((cpu / USERS) * 100) / 100,
    p50Ms: Math.round(times[Math.floor(times.length / 2)] * 10) / 10,
    loginsPerSec: Math.round(USERS / (wallMs / 1000)),
    close: async () => {
      for (const c of conns) c.socket.end('</stream:stream>');
      await new Promise((r) => setTimeout(r, 500));
    },
  };
}

const server = parley({ users: USERS, port: await freePort(), httpPort: await freePort() });
const started = await server.start();
try {
  // Unmeasured: each account is read once (its actor loaded, its salts in the generator's cache), and each gets a token.
  const warm = await pass(started.port, started.pids, async (c, user) => {
    const ua = randomUUID();
    const out = await sasl2(c, user, `<user-agent id='${ua}'/><request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>`);
    tokens.set(user, { token: /token="([^"]+)"/.exec(out)![1], ua });
  });
  await warm.close();
  const rows: [string, Awaited<ReturnType<typeof pass>>][] = [];
  for (const [name, login] of [['legacy SASL + bind + SM + carbons', legacy], ['SASL2 + Bind2 (SCRAM-SHA-256)', sasl2], ['SASL2 + Bind2 + FAST (HT-SHA-256-NONE)', fast]] as const) {
    const r = await pass(started.port, started.pids, login);
    await r.close();
    rows.push([name, r]);
  }
  console.log(`${USERS} logins per variant, ${CONCURRENCY} in flight, plaintext on loopback, one embedded Parley process`);
  console.log('variant                                   round trips  server CPU ms/login  p50 ms  logins/s');
  for (const [name, r] of rows) {
    console.log(`${name.padEnd(42)}${String(r.roundTrips).padStart(11)}${String(r.serverCpuMsPerLogin).padStart(21)}${String(r.p50Ms).padStart(8)}${String(r.loginsPerSec).padStart(10)}`);
  }
} finally {
  await server.stop();
}
process.exit(0);
