// The HTTP listener of the connection manager (WebSocket, BOSH, host-meta, web
// client) on uWebSockets.js. This is the only module that imports uWS: the
// rest sees plain request/response and WebSocket-peer interfaces, so the
// engine can be swapped without touching a transport.
//
// uWS objects are only valid inside their callbacks or until closed/aborted;
// everything here copies what it needs out of them at once and guards every
// later access with a flag.
import { createRequire } from 'node:module';
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';
import { logger } from '../../libs/log/index.ts';
import { formatAddress, type SourceNetworks } from './address.ts';

const log = logger('http');
// The package is CommonJS with a native addon; createRequire keeps it out of ESM interop.
const uws = createRequire(import.meta.url)('@trufflesuite/uws-js-unofficial') as typeof UwsTypes;
/** uWS ListenOptions.LIBUS_LISTEN_EXCLUSIVE_PORT: a port another socket holds is refused, never shared. */
const EXCLUSIVE_PORT = 1;

/** A request, copied out of uWS: valid for as long as anyone holds it. */
export interface HttpRequest {
  /** Lower-case method name. */
  readonly method: string;
  /** The path, without the query string. */
  readonly path: string;
  readonly query: string;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string>>;
  /** The TCP peer (the client, or the proxy in front of us). */
  readonly remoteAddress: string;
  /** The request came over HTTPS. */
  readonly secure: boolean;
}

export interface HttpResponse {
  /** The client went away before we answered; send() is then a no-op. */
  readonly aborted: boolean;
  /** Answered already (or aborted). */
  readonly done: boolean;
  onAborted(cb: () => void): void;
  /** `close`: end the connection after it (a request body left unread). */
  send(status: number, headers: Record<string, string>, body?: string | Uint8Array, close?: boolean): void;
  /** The answer to a HEAD request: status and headers, with the Content-Length of the body a GET would get. */
  head(status: number, headers: Record<string, string>, size: number): void;
  /** A body of `size` bytes written as `chunks` yields them, as fast as the client takes them (files). */
  stream(status: number, headers: Record<string, string>, size: number, chunks: AsyncIterable<Uint8Array>): Promise<void>;
}

/** A request body read as it arrives, never held whole (uploads). */
export interface HttpBodyStream {
  /** Each chunk (a copy) as it arrives; `last` on the final one. */
  onData(cb: (chunk: Buffer, last: boolean) => void): void;
  /** Stop reading from the client until resume() (the disk is behind). */
  pause(): void;
  resume(): void;
}

/** A route whose request body is streamed to its handler. */
export interface HttpStreamRoute {
  method: 'put';
  path: string;
  handle(req: HttpRequest, body: HttpBodyStream, res: HttpResponse): void;
}

export interface HttpRoute {
  method: 'get' | 'post' | 'options' | 'head';
  path: string;
  /** Request bodies larger than this are answered 413 and the connection closed. */
  maxBodyBytes?: number;
  handle(req: HttpRequest, body: Buffer, res: HttpResponse): void;
}

/** One accepted WebSocket, as a transport sees it. */
export interface WebSocketPeer {
  readonly remoteAddress: string;
  readonly secure: boolean;
  /** One text message. False when the peer is closed or uWS dropped it (past the backpressure ceiling). */
  send(text: string): boolean;
  /** Bytes queued for the peer and not yet written (uWS backpressure). */
  bufferedAmount(): number;
  /** Close handshake with a WebSocket status code. */
  end(code: number, reason?: string): void;
  /** Drop the connection without a close handshake. */
  terminate(): void;
}

export interface WebSocketHandler {
  /** A text message (`text`), or a binary one (`text` is null). */
  message(text: string | null): void;
  /** uWS has written its backlog out. */
  drain(): void;
  /** A pong (answer to our keepalive ping) or a ping from the peer. */
  heartbeat(): void;
  closed(code: number): void;
}

export interface WebSocketRoute {
  path: string;
  /** The Sec-WebSocket-Protocol the client must offer; the upgrade is refused otherwise. */
  protocol: string;
  /** Seconds without traffic before uWS pings (and, as long again, drops) the peer. */
  idleTimeoutSeconds: number;
  maxMessageBytes: number;
  /** Past this much buffered output uWS drops messages; transports close well before. */
  maxBackpressureBytes: number;
  /** Refuse an upgrade: an HTTP status and text, or undefined to accept. */
  refuse?(req: HttpRequest): { status: number; text: string } | undefined;
  open(peer: WebSocketPeer, req: HttpRequest): WebSocketHandler;
}

