// A small raw XMPP chat client over TCP for the chaos runs: SASL PLAIN on
// loopback, one fixed resource, and XEP-0198 done exactly and observably.
//
// With stream management it keeps every stanza it sent until the server's
// `<a h/>` covers it, asks for an ack (`<r/>`) after every message, answers
// the server's `<r/>` with its own count, and when its connection is lost it
// reconnects (its own c2s first, then the others) and resumes with
// `<resume previd h/>`, sending again what `<resumed h/>` did not cover
// (XEP-0198 §5). If resumption fails it logs in afresh and sends its
// unacknowledged messages again under new ids — what real clients do, and
// counted apart, since the recipient may then legitimately see a message
// twice. An `<r/>` left unanswered for `ackTimeoutMs` is taken as a dead
// connection (as clients treat an unanswered ping): it is dropped and resumed.
//
// Without stream management it logs in again after a lost connection and
// goes on; what was lost is lost.
//
// Every message is `<message id='<sender>-<seq>[-r<k>]'><body><sender>#<seq></body>`:
// the recipient tells copies of one stanza (same id) from a client's re-send
// (another id, same body).
import { connect, type Socket } from 'node:net';
import { StreamParser } from '../../libs/xml/parser.ts';
import { child, text, type Element } from '../../libs/xml/element.ts';
import { escapeAttr, escapeText } from '../../libs/xml/serialize.ts';

const NS_SM = 'urn:xmpp:sm:3';
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';

export interface Endpoint { host: string; port: number }

export interface ClientOptions {
  /** Local part; the account must exist with `password`. */
  user: string;
  password: string;
  domain: string;
  resource: string;
  streamManagement: boolean;
  /** Where to connect: the first is this client's own c2s, the rest are tried when it is dead. */
  endpoints: () => Endpoint[];
  /** An `<r/>` without any `<a/>` for this long: the connection is taken as dead. */
  ackTimeoutMs: number;
  /** Each login step (stream open, auth, resume, bind, enable) must be answered within this. */
  stepTimeoutMs: number;
}

/** One copy of a chat message as the recipient got it. */
export interface Delivery {
  from: string;
  seq: number;
  id: string;
  at: number;
  /** For managed sessions: which session (a fresh login after a failed resumption starts another) and its number there. */
  epoch: number;
  n: number;
  /**
   * first: the first copy of this stanza id; again-acked: another copy after this client acknowledged the
   * first and the server had read that ack; again: another copy otherwise (the protocol allows it).
   */
  copy: 'first' | 'again-acked' | 'again';
}

export interface ClientCounters {
  logins: number;
  resumed: number;
  resumeFailed: number;
  /** Stanzas sent again after `<resumed h/>` (not covered by it). */
  resentAfterResume: number;
  /** Messages sent again under a new id after a failed resumption (the client's own re-sends). */
  resentAfterFailure: number;
  ackTimeouts: number;
  connectFailures: number;
  streamErrors: string[];
  /** Errors the server returned for our messages (type='error'), by condition. */
  bounced: Map<string, number>;
  /** `<a h/>` claiming more than was sent, or `<resumed h/>` doing so: the server broke XEP-0198. */
  protocolErrors: string[];
}

interface Outbound { n: number; xml: string; seq?: number; id?: string }

export class ChatClient {
  readonly bare: string;
  readonly full: string;
  readonly counters: ClientCounters = {
    logins: 0, resumed: 0, resumeFailed: 0, resentAfterResume: 0, resentAfterFailure: 0, ackTimeouts: 0, connectFailures: 0,
    streamErrors: [], bounced: new Map(), protocolErrors: [],
  };
  /** Messages this client wrote, by seq: when the user typed it. */
  readonly typed: number[] = [];
  /** When the server acknowledged message seq (XEP-0198), by seq. */
  readonly acked = new Map<number, number>();
  /** Messages the server returned with an error: the sender was told they failed. */
  readonly bouncedSeqs = new Set<number>();
  /** Every chat message copy received. */
  readonly deliveries: Delivery[] = [];
  /** What happened, for a failure's explanation: `t event`. */
  readonly events: string[] = [];

