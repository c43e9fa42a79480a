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
    /** Failed SASL attempts before the stream is closed. */
    maxAuthFailures: z.number().int().positive().default(3),
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
