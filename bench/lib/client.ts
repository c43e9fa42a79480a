// A lean XMPP client for load generation. No XML parser on the receive path:
// during login it scans the buffer for the few elements it is waiting for;
// afterwards it only looks for benchmark tokens ("bnch~...~") that the sender
// put into a <body/> or <status/>, so cost per received stanza is an indexOf.
// With stream management (XEP-0198) it also walks the tags of what arrives
// (StanzaCounter) to count stanzas for its <a h/> and to see the server's
// <r/> and <a h/>: a few indexOf calls per tag.
import { connectWire, type Endpoint, type Wire } from './wire.ts';
import { MECHANISMS, saslClient, type Mechanism } from './scram.ts';
import { nowUs } from './protocol.ts';

export const TOKEN = 'bnch~';
const SM_R = `<r xmlns='urn:xmpp:sm:3'/>`;
/** BENCH_TRACE=1 prints every chunk sent and received (debugging a new target with --users 1). */
const TRACE = process.env.BENCH_TRACE === '1';
const SASL_NS = 'urn:ietf:params:xml:ns:xmpp-sasl';

export interface LoginOptions {
  endpoint: Endpoint;
  domain: string;
  user: string;
  password: string;
  resource: string;
  mech: Mechanism | 'auto';
  roster: boolean;
  /** Send initial presence; login completes when the server has answered a ping sent after it. */
  presence: boolean;
  timeoutMs: number;
  /** XEP-0198: enable stream management after bind and send <r/> after every this many tracked stanzas; 0 = off. */
  smRequestEvery?: number;
}

export interface Found { start: number; end: number; name: string; text: string }

/** First complete element among `names` in buf (prefix-free names), or null when none/incomplete. */
export function findElement(buf: string, names: readonly string[], from = 0): Found | null {
  let best = -1;
  let bestName = '';
  for (const n of names) {
    let i = buf.indexOf(`<${n}`, from);
    while (i >= 0) {
      const c = buf.charCodeAt(i + n.length + 1);
      if (c === 32 || c === 62 || c === 47 || c === 9 || c === 10 || c === 13 || Number.isNaN(c)) break;
      i = buf.indexOf(`<${n}`, i + 1);
    }
    if (i >= 0 && (best < 0 || i < best)) { best = i; bestName = n; }
  }
  if (best < 0) return null;
  const tagEnd = buf.indexOf('>', best);
  if (tagEnd < 0) return null;
  if (buf.charCodeAt(tagEnd - 1) === 47) return { start: best, end: tagEnd + 1, name: bestName, text: buf.slice(best, tagEnd + 1) };
  const close = `</${bestName}>`;
  const c = buf.indexOf(close, tagEnd);
  if (c < 0) return null;
  return { start: best, end: c + close.length, name: bestName, text: buf.slice(best, c + close.length) };
}

/**
 * Calls onToken for every complete `bnch~…~` token in s and returns what must
 * be carried over to the next chunk: a token's unfinished start, or the last
 * few characters, which may hold the beginning of the marker itself.
 */
export function scanTokens(s: string, onToken: (token: string) => void): string {
  let i = 0;
  for (;;) {
    const a = s.indexOf(TOKEN, i);
    if (a < 0) break;
    const b = s.indexOf('~', a + TOKEN.length);
    if (b < 0) return s.slice(a);
    onToken(s.slice(a + TOKEN.length, b));
    i = b + 1;
  }
  return s.slice(Math.max(i, s.length - (TOKEN.length - 1)));
}

const NS_SM = 'urn:xmpp:sm:3';

/**
 * Counts the stanzas of a stream without an XML parser, for XEP-0198's `h`:
 * every opening tag of <message>, <presence> or <iq> at the level counting
 * started at (the stream's children), however the input is cut into chunks.
 * It tracks depth by tags: every '<' starts a tag (servers escape '<' in text
 * and '>' in attribute values, and send no comments or CDATA), '</' closes
 * one and '/>' closes it at once. Stream management's own top-level elements
 * (<r/>, <a/>) go to `onNonza` with their opening tag.
 */
export class StanzaCounter {
  /** Stanzas seen since counting started. */
  count = 0;
  private depth = 0;
  /** An unfinished tag from the end of the last chunk. */
  private carry = '';
  constructor(private readonly onNonza: (name: 'r' | 'a', tag: string) => void) {}

