// The ways in besides plain TCP: direct TLS, and the HTTP listener that
// carries WebSocket, BOSH, host-meta and the web client. Each hands the
// connection manager a ClientTransport; nothing past accept() knows which.
import type { Server } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Envelope } from '../../libs/bus/envelope.ts';
import type { Config } from '../../libs/config/schema.ts';
import type { StreamParserLimits } from '../../libs/xml/parser.ts';
import { BoshService } from './bosh.ts';
import type { DomainCertificates } from './certificates.ts';
import { listenDirectTls } from './direct-tls.ts';
import { bindProbe, listenError } from '../listen-error.ts';
import { hostMetaRoutes } from './host-meta.ts';
import { SourceNetworks } from './address.ts';
import { startHttpServer, type HttpRoute, type HttpServer, type HttpStreamRoute } from './http-server.ts';
import { uploadRoutes } from './upload-http.ts';
import { uploadFiles, uploadOffered, uploadOrigins, type DiskFiles } from '../../libs/upload/index.ts';
import type { ProxyPolicy } from './proxy-protocol.ts';
import type { ClientTransport } from './transport.ts';
import { webClientRoutes } from './web/index.ts';
import { websocketRoute } from './websocket.ts';

export interface Refusal {
  /** unavailable: the node cannot serve (no session process, no bus, cut off from the cluster). */
  reason: 'shutdown' | 'full' | 'unavailable';
  text: string;
}

export interface ListenerHost {
  readonly nodeId: string;
  readonly config: Config;
  readonly tls: SecureContext | undefined;
  readonly certificates: DomainCertificates;
  readonly proxy: ProxyPolicy;
  readonly limits: StreamParserLimits;
  /** Why new connections are refused right now, or undefined. */
  refusal(): Refusal | undefined;
  accept(t: ClientTransport): void;
  /** Publish a control envelope to another c2s node. */
  publish(node: string, env: Envelope): void;
}

export interface Listeners {
  readonly directTls: Server | undefined;
  readonly http: HttpServer | undefined;
  readonly bosh: BoshService | undefined;
  /** Stop listening (streams are closed by the node before). */
  stop(): void;
}

export async function startListeners(h: ListenerHost): Promise<Listeners> {
  const c2s = h.config.c2s;
  let directTls: Server | undefined;
  let http: HttpServer | undefined;
  let bosh: BoshService | undefined;

  if (c2s.directTls.enabled) {
    if (!h.tls) throw new Error('c2s.directTls needs a certificate');
    directTls = await listenDirectTls({
      // Read at each connection: `parley reload` may have replaced the certificates.
      host: c2s.directTls.host, port: c2s.directTls.port, limits: h.limits, get tls() { return h.tls!; }, sni: (name) => h.certificates.sni(name),
      proxy: h.proxy, maxConnections: c2s.maxConnections, handshakeTimeoutMs: c2s.authTimeoutSeconds * 1000,
      backlog: c2s.directTls.backlog,
      accept: (t) => h.accept(t),
    }).catch((e: unknown) => {
      throw listenError('the c2s direct TLS listener', 'c2s.directTls', c2s.directTls.host, c2s.directTls.port, e);
    });
  }

  if (c2s.http.enabled) {
    const routes: HttpRoute[] = [];
    let port = 0;
    routes.push(...hostMetaRoutes(c2s, () => port));
    if (c2s.bosh.enabled) {
      bosh = new BoshService({
        nodeId: h.nodeId, settings: c2s.bosh, limits: h.limits, maxOutboundBytes: h.config.limits.maxOutboundBufferBytes,
        refuse: () => h.refusal()?.reason, accept: (t) => h.accept(t), publish: (node, env) => h.publish(node, env),
      });
      routes.push(...bosh.routes());
    }
    if (c2s.webClient.enabled) routes.push(...webClientRoutes(uploadOrigins(h.config)));
    const streamRoutes: HttpStreamRoute[] = [];
    const diskFiles = uploadOffered(h.config) && h.config.upload.store.kind === 'disk' ? await uploadFiles(h.config) as DiskFiles : undefined;
    if (diskFiles) {
      const upload = uploadRoutes(diskFiles, h.config);
      routes.push(...upload.routes);
      streamRoutes.push(...upload.streamRoutes);
    }
    const websockets = c2s.websocket.enabled ? [websocketRoute({
      path: c2s.websocket.path,
      idleTimeoutSeconds: c2s.websocket.idleTimeoutSeconds,
      limits: h.limits,
      maxOutboundBytes: h.config.limits.maxOutboundBufferBytes,
      seeOtherUri: c2s.websocket.seeOtherUri,
      refuse: () => {
        const why = h.refusal();
        return why ? { status: 503, text: why.text } : undefined;
      },
      accept: (t) => h.accept(t),
    })] : [];
    const certs = h.certificates;
    http = await startHttpServer({
      host: c2s.http.host, port: c2s.http.port, routes, streamRoutes, websockets,
      tls: c2s.http.tls ? { ...certs.fallbackFiles, byDomain: certs.files } : undefined,
      proxiedTls: { always: c2s.http.considerSecure, trusted: new SourceNetworks(c2s.http.trustedProxies) },
    }).catch(async (e: unknown) => {
      // The HTTP server reports no reason: binding the address once more tells it.
      throw listenError('the HTTP listener (WebSocket, BOSH)', 'c2s.http', c2s.http.host, c2s.http.port, await bindProbe(c2s.http.host, c2s.http.port) ?? e);
    });
    port = http.port;
    diskFiles?.served(port);
  }

  return {
    directTls, http, bosh,
    stop() {
      directTls?.close();
      bosh?.stop();
      http?.close();
    },
  };
}
