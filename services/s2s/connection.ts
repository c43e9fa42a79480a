// One server-to-server TCP connection, either direction: the socket (plain,
// upgraded by STARTTLS, or TLS from the first byte), the stream parser, and
// what TLS proved about the peer. The stream state machines above it
// (outgoing.ts, incoming.ts) never touch a socket.
import type { Socket } from 'node:net';
import { checkServerIdentity, connect as tlsConnect, TLSSocket, type PeerCertificate, type SecureContext } from 'node:tls';
import { StreamError } from '../../libs/errors/index.ts';
import { logger } from '../../libs/log/index.ts';
import type { Element } from '../../libs/xml/element.ts';
import { StreamParser, type StreamParserLimits } from '../../libs/xml/parser.ts';
import { serialize, startTag } from '../../libs/xml/serialize.ts';
import { NS_SERVER, NS_STREAM } from './stanza.ts';

const log = logger('s2s');

const XML_DECL = "<?xml version='1.0'?>";

export interface ConnectionEvents {
  open(attrs: Record<string, string>): void;
  element(el: Element): void;
  /** The peer closed its stream. */
  close(): void;
  /** The peer sent something that is not XML we accept. */
  error(err: StreamError): void;
  /** The socket is gone (either side closed it, or it failed). */
  gone(): void;
}

export interface ConnectionLimits extends StreamParserLimits {
  /** Bytes queued for a peer that does not read before the connection is dropped. */
  maxOutboundBufferBytes: number;
}

export class S2sConnection {
  private socket: Socket;
  private parser: StreamParser | undefined;
  private events: ConnectionEvents | undefined;
  private headerSent = false;
  private closed = false;
  secure: boolean;
  /** The peer's certificate chain verified against our CA bundle. */
  private chainValid = false;
  private certificate: PeerCertificate | undefined;
  /** When the peer last sent anything. */
  lastActive = Date.now();
  readonly remoteAddress: string;
  private readonly onData = (chunk: Buffer): void => {
    this.lastActive = Date.now();
    try {
      this.parser?.write(chunk);
    } catch (e) {
      // A throw while handling this peer's input (a bug) ends this stream, not the process.
      log.error('handling a server stream failed; closing it', { peer: this.remoteAddress, error: e, stack: e instanceof Error ? e.stack : undefined });
      try {
        this.events?.error(new StreamError('internal-server-error', 'the server failed handling this stream'));
      } catch {
        this.destroy();
      }
    }
  };

  constructor(socket: Socket, private readonly limits: ConnectionLimits) {
    this.socket = socket;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.secure = socket instanceof TLSSocket;
    if (socket instanceof TLSSocket) this.readTls(socket);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
  }

  attach(events: ConnectionEvents): void {
    this.events = events;
    this.parser = this.newParser();
    this.wire(this.socket);
  }

  /** Does the peer's certificate, verified up to a trusted CA, name this domain? */
  certifies(domain: string): boolean {
    return this.chainValid && this.certificate !== undefined && checkServerIdentity(domain, this.certificate) === undefined;
  }

  /** Why the peer's certificate is not trusted, for logs. */
  get certificateProblem(): string {
    if (!this.secure) return 'no TLS';
    if (!this.certificate) return 'no certificate';
    return this.chainValid ? 'the certificate does not name the domain' : 'the certificate chain is not trusted';
  }

  get open(): boolean {
    return !this.closed;
  }

  private newParser(): StreamParser {
    const ev = this.events!;
    return new StreamParser({
      streamOpen: (_name, attrs) => ev.open(attrs),
      stanza: (el) => ev.element(el),
      streamClose: () => ev.close(),
      error: (err) => ev.error(err),
    }, this.limits);
  }

  private wire(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (this.socket !== socket) return; // the plain socket under a TLS upgrade
      this.closed = true;
      this.events?.gone();
    });
  }

  private readTls(tls: TLSSocket): void {
    const cert = tls.getPeerCertificate();
    this.certificate = cert && Object.keys(cert).length > 0 ? cert : undefined;
    this.chainValid = this.certificate !== undefined && (tls.authorized || verifiedByOpenSsl(tls));
  }

  openStream(attrs: Record<string, string>): void {
    this.headerSent = true;
    this.send(XML_DECL + startTag('stream:stream', attrs));
  }

  send(data: string): void {
    if (this.closed) return;
    this.socket.write(data);
    if (this.socket.writableLength > this.limits.maxOutboundBufferBytes) {
      this.socket.destroy(); // the peer is not reading; what it has not read is lost with the stream
    }
  }

  /** After SASL success: the next input is a new stream header. */
  resetStream(): void {
    this.headerSent = false;
    this.parser?.reset();
  }

  /** Initiating side of STARTTLS; `<proceed/>` has been read. */
  startTlsClient(servername: string, context: SecureContext): Promise<void> {
    return this.upgrade(() => tlsConnect({ socket: this.socket, servername, secureContext: context, rejectUnauthorized: false }), 'secureConnect');
  }

  /** Receiving side of STARTTLS; `<proceed/>` has been written. Client certificates are asked for (SASL EXTERNAL) but not required. */
  startTlsServer(context: SecureContext, sni: (servername: string) => SecureContext | undefined): Promise<void> {
    return this.upgrade(() => new TLSSocket(this.socket, {
      isServer: true, secureContext: context, requestCert: true, rejectUnauthorized: false,
      SNICallback: (name, cb) => cb(null, sni(name) ?? context),
    }), 'secure');
  }

  private upgrade(make: () => TLSSocket, ready: 'secure' | 'secureConnect'): Promise<void> {
    const plain = this.socket;
    plain.removeListener('data', this.onData);
    // Plaintext after <starttls/> or <proceed/> in the same read must never be processed.
    this.parser?.reset();
    return new Promise((resolve, reject) => {
      const tls = make();
      this.socket = tls;
      this.headerSent = false;
      this.parser = this.newParser();
      this.wire(tls);
      tls.once(ready, () => {
        this.secure = true;
        this.readTls(tls);
        resolve();
      });
      tls.once('error', reject);
    });
  }

  /** Optionally write an error, close the stream, then the connection. */
  close(error?: StreamError): void {
    if (this.closed) return;
    let out = '';
    if (!this.headerSent && error) out += XML_DECL + startTag('stream:stream', { xmlns: NS_SERVER, 'xmlns:stream': NS_STREAM, version: '1.0' });
    if (error) out += serialize(error.toElement());
    if (this.headerSent || error) out += '</stream:stream>';
    this.closed = true;
    this.socket.end(out);
    // A peer that never closes its side must not hold the socket forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }
}

/**
 * Node computes `authorized` for client sockets and for those a tls.Server
 * accepts, not for a server-side TLSSocket made by hand (our STARTTLS and
 * direct-TLS accepts); OpenSSL's verdict is there all the same. Should that
 * internal ever go, this answers false: no SASL EXTERNAL, dialback instead.
 */
function verifiedByOpenSsl(tls: TLSSocket): boolean {
  const handle = (tls as unknown as { _handle?: { verifyError?: () => unknown } })._handle;
  return typeof handle?.verifyError === 'function' && !handle.verifyError();
}
