// TCP client connections (port 5222) with in-place STARTTLS (RFC 6120 §5).
import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { ChannelBinding } from '../../libs/auth/sasl.ts';
import { tlsChannelBindings } from './channel-binding.ts';
import { StreamError } from '../../libs/errors/index.ts';
import { logger } from '../../libs/log/index.ts';
import { StreamParser, type StreamParserHandler, type StreamParserLimits } from '../../libs/xml/parser.ts';
import type { Element } from '../../libs/xml/element.ts';
import { serialize, startTag } from '../../libs/xml/serialize.ts';
import { readProxyHeader, type ProxyPolicy } from './proxy-protocol.ts';
import type { ClientTransport, StreamEvents } from './transport.ts';

const XML_DECL = "<?xml version='1.0'?>";
const log = logger('c2s');

export function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  return addr.startsWith('127.') || addr === '::1' || addr.startsWith('::ffff:127.');
}

/** The certificate for a TLS SNI server name, or undefined for the default one. */
export type SniLookup = (servername: string) => SecureContext | undefined;

export interface TcpPeerOptions {
  /** The client's real address when a trusted proxy supplied it (PROXY protocol). */
  remoteAddress?: string;
  /** The proxy in front ended the client's TLS (PROXY protocol v2's TLS field): the connection counts as TLS. */
  tlsAtProxy?: boolean;
  /** Per-domain certificates for STARTTLS. */
  sni?: SniLookup;
}