export interface HttpServerOptions {
  host: string;
  port: number;
  /** HTTPS/WSS: PEM file paths, and per-domain ones chosen by SNI. */
  tls?: { cert: string; key: string; byDomain?: Record<string, { cert: string; key: string }> };
  routes: HttpRoute[];
  streamRoutes?: HttpStreamRoute[];
  websockets: WebSocketRoute[];
  /** Connections that count as TLS although it ended at a proxy in front (Prosody's consider_websocket_secure / consider_bosh_secure). */
  proxiedTls?: ProxiedTls;
}

/** When a request that reached this listener in the clear counts as TLS. */
export interface ProxiedTls {
  /** Every request: only a TLS-terminating proxy can reach the listener. */
  readonly always: boolean;
  /** Proxies whose `X-Forwarded-Proto: https` is believed. */
  readonly trusted: SourceNetworks;
}

/** TLS on this listener, or a trusted proxy's word that the request reached it over TLS; the header from anyone else counts for nothing. */
function requestSecure(tls: boolean, proxied: ProxiedTls | undefined, remoteAddress: string, forwardedProto: string | undefined): boolean {
  if (tls) return true;
  if (!proxied) return false;
  if (proxied.always) return true;
  // The first value is the proxy nearest the client when several appended theirs.
  return forwardedProto !== undefined && forwardedProto.split(',')[0].trim().toLowerCase() === 'https' && proxied.trusted.has(remoteAddress);
}

export interface HttpServer {
  readonly port: number;
  /** Stop listening now; drop every remaining connection on the next tick. */
  close(): void;
}

const STATUS: Record<number, string> = {
  101: 'Switching Protocols', 200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 409: 'Conflict', 410: 'Gone', 411: 'Length Required', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 426: 'Upgrade Required', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable',
};

function snapshot(req: UwsTypes.HttpRequest, res: UwsTypes.HttpResponse, tls: boolean, proxied: ProxiedTls | undefined): HttpRequest {
  const headers: Record<string, string> = {};
  req.forEach((k, v) => { headers[k] = v; });
  const remoteAddress = formatAddress(res.getRemoteAddress());
  return {
    method: req.getMethod(),
    path: req.getUrl(),
    query: req.getQuery() ?? '',
    headers,
    remoteAddress,
    secure: requestSecure(tls, proxied, remoteAddress, headers['x-forwarded-proto']),
  };
}

class Response implements HttpResponse {
  aborted = false;
  done = false;
  private abortHandlers: (() => void)[] = [];
  /** Runs before the answer is written (a paused request body is resumed, or the answer would not flush). */
  beforeAnswer: (() => void) | undefined;

  constructor(private readonly res: UwsTypes.HttpResponse) {
    res.onAborted(() => {
      this.aborted = true;
      this.done = true;
      for (const cb of this.abortHandlers) cb();
      this.abortHandlers = [];
    });
  }

  onAborted(cb: () => void): void {
    if (this.aborted) cb();
    else this.abortHandlers.push(cb);
  }

  head(status: number, headers: Record<string, string>, size: number): void {
    if (this.done) return;
    this.done = true;
    this.abortHandlers = [];
    this.res.cork(() => {
      this.res.writeStatus(`${status} ${STATUS[status] ?? 'Unknown'}`);
      for (const k in headers) this.res.writeHeader(k, headers[k]);
      this.res.endWithoutBody(size);
    });
  }

  async stream(status: number, headers: Record<string, string>, size: number, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    if (this.done) return;
    this.done = true;
    const res = this.res;
    let aborted = this.aborted;
    let wake: (() => void) | undefined;
    this.abortHandlers.push(() => { aborted = true; wake?.(); });
    res.cork(() => {
      res.writeStatus(`${status} ${STATUS[status] ?? 'Unknown'}`);
      for (const k in headers) res.writeHeader(k, headers[k]);
    });
    // tryEnd writes the Content-Length of `size`; what the socket does not take now is written from onWritable.
    for await (const chunk of chunks) {
      if (aborted) return;
      const start = res.getWriteOffset();
      let result: [boolean, boolean] = [false, false];
      res.cork(() => { result = res.tryEnd(chunk, size); });
      if (result[1]) return;
      if (result[0]) continue;
      await new Promise<void>((resolve) => {
        wake = resolve;
        res.onWritable((offset) => {
          if (aborted) return true;
          let r: [boolean, boolean] = [false, false];
          res.cork(() => { r = res.tryEnd(chunk.subarray(offset - start), size); });
          if (r[0] || r[1]) resolve();
          return r[0];
        });
      });
      wake = undefined;
    }
    if (!aborted && res.getWriteOffset() < size) res.close();
  }

