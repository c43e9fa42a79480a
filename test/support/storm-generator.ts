// A load-generator process for the mass-reconnect test (test/cluster/mass-reconnect.test.ts): stream-managed raw
// clients that log in on one connection manager and, when it dies, all reconnect and resume at once on the others,
// with no jitter. A client told to wait (a stream, login or resumption refused by admission control) retries after
// retryMs; one sent elsewhere (see-other-host) goes there. Each counts the messages it receives for its <a h/> and
// keeps their bodies, so the test can check that every message arrived exactly once.
// Driven over IPC: 'login' → 'ready' (the session ids), 'report' → 'report'.
import { connect, type Socket } from 'node:net';

export interface StormInit {
  type: 'login';
  users: string[];
  password: string;
  domain: string;
  /** Where they log in first. */
  port: number;
  /** Where they go when it is gone (client i to port i mod n). */
  survivors: number[];
  /** This process's source address (127.0.0.0/8), so that many processes do not share one address's ports. */
  localAddress: string;
  retryMs: number;
}

export interface StormClientReport {
  user: string;
  previd: string;
  bodies: string[];
  /** When it was resumed after losing its first connection (ms since the epoch); 0: not (yet). */
  resumedAt: number;
  /** Refusals it was told to retry after, and what it ended with if resumption failed for good. */
  retries: number;
  failure?: string;
}

export type StormReply =
  | { type: 'ready'; failed: string[] }
  | { type: 'report'; clients: StormClientReport[] };

const NS_SM = 'urn:xmpp:sm:3';
const STREAM = (domain: string) => `<?xml version='1.0'?><stream:stream to='${domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One connection: what came in, read forward from a cursor. */
class Line {
  buf = '';
  private pos = 0;
  private waiter: (() => void) | undefined;
  closed = false;
  readonly socket: Socket;
  /** Stanza counting for <a h/>, once stream management is on; bodies go to onMessage. */
  counting = false;
  private scanned = 0;

  constructor(port: number, host: string, localAddress: string, private readonly onMessage: (body: string) => void) {
    this.socket = connect({ port, host, localAddress });
    this.socket.setNoDelay(true);
    this.socket.on('data', (d: Buffer) => {
      this.buf += d.toString();
      this.count();
      this.waiter?.();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  h = 0;

  private count(): void {
    if (!this.counting) return;
    const re = /<message\b[^>]*>([\s\S]*?)<\/message>|<r xmlns=["']urn:xmpp:sm:3["']\/>/g;
    re.lastIndex = this.scanned;
    for (let m = re.exec(this.buf); m; m = re.exec(this.buf)) {
      this.scanned = re.lastIndex;
      if (m[0].startsWith('<r')) this.send(`<a xmlns='${NS_SM}' h='${this.h}'/>`);
      else {
        this.h++;
        this.onMessage(/<body>([^<]*)<\/body>/.exec(m[1])?.[1] ?? '');
      }
    }
  }

  /** Count from here on (after <enabled/> or <resumed/>), starting at h. */
  startCounting(h: number): void {
    this.h = h;
    this.scanned = this.pos;
    this.counting = true;
    this.count();
  }

  send(s: string): void {
    if (!this.closed) this.socket.write(s);
  }

  /** The first of `res` that matches past the cursor (the cursor moves past it), or undefined if the connection closed. */
  async next(res: RegExp[], timeoutMs = 30_000): Promise<{ i: number; m: RegExpExecArray } | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let best: { i: number; m: RegExpExecArray } | undefined;
      const rest = this.buf.slice(this.pos);
      res.forEach((re, i) => {
        const m = re.exec(rest);
        if (m && (!best || m.index < best.m.index)) best = { i, m };
      });
      if (best) {
        this.pos += best.m.index + best.m[0].length;
        return best;
      }
      if (this.closed) return undefined;
      if (Date.now() > deadline) throw new Error(`nothing of ${res.join(' ')} within ${timeoutMs} ms; got ${rest.slice(0, 300)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiter = () => { clearTimeout(t); r(); };
      });
      this.waiter = undefined;
    }
  }

  /** Resolves once connected, or with false when refused. */
  connected(): Promise<boolean> {
    return new Promise((r) => {
      this.socket.once('connect', () => r(true));
      this.socket.once('error', () => r(false));
    });
  }
}

const FEATURES = /<\/stream:features>/;
const STREAM_ERROR = /<stream:error>([\s\S]*?)<\/stream:error>/;

class StormClient {
  previd = '';
  bodies: string[] = [];
  resumedAt = 0;
  retries = 0;
  failure: string | undefined;
  private line: Line | undefined;
  private h = 0;