/** What the elements a client sends after closing its stream are read inside (`readAfterClose`). */
const AFTER_CLOSE_HEADER = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`;

/**
 * What the parser reports, forwarded to the stream's events as methods of one small object: four arrow functions
 * per connection would each cost a closure, a context and (named by the loader) a property table of its own.
 */
class ParserEvents implements StreamParserHandler {
  constructor(private readonly ev: StreamEvents) {}
  streamOpen(_name: string, attrs: Record<string, string>): void { this.ev.open(attrs); }
  stanza(el: Element): void { this.ev.stanza(el); }
  streamClose(): void { this.ev.close(); }
  error(err: StreamError): void { this.ev.error(err); }
}

/** The transport reading a socket: the socket's listeners are shared by every connection and find it here. */
const TRANSPORT = Symbol('transport');
type TransportSocket = Socket & { [TRANSPORT]?: TcpTransport };
function onSocketData(this: TransportSocket, chunk: Buffer): void { this[TRANSPORT]?.received(chunk); }
function onSocketError(this: Socket): void { this.destroy(); }
function onSocketClose(this: TransportSocket): void { this[TRANSPORT]?.socketClosed(this); }

/** Transports with writes waiting for the end of this turn. */
const corked: TcpTransport[] = [];
function flushCorked(): void {
  for (let i = 0; i < corked.length; i++) {
    try {
      corked[i].flush();
    } catch (e) {
      corked[i].broken('writing', e);
    }
  }
  corked.length = 0;
}

export class TcpTransport implements ClientTransport {
  readonly kind: 'tcp' | 'tls';
  readonly remoteAddress: string;
  readonly loopback: boolean;
  secure: boolean;
  private socket: Socket;
  private parser: StreamParser | undefined;
  private events: StreamEvents | undefined;
  private headerSent = false;
  private pausedUntil = 0;
  private resumeTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** A read from the socket. */
  received(chunk: Buffer): void {
    const wait = this.events?.activity(chunk.length) ?? 0;
    if (wait <= 0) return this.parse(chunk);
    // Over the rate: stop reading and parse this chunk (at most one socket read) later.
    this.socket.pause();
    setTimeout(() => {
      this.parse(chunk);
      if (!this.closed) this.socket.resume();
    }, wait).unref();
  }

  /** A socket of this transport closed; the plain socket under a TLS upgrade is not the connection's end. */
  socketClosed(socket: Socket): void {
    if (this.socket !== socket) return;
    this.closed = true;
    this.events?.disconnected();
  }

  /** A throw while handling this client's input (a bug) ends this stream, not the process. */
  private parse(chunk: Buffer): void {
    try {
      this.parser?.write(chunk);
    } catch (e) {
      this.broken('handling input', e);
    }
  }

  /** What a bug under this connection costs: the connection, with internal-server-error. */
  broken(doing: string, e: unknown): void {
    log.error(`${doing} failed; closing the stream`, { remote: this.remoteAddress, error: e, stack: e instanceof Error ? e.stack : undefined });
    if (this.closed) {
      this.socket.destroy();
      return;
    }
    try {
      this.events?.error(new StreamError('internal-server-error', 'the server failed handling this stream'));
    } catch {
      this.socket.destroy();
    }
  }

  constructor(socket: Socket, private readonly limits: StreamParserLimits, private readonly tlsContext: SecureContext | undefined, direct = false,
    private readonly peer: TcpPeerOptions = {}) {
    this.socket = socket;
    this.kind = direct ? 'tls' : 'tcp';
    this.secure = direct || peer.tlsAtProxy === true;
    this.remoteAddress = peer.remoteAddress ?? socket.remoteAddress ?? '';
    this.loopback = isLoopback(this.remoteAddress);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
  }

  private bindings: readonly ChannelBinding[] | undefined;

  channelBindings(): readonly ChannelBinding[] {
    if (!(this.socket instanceof TLSSocket) || !this.socket.encrypted) return [];
    this.bindings ??= tlsChannelBindings(this.socket);
    return this.bindings;
  }

  get canStartTls(): boolean {
    return !this.secure && this.tlsContext !== undefined;
  }

  attach(events: StreamEvents): void {
    this.events = events;
    this.parser = this.newParser();
    this.wire(this.socket);
  }

  private newParser(): StreamParser {
    return new StreamParser(new ParserEvents(this.events!), this.limits);
  }

  private wire(socket: TransportSocket): void {
    socket[TRANSPORT] = this;
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
  }

  openStream(attrs: Record<string, string>): void {
    this.flush();
    this.headerSent = true;
    this.socket.write(XML_DECL + startTag('stream:stream', attrs));
  }

  /**
   * Writes wait for the end of the event-loop turn, and what one socket got
   * in that turn goes out in one write: a socket write is a system call that
   * runs the receiver's side of loopback TCP too, the largest single cost of
   * a delivery. Under light load a turn carries one stanza and nothing
   * changes; under load (a room, a presence flood) the calls drop.
   */
  send(data: string | Uint8Array): void {
    if (this.closed) return;
    this.pendingBytes += data.length;
    if (this.pending) {
      this.pending.push(data);
      return;
    }
    this.pending = [data];
    corked.push(this);
    if (corked.length === 1) setImmediate(flushCorked);
  }

  private pending: (string | Uint8Array)[] | undefined;
  private pendingBytes = 0;

  /** Write what waits for the end of the turn (before anything written directly). */
  flush(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.pendingBytes = 0;
    if (this.closed && this.socket.destroyed) return;
    if (p.length === 1) this.socket.write(p[0]);
    else if (p.every((x) => typeof x === 'string')) this.socket.write(p.join(''));
    else this.socket.write(Buffer.concat(p.map((x) => (typeof x === 'string' ? Buffer.from(x) : x))));
  }

  bufferedBytes(): number {
    return this.socket.writableLength + this.pendingBytes;
  }

  resetStream(): void {
    this.headerSent = false;
    this.parser?.reset();
  }

  startTls(): Promise<void> {
    this.flush(); // <proceed/> goes out in the clear, before the handshake
    const plain = this.socket;
    plain.removeListener('data', onSocketData);
    // Whatever plaintext followed <starttls/> in the same read must never be
    // processed (STARTTLS command injection): resetting mid-chunk discards it.
    this.parser?.reset();
    return new Promise((resolve, reject) => {
      const sni = this.peer.sni;
      const tls = new TLSSocket(plain, {
        isServer: true, secureContext: this.tlsContext, ALPNProtocols: ['xmpp-client'],
        SNICallback: sni ? (name, cb) => cb(null, sni(name) ?? this.tlsContext) : undefined,
      });
      this.socket = tls;
      this.secure = true;
      this.headerSent = false;
      this.parser = this.newParser();
      this.wire(tls);
      tls.once('secure', () => resolve());
      tls.once('error', (e) => reject(e));
    });
  }

  readAfterClose(): void {
    if (this.closed || !this.events) return;
    const ev = this.events;
    // Past its </stream:stream> a client's bytes belong to no document: read them as the children of a stream header
    // of our own. Nothing read here can open, close or fail a stream; the server closes its side in any case.
    this.parser = new StreamParser({ streamOpen: () => {}, stanza: (el) => ev.stanza(el), streamClose: () => {}, error: () => {} }, this.limits);
    this.parser.write(Buffer.from(AFTER_CLOSE_HEADER));
  }

  closeStream(error?: StreamError): void {
    if (this.closed) return;
    let out = '';
    if (!this.headerSent) out += XML_DECL + startTag('stream:stream', { xmlns: 'jabber:client', 'xmlns:stream': 'http://etherx.jabber.org/streams', version: '1.0' });
    if (error) out += serialize(error.toElement());
    out += '</stream:stream>';
    this.flush();
    this.closed = true;
    this.socket.end(out);
    // A peer that never closes its side must not hold the socket forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  pause(ms: number): void {
    const until = Date.now() + ms;
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    this.socket.pause();
    clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => this.socket.resume(), ms);
    this.resumeTimer.unref();
  }
}

export interface TcpListenerOptions {
  host: string;
  port: number;
  limits: StreamParserLimits;
  tls: SecureContext | undefined;
  /** Direct TLS (XEP-0368) instead of STARTTLS. */
  direct?: boolean;
  maxConnections: number;
  /** PROXY protocol: read the client's real address first (off by default). */
  proxy?: ProxyPolicy;
  /** Per-domain certificates for STARTTLS. */
  sni?: SniLookup;
  /** listen(2)'s queue of connections not yet accepted (`c2s.tcp.backlog`). */
  backlog: number;
  accept(t: TcpTransport): void;
}

export function listenTcp(opts: TcpListenerOptions): Promise<Server> {
  const server = createServer({ noDelay: true, pauseOnConnect: false }, (socket) => {
    if (!opts.proxy?.enabled) {
      opts.accept(new TcpTransport(socket, opts.limits, opts.tls, false, { sni: opts.sni }));
      return;
    }
    readProxyHeader(socket, opts.proxy).then((peer) => {
      if (!peer) return;
      opts.accept(new TcpTransport(socket, opts.limits, opts.tls, false, { remoteAddress: peer.address, tlsAtProxy: peer.tls, sni: opts.sni }));
      socket.resume();
    }).catch((e: unknown) => {
      log.error('accepting a proxied connection failed', { error: e });
      socket.destroy();
    });
  });
  server.maxConnections = opts.maxConnections;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: opts.port, host: opts.host, backlog: opts.backlog }, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}
