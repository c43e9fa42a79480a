// XMPP over WebSocket (RFC 7395): one complete element per text message,
// <open/> and <close/> in the framing namespace instead of the stream tags.
// The ClientStream above sees the same events as on TCP.
import { StreamError } from '../../libs/errors/index.ts';
import { logger } from '../../libs/log/index.ts';
import { el, type Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import type { StreamParserLimits } from '../../libs/xml/parser.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { asText, checkLimits, NS_CLIENT, NS_STREAM, qualify } from './framing.ts';
import type { HttpRequest, WebSocketHandler, WebSocketPeer, WebSocketRoute } from './http-server.ts';
import { isLoopback } from './tcp.ts';
import type { ClientTransport, StreamEvents } from './transport.ts';

export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

export interface WebSocketOptions {
  limits: StreamParserLimits;
  /** Output a peer may leave unread before its stream is closed with policy-violation. */
  maxOutboundBytes: number;
  /** Sent in <close/> when the node shuts down (RFC 7395 §3.6.1). */
  seeOtherUri?: string;
}

/**
 * Inbound messages kept unprocessed (rate limit, or the peer's own output
 * backed up) before the peer is cut off: uWS cannot stop reading a WebSocket,
 * so what TCP does by pausing the socket is bounded here instead.
 */
const MAX_HELD_INBOUND = 256;
const log = logger('c2s');

export class WebSocketTransport implements ClientTransport {
  readonly kind = 'websocket' as const;
  readonly canStartTls = false;
  readonly secure: boolean;
  readonly loopback: boolean;
  readonly remoteAddress: string;
  private events: StreamEvents | undefined;
  /** The client has sent <open/> for the current stream. */
  private opened = false;
  private headerSent = false;
  private closed = false;
  /** Inbound messages not yet processed: paused, or our output to this peer is backed up. */
  private held: string[] = [];
  private heldBytes = 0;
  private pausedUntil = 0;
  private resumeTimer: NodeJS.Timeout | undefined;
  private errorQueued = false;

  constructor(private readonly peer: WebSocketPeer, private readonly o: WebSocketOptions) {
    this.secure = peer.secure;
    this.remoteAddress = peer.remoteAddress;
    this.loopback = isLoopback(peer.remoteAddress);
  }

  /** What the HTTP server calls for this connection. */
  readonly handler: WebSocketHandler = {
    message: (text) => {
      try {
        this.onMessage(text);
      } catch (e) {
        // A throw while handling this client's input (a bug) ends this stream, not the process.
        log.error('handling input failed; closing the stream', { remote: this.remoteAddress, error: e, stack: e instanceof Error ? e.stack : undefined });
        this.fail(new StreamError('internal-server-error', 'the server failed handling this stream'));
      }
    },
    drain: () => this.onDrain(),
    heartbeat: () => this.events?.activity(),
    closed: () => this.onClosed(),
  };

  attach(events: StreamEvents): void {
    this.events = events;
  }

  // ---- inbound ----

  private get congested(): boolean {
    return this.peer.bufferedAmount() > this.o.maxOutboundBytes / 2;
  }

  private onMessage(text: string | null): void {
    if (this.closed || !this.events) return;
    if (text === null) {
      this.events.activity();
      return this.fail(new StreamError('unsupported-encoding', 'XMPP over WebSocket uses UTF-8 text messages only (RFC 7395 §3.2)'));
    }
    const bytes = Buffer.byteLength(text);
    // The inbound rate limit: over it, this message waits its turn (after those already waiting).
    const wait = this.events.activity(bytes);
    if (wait > 0) this.pause(Math.max(0, this.pausedUntil - Date.now()) + wait);
    // So does a client that makes us write faster than it reads, until it has read.
    if (this.held.length > 0 || this.pausedUntil > Date.now() || this.congested) {
      if (this.held.length >= MAX_HELD_INBOUND || this.heldBytes + bytes > this.o.limits.maxStanzaBytes * 4) {
        return this.fail(new StreamError('policy-violation', 'too much input held back (sending too fast, or not reading)'));
      }
      this.held.push(text);
      this.heldBytes += bytes;
      return;
    }
    this.frame(text, bytes);
  }

  private onDrain(): void {
    while (this.held.length > 0 && !this.closed && !this.congested && this.pausedUntil <= Date.now()) {
      const text = this.held.shift()!;
      const bytes = Buffer.byteLength(text);
      this.heldBytes -= bytes;
      this.frame(text, bytes);
    }
    // A timer may fire a millisecond before Date.now() says it is due: come back then.
    const early = this.pausedUntil - Date.now();
    if (this.held.length > 0 && !this.closed && early > 0) {
      clearTimeout(this.resumeTimer);
      this.resumeTimer = setTimeout(() => this.onDrain(), early);
      this.resumeTimer.unref();
    }
  }

  private frame(text: string, bytes: number): void {
    const ev = this.events!;
    if (bytes > this.o.limits.maxStanzaBytes) {
      return this.fail(new StreamError('policy-violation', `stanza too large (max ${this.o.limits.maxStanzaBytes} bytes)`));
    }
    if (text.trim() === '') return; // nothing to process; RFC 7395 has no whitespace keepalives but they hurt nobody
    let e: Element;
    try {
      e = parseFragment(text);
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      return this.fail(err.text?.startsWith('content after the element')
        ? new StreamError('not-well-formed', 'a WebSocket message carries exactly one complete element (RFC 7395 §3.3.3)')
        : err);
    }
    const tooBig = checkLimits(e, this.o.limits);
    if (tooBig) return this.fail(tooBig);

    if (e.attrs.xmlns === NS_FRAMING) {
      if (e.name === 'open') {
        this.opened = true;
        const attrs: Record<string, string> = { ...e.attrs, xmlns: NS_CLIENT, 'xmlns:stream': NS_STREAM };
        return ev.open(attrs);
      }
      if (e.name === 'close') return ev.close();
      return this.fail(new StreamError('invalid-xml', `<${e.name}/> is not an element of the framing namespace`));
    }
    if (!this.opened) {
      return this.fail(new StreamError('invalid-namespace', `the stream starts with <open xmlns='${NS_FRAMING}'/>, not <${e.name}/>`));
    }
    ev.stanza(e);
  }

  /** Our own error: handed to the stream (not closed here) so its state machine ends it. */
  private fail(err: StreamError): void {
    if (this.closed) return;
    this.held = [];
    this.heldBytes = 0;
    this.events?.error(err);
  }

  private onClosed(): void {
    this.closed = true;
    this.held = [];
    this.events?.disconnected();
  }

  // ---- outbound ----

  openStream(attrs: Record<string, string>): void {
    this.headerSent = true;
    const { xmlns: _content, 'xmlns:stream': _stream, ...rest } = attrs;
    this.write(serialize(el('open', { xmlns: NS_FRAMING, ...rest })));
  }

  send(data: string | Uint8Array): void {
    if (this.closed) return;
    this.write(qualify(asText(data)));
    if (!this.errorQueued && this.peer.bufferedAmount() > this.o.maxOutboundBytes) {
      // Never buffer without bound. Not from inside send(): the caller is mid-step.
      this.errorQueued = true;
      queueMicrotask(() => this.fail(new StreamError('policy-violation', 'the client is not reading its stream')));
    }
  }

  private write(text: string): void {
    if (!this.peer.send(text)) {
      // uWS dropped it (past its own ceiling): the stream is no longer intact.
      this.closed = true;
      this.peer.terminate();
    }
  }

  bufferedBytes(): number {
    return this.peer.bufferedAmount();
  }

  resetStream(): void {
    this.opened = false;
    this.headerSent = false;
  }

  startTls(): Promise<void> {
    return Promise.reject(new Error('WebSocket connections get TLS from wss://, not STARTTLS'));
  }

  closeStream(error?: StreamError): void {
    if (this.closed) return;
    if (!this.headerSent) this.write(serialize(el('open', { xmlns: NS_FRAMING, version: '1.0' })));
    let seeOther: string | undefined;
    if (error?.condition === 'see-other-host') seeOther = error.text;
    else if (error?.condition === 'system-shutdown' && this.o.seeOtherUri) seeOther = this.o.seeOtherUri;
    if (error && seeOther === undefined) {
      const e = error.toElement();
      e.attrs['xmlns:stream'] = NS_STREAM;
      this.write(serialize(e));
    }
    if (!this.closed) this.write(serialize(el('close', { xmlns: NS_FRAMING, 'see-other-uri': seeOther })));
    this.closed = true;
    this.held = [];
    this.peer.end(1000);
  }

  pause(ms: number): void {
    const until = Date.now() + ms;
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => this.onDrain(), ms);
    this.resumeTimer.unref();
  }
}

export interface WebSocketRouteOptions extends WebSocketOptions {
  path: string;
  idleTimeoutSeconds: number;
  /** Refuse new upgrades (node full or shutting down). */
  refuse(req: HttpRequest): { status: number; text: string } | undefined;
  accept(t: WebSocketTransport): void;
}

export function websocketRoute(o: WebSocketRouteOptions): WebSocketRoute {
  return {
    path: o.path,
    protocol: 'xmpp',
    idleTimeoutSeconds: o.idleTimeoutSeconds,
    // Room above the stanza limit so an oversized stanza gets a stream error, not a bare close.
    maxMessageBytes: o.limits.maxStanzaBytes * 2 + 4096,
    // Transports close at maxOutboundBytes; uWS's own ceiling only has to leave room for the error.
    maxBackpressureBytes: o.maxOutboundBytes + 1024 * 1024,
    refuse: o.refuse,
    open: (peer) => {
      const t = new WebSocketTransport(peer, o);
      o.accept(t);
      return t.handler;
    },
  };
}