  private peer = '';
  private socket: Socket | undefined;
  private online = false;
  private stopped = false;
  private connecting: Promise<void> | undefined;
  private chatTimer: NodeJS.Timeout | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  private endpointIndex = 0;

  // XEP-0198 state. `epoch` counts managed sessions (a fresh login after a failed resumption is a new one).
  private smId: string | undefined;
  private epoch = 0;
  private outCount = 0;
  private unacked: Outbound[] = [];
  private inCount = 0;
  /** Our acks: once the server's h reaches `after`, it has read our `<a h=acked/>` (the stream is read in order). */
  private ackMarks: { after: number; acked: number }[] = [];
  private ackConfirmed = new Map<number, number>();
  private awaitingAckSince: number | undefined;
  /** First copy of each stanza id received. */
  private firstCopy = new Map<string, { epoch: number; n: number }>();
  /** Messages typed while offline, sent once online. */
  private pending: { seq: number; id: string }[] = [];
  private nextSeq = 0;

  private backlog: Element[] = [];
  /** The highest h the server has acknowledged in this managed session. */
  private serverH = 0;
  private waiters: { pred: (e: Element) => boolean; resolve: (e: Element) => void; reject: (e: Error) => void }[] = [];

  constructor(private readonly o: ClientOptions) {
    this.bare = `${o.user}@${o.domain}`;
    this.full = `${this.bare}/${o.resource}`;
  }

  private note(s: string): void {
    this.events.push(`${new Date().toISOString().slice(11, 23)} ${s}`);
    if (this.events.length > 200) this.events.splice(0, this.events.length - 200);
  }