  send(status: number, headers: Record<string, string>, body: string | Uint8Array = '', close = false): void {
    if (this.done) return;
    this.beforeAnswer?.();
    this.done = true;
    this.abortHandlers = [];
    this.res.cork(() => {
      this.res.writeStatus(`${status} ${STATUS[status] ?? 'Unknown'}`);
      for (const k in headers) this.res.writeHeader(k, headers[k]);
      this.res.end(body, close);
    });
  }
}

function readBody(res: UwsTypes.HttpResponse, out: Response, max: number, then: (body: Buffer) => void): void {
  const parts: Buffer[] = [];
  let size = 0;
  res.onData((chunk, isLast) => {
    if (out.done) return;
    size += chunk.byteLength;
    if (size > max) {
      out.send(413, { 'content-type': 'text/plain' }, `request bodies are limited to ${max} bytes\n`, true);
      return;
    }
    // uWS neuters the ArrayBuffer when this callback returns: copy it.
    parts.push(Buffer.from(Buffer.from(chunk)));
    if (isLast) then(parts.length === 1 ? parts[0] : Buffer.concat(parts, size));
  });
}

interface SocketData {
  remoteAddress: string;
  secure: boolean;
  /** The upgrade request, until open() has seen it (then dropped: headers cost memory per connection). */
  req: HttpRequest | undefined;
  handler?: WebSocketHandler;
  closed: boolean;
}

class Peer implements WebSocketPeer {
  constructor(private readonly ws: UwsTypes.WebSocket<SocketData>, private readonly data: SocketData) {}
  get remoteAddress(): string { return this.data.remoteAddress; }
  get secure(): boolean { return this.data.secure; }

  send(text: string): boolean {
    if (this.data.closed) return false;
    return this.ws.send(text, false, false) !== 2;
  }

  bufferedAmount(): number {
    return this.data.closed ? 0 : this.ws.getBufferedAmount();
  }

  end(code: number, reason = ''): void {
    if (this.data.closed) return;
    this.ws.end(code, reason);
  }

  terminate(): void {
    if (this.data.closed) return;
    this.ws.close();
  }
}

