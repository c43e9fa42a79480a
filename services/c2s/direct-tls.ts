// Direct TLS (XEP-0368): TLS from the first byte on its own port, ALPN
// 'xmpp-client', the certificate chosen by SNI. Behind a PROXY-protocol load
// balancer the header comes first, in clear, before the handshake.
import { createServer, type Server } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { logger } from '../../libs/log/index.ts';
import type { StreamParserLimits } from '../../libs/xml/parser.ts';
import { readProxyHeader, type ProxyPolicy } from './proxy-protocol.ts';
import { TcpTransport, type SniLookup } from './tcp.ts';

const log = logger('c2s');

export interface DirectTlsOptions {
  host: string;
  port: number;
  limits: StreamParserLimits;
  tls: SecureContext;
  sni?: SniLookup;
  proxy?: ProxyPolicy;
  maxConnections: number;
  /** A client must finish its handshake within this (the PROXY header included). */
  handshakeTimeoutMs: number;
  /** listen(2)'s queue of connections not yet accepted (`c2s.directTls.backlog`). */
  backlog: number;
  accept(t: TcpTransport): void;
}

export function listenDirectTls(o: DirectTlsOptions): Promise<Server> {
  const server = createServer({ noDelay: true }, (socket) => {
    socket.setTimeout(o.handshakeTimeoutMs, () => socket.destroy());
    socket.on('error', () => socket.destroy());
    const proxied = o.proxy?.enabled ? readProxyHeader(socket, o.proxy) : Promise.resolve({ address: socket.remoteAddress ?? '', proxied: false });
    proxied.then((peer) => {
      if (!peer) return;
      const sni = o.sni;
      // Bytes read past the PROXY header were put back on the socket; TLSSocket
      // takes a socket's buffered data as the start of the handshake.
      const tls = new TLSSocket(socket, {
        isServer: true,
        secureContext: o.tls,
        ALPNProtocols: ['xmpp-client'],
        SNICallback: sni ? (name, cb) => cb(null, sni(name) ?? o.tls) : undefined,
      });
      tls.on('error', (e) => {
        log.debug('direct TLS handshake failed', { source: peer.address, error: e });
        tls.destroy();
      });
      tls.once('secure', () => {
        socket.setTimeout(0);
        o.accept(new TcpTransport(tls, o.limits, undefined, true, { remoteAddress: peer.address }));
      });
      socket.resume();
    }).catch((e: unknown) => {
      log.error('accepting a direct TLS connection failed', { error: e });
      socket.destroy();
    });
  });
  server.maxConnections = o.maxConnections;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: o.port, host: o.host, backlog: o.backlog }, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}