  /** Connect and log in (resolves when online). */
  async start(timeoutMs = 30_000): Promise<void> {
    this.ackTimer = setInterval(() => this.checkAckTimeout(), 100);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.reconnect(), new Promise((r) => { timer = setTimeout(r, timeoutMs); })]);
    clearTimeout(timer);
    if (!this.online) {
      this.stopped = true;
      clearInterval(this.ackTimer);
      this.socket?.destroy();
      throw new Error(`${this.bare}: could not log in within ${timeoutMs / 1000} s:\n${this.events.slice(-10).join('\n')}`);
    }
  }

  /** Send a message to `peer` (a full JID) every `minMs`–`maxMs`. */
  chat(peer: string, minMs: number, maxMs: number): void {
    this.peer = peer;
    const tick = () => {
      if (this.stopped) return;
      this.type();
      this.chatTimer = setTimeout(tick, minMs + Math.random() * (maxMs - minMs));
    };
    this.chatTimer = setTimeout(tick, Math.random() * maxMs);
  }

  stopChat(): void {
    clearTimeout(this.chatTimer);
    this.chatTimer = undefined;
  }

  get isOnline(): boolean { return this.online; }
  /** Stanzas sent and not yet acknowledged (managed sessions), plus messages typed while offline. */
  get outstanding(): number { return this.unacked.length + this.pending.length; }

  /** Where XEP-0198 stands, for a failure's explanation. */
  smState(): string {
    const oldest = this.unacked.find((o) => o.seq !== undefined);
    return `session ${this.epoch}: sent ${this.outCount}, server acknowledged ${this.serverH}, received ${this.inCount}` +
      (oldest ? `, oldest unacknowledged ${oldest.id} typed ${((Date.now() - this.typed[oldest.seq!]) / 1000).toFixed(1)} s ago` : '');
  }

  /** Ask the server for an ack now (settling at the end of a run). */
  requestAck(): void {
    if (this.online && this.o.streamManagement) this.write(`<r xmlns='${NS_SM}'/>`, true);
  }

  /** Close the stream properly and stop reconnecting. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopChat();
    clearInterval(this.ackTimer);
    const s = this.socket;
    if (!s || s.destroyed) return;
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    if (this.o.streamManagement && this.online) s.write(`<a xmlns='${NS_SM}' h='${this.inCount}'/>`);
    s.end('</stream:stream>');
    await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
    s.destroy();
  }

  // ---------------------------------------------------------------- sending

  private type(): void {
    const seq = this.nextSeq++;
    this.typed[seq] = Date.now();
    const m = { seq, id: `${this.o.user}-${seq}` };
    if (this.online) this.sendMessage(m.seq, m.id);
    else this.pending.push(m);
  }

  private messageXml(seq: number, id: string): string {
    return `<message to='${escapeAttr(this.peer)}' type='chat' id='${escapeAttr(id)}'><body>${escapeText(`${this.o.user}#${seq}`)}</body></message>`;
  }

  private sendMessage(seq: number, id: string): void {
    const xml = this.messageXml(seq, id);
    this.sendStanza(xml, seq, id);
  }

  /** A stanza; managed sessions number it, keep it, and ask for an ack when it is a message. */
  private sendStanza(xml: string, seq?: number, id?: string): void {
    if (!this.o.streamManagement) {
      this.write(xml, false);
      return;
    }
    const n = ++this.outCount;
    this.unacked.push({ n, xml, seq, id });
    this.write(seq !== undefined ? xml + `<r xmlns='${NS_SM}'/>` : xml, seq !== undefined);
  }

  private write(s: string, asksAck: boolean): void {
    if (!this.socket || this.socket.destroyed) return;
    this.socket.write(s);
    if (asksAck && this.awaitingAckSince === undefined) this.awaitingAckSince = Date.now();
  }

  private checkAckTimeout(): void {
    if (!this.online || this.awaitingAckSince === undefined) return;
    if (Date.now() - this.awaitingAckSince < this.o.ackTimeoutMs) return;
    this.counters.ackTimeouts++;
    this.note(`no <a/> for ${this.o.ackTimeoutMs} ms: dropping the connection`);
    this.socket?.destroy();
  }

  // ---------------------------------------------------------------- receiving

  private onStanza(e: Element): void {
    if (!this.online) {
      for (const w of [...this.waiters]) {
        if (w.pred(e)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(e);
          return;
        }
      }
      // Behind <resumed/> in the same read come the stanzas sent again: counted once the login step has run.
      this.backlog.push(e);
      return;
    }
    this.handle(e);
  }

  /** Online from here: handle what arrived behind the last login step, then what comes. */
  private goOnline(): void {
    this.online = true;
    const b = this.backlog;
    this.backlog = [];
    for (const e of b) this.handle(e);
  }

  private handle(e: Element): void {
    switch (e.name) {
      case 'r':
        this.write(`<a xmlns='${NS_SM}' h='${this.inCount}'/>`, false);
        this.ackMarks.push({ after: this.outCount + 1, acked: this.inCount });
        return;
      case 'a':
        this.serverAck(Number(e.attrs.h), 'a');
        return;
      case 'message':
      case 'presence':
      case 'iq':
        this.onInbound(e);
        return;
      default:
        return;
    }
  }

  private serverAck(h: number, where: string): void {
    this.awaitingAckSince = undefined;
    if (!Number.isInteger(h) || h > this.outCount) {
      this.counters.protocolErrors.push(`${where} h=${h} with ${this.outCount} sent`);
      this.note(`server acked ${h} of ${this.outCount} sent (${where})`);
      return;
    }
    if (h < this.serverH) {
      this.counters.protocolErrors.push(`${where} h=${h} after the server had acknowledged ${this.serverH}`);
      this.note(`server went back from h=${this.serverH} to ${h} (${where})`);
    }
    this.serverH = Math.max(this.serverH, h);
    const now = Date.now();
    while (this.unacked.length > 0 && this.unacked[0].n <= h) {
      const o = this.unacked.shift()!;
      if (o.seq !== undefined && !this.acked.has(o.seq)) this.acked.set(o.seq, now);
    }
    while (this.ackMarks.length > 0 && this.ackMarks[0].after <= h) {
      const m = this.ackMarks.shift()!;
      this.ackConfirmed.set(this.epoch, Math.max(this.ackConfirmed.get(this.epoch) ?? 0, m.acked));
    }
  }

  private onInbound(e: Element): void {
    const n = this.o.streamManagement ? ++this.inCount : 0;
    if (e.name === 'iq' && (e.attrs.type === 'get' || e.attrs.type === 'set')) {
      // A ping or anything else: answer (pings) or refuse, as a client does.
      const ping = child(e, 'ping', 'urn:xmpp:ping');
      const reply = ping
        ? `<iq type='result' id='${escapeAttr(e.attrs.id ?? '')}' to='${escapeAttr(e.attrs.from ?? this.o.domain)}'/>`
        : `<iq type='error' id='${escapeAttr(e.attrs.id ?? '')}' to='${escapeAttr(e.attrs.from ?? this.o.domain)}'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`;
      this.sendStanza(reply);
      return;
    }
    if (e.name !== 'message') return;
    if (e.attrs.type === 'error') {
      const err = child(e, 'error');
      const cond = err?.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text')?.name ?? 'unknown';
      this.counters.bounced.set(cond, (this.counters.bounced.get(cond) ?? 0) + 1);
      const mine = /^(.+)-(\d+)(?:-r\d+)?$/.exec(e.attrs.id ?? '');
      if (mine && mine[1] === this.o.user) this.bouncedSeqs.add(Number(mine[2]));
      this.note(`message ${e.attrs.id} bounced: ${cond}`);
      return;
    }
    const body = text(child(e, 'body'));
    const hash = body.lastIndexOf('#');
    if (hash < 0) return;
    const from = body.slice(0, hash);
    const seq = Number(body.slice(hash + 1));
    const id = e.attrs.id ?? '';
    const first = this.firstCopy.get(id);
    let copy: Delivery['copy'] = 'first';
    if (first) {
      const confirmed = this.ackConfirmed.get(first.epoch) ?? 0;
      if (this.o.streamManagement && first.n > 0 && first.n <= confirmed) {
        copy = 'again-acked';
        this.note(`${id} again as #${n} of session ${this.epoch} (first copy #${first.n} of session ${first.epoch}, acknowledged up to ${confirmed})`);
      } else {
        copy = 'again';
      }
    } else {
      this.firstCopy.set(id, { epoch: this.epoch, n });
    }
    this.deliveries.push({ from, seq, id, at: Date.now(), epoch: this.epoch, n, copy });
  }

  // ---------------------------------------------------------------- connection

  private reconnect(): Promise<void> {
    if (this.connecting) return this.connecting;
    this.connecting = (async () => {
      let attempt = 0;
      while (!this.stopped && !this.online) {
        const eps = this.o.endpoints();
        const ep = eps[this.endpointIndex % eps.length];
        try {
          await this.session(ep);
        } catch (e) {
          this.counters.connectFailures++;
          this.note(`${ep.host}:${ep.port}: ${(e as Error).message}`);
          this.socket?.destroy();
          this.socket = undefined;
          // The next endpoint; after a full round, wait a little longer each time.
          this.endpointIndex++;
          if (this.endpointIndex % eps.length === 0) await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt++)));
        }
      }
    })().finally(() => { this.connecting = undefined; });
    return this.connecting;
  }

  private lost(why: string): void {
    if (!this.online) return;
    this.online = false;
    this.awaitingAckSince = undefined;
    this.ackMarks = [];
    this.note(`connection lost: ${why}`);
    if (!this.stopped) setTimeout(() => void this.reconnect(), 50);
  }

  /** Wait for the next top-level element matching `pred` during a login step. */
  private next(pred: (e: Element) => boolean, what: string): Promise<Element> {
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (e: Element) => { clearTimeout(t); resolve(e); },
        reject: (err: Error) => { clearTimeout(t); reject(err); },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no ${what} within ${this.o.stepTimeoutMs} ms`));
      }, this.o.stepTimeoutMs);
      this.waiters.push(w);
    });
  }

  private failWaiters(err: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  /** One connection: open, authenticate, resume or bind (and enable), then online. */
  private async session(ep: Endpoint): Promise<void> {
    const socket = connect({ host: ep.host, port: ep.port, noDelay: true });
    this.socket = socket;
    this.backlog = [];
    const parser = new StreamParser({
      streamOpen: () => {},
      stanza: (e) => {
        if (e.name === 'stream:error') {
          const cond = e.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text')?.name ?? 'unknown';
          this.counters.streamErrors.push(cond);
          this.note(`stream error ${cond}`);
        }
        this.onStanza(e);
      },
      streamClose: () => { socket.end(); },
      error: (err) => { this.note(`unparsable input: ${err.message}`); socket.destroy(); },
    }, { maxStanzaBytes: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('connect timed out')), this.o.stepTimeoutMs);
      socket.once('connect', () => { clearTimeout(t); resolve(); });
      socket.once('error', (e) => { clearTimeout(t); reject(e); });
    });
    socket.on('data', (d) => parser.write(d));
    socket.on('error', () => {});
    socket.once('close', () => {
      this.failWaiters(new Error('connection closed'));
      if (this.socket === socket) this.lost('closed');
    });
    const open = () => socket.write(`<?xml version='1.0'?><stream:stream to='${this.o.domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`);
    const features = () => this.next((e) => e.name === 'stream:features', 'stream features');

    open();
    await features();
    socket.write(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${this.o.user}\0${this.o.password}`).toString('base64')}</auth>`);
    const auth = await this.next((e) => (e.name === 'success' || e.name === 'failure') && e.attrs.xmlns === NS_SASL, 'SASL outcome');
    if (auth.name === 'failure') throw new Error(`authentication failed: ${auth.children.map((c) => (typeof c === 'string' ? c : c.name)).join(' ')}`);
    parser.reset();
    open();
    await features();

    if (this.o.streamManagement && this.smId) {
      socket.write(`<resume xmlns='${NS_SM}' previd='${escapeAttr(this.smId)}' h='${this.inCount}'/>`);
      const r = await this.next((e) => (e.name === 'resumed' || e.name === 'failed') && e.attrs.xmlns === NS_SM, 'resumption outcome');
      if (r.name === 'resumed') {
        this.ackConfirmed.set(this.epoch, Math.max(this.ackConfirmed.get(this.epoch) ?? 0, this.inCount));
        this.serverAck(Number(r.attrs.h), 'resumed');
        // XEP-0198 §5: what <resumed h/> did not cover goes again, in order, counted afresh from h.
        const again = this.unacked;
        this.unacked = [];
        this.outCount = Number(r.attrs.h);
        this.counters.resumed++;
        this.note(`resumed on ${ep.port} (h=${r.attrs.h}; sending ${again.length} again)`);
        this.goOnline();
        for (const o of again) {
          if (o.seq !== undefined) this.counters.resentAfterResume++;
          this.sendStanza(o.xml, o.seq, o.id);
        }
        this.flushPending();
        return;
      }
      this.counters.resumeFailed++;
      this.note(`resumption failed on ${ep.port}: ${r.children.map((c) => (typeof c === 'string' ? c : c.name)).join(' ')}`);
    }

    socket.write(`<iq type='set' id='bind'><bind xmlns='${NS_BIND}'><resource>${escapeText(this.o.resource)}</resource></bind></iq>`);
    const bound = await this.next((e) => e.name === 'iq' && e.attrs.id === 'bind', 'bind result');
    if (bound.attrs.type !== 'result') throw new Error(`bind refused: ${JSON.stringify(bound)}`);

    if (this.o.streamManagement) {
      socket.write(`<enable xmlns='${NS_SM}' resume='true'/>`);
      const en = await this.next((e) => (e.name === 'enabled' || e.name === 'failed') && e.attrs.xmlns === NS_SM, 'enable outcome');
      if (en.name === 'failed' || !en.attrs.id) throw new Error('stream management could not be enabled with resumption');
      // A fresh session after a failed resumption: the old one's unacknowledged messages are the client's to send again.
      const old = this.unacked;
      this.smId = en.attrs.id;
      this.epoch++;
      this.outCount = 0;
      this.inCount = 0;
      this.serverH = 0;
      this.unacked = [];
      this.ackMarks = [];
      this.counters.logins++;
      this.goOnline();
      this.sendStanza(`<presence/>`);
      // The old session's unacknowledged messages go again as new stanzas: the client's own re-sends.
      for (const o of old) {
        if (o.seq === undefined) continue;
        this.counters.resentAfterFailure++;
        const id = `${o.id!.replace(/-r\d+$/, '')}-r${this.epoch}`;
        this.sendStanza(this.messageXml(o.seq, id), o.seq, id);
      }
    } else {
      this.counters.logins++;
      this.goOnline();
      this.write(`<presence/>`, false);
    }
    this.note(`logged in on ${ep.port}`);
    this.flushPending();
  }

  private flushPending(): void {
    const p = this.pending;
    this.pending = [];
    for (const m of p) this.sendMessage(m.seq, m.id);
  }
}