  feed(text: string): void {
    const s = this.carry ? this.carry + text : text;
    this.carry = '';
    let i = 0;
    for (;;) {
      const lt = s.indexOf('<', i);
      if (lt < 0) return;
      const gt = s.indexOf('>', lt + 1);
      if (gt < 0) { this.carry = s.slice(lt); return; }
      const c = s.charCodeAt(lt + 1);
      if (c === 47) this.depth--; // '</'
      else if (c !== 63 && c !== 33) { // not '<?' nor '<!'
        const empty = s.charCodeAt(gt - 1) === 47;
        if (this.depth === 0) this.top(s, lt, gt);
        if (!empty) this.depth++;
      }
      i = gt + 1;
    }
  }

  private top(s: string, lt: number, gt: number): void {
    const name = (n: string): boolean => {
      if (!s.startsWith(n, lt + 1)) return false;
      const d = s.charCodeAt(lt + 1 + n.length);
      return d === 32 || d === 62 || d === 47 || d === 9 || d === 10 || d === 13;
    };
    if (name('message') || name('presence') || name('iq')) this.count++;
    else if (name('r')) this.onNonza('r', s.slice(lt, gt + 1));
    else if (name('a')) this.onNonza('a', s.slice(lt, gt + 1));
  }
}

/**
 * One stream's stream management: what the server's <r/> is answered with,
 * and which of our tracked stanzas its <a h/> covers. Tracked stanzas are
 * kept as (number, send time) in two arrays read from `head`: no allocation
 * per stanza beyond the array's growth.
 */
class SmState {
  /** Stanzas sent since <enable/> (the server's count of what it handled). */
  out = 0;
  /** Tracked stanzas acknowledged so far. */
  acked = 0;
  sinceRequest = 0;
  readonly counter: StanzaCounter;
  private seq: number[] = [];
  private sentUs: number[] = [];
  private head = 0;
  /** Our <r/>s not yet answered by an <a h/> covering them: count at the time, and when. */
  private reqSeq: number[] = [];
  private reqUs: number[] = [];
  private reqHead = 0;

  constructor(readonly requestEvery: number, onNonza: (name: 'r' | 'a', tag: string) => void) {
    this.counter = new StanzaCounter(onNonza);
  }

  tracked(ts: number): void {
    this.seq.push(this.out);
    this.sentUs.push(ts);
  }

  requested(ts: number): void {
    this.sinceRequest = 0;
    this.reqSeq.push(this.out);
    this.reqUs.push(ts);
  }

  get unacked(): number { return this.seq.length - this.head; }

  /** The server's <a h/>: calls back for every tracked stanza and every <r/> it covers, oldest first. */
  ack(h: number, now: number, onStanza: ((sentUs: number, now: number) => void) | null, onRequest: ((latencyUs: number) => void) | null): void {
    while (this.head < this.seq.length && this.seq[this.head] <= h) {
      onStanza?.(this.sentUs[this.head], now);
      this.head++;
      this.acked++;
    }
    while (this.reqHead < this.reqSeq.length && this.reqSeq[this.reqHead] <= h) {
      onRequest?.(now - this.reqUs[this.reqHead]);
      this.reqHead++;
    }
    if (this.head > 4096 && this.head * 2 > this.seq.length) { this.seq = this.seq.slice(this.head); this.sentUs = this.sentUs.slice(this.head); this.head = 0; }
    if (this.reqHead > 1024 && this.reqHead * 2 > this.reqSeq.length) { this.reqSeq = this.reqSeq.slice(this.reqHead); this.reqUs = this.reqUs.slice(this.reqHead); this.reqHead = 0; }
  }
}

export const attr = (tag: string, name: string): string | undefined => new RegExp(`\\s${name}=(['"])(.*?)\\1`).exec(tag)?.[2];
const inner = (el: string): string => (el.endsWith('/>') && !el.includes('</') ? '' : el.slice(el.indexOf('>') + 1, el.lastIndexOf('</')));