  constructor(readonly user: string, private readonly o: StormInit, private readonly survivor: number) {}

  /** Connect, open a stream and authenticate; undefined when told to go elsewhere or retry (after waiting). */
  private async authenticated(port: number, host = '127.0.0.1'): Promise<Line | { elsewhere: [string, number] } | undefined> {
    const line = new Line(port, host, this.o.localAddress, (b) => this.bodies.push(b));
    if (!await line.connected()) {
      this.retries++;
      await sleep(this.o.retryMs);
      return undefined;
    }
    line.send(STREAM(this.o.domain));
    const f = await line.next([FEATURES, STREAM_ERROR]);
    if (!f || f.i === 1) {
      line.socket.destroy();
      const other = f && /<see-other-host[^>]*>([^<]+)<\/see-other-host>/.exec(f.m[1]);
      this.retries++;
      if (other) {
        const at = other[1].lastIndexOf(':');
        return { elsewhere: [other[1].slice(0, at), Number(other[1].slice(at + 1))] };
      }
      await sleep(this.o.retryMs);
      return undefined;
    }
    for (;;) {
      line.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${this.user}\0${this.o.password}`).toString('base64')}</auth>`);
      const a = await line.next([/<success[^>]*\/>|<success[^>]*>[^<]*<\/success>/, /<failure[\s\S]*?<\/failure>/]);
      if (!a) return undefined;
      if (a.i === 0) break;
      if (!a.m[0].includes('temporary-auth-failure')) throw new Error(`login of ${this.user} failed: ${a.m[0]}`);
      this.retries++;
      await sleep(this.o.retryMs);
    }
    line.send(STREAM(this.o.domain));
    if (!await line.next([FEATURES])) return undefined;
    return line;
  }

  async login(): Promise<void> {
    for (;;) {
      const line = await this.authenticated(this.o.port);
      if (!(line instanceof Line)) continue;
      line.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>storm</resource></bind></iq>`);
      if (!await line.next([/<\/iq>/])) continue;
      line.send(`<enable xmlns='${NS_SM}' resume='true' max='300'/>`);
      const e = await line.next([/<enabled [^>]*id=["']([^"']+)["'][^>]*\/>/]);
      if (!e) continue;
      this.previd = e.m[1];
      line.startCounting(0);
      this.line = line;
      line.socket.once('close', () => void this.reconnect());
      return;
    }
  }

  /** Its connection manager is gone: resume on a survivor at once, retrying what it is told to retry. */
  private async reconnect(): Promise<void> {
    this.h = this.line!.h;
    let target: [string, number] = ['127.0.0.1', this.survivor];
    try {
      for (let attempt = 0; attempt < 100; attempt++) {
        const line = await this.authenticated(target[1], target[0]);
        if (!line) continue;
        if (!(line instanceof Line)) {
          target = line.elsewhere;
          continue;
        }
        for (;;) {
          line.send(`<resume xmlns='${NS_SM}' previd='${this.previd}' h='${this.h}'/>`);
          const r = await line.next([/<resumed [^>]*\/>/, /<failed[\s\S]*?<\/failed>|<failed[^>]*\/>/]);
          if (!r) break;
          if (r.i === 0) {
            this.resumedAt = Date.now();
            line.startCounting(this.h);
            this.line = line;
            return;
          }
          if (!r.m[0].includes('resource-constraint')) {
            this.failure = r.m[0];
            return;
          }
          this.retries++;
          await sleep(this.o.retryMs);
        }
      }
      this.failure = 'gave up after 100 attempts';
    } catch (e) {
      this.failure = (e as Error).message;
    }
  }

  report(): StormClientReport {
    return { user: this.user, previd: this.previd, bodies: this.bodies, resumedAt: this.resumedAt, retries: this.retries, failure: this.failure };
  }
}

let clients: StormClient[] = [];

process.on('message', (m: StormInit | { type: 'report' }) => {
  if (m.type === 'login') {
    clients = m.users.map((u, i) => new StormClient(u, m, m.survivors[i % m.survivors.length]));
    // Logins go 50 at a time: the first connection manager is not what is under test.
    void (async () => {
      const failed: string[] = [];
      for (let i = 0; i < clients.length; i += 50) {
        await Promise.all(clients.slice(i, i + 50).map((c) => c.login().catch((e: unknown) => { failed.push(`${c.user}: ${(e as Error).message}`); })));
      }
      process.send!({ type: 'ready', failed } satisfies StormReply);
    })();
  } else if (m.type === 'report') {
    process.send!({ type: 'report', clients: clients.map((c) => c.report()) } satisfies StormReply);
  }
});
process.on('disconnect', () => process.exit(0));