export function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const secure = opts.tls !== undefined;
  const app = opts.tls ? uws.SSLApp({ cert_file_name: opts.tls.cert, key_file_name: opts.tls.key }) : uws.App();
  if (opts.tls?.byDomain) {
    for (const [domain, files] of Object.entries(opts.tls.byDomain)) {
      app.addServerName(domain, { cert_file_name: files.cert, key_file_name: files.key });
    }
  }

  for (const route of opts.websockets) {
    app.ws<SocketData>(route.path, {
      compression: uws.DISABLED,
      maxPayloadLength: route.maxMessageBytes,
      idleTimeout: route.idleTimeoutSeconds,
      sendPingsAutomatically: true,
      maxBackpressure: route.maxBackpressureBytes,
      closeOnBackpressureLimit: 0,
      upgrade: (res, req, context) => {
        const r = snapshot(req, res, secure, opts.proxiedTls);
        const offered = (r.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
        const refusal = !offered.includes(route.protocol)
          ? { status: 400, text: `the '${route.protocol}' WebSocket subprotocol is required` }
          : route.refuse?.(r);
        if (refusal) {
          res.cork(() => {
            res.writeStatus(`${refusal.status} ${STATUS[refusal.status] ?? 'Error'}`).writeHeader('content-type', 'text/plain').end(`${refusal.text}\n`, true);
          });
          return;
        }
        res.upgrade<SocketData>({ remoteAddress: r.remoteAddress, secure: r.secure, req: r, closed: false }, r.headers['sec-websocket-key'] ?? '', route.protocol,
          r.headers['sec-websocket-extensions'] ?? '', context);
      },
      open: (ws) => {
        const data = ws.getUserData();
        const req = data.req!;
        data.req = undefined;
        data.handler = route.open(new Peer(ws, data), req);
      },
      message: (ws, message, isBinary) => {
        // A text message is UTF-8 here: uWS fails the connection on one that is not (RFC 6455 §8.1).
        const data = ws.getUserData();
        data.handler?.message(isBinary ? null : Buffer.from(message).toString('utf8'));
      },
      drain: (ws) => ws.getUserData().handler?.drain(),
      pong: (ws) => ws.getUserData().handler?.heartbeat(),
      ping: (ws) => ws.getUserData().handler?.heartbeat(),
      close: (ws, code) => {
        const data = ws.getUserData();
        data.closed = true;
        data.handler?.closed(code);
      },
    });
    // A plain GET on the WebSocket path: tell the client what it needs.
    app.get(route.path, (res) => {
      res.cork(() => res.writeStatus('426 Upgrade Required').writeHeader('upgrade', 'websocket').writeHeader('sec-websocket-protocol', route.protocol).end('WebSocket only\n'));
    });
  }

  for (const route of opts.routes) {
    const handler = (res: UwsTypes.HttpResponse, req: UwsTypes.HttpRequest) => {
      const r = snapshot(req, res, secure, opts.proxiedTls);
      const out = new Response(res);
      if (route.method !== 'post') {
        try {
          route.handle(r, Buffer.alloc(0), out);
        } catch (e) {
          log.error('HTTP handler failed', { path: r.path, error: e });
          out.send(500, { 'content-type': 'text/plain' }, 'internal error\n');
        }
        return;
      }
      readBody(res, out, route.maxBodyBytes ?? 65_536, (body) => {
        try {
          route.handle(r, body, out);
        } catch (e) {
          log.error('HTTP handler failed', { path: r.path, error: e });
          out.send(500, { 'content-type': 'text/plain' }, 'internal error\n');
        }
      });
    };
    app[route.method](route.path, handler);
  }
  for (const route of opts.streamRoutes ?? []) {
    app[route.method](route.path, (res, req) => {
      const r = snapshot(req, res, secure, opts.proxiedTls);
      const out = new Response(res);
      let listener: ((chunk: Buffer, last: boolean) => void) | undefined;
      // uWS neuters each chunk's ArrayBuffer when the callback returns: copy it.
      res.onData((chunk, isLast) => { if (!out.aborted) listener?.(Buffer.from(Buffer.from(chunk)), isLast); });
      let paused = false;
      const body: HttpBodyStream = {
        onData: (cb) => { listener = cb; },
        // Once answered the response is no longer ours to touch.
        pause: () => { if (!out.done && !paused) { paused = true; res.pause(); } },
        resume: () => { if (!out.done && paused) { paused = false; res.resume(); } },
      };
      out.beforeAnswer = () => body.resume();
      try {
        route.handle(r, body, out);
      } catch (e) {
        log.error('HTTP handler failed', { path: r.path, error: e });
        out.send(500, { 'content-type': 'text/plain' }, 'internal error\n', true);
      }
    });
  }
  app.any('/*', (res) => {
    res.cork(() => res.writeStatus('404 Not Found').writeHeader('content-type', 'text/plain').end('not found\n'));
  });

  return new Promise((resolve, reject) => {
    // Without LIBUS_LISTEN_EXCLUSIVE_PORT the socket gets SO_REUSEPORT, and a second process on the same port would
    // silently share it instead of failing; the typings lack the (host, port, options, handler) form.
    type ListenHandler = (listenSocket: UwsTypes.us_listen_socket | false) => void;
    const listenExclusive = app.listen as unknown as (host: string, port: number, options: number, handler: ListenHandler) => unknown;
    listenExclusive.call(app, opts.host, opts.port, EXCLUSIVE_PORT, (listenSocket) => {
      if (!listenSocket) return reject(new Error(`cannot listen on ${opts.host}:${opts.port}`));
      const port = uws.us_socket_local_port(listenSocket as unknown as UwsTypes.us_socket);
      let closed = false;
      resolve({
        port,
        close() {
          if (closed) return;
          closed = true;
          uws.us_listen_socket_close(listenSocket);
          // Let the close frames and last responses written just before go out.
          setImmediate(() => (app as unknown as { close(): void }).close());
        },
      });
    });
  });
}