/**
 * Looks for what a caller waits for in the unconsumed input; may throw to fail
 * the wait. A number means "not yet, and the input before this offset is no
 * longer needed": a wait that lets a lot of other traffic go by (joining a
 * large room) then does not rescan, nor copy, an ever-growing buffer.
 */
export type Matcher = (buf: string) => Found | number | null;

export class XmppConn {
  closed = false;
  closeReason = '';
  /** Server pings (XEP-0199) answered on this stream. */
  pingsAnswered = 0;
  /** Called for each benchmark token received once logged in. */
  onToken: ((conn: XmppConn, token: string) => void) | null = null;
  onClose: ((conn: XmppConn) => void) | null = null;
  /** With stream management: a tracked stanza was acknowledged (its send time and now, µs). */
  onAcked: ((sentUs: number, now: number) => void) | null = null;
  /** With stream management: one of our <r/> got an <a h/> covering everything sent before it (latency, µs). */
  onRequestAcked: ((latencyUs: number) => void) | null = null;
  readonly jid: string;
  /** Stream management, once the server has <enabled/> it; null without. */
  private sm: SmState | null = null;
  private wire: Wire | null = null;
  private buf = '';
  private waiter: { match: Matcher; resolve: (f: Found) => void; reject: (e: Error) => void } | null = null;
  private ws: boolean;
  /** The stream features after authentication. */
  private features = '';
  /** Set once login finished: from then on unmatched input may be discarded. */
  private ready = false;

  /** RFC 7395: each WebSocket frame is a standalone element, so stanzas carry their namespace. */
  readonly ns: string;

  constructor(readonly index: number, private readonly o: LoginOptions) {
    this.jid = `${o.user}@${o.domain}`;
    this.ws = !!o.endpoint.wsUrl;
    this.ns = this.ws ? ` xmlns='jabber:client'` : '';
  }

  send(s: string): void {
    if (TRACE) console.error(`${this.index} >> ${s}`);
    this.wire?.send(s);
  }
  backlog(): number { return this.wire?.backlog() ?? 0; }

  get managed(): boolean { return this.sm !== null; }
  /** Tracked stanzas not yet acknowledged (0 without stream management). */
  get unacked(): number { return this.sm?.unacked ?? 0; }

  /** A stanza the server counts (XEP-0198 §4) but whose acknowledgement is not timed. */
  private sendStanza(s: string): void {
    if (this.sm) this.sm.out++;
    this.send(s);
  }

  /**
   * A measured stanza sent at `ts` (µs): with stream management it is counted, timed until the <a h/> covering it,
   * and followed by <r/> (in the same write) every `smRequestEvery` stanzas.
   */
  sendTracked(s: string, ts: number): void {
    const sm = this.sm;
    if (!sm) { this.send(s); return; }
    sm.out++;
    sm.tracked(ts);
    if (++sm.sinceRequest >= sm.requestEvery) {
      sm.requested(ts);
      this.send(s + SM_R);
    } else this.send(s);
  }

  /** Ask for an ack of what was sent since the last <r/> (the end of a step); false when nothing waits. */
  requestAck(): boolean {
    const sm = this.sm;
    if (!sm || sm.sinceRequest === 0 || this.closed) return false;
    sm.requested(nowUs());
    this.send(SM_R);
    return true;
  }

  private onSm(name: 'r' | 'a', tag: string): void {
    const sm = this.sm;
    if (!sm) return;
    if (name === 'r') { this.send(`<a xmlns='${NS_SM}' h='${sm.counter.count}'/>`); return; }
    const h = Number(attr(tag, 'h'));
    if (Number.isFinite(h)) sm.ack(h, nowUs(), this.onAcked, this.onRequestAcked);
  }

  private openStream(): void {
    this.send(this.ws
      ? `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='${this.o.domain}' version='1.0'/>`
      : `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${this.o.domain}' version='1.0'>`);
  }

