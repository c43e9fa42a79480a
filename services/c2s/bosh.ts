// BOSH (XEP-0124) carrying XMPP (XEP-0206): each session is a ClientTransport
// whose "socket" is a window of held HTTP requests. Requests are processed in
// rid order, answered when there is something to send or when `wait` runs
// out, and the session ends after `inactivity` seconds with none in flight.
//
// Behind a load balancer without sticky sessions a request may reach a node
// that does not hold its session: the sid names the owning node, and the
// request is relayed to it over the bus and answered back the same way
// (docs/architecture-transports.md says why relaying and not shared state).
import { randomBytes } from 'node:crypto';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import type { Config } from '../../libs/config/schema.ts';
import { StreamError } from '../../libs/errors/index.ts';
import { logger } from '../../libs/log/index.ts';
import type { Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { NOT_UTF8, type StreamParserLimits } from '../../libs/xml/parser.ts';
import { escapeAttr, escapeText, serialize } from '../../libs/xml/serialize.ts';
import { asText, checkLimits, NS_CLIENT, NS_STREAM, qualify } from './framing.ts';
import type { HttpRequest, HttpResponse, HttpRoute } from './http-server.ts';
import { isLoopback } from './tcp.ts';
import type { ClientTransport, StreamEvents } from './transport.ts';

const log = logger('bosh');

export const NS_HTTPBIND = 'http://jabber.org/protocol/httpbind';
export const NS_XBOSH = 'urn:xmpp:xbosh';

/** XEP-0124 §17 terminal binding conditions we use. */
type BoshCondition = 'bad-request' | 'host-unknown' | 'item-not-found' | 'policy-violation' | 'remote-connection-failed' | 'remote-stream-error'
  | 'see-other-uri' | 'system-shutdown' | 'undefined-condition';

const SID_RE = /^[A-Za-z0-9_-]{16,64}\.([A-Za-z0-9_-]{1,64})$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function terminateBody(condition: BoshCondition, inner = ''): string {
  return `<body type="terminate" condition="${condition}" xmlns="${NS_HTTPBIND}" xmlns:stream="${NS_STREAM}">${inner}</body>`;
}

/** One HTTP request of a session, from this node's listener or relayed from another node. */
export interface BoshExchange {
  readonly remoteAddress: string;
  readonly secure: boolean;
  /** Answer with a <body/> document; once. */
  reply(xml: string): void;
  /** The client gave up waiting (local requests only). */
  onAborted(cb: () => void): void;
}

interface Pending {
  x: BoshExchange;
  body: Element;
  bytes: number;
  /** Counted against the inbound rate already. */
  charged: boolean;
}

interface Held {
  rid: number;
  x: BoshExchange;
  timer: NodeJS.Timeout;
  /** The session creation response carries the session's attributes. */
  creation: boolean;
}

export type BoshSettings = Config['c2s']['bosh'];

interface SessionParams {
  sid: string;
  rid: number;
  hold: number;
  wait: number;
  domain: string;
  lang: string | undefined;
  xmppVersion: string | undefined;
}

export class BoshSession implements ClientTransport {
  readonly kind = 'bosh' as const;
  readonly canStartTls = false;
  readonly secure: boolean;
  readonly loopback: boolean;
  readonly remoteAddress: string;
  readonly sid: string;
  private events: StreamEvents | undefined;
  private readonly hold: number;
  private readonly wait: number;
  /** The rid window: requests the client may have in flight. */
  private readonly requests: number;
  private lastRid: number;
  /** Requests that arrived ahead of a gap in the rids, by rid. */
  private readonly ahead = new Map<number, Pending>();
  /** The inbound rate limit holds requests back until then. */
  private blockedUntil = 0;
  private pumpTimer: NodeJS.Timeout | undefined;
  /** Requests waiting for something to answer with, oldest first. */
  private held: Held[] = [];
  /** Responses already sent, by rid, for clients that resend a request. */
  private readonly answered = new Map<number, string>();
  private answeredBytes = 0;
  private queue: string[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  private streamId = '';
  private inactivityTimer: NodeJS.Timeout | undefined;
  private lastRequestAt = 0;
  /** Set once the session is over: the body every later request gets. */
  private terminated: string | undefined;
  private readonly streamAttrs: Record<string, string>;

  constructor(p: SessionParams, first: BoshExchange, private readonly svc: BoshService) {
    this.sid = p.sid;
    this.hold = p.hold;
    this.wait = p.wait;
    this.requests = p.hold + 1;
    this.lastRid = p.rid;
    this.secure = first.secure;
    this.remoteAddress = first.remoteAddress;
    this.loopback = isLoopback(first.remoteAddress);
    this.streamAttrs = { to: p.domain, xmlns: NS_CLIENT, 'xmlns:stream': NS_STREAM };
    if (p.xmppVersion !== undefined) this.streamAttrs.version = p.xmppVersion;
    if (p.lang !== undefined) this.streamAttrs['xml:lang'] = p.lang;
    this.holdRequest(p.rid, first, true);
  }

  attach(events: StreamEvents): void {
    this.events = events;
  }

  /** After accept(): the session creation request opens the stream. */
  start(): void {
    this.events?.open({ ...this.streamAttrs });
  }

  // ---- requests ----

  receive(x: BoshExchange, body: Element, bytes: number): void {
    if (this.terminated !== undefined) return x.reply(this.terminated);
    const rid = Number(body.attrs.rid);
    if (!Number.isSafeInteger(rid) || rid < 0) return this.terminate(x, 'bad-request');
    if (rid <= this.lastRid) {
      // A resend (XEP-0124 §14.3): the same answer again, or, when it is still
      // held or its HTTP request was lost, this request takes its place.
      const cached = this.answered.get(rid);
      if (cached !== undefined) return x.reply(cached);
      if (rid > this.lastRid - this.requests) {
        const i = this.held.findIndex((h) => h.rid === rid);
        if (i !== -1) {
          clearTimeout(this.held[i].timer);
          this.held.splice(i, 1);
        }
        this.holdRequest(rid, x, false);
        this.flushSoon();
        return;
      }
      return this.terminate(x, 'item-not-found');
    }
    if (rid > this.lastRid + this.requests) return this.terminate(x, 'item-not-found');
    this.ahead.get(rid)?.x.reply(this.wrap(''));
    this.ahead.set(rid, { x, body, bytes, charged: false });
    this.pump();
  }

  /** Process the requests that are next in rid order, as fast as the inbound rate allows. */
  private pump(): void {
    const ev = this.events;
    if (!ev || this.pumpTimer) return;
    for (let next = this.ahead.get(this.lastRid + 1); next && this.terminated === undefined; next = this.ahead.get(this.lastRid + 1)) {
      if (!next.charged) {
        next.charged = true;
        const wait = ev.activity(next.bytes);
        if (wait > 0) this.blockedUntil = Math.max(this.blockedUntil, Date.now()) + wait;
      }
      const wait = this.blockedUntil - Date.now();
      if (wait > 0) {
        this.pumpTimer = setTimeout(() => { this.pumpTimer = undefined; this.pump(); }, wait);
        this.pumpTimer.unref();
        return;
      }
      this.ahead.delete(++this.lastRid);
      this.process(this.lastRid, next.x, next.body);
    }
  }

  private process(rid: number, x: BoshExchange, body: Element): void {
    const ev = this.events!;
    const now = Date.now();
    const empty = body.children.every((c) => typeof c === 'string');
    if (this.hold === 0 && empty && body.attrs.type === undefined && now - this.lastRequestAt < this.svc.settings.pollingSeconds * 1000) {
      return this.terminate(x, 'policy-violation');
    }
    this.lastRequestAt = now;
    this.holdRequest(rid, x, false);

    if (body.attrs['xmpp:restart'] === 'true') {
      ev.open({ ...this.streamAttrs });
    } else {
      for (const c of body.children) {
        if (typeof c === 'string') continue;
        const tooBig = checkLimits(c, this.svc.limits);
        if (tooBig) return ev.error(tooBig);
        ev.stanza(c);
        if (this.terminated !== undefined) return;
      }
    }
    if (body.attrs.type === 'terminate') return ev.close();
    // More requests held than the client asked for: answer the oldest.
    while (this.held.length > this.hold) this.answer(this.held[0], this.takeQueue());
    this.flushSoon();
  }

  private holdRequest(rid: number, x: BoshExchange, creation: boolean): void {
    if (this.inactivityTimer) {
      clearTimeout(this.inactivityTimer);
      this.inactivityTimer = undefined;
    }
    const h: Held = { rid, x, creation, timer: setTimeout(() => this.answer(h, this.takeQueue()), this.wait * 1000) };
    h.timer.unref();
    // A request the client gave up on is not answered: its data goes to the next one.
    x.onAborted(() => {
      const i = this.held.indexOf(h);
      if (i === -1) return;
      clearTimeout(h.timer);
      this.held.splice(i, 1);
      if (this.held.length === 0 && this.terminated === undefined) this.startInactivity();
    });
    this.held.push(h);
    if (this.held.length > 1 && this.held[this.held.length - 2].rid > rid) this.held.sort((a, b) => a.rid - b.rid);
  }

  private takeQueue(): string {
    const s = this.queue.join('');
    this.queue = [];
    this.queuedBytes = 0;
    return s;
  }

  private wrap(payload: string, attrs = ''): string {
    return `<body xmlns="${NS_HTTPBIND}" xmlns:stream="${NS_STREAM}"${attrs}>${payload}</body>`;
  }

  private creationAttrs(): string {
    const s = this.svc.settings;
    const a: Record<string, string> = {
      sid: this.sid, wait: String(this.wait), hold: String(this.hold), requests: String(this.requests),
      inactivity: String(s.inactivitySeconds), polling: String(s.pollingSeconds), ver: '1.11',
      from: this.streamAttrs.to, authid: this.streamId, secure: 'true',
      'xmpp:version': '1.0', 'xmpp:restartlogic': 'true', 'xmlns:xmpp': NS_XBOSH,
    };
    let out = '';
    for (const k in a) out += ` ${k}="${escapeAttr(a[k])}"`;
    return out;
  }

  private answer(h: Held, payload: string): void {
    const i = this.held.indexOf(h);
    if (i === -1) return;
    this.held.splice(i, 1);
    clearTimeout(h.timer);
    const xml = this.wrap(payload, h.creation ? this.creationAttrs() : '');
    this.remember(h.rid, xml);
    h.x.reply(xml);
    if (this.held.length === 0 && this.terminated === undefined) this.startInactivity();
  }

  private remember(rid: number, xml: string): void {
    this.forgetAnswer(rid);
    this.answered.set(rid, xml);
    this.answeredBytes += xml.length;
    // Only the window can be resent; and the cache costs no more than the output buffer a TCP client may have.
    for (const r of this.answered.keys()) {
      if (r > this.lastRid - this.requests && (this.answeredBytes <= this.svc.maxOutboundBytes || r === rid)) break;
      this.forgetAnswer(r);
    }
  }

  private forgetAnswer(rid: number): void {
    const old = this.answered.get(rid);
    if (old === undefined) return;
    this.answered.delete(rid);
    this.answeredBytes -= old.length;
  }

  private flushSoon(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Everything one step of the stream writes goes out in one response.
    queueMicrotask(() => {
      this.flushScheduled = false;
      if (this.queue.length > 0 && this.held.length > 0) this.answer(this.held[0], this.takeQueue());
    });
  }

  private startInactivity(): void {
    if (this.inactivityTimer) clearTimeout(this.inactivityTimer);
    this.inactivityTimer = setTimeout(() => this.expire(), this.svc.settings.inactivitySeconds * 1000);
    this.inactivityTimer.unref();
  }

  /** A request whose bytes are not UTF-8 (RFC 6120 §11.6) ends the session. */
  notUtf8(x: BoshExchange): void {
    if (this.terminated !== undefined) return x.reply(this.terminated);
    this.terminate(x, 'bad-request', new StreamError('not-well-formed', NOT_UTF8));
  }

  /** A terminal binding error caused by one request (bad rid, out of window, polling too fast, not UTF-8). */
  private terminate(x: BoshExchange, condition: BoshCondition, error?: StreamError): void {
    const xml = terminateBody(condition, error ? serialize(error.toElement()) : '');
    this.shutdown(xml);
    x.reply(xml);
    this.events?.error(error ?? new StreamError('policy-violation', `BOSH session terminated: ${condition}`));
  }

  /**
   * The session is over: every request held or waiting for a gap gets `xml`;
   * the session stays findable a little while so a late request learns why.
   */
  private shutdown(xml: string): void {
    if (this.terminated !== undefined) return;
    this.terminated = xml;
    const held = this.held;
    this.held = [];
    for (const h of held) {
      clearTimeout(h.timer);
      this.remember(h.rid, xml);
      h.x.reply(xml);
    }
    for (const a of this.ahead.values()) a.x.reply(xml);
    this.ahead.clear();
    clearTimeout(this.pumpTimer);
    if (this.inactivityTimer) clearTimeout(this.inactivityTimer);
    this.inactivityTimer = setTimeout(() => this.svc.forget(this), Math.min(this.svc.settings.inactivitySeconds, 10) * 1000);
    this.inactivityTimer.unref();
  }

  /** No request for `inactivity` seconds: the client is gone. */
  private expire(): void {
    this.shutdown(terminateBody('item-not-found'));
    if (this.inactivityTimer) clearTimeout(this.inactivityTimer);
    this.svc.forget(this);
    this.events?.disconnected();
  }

  // ---- ClientTransport ----

  openStream(attrs: Record<string, string>): void {
    this.streamId = attrs.id ?? '';
  }

  send(data: string | Uint8Array): void {
    if (this.terminated !== undefined) return;
    const s = qualify(asText(data));
    this.queue.push(s);
    this.queuedBytes += s.length;
    this.flushSoon();
  }

  bufferedBytes(): number {
    return this.queuedBytes;
  }

  resetStream(): void {
    // The client restarts with xmpp:restart='true' on its next request.
  }

  startTls(): Promise<void> {
    return Promise.reject(new Error('BOSH gets TLS from HTTPS'));
  }

  closeStream(error?: StreamError): void {
    if (this.terminated !== undefined) return;
    const pending = this.takeQueue();
    let xml: string;
    if (!error) {
      xml = `<body type="terminate" xmlns="${NS_HTTPBIND}" xmlns:stream="${NS_STREAM}">${pending}</body>`;
    } else if (error.condition === 'host-unknown' || error.condition === 'system-shutdown') {
      xml = terminateBody(error.condition, pending);
    } else if (error.condition === 'see-other-host') {
      xml = terminateBody('see-other-uri', `${pending}<uri>${escapeText(error.text ?? '')}</uri>`);
    } else {
      xml = terminateBody('remote-stream-error', pending + serialize(error.toElement()));
    }
    this.shutdown(xml);
  }

  pause(_ms: number): void {
    // Nothing to pause: the rid window (hold + 1 requests) already bounds how fast a client can send.
  }
}

export interface BoshServiceOptions {
  nodeId: string;
  settings: BoshSettings;
  limits: StreamParserLimits;
  /** What a session may leave queued for its client (and keep cached for resends). */
  maxOutboundBytes: number;
  /** Refuse new sessions: why, or undefined to accept. */
  refuse(): 'shutdown' | 'full' | 'unavailable' | undefined;
  accept(t: BoshSession): void;
  /** Publish a control envelope to another c2s node's subject. */
  publish(node: string, env: Envelope): void;
  /** How long to wait for the owning node to answer a relayed request. */
  relayTimeoutMs?: number;
}

/** The /http-bind endpoint: creates sessions, routes each request to its session, here or on its node. */
export class BoshService {
  readonly settings: BoshSettings;
  readonly limits: StreamParserLimits;
  readonly maxOutboundBytes: number;
  private readonly sessions = new Map<string, BoshSession>();
  private readonly relayed = new Map<string, { res: HttpResponse; headers: Record<string, string>; timer: NodeJS.Timeout }>();

  constructor(private readonly o: BoshServiceOptions) {
    this.settings = o.settings;
    this.limits = o.limits;
    this.maxOutboundBytes = o.maxOutboundBytes;
  }

  get size(): number {
    return this.sessions.size;
  }

  routes(): HttpRoute[] {
    const path = this.settings.path;
    return [
      { method: 'post', path, maxBodyBytes: this.settings.maxBodyBytes, handle: (req, body, res) => this.onPost(req, body, res) },
      { method: 'options', path, handle: (req, _b, res) => res.send(204, { ...this.cors(req), 'access-control-allow-methods': 'POST, OPTIONS', 'access-control-allow-headers': 'content-type', 'access-control-max-age': '86400' }) },
      { method: 'get', path, handle: (req, _b, res) => res.send(405, { ...this.cors(req), allow: 'POST, OPTIONS', 'content-type': 'text/plain' }, 'BOSH (XEP-0124/XEP-0206): POST <body/> documents here\n') },
    ];
  }

  private cors(req: HttpRequest): Record<string, string> {
    const origins = this.settings.corsOrigins;
    if (origins.length === 0) return {};
    const origin = req.headers.origin;
    if (origins.includes('*')) return { 'access-control-allow-origin': '*' };
    if (origin && origins.includes(origin)) return { 'access-control-allow-origin': origin, vary: 'origin' };
    return {};
  }

  private onPost(req: HttpRequest, raw: Buffer, res: HttpResponse): void {
    const headers = { 'content-type': 'text/xml; charset=utf-8', 'cache-control': 'no-store', ...this.cors(req) };
    const x: BoshExchange = {
      remoteAddress: req.remoteAddress,
      secure: req.secure,
      reply: (xml) => res.send(200, headers, xml),
      onAborted: (cb) => res.onAborted(cb),
    };
    let text: string;
    try {
      text = UTF8.decode(raw);
    } catch {
      return this.notUtf8(raw, x);
    }
    const sid = /\bsid=["']([^"']*)["']/.exec(text.slice(0, 1024))?.[1];
    const owner = sid !== undefined ? SID_RE.exec(sid)?.[1] : undefined;
    if (sid !== undefined && owner !== undefined && owner !== this.o.nodeId) return this.relay(owner, req, text, res, headers);
    this.handle(text, x);
  }

  /**
   * A request that is not UTF-8 (RFC 6120 §11.6) is refused as bad XML is,
   * with the stream error that says why; the session it names ends if it is
   * held here (one held elsewhere expires: the client has been told it is over).
   */
  private notUtf8(raw: Buffer, x: BoshExchange): void {
    const sid = /\bsid=["']([^"']*)["']/.exec(raw.toString('latin1', 0, 1024))?.[1];
    const s = sid !== undefined ? this.sessions.get(sid) : undefined;
    if (s) return s.notUtf8(x);
    x.reply(terminateBody('bad-request', serialize(new StreamError('not-well-formed', NOT_UTF8).toElement())));
  }

  /** A request for a session this node holds (from its own listener or relayed). */
  handle(text: string, x: BoshExchange): void {
    let body: Element;
    try {
      body = parseFragment(text);
    } catch {
      return x.reply(terminateBody('bad-request'));
    }
    if (body.name !== 'body' || body.attrs.xmlns !== NS_HTTPBIND) return x.reply(terminateBody('bad-request'));
    const sid = body.attrs.sid;
    if (sid === undefined) return this.create(body, x);
    const s = this.sessions.get(sid);
    if (!s) return x.reply(terminateBody('item-not-found'));
    s.receive(x, body, Buffer.byteLength(text));
  }

  private create(body: Element, x: BoshExchange): void {
    const a = body.attrs;
    const rid = Number(a.rid);
    if (!Number.isSafeInteger(rid) || rid < 0 || !a.to) return x.reply(terminateBody('bad-request'));
    const refused = this.o.refuse();
    // unavailable: the connection manager cannot reach what serves the session (XEP-0124 §17.2).
    if (refused) return x.reply(terminateBody(refused === 'shutdown' ? 'system-shutdown' : refused === 'unavailable' ? 'remote-connection-failed' : 'undefined-condition'));
    const num = (v: string | undefined, dflt: number) => {
      const n = Number(v);
      return v !== undefined && Number.isInteger(n) && n >= 0 ? n : dflt;
    };
    const hold = Math.min(num(a.hold, 1), this.settings.maxHold);
    const wait = Math.max(1, Math.min(num(a.wait, this.settings.maxWaitSeconds), this.settings.maxWaitSeconds));
    const sid = `${randomBytes(18).toString('base64url')}.${this.o.nodeId}`;
    const s = new BoshSession({ sid, rid, hold, wait, domain: a.to, lang: a['xml:lang'], xmppVersion: a['xmpp:version'] }, x, this);
    this.sessions.set(sid, s);
    this.o.accept(s);
    s.start();
  }

  forget(s: BoshSession): void {
    if (this.sessions.get(s.sid) === s) this.sessions.delete(s.sid);
  }

  // ---- relaying between nodes ----

  private relay(owner: string, req: HttpRequest, text: string, res: HttpResponse, headers: Record<string, string>): void {
    const id = randomBytes(9).toString('base64url');
    const timeoutMs = this.o.relayTimeoutMs ?? (this.settings.maxWaitSeconds + 15) * 1000;
    const timer = setTimeout(() => {
      this.relayed.delete(id);
      log.debug('relayed BOSH request unanswered', { owner });
      res.send(200, headers, terminateBody('item-not-found'));
    }, timeoutMs);
    timer.unref();
    this.relayed.set(id, { res, headers, timer });
    res.onAborted(() => {
      clearTimeout(timer);
      this.relayed.delete(id);
    });
    this.o.publish(owner, envelope({
      kind: 'ctl', dir: 'in', op: 'bosh-relay', sid: id, xml: text,
      data: { node: this.o.nodeId, remoteAddress: req.remoteAddress, secure: req.secure },
    }));
  }

  /** Control envelopes of the relay, from this node's bus subject. */
  fromBus(env: Envelope): void {
    if (env.op === 'bosh-relay') {
      const d = env.data as { node: string; remoteAddress: string; secure: boolean };
      this.handle(asText(env.xml), {
        remoteAddress: d.remoteAddress,
        secure: d.secure,
        reply: (xml) => this.o.publish(d.node, envelope({ kind: 'ctl', dir: 'in', op: 'bosh-relay-reply', sid: env.sid, xml })),
        onAborted: () => {},
      });
    } else if (env.op === 'bosh-relay-reply') {
      const r = this.relayed.get(env.sid);
      if (!r) return;
      clearTimeout(r.timer);
      this.relayed.delete(env.sid);
      r.res.send(200, r.headers, asText(env.xml));
    }
  }

  /** Answer relayed requests still waiting; sessions are closed through their streams. */
  stop(): void {
    for (const r of this.relayed.values()) {
      clearTimeout(r.timer);
      r.res.send(200, r.headers, terminateBody('system-shutdown'));
    }
    this.relayed.clear();
  }
}

