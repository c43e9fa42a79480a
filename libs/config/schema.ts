// The configuration schema: every key is documented in docs/configuration.md.
import { z } from 'zod';

const listener = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535),
});

export const configSchema = z.object({
  /** Stable name of this process in the cluster; generated when absent. */
  nodeId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
  /** Which services this process runs. */
  role: z.enum(['all', 'c2s', 'session']).default('all'),
  /** Where the embedded store, generated certificates and logs live. */
  dataDir: z.string().default('./data'),
  /** Domains served from start-up; more can be added at run time (`parley domain add`). */
  domains: z.array(z.string()).default(['localhost']),
  /** How often every process re-reads the domains added at run time. */
  domainRefreshSeconds: z.number().positive().default(10),
  log: z.object({ level: z.enum(['debug', 'info', 'warn', 'error']).default('info') }).default({}),

  bus: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('inprocess') }),
    z.object({ kind: z.literal('nats'), url: z.string().default('nats://127.0.0.1:4222'), subjectPrefix: z.string().default('parley') }),
  ]).default({ kind: 'inprocess' }),

  store: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('lmdb'), path: z.string().optional() }),
    z.object({ kind: z.literal('redis'), url: z.string().default('redis://127.0.0.1:6379'), keyPrefix: z.string().default('parley:') }),
  ]).default({ kind: 'lmdb' }),

  c2s: z.object({
    tcp: listener.extend({ port: z.number().int().min(0).max(65535).default(5222) }).default({}),
    /** TLS is required before authentication, except on loopback connections when `allowPlainOnLoopback`. */
    requireTls: z.boolean().default(true),
    allowPlainOnLoopback: z.boolean().default(true),
    /** PEM files; a self-signed certificate is generated into dataDir when absent. */
    tls: z.object({ cert: z.string().optional(), key: z.string().optional() }).default({}),
    /** RFC 6120 §7.7.2.2: what happens when a client binds a resource already in use. */
    resourceConflict: z.enum(['override', 'reject', 'rename']).default('override'),
    saslMechanisms: z.array(z.enum(['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'])).default(['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']),
    maxConnections: z.number().int().positive().default(100_000),
    /** Seconds a connection may take from TCP accept to a bound resource. */
    authTimeoutSeconds: z.number().positive().default(30),
    /** Seconds of silence from a client before the server pings it (XEP-0199). */
    pingIntervalSeconds: z.number().positive().default(60),
    /** Seconds to wait for any data after that ping before the connection is dropped as out of contact. */
    pingTimeoutSeconds: z.number().positive().default(30),
    /** Failed SASL attempts before the stream is closed. */
    maxAuthFailures: z.number().int().positive().default(3),
    /** Certificates per domain (PEM files), chosen by TLS SNI on every TLS listener; `tls` above is the fallback. */
    certificates: z.record(z.string(), z.object({ cert: z.string(), key: z.string() })).default({}),
    /** XEP-0368 direct TLS: TLS from the first byte (ALPN 'xmpp-client'), usually on 5223. */
    directTls: listener.extend({
      enabled: z.boolean().default(false),
      port: z.number().int().min(0).max(65535).default(5223),
    }).default({}),
    /** HAProxy PROXY protocol (v1 and v2) on the TCP and direct-TLS listeners: the header's source address becomes the client's address. */
    proxyProtocol: z.object({
      enabled: z.boolean().default(false),
      /** CIDRs allowed to send a PROXY header; a header from any other source gets the connection refused. */
      trustedSources: z.array(z.string()).default(['127.0.0.1/32', '::1/128']),
      /** Milliseconds a trusted source may take to send its header. */
      headerTimeoutMs: z.number().int().positive().default(5000),
    }).default({}),
    /** The HTTP listener that carries WebSocket, BOSH, XEP-0156 host-meta and the web client. */
    http: listener.extend({
      enabled: z.boolean().default(false),
      port: z.number().int().min(0).max(65535).default(5280),
      /** Serve HTTPS / WSS with the c2s certificates (then these connections count as TLS). */
      tls: z.boolean().default(false),
      /** Base URL clients reach this listener at (e.g. https://chat.example.com), for host-meta; by default taken from the request's Host header. */
      publicUrl: z.string().optional(),
    }).default({}),
    /** RFC 7395 XMPP over WebSocket on the HTTP listener. */
    websocket: z.object({
      enabled: z.boolean().default(true),
      path: z.string().default('/xmpp-websocket'),
      /** Seconds without traffic before the server sends a WebSocket ping; a peer that stays silent as long again is dropped. */
      idleTimeoutSeconds: z.number().int().min(8).default(120),
      /** Sent as <close see-other-uri/> when this node shuts down, so clients reconnect there. */
      seeOtherUri: z.string().optional(),
    }).default({}),
    /** XEP-0124 / XEP-0206 BOSH on the HTTP listener. */
    bosh: z.object({
      enabled: z.boolean().default(true),
      path: z.string().default('/http-bind'),
      /** Longest a request is held with nothing to send (the client's `wait` is capped to this). */
      maxWaitSeconds: z.number().int().positive().default(60),
      /** Most requests held at once (the client's `hold` is capped to this); the rid window is hold + 1. */
      maxHold: z.number().int().min(0).default(2),
      /** Seconds a session may go with no request in flight before it is ended. */
      inactivitySeconds: z.number().int().positive().default(60),
      /** Shortest interval between empty requests of a polling (hold = 0) session. */
      pollingSeconds: z.number().int().min(0).default(2),
      /** Largest request body accepted. */
      maxBodyBytes: z.number().int().positive().default(1_048_576),
      /** Origins allowed to make cross-origin BOSH requests ('*' for any); empty: no CORS headers. */
      corsOrigins: z.array(z.string()).default([]),
    }).default({}),
    /** A small browser client served at / on the HTTP listener (WebSocket, login, roster, presence, chat). */
    webClient: z.object({ enabled: z.boolean().default(false) }).default({}),
  }).default({}),

  limits: z.object({
    maxStanzaBytes: z.number().int().positive().default(262_144),
    maxDepth: z.number().int().positive().default(32),
    maxAttributes: z.number().int().positive().default(64),
    /** Per-connection inbound rate: bytes per second (token bucket, burst = one second's worth × 4). */
    bytesPerSecond: z.number().int().positive().default(1_000_000),
    /** Stanzas buffered for a connection whose socket is not draining before it is closed. */
    maxOutboundBufferBytes: z.number().int().positive().default(4 * 1024 * 1024),
  }).default({}),

  auth: z.object({
    /** PBKDF2 iterations for newly stored SCRAM credentials (RFC 7677 says at least 4096). */
    scramIterations: z.number().int().min(4096).default(4096),
  }).default({}),

  metrics: z.object({
    /** Serve /metrics, /healthz and /readyz over HTTP. */
    enabled: z.boolean().default(true),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(9464),
  }).default({}),

  roster: z.object({
    /** Contacts one roster may hold; a set beyond it is refused with not-allowed. */
    maxItems: z.number().int().positive().default(1000),
    /** Unanswered inbound subscription requests kept per account. */
    maxPendingRequests: z.number().int().positive().default(1000),
    maxNameLength: z.number().int().positive().default(1024),
    maxGroups: z.number().int().positive().default(64),
  }).default({}),

  offline: z.object({
    /** XEP-0160 storage of messages for accounts with no available resource. */
    enabled: z.boolean().default(true),
    /** Messages kept per account; beyond it the sender gets service-unavailable. */
    quota: z.number().int().min(0).default(1000),
  }).default({}),

  routing: z.object({
    /** A message to a bare JID whose highest-priority resources tie: deliver to all of them, or to the most recent. */
    bareMessageTies: z.enum(['all', 'newest']).default('all'),
  }).default({}),

  cluster: z.object({
    /** Fixed number of shards bare JIDs hash into; never change it on a running cluster. */
    shards: z.number().int().positive().default(1024),
    heartbeatMs: z.number().int().positive().default(1000),
    /** A node that has not renewed its heartbeat for this long is dead. */
    memberTtlMs: z.number().int().positive().default(5000),
    /** How long a new shard owner waits for the old owner's release before taking over. */
    handoffTimeoutMs: z.number().int().positive().default(10_000),
  }).default({}),

  session: z.object({
    /** Seconds an actor with no mailbox and no sessions stays in memory. */
    actorIdleSeconds: z.number().positive().default(120),
    /** Envelopes queued for one bare JID before further ones are refused with resource-constraint. */
    maxMailbox: z.number().int().positive().default(10_000),
    /** Timeout for a c2s → actor request (bind). */
    requestTimeoutMs: z.number().int().positive().default(10_000),
  }).default({}),
});

export type Config = z.infer<typeof configSchema>;