  private fail(reason: string): void {
    if (!this.closeReason) this.closeReason = reason;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new Error(reason));
  }

  private feed(text: string): void {
    if (TRACE) console.error(`${this.index} << ${text}`);
    if (this.sm) this.sm.counter.feed(text);
    if (this.waiter || !this.onToken) {
      // Only the new text (and a partial tag before it) can hold a stream error: a buffer may grow large while joining a room.
      const from = Math.max(0, this.buf.length - 13);
      this.buf += text;
      const se = this.buf.indexOf('<stream:error', from);
      if (se >= 0) { this.fail(`stream error: ${this.buf.slice(se, se + 200)}`); this.wire?.destroy(); return; }
      if (this.waiter) {
        const f = this.waiter.match(this.buf);
        if (typeof f === 'number') this.buf = this.buf.slice(f);
        else if (f) {
          this.buf = this.buf.slice(f.end);
          const w = this.waiter;
          this.waiter = null;
          w.resolve(f);
        }
      } else if (this.ready) {
        // Idle: answer pings once their opening tag is in, keep little else.
        const p = this.buf.lastIndexOf('urn:xmpp:ping');
        if (p >= 0) { this.answerPings(); this.buf = this.buf.slice(p + 13); }
        if (this.buf.length > 4096) this.buf = this.buf.slice(-64);
      }
      return;
    }
    const s = this.buf.length ? this.buf + text : text;
    this.buf = scanTokens(s, (token) => this.onToken?.(this, token));
    if (s.includes('urn:xmpp:ping')) this.answerPings(s);
  }

  /** Servers may probe idle clients with XEP-0199 pings; a silent client would be dropped. */
  private answerPings(s = this.buf): void {
    let p = s.indexOf("urn:xmpp:ping");
    while (p >= 0) {
      const start = s.lastIndexOf('<iq', p);
      const tag = start >= 0 ? s.slice(start, s.indexOf('>', start) + 1) : '';
      const id = attr(tag, 'id');
      if (id && attr(tag, 'type') === 'get') this.pingsAnswered++;
      if (id && attr(tag, 'type') === 'get') this.sendStanza(`<iq${this.ns} type='result' id='${id}'${attr(tag, 'from') ? ` to='${attr(tag, 'from')}'` : ''}/>`);
      p = s.indexOf('urn:xmpp:ping', p + 1);
    }
  }

  private wait(match: Matcher): Promise<Found> {
    return new Promise((resolve, reject) => {
      if (this.closed) { reject(new Error(this.closeReason || 'closed')); return; }
      const f = match(this.buf);
      if (typeof f === 'number') this.buf = this.buf.slice(f);
      else if (f) { this.buf = this.buf.slice(f.end); resolve(f); return; }
      this.waiter = { match, resolve, reject };
    });
  }

  private iq(id: string, body: string, type = 'set', anyReply = false): Promise<Found> {
    this.sendStanza(`<iq${this.ns} type='${type}' id='${id}'>${body}</iq>`);
    return this.wait((buf) => {
      for (let from = 0; ;) {
        const f = findElement(buf, ['iq'], from);
        if (!f) return null;
        if (attr(f.text.slice(0, f.text.indexOf('>') + 1), 'id') === id) {
          if (!anyReply && attr(f.text, 'type') !== 'result') throw new Error(`iq ${id} failed: ${f.text.slice(0, 300)}`);
          return f;
        }
        from = f.end;
      }
    });
  }

  /** Once logged in: sends `xml` (if any) and resolves with what `match` finds in the input that follows. */
  exchange(xml: string, match: Matcher): Promise<Found> {
    if (xml) this.send(xml);
    return this.wait(match);
  }

  /**
   * Connect, authenticate, bind and optionally fetch the roster and go available. `saltOnly`: stop after the first
   * SCRAM challenge, once the salted password is cached, and close the stream without logging in.
   */
  async login(saltOnly = false): Promise<void> {
    const o = this.o;
    const timer = setTimeout(() => { this.fail(`login timeout after ${o.timeoutMs} ms`); this.wire?.destroy(); }, o.timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        this.wire = connectWire(o.endpoint, {
          onText: (t) => { try { this.feed(t); } catch (e) { this.fail((e as Error).message); } },
          onClose: (err) => {
            this.closed = true;
            this.fail(err ? err.message : 'connection closed by server');
            reject(new Error(this.closeReason));
            this.onClose?.(this);
          },
        }, resolve);
      });
      const features: Matcher = (b) => findElement(b, ['stream:features', 'features']);
      this.openStream();
      const f1 = await this.wait(features);
      const offered = [...f1.text.matchAll(/<mechanism>([^<]+)<\/mechanism>/g)].map((m) => m[1]);
      const mech = o.mech === 'auto' ? MECHANISMS.find((m) => offered.includes(m)) : offered.includes(o.mech) ? o.mech : undefined;
      if (!mech) throw new Error(`no usable SASL mechanism (offered: ${offered.join(' ') || 'none'})`);
      const sasl = saslClient(mech, o.user, o.password);
      if (saltOnly && mech === 'PLAIN') return this.quit();
      this.send(`<auth xmlns='${SASL_NS}' mechanism='${mech}'>${sasl.initial()}</auth>`);
      for (;;) {
        const el = await this.wait((b) => findElement(b, ['challenge', 'success', 'failure']));
        const data = Buffer.from(inner(el.text), 'base64');
        if (el.name === 'failure') throw new Error(`SASL ${mech} failure: ${el.text.slice(0, 200)}`);
        if (el.name === 'success') {
          if (!sasl.verify(data) && mech !== 'PLAIN') throw new Error('SCRAM server signature mismatch');
          break;
        }
        const response = await sasl.challenge(data);
        if (saltOnly) return this.quit();
        this.send(`<response xmlns='${SASL_NS}'>${response}</response>`);
      }
      this.openStream();
      const f2 = await this.wait(features);
      this.features = f2.text;
      await this.iq('b', `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${o.resource}</resource></bind>`);
      // RFC 3921 sessions: only when the server still insists (no <optional/>).
      const sess = f2.text.indexOf('urn:ietf:params:xml:ns:xmpp-session');
      if (sess >= 0 && !f2.text.slice(sess, f2.text.indexOf('</session>', sess) + 1).includes('optional')) {
        await this.iq('s', `<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>`);
      }
      if (o.smRequestEvery) await this.enableSm(o.smRequestEvery);
      if (o.roster) await this.iq('r', `<query xmlns='jabber:iq:roster'/>`, 'get');
      if (o.presence) {
        // A server handles one session's stanzas in order, so the reply to a
        // ping sent after <presence/> proves the presence was processed. Not
        // every server echoes initial presence back (RFC 6121 §4.2.2), and an
        // error reply (ping unsupported) proves it as well.
        this.sendStanza(`<presence${this.ns}/>`);
        await this.iq('p', `<ping xmlns='urn:xmpp:ping'/>`, 'get', true);
      }
      this.ready = true;
    } finally {
      clearTimeout(timer);
    }
  }

  /** XEP-0198 §3: <enable/> after bind; counting starts with what follows <enabled/>. */
  private async enableSm(requestEvery: number): Promise<void> {
    if (!/urn:xmpp:sm:3/.test(this.features)) throw new Error('the server offers no stream management (urn:xmpp:sm:3)');
    const f = await this.exchange(`<enable xmlns='${NS_SM}'/>`, (b) => findElement(b, ['enabled', 'failed']));
    if (f.name === 'failed') throw new Error(`stream management refused: ${f.text.slice(0, 200)}`);
    // The rest of the buffer came after <enabled/> (no data event runs before this continuation): count it.
    this.sm = new SmState(requestEvery, (name, tag) => this.onSm(name, tag));
    this.sm.counter.feed(this.buf);
  }

  /** Close the stream politely; destroy if the server does not close within `ms`. */
  logout(ms = 3000): Promise<void> {
    if (this.closed || !this.wire) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.onClose;
      const t = setTimeout(() => this.wire?.destroy(), ms);
      this.onClose = (c) => { clearTimeout(t); prev?.(c); resolve(); };
      this.onToken = null;
      // XEP-0198 §4: acknowledge what arrived, or the server bounces it as undelivered when the stream closes.
      if (this.sm) this.send(`<a xmlns='${NS_SM}' h='${this.sm.counter.count}'/>`);
      this.send(this.ws ? `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>` : '</stream:stream>');
      this.wire?.end();
    });
  }

  destroy(): void { this.wire?.destroy(); }

  /** Leave a stream that never logged in: close it and wait until the server has (or 3 s). */
  private quit(): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wire?.destroy(); resolve(); }, 3000);
      this.onClose = () => { clearTimeout(t); resolve(); };
      this.send(this.ws ? `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>` : '</stream:stream>');
      this.wire?.end();
    });
  }
}
