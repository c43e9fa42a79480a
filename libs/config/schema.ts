// The configuration schema: every key is documented in docs/configuration.md.
import { z } from 'zod';
import { parseRedisAddress } from '../store/redis-target.ts';

/** Redis node addresses (`host:port` or `redis://…`), each checked with a message naming it. */
const redisAddresses = z.array(z.string()).min(1).superRefine((list, ctx) => {
  list.forEach((a, i) => {
    try {
      parseRedisAddress(a);
    } catch (e) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i], message: (e as Error).message });
    }
  });
});

const listener = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535),
});

/**
 * Connections the kernel queues for a listener before the process accepts them (listen(2)'s backlog). Sized for a
 * mass reconnect, when every client of a lost node connects within a second or two; Linux caps it at
 * net.core.somaxconn.
 */
/** One admission bucket: a steady rate, and how many may come at once on top of it after a quiet spell. */
const admissionBucket = (ratePerSecond: number, burst: number) => z.object({
  /** Admitted per second once the burst is spent. */
  ratePerSecond: z.number().positive().default(ratePerSecond),
  /** Admitted at once after a quiet spell (the bucket's size). */
  burst: z.number().int().positive().default(burst),
}).default({});

const listenBacklog = z.number().int().positive().max(65535).default(4096);

export const configSchema = z.object({
  /** Stable name of this process in the cluster; generated when absent. */
  nodeId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional(),
  /** Which services this process runs. */
  role: z.enum(['all', 'c2s', 'session', 's2s']).default('all'),
  /** Where the embedded store, generated certificates and logs live. */
  dataDir: z.string().default('./data'),
  /** Domains served from start-up; more can be added at run time (`parley domain add`). */
  domains: z.array(z.string()).default(['localhost']),
  /** How often every process re-reads the domains added at run time. */
  domainRefreshSeconds: z.number().positive().default(10),
  log: z.object({
    level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
    /** `text`: `time level component: message key=value…`; `json`: one object per line (docs/configuration.md). */
    format: z.enum(['text', 'json']).default('text'),
  }).default({}),

  bus: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('inprocess') }),
    z.object({
      kind: z.literal('nats'),
      /** One server, or several of one NATS cluster separated by commas; `servers` is the same as a list. */
      url: z.string().optional(),
      servers: z.array(z.string().min(1)).min(1).optional(),
      subjectPrefix: z.string().default('parley'),
      /** How long start-up waits for a NATS server to accept the connection before the process gives up. */
      connectTimeoutMs: z.number().int().positive().default(10_000),
    }),
  ]).superRefine((b, ctx) => {
    if (b.kind === 'nats' && b.url !== undefined && b.servers !== undefined) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['servers'], message: 'give bus.url or bus.servers, not both' });
    }
  }).default({ kind: 'inprocess' }),

  store: z.discriminatedUnion('kind', [
    z.object({
      kind: z.literal('lmdb'),
      path: z.string().optional(),
      /**
       * When commits reach the disk. `interval`: lmdb commits (visible to every process, surviving a crash of
       * the server process) are flushed every `syncIntervalMs`, so a power loss can take the last interval's
       * writes — like Redis' `appendfsync everysec`. `commit`: every commit waits for its flush.
       */
      sync: z.enum(['interval', 'commit']).default('interval'),
      syncIntervalMs: z.number().int().positive().default(1000),
    }),
    z.object({
      kind: z.literal('redis'),
      /** One of: a single server (the default, redis://127.0.0.1:6379), a Redis Cluster's seed nodes, or Sentinel. */
      url: z.string().optional(),
      cluster: redisAddresses.optional(),
      sentinel: z.object({
        masterName: z.string().min(1),
        sentinels: redisAddresses,
        username: z.string().optional(),
        password: z.string().optional(),
      }).optional(),
      // Parley's keys put their own hash tag right after the prefix; a brace in it would replace that tag.
      keyPrefix: z.string().regex(/^[^{}]*$/, 'must not contain { or }: every key carries its own Redis Cluster hash tag after the prefix').default('parley:'),
      /** How long start-up (and an administration command) waits for Redis to answer before giving up. */
      connectTimeoutMs: z.number().int().positive().default(10_000),
      /** How long one command may wait for Redis, for a reconnection included (a restart, a failover), before it fails. */
      commandTimeoutMs: z.number().int().positive().default(5_000),
      /**
       * Replicas a message's writes must reach before it is confirmed to its stream-managed sender (WAIT), so a
       * failover cannot take an acknowledged message: 'auto' is 1 with store.cluster or store.sentinel, 0 with one server.
       */
      waitReplicas: z.union([z.literal('auto'), z.number().int().min(0)]).default('auto'),
      /** How long that wait may take; a primary whose replica is slower is logged and the confirmation goes ahead. */
      waitTimeoutMs: z.number().int().positive().default(100),
    }),
  ]).superRefine((st, ctx) => {
    if (st.kind !== 'redis') return;
    const set = (['url', 'cluster', 'sentinel'] as const).filter((k) => st[k] !== undefined);
    if (set.length > 1) ctx.addIssue({ code: z.ZodIssueCode.custom, message: `give one of store.url, store.cluster and store.sentinel, not ${set.map((k) => `store.${k}`).join(' and ')}` });
  }).default({ kind: 'lmdb' }),

  c2s: z.object({
    tcp: listener.extend({
      port: z.number().int().min(0).max(65535).default(5222),
      /** Clients on a loopback address may authenticate on this listener without STARTTLS (tests, a local benchmark). */
      allowPlainOnLoopback: z.boolean().default(false),
      backlog: listenBacklog,
    }).default({}),
    /**
     * TLS is required before authentication on every listener, loopback included: no SASL mechanism is offered in
     * the clear. A listener counts a connection as TLS when TLS ends here, or when a trusted proxy says it ended
     * there (`http.considerSecure`, `http.trustedProxies`, the PROXY protocol's TLS field).
     */
    requireTls: z.boolean().default(true),
    /** PEM files; a self-signed certificate is generated into dataDir when absent. */
    tls: z.object({ cert: z.string().optional(), key: z.string().optional() }).default({}),
    /** RFC 6120 §7.7.2.2: what happens when a client binds a resource already in use. */
    resourceConflict: z.enum(['override', 'reject', 'rename']).default('override'),
    /** SASL mechanisms offered; the -PLUS ones (channel binding) only on a TLS connection that has a binding to offer. */
    saslMechanisms: z.array(z.enum(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']))
      .default(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']),
    /**
     * XEP-0388 SASL2 with XEP-0386 Bind2 inline: a client authenticates, binds, enables carbons and stream management
     * (or resumes) in one exchange. Not offered over BOSH. Legacy SASL and binding stay offered beside it.
     */
    sasl2: z.object({ enabled: z.boolean().default(true) }).default({}),
    /** XEP-0484 FAST tokens over SASL2: after a full login a client may ask for a token and log in with it in one round trip. */
    fast: z.object({
      enabled: z.boolean().default(true),
      /** Seconds a token is valid from when it is issued. */
      tokenLifetimeSeconds: z.number().int().positive().default(14 * 86400),
      /** A token used with less than this left is replaced by a new one in the same <success/> (it must stay under the lifetime). */
      rotateBeforeExpirySeconds: z.number().int().min(0).default(7 * 86400),
      /** Clients (SASL2 user-agent ids) holding tokens for one account; a new one past it drops the tokens expiring first. */
      maxClientsPerAccount: z.number().int().positive().default(32),
    }).refine((f) => f.rotateBeforeExpirySeconds < f.tokenLifetimeSeconds, { message: 'c2s.fast.rotateBeforeExpirySeconds must be less than c2s.fast.tokenLifetimeSeconds' }).default({}),
    maxConnections: z.number().int().positive().default(100_000),
    /** Seconds a connection may take from TCP accept to a bound resource. */
    authTimeoutSeconds: z.number().positive().default(30),
    /** Seconds of silence from a client before the server pings it (XEP-0199). */
    pingIntervalSeconds: z.number().positive().default(60),
    /** Seconds to wait for any data after that ping before the connection is dropped as out of contact. */
    pingTimeoutSeconds: z.number().positive().default(30),
    /** Failed SASL attempts before the stream is closed. */
    maxAuthFailures: z.number().int().positive().default(3),
    /**
     * Brute-force protection: failed logins counted per client address and per account (in Redis in a cluster,
     * shared by every connection manager). Past `addressBackoffAfter` / `accountBackoffAfter` failures in the window
     * each further failure is answered after an exponential back-off; past `maxFailuresPerAddress` the address is
     * blocked for `blockSeconds`. An account is never locked, only slowed.
     */
    authThrottle: z.object({
      enabled: z.boolean().default(true),
      /** Seconds failures are remembered, from the first failure of a series (a fixed window). */
      windowSeconds: z.number().int().positive().default(300),
      /** Failures from one address after which its further failures are answered with back-off. */
      addressBackoffAfter: z.number().int().min(0).default(5),
      /** Failures from one address after which it is blocked; 0: never blocked. */
      maxFailuresPerAddress: z.number().int().min(0).default(20),
      /** Seconds an address stays blocked. */
      blockSeconds: z.number().int().positive().default(900),
      /** Failures for one account (from anywhere) after which its further failures are answered with back-off. */
      accountBackoffAfter: z.number().int().min(0).default(5),
      /** The first back-off; each further failure doubles it. */
      backoffBaseMs: z.number().int().positive().default(1000),
      /** The longest back-off. */
      backoffMaxMs: z.number().int().positive().default(30_000),
      /** IPv6 clients are counted per network of this prefix length (one host usually holds a whole /64). */
      ipv6PrefixLength: z.number().int().min(1).max(128).default(64),
      /** Addresses and accounts tracked at once in one process (the embedded mode); the oldest are forgotten first. */
      maxTracked: z.number().int().positive().default(100_000),
    }).default({}),
    /**
     * Admission control for a mass reconnect: token buckets per process on new streams (the first stream header of
     * a connection), on logins (SASL success) and on XEP-0198 resumptions. Past a bucket the client is told to come
     * back (docs/architecture.md, *Admission control*); streams already established never wait on them.
     */
    admission: z.object({
      enabled: z.boolean().default(true),
      streams: admissionBucket(1000, 5000),
      logins: admissionBucket(500, 2500),
      resumptions: admissionBucket(1000, 5000),
    }).default({}),
    /**
     * Where clients reach this very process (`host:port` of its TCP listener), bypassing any load balancer. Given,
     * the other connection managers send clients here with <see-other-host/> when their own admission is exhausted
     * and this one has room.
     */
    publicAddress: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, 'host, host:port or [IPv6]:port').optional(),
    /** Certificates per domain (PEM files), chosen by TLS SNI on every TLS listener; `tls` above is the fallback. */
    certificates: z.record(z.string(), z.object({ cert: z.string(), key: z.string() })).default({}),
    /** XEP-0368 direct TLS: TLS from the first byte (ALPN 'xmpp-client'), usually on 5223. */
    directTls: listener.extend({
      enabled: z.boolean().default(false),
      port: z.number().int().min(0).max(65535).default(5223),
      backlog: listenBacklog,
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
      /** A TLS-terminating proxy fronts this listener and nothing else reaches it: every WebSocket and BOSH connection counts as TLS. */
      considerSecure: z.boolean().default(false),
      /** Proxies (CIDRs) whose `X-Forwarded-Proto: https` marks a request as having reached them over TLS; from any other address the header is ignored. */
      trustedProxies: z.array(z.string()).default([]),
      /** Clients on a loopback address may authenticate over plain WebSocket and BOSH (tests, a local web client). */
      allowPlainOnLoopback: z.boolean().default(false),
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

  /** Federation: server-to-server streams (RFC 6120) in the s2s role. */
  s2s: z.object({
    /** Run federation; off, stanzas to other domains bounce remote-server-not-found. */
    enabled: z.boolean().default(false),
    /** Inbound streams (STARTTLS). */
    listen: listener.extend({ port: z.number().int().min(0).max(65535).default(5269) }).default({}),
    /** XEP-0368 inbound direct TLS (ALPN 'xmpp-server'), usually on 5270. */
    directTls: listener.extend({
      enabled: z.boolean().default(false),
      port: z.number().int().min(0).max(65535).default(5270),
    }).default({}),
    /** Fixed number of shards remote domains hash into over the s2s processes; the same on every process. */
    shards: z.number().int().positive().default(1024),
    /** Static routes that replace DNS for a domain: 'host:port', 'host', or 'tls://host:port' for direct TLS. */
    routes: z.record(z.string(), z.string()).default({}),
    /** Refuse to exchange stanzas over a stream without TLS. */
    requireTls: z.boolean().default(true),
    /** Server Dialback (XEP-0220) for peers whose certificate cannot be verified (self-signed): allow it, or require SASL EXTERNAL with a valid certificate. */
    dialback: z.enum(['allow', 'refuse']).default('allow'),
    /** Offer and use XEP-0288 bidirectional streams when the peer offers them. */
    bidi: z.boolean().default(true),
    /** CA bundle (PEM) that verifies peer certificates; the system store when absent. */
    caFile: z.string().optional(),
    /** Certificates per local domain (PEM files), chosen by SNI; the c2s certificate is the fallback. */
    certificates: z.record(z.string(), z.object({ cert: z.string(), key: z.string() })).default({}),
    /** Directory searched on first use for `<domain>.crt`/`.key` or `<domain>/fullchain.pem`/`privkey.pem`. */
    certificateDir: z.string().optional(),
    /** Secret for dialback keys (XEP-0185); by default one is generated and kept in the store, shared by every s2s process. */
    dialbackSecret: z.string().optional(),
    /** Stanzas held per remote domain while its stream is being set up; beyond it they bounce. */
    maxQueue: z.number().int().positive().default(1000),
    /** Seconds for one TCP connection attempt before the next target is tried. */
    connectTimeoutSeconds: z.number().positive().default(10),
    /** Seconds from the first stanza until the stream must be authenticated; then what waits bounces remote-server-timeout. */
    setupTimeoutSeconds: z.number().positive().default(30),
    /** Seconds without a stanza after which a stream is closed. */
    idleSeconds: z.number().positive().default(600),
    /** Seconds after a failed setup during which stanzas for that domain bounce at once instead of dialling again. */
    retryAfterSeconds: z.number().min(0).default(10),
    maxConnections: z.number().int().positive().default(10_000),
  }).default({}),

  /**
   * External components (XEP-0114): programs that serve a domain of their own and connect to this server's
   * component listener with a shared secret. The listener runs on the c2s processes only while some component is configured.
   */
  components: z.object({
    listen: listener.extend({ port: z.number().int().min(0).max(65535).default(5347), backlog: listenBacklog }).default({}),
    /** Seconds a connection may take from TCP accept to a successful handshake. */
    handshakeTimeoutSeconds: z.number().positive().default(10),
    /** Open component connections (handshake done or not) one process accepts. */
    maxConnections: z.number().int().positive().default(100),
    /** The components: each domain (routed to whichever connection authenticated for it) and its secret. */
    services: z.array(z.object({
      domain: z.string().regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'a lower-case domain name'),
      /** The shared secret of the handshake; at least 12 characters. */
      secret: z.string().min(12),
      /** Its name in the disco#items of the served domain it is a subdomain of. */
      name: z.string().optional(),
    })).default([]).superRefine((list, ctx) => {
      const seen = new Set<string>();
      list.forEach((c, i) => {
        if (seen.has(c.domain)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: [i, 'domain'], message: `component ${c.domain} is configured twice` });
        seen.add(c.domain);
      });
    }),
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

  /**
   * The HTTP admin API (services/admin, docs/configuration.md#administration), on its own listener, on every process.
   * Port 0 (the default) takes a free port on `host`; the address is written to `<dataDir>/admin.json`, where the
   * `parley` CLI finds it, beside the token file.
   */
  admin: z.object({
    enabled: z.boolean().default(true),
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(0),
    /** The bearer token; absent: one is generated at first start into `<dataDir>/admin-token` (mode 0600) and kept. */
    token: z.string().min(16).optional(),
    /** Milliseconds to wait for the other processes' answers to an operation before naming them unreachable. */
    requestTimeoutMs: z.number().int().positive().default(3000),
    /** Seconds the rates of `parley stats` (logins/s, stanzas/s) are measured over. */
    statsIntervalSeconds: z.number().int().positive().default(10),
    /** Longest announcement body, in characters. */
    maxAnnounceLength: z.number().int().positive().default(16_384),
    /** Largest request body the API reads, in bytes. */
    maxRequestBytes: z.number().int().positive().default(65_536),
    /** Ad-hoc commands (XEP-0133): accounts one command may name at once (delete, disable). */
    maxCommandJids: z.number().int().positive().default(100),
    /** Ad-hoc commands: forms answered and not yet submitted, per process; past it a new command gets resource-constraint. */
    maxCommandSessions: z.number().int().positive().default(1000),
    /** Ad-hoc commands: seconds a form answered stays open for its submission. */
    commandSessionSeconds: z.number().int().positive().default(600),
    /** Ad-hoc "active users": online, or last seen (XEP-0012) within this many days. */
    activeDays: z.number().int().positive().default(30),
  }).default({}),

  /**
   * Bare JIDs of the server's administrators: they may run the XEP-0133 ad-hoc commands (add, delete, disable users,
   * passwords, online and active users, announcements, message of the day) on the domain of their account.
   */
  admins: z.array(z.string()).default([]),

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

  /** Protocol modules (services/session/modules): every module listed in modules/index.ts runs unless named here. */
  modules: z.object({
    /** Module names to leave off, e.g. ['time', 'last']. */
    disabled: z.array(z.string()).default([]),
  }).default({}),

  /** XEP-0016 privacy lists and XEP-0191 blocking: one rule set per account, enforced in one place. */
  privacy: z.object({
    /** JIDs one block list may hold; a block beyond it is refused with not-acceptable. */
    maxBlockedJids: z.number().int().positive().default(10_000),
    /** Named privacy lists per account. */
    maxLists: z.number().int().positive().default(32),
    /** Items per privacy list. */
    maxListItems: z.number().int().positive().default(1000),
  }).default({}),

  /** XEP-0054 vCards. */
  vcard: z.object({
    /** Largest vCard stored, in bytes of XML; a larger one is refused and nothing is stored. */
    maxBytes: z.number().int().positive().default(65_536),
  }).default({}),

  /** XEP-0163 personal eventing (the part of XEP-0060 publish-subscribe PEP needs), on each account's bare JID. */
  pep: z.object({
    /** Ceiling for a node's `pubsub#max_items`; a larger value is refused (not-acceptable). Also the default for new nodes. */
    maxItems: z.number().int().positive().default(1000),
    /** Largest item kept, in bytes of XML (avatars are the big ones); a larger one is refused and nothing is stored. */
    maxItemBytes: z.number().int().positive().default(131_072),
    /** Nodes per account; publishing to one more is refused (policy-violation). */
    maxNodes: z.number().int().positive().default(256),
  }).default({}),

  /** XEP-0049 private XML storage. */
  privateStorage: z.object({
    /** Largest element stored, in bytes of XML. */
    maxBytes: z.number().int().positive().default(65_536),
    /** Distinct elements (by name and namespace) per account. */
    maxElements: z.number().int().positive().default(64),
  }).default({}),

  /** XEP-0077 in-band registration. */
  registration: z.object({
    /** Anyone may create an account on the client stream before authenticating (off: accounts come from `parley user add`). */
    open: z.boolean().default(false),
    /**
     * Accounts are created in-band only with a registration token an operator made (`parley register-token create`,
     * XEP-0445): invitation-only registration. On, registration is offered even when `open` is off.
     */
    requireToken: z.boolean().default(false),
    /** Registration requests one IP address may make per window, on each connection manager. */
    maxPerIp: z.number().int().positive().default(3),
    windowSeconds: z.number().int().positive().default(3600),
    minPasswordLength: z.number().int().min(1).default(8),
    /** Logged-in users may change their password in-band. */
    passwordChange: z.boolean().default(true),
    /** Logged-in users may delete their own account in-band. */
    accountRemoval: z.boolean().default(true),
  }).default({}),

  /** XEP-0092 software version: off by default so the server does not tell attackers what it runs. */
  version: z.object({
    enabled: z.boolean().default(false),
    /** Include the operating system in the answer. */
    os: z.boolean().default(false),
  }).default({}),

  /** XEP-0157 contact addresses published in the server's disco#info (URIs such as mailto: or xmpp:). */
  contactAddresses: z.object({
    abuse: z.array(z.string()).default([]),
    admin: z.array(z.string()).default([]),
    feedback: z.array(z.string()).default([]),
    sales: z.array(z.string()).default([]),
    security: z.array(z.string()).default([]),
    support: z.array(z.string()).default([]),
  }).default({}),

  /** XEP-0045 multi-user chat: one service at `<subdomain>.<domain>` per hosted domain; each room an actor on the shards. */
  muc: z.object({
    enabled: z.boolean().default(true),
    /** The service of example.com is `<subdomain>.example.com`. */
    subdomain: z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/).default('conference'),
    /** The service's name in disco#info. */
    name: z.string().default('Chatrooms'),
    /** Who may create rooms: users of the hosted domains, or anyone who can reach the service. */
    createRooms: z.enum(['local', 'anyone']).default('local'),
    /** A new room stays locked (XEP-0045 §10.1.1) until its owner submits a configuration or accepts the defaults. */
    lockNewRooms: z.boolean().default(true),
    maxNickLength: z.number().int().positive().default(128),
    maxSubjectLength: z.number().int().positive().default(1024),
    maxNameLength: z.number().int().positive().default(256),
    maxDescriptionLength: z.number().int().positive().default(1024),
    /** The most occupants an owner may configure a room for. */
    maxOccupantsLimit: z.number().int().positive().default(100_000),
    /** The most messages of discussion history a room sends on join; its owner picks up to this. */
    maxHistory: z.number().int().min(0).default(50),
    /** Messages a room archive (XEP-0313 on the room JID) keeps; older ones are dropped. */
    archiveMaxMessages: z.number().int().min(0).default(10_000),
    /** Largest page of one archive query. */
    archiveMaxPage: z.number().int().positive().default(100),
    /** What a new room starts with (its owner changes it through the configuration form). */
    defaults: z.object({
      persistent: z.boolean().default(false),
      public: z.boolean().default(true),
      membersOnly: z.boolean().default(false),
      moderated: z.boolean().default(false),
      maxUsers: z.number().int().positive().default(200),
      /** Who may see occupants' real JIDs. */
      whois: z.enum(['moderators', 'anyone']).default('moderators'),
      changeSubject: z.boolean().default(true),
      allowInvites: z.boolean().default(false),
      allowPm: z.enum(['anyone', 'participants', 'moderators', 'none']).default('anyone'),
      /** Roles whose presence is broadcast; leaving out participants is what makes very large rooms cheap to join. */
      presenceBroadcast: z.array(z.enum(['moderator', 'participant', 'visitor'])).default(['moderator', 'participant', 'visitor']),
      historyLength: z.number().int().min(0).default(20),
      archive: z.boolean().default(true),
    }).default({}),
  }).default({}),

  /**
   * XEP-0363 HTTP file upload: the service `<subdomain>.<domain>` of every served domain hands out slots (a URL to
   * PUT one file to, a URL to GET it from). Offered while enabled and its store can serve: the disk store needs the
   * HTTP listener (`c2s.http.enabled`) and the embedded mode; object storage (s3) works in both modes.
   */
  upload: z.object({
    enabled: z.boolean().default(true),
    /** The service of example.com is `<subdomain>.example.com`. */
    subdomain: z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/).default('upload'),
    /** The service's name in disco. */
    name: z.string().default('HTTP File Upload'),
    /** Largest file one slot may be for, in bytes (announced as max-file-size). */
    maxFileBytes: z.number().int().positive().default(10 * 1024 * 1024),
    /** Bytes one account may hold at once: every slot granted counts until its file expires. */
    quotaBytes: z.number().int().positive().default(100 * 1024 * 1024),
    /**
     * Content types a slot may be for (`type/*` allows a whole type, except image/svg+xml, which must be listed by
     * name); text/html and SVG are left out by default: opened from the upload origin they could run scripts.
     */
    allowedContentTypes: z.array(z.string().regex(/^[a-z0-9!#$&^_.+-]+\/(?:\*|[a-z0-9!#$&^_.+-]+)$/)).min(1).default([
      'image/*', 'audio/*', 'video/*', 'text/plain', 'application/pdf', 'application/zip', 'application/octet-stream',
    ]),
    /** Seconds a slot's PUT URL stays valid. */
    slotSeconds: z.number().int().positive().default(300),
    /** Seconds a file is kept; the sweep deletes older ones (and what they counted toward the quota). */
    fileLifetimeSeconds: z.number().int().positive().default(30 * 86_400),
    /** Seconds between sweeps. */
    sweepSeconds: z.number().positive().default(3600),
    /** Longest file name kept in a URL (longer ones are refused with not-acceptable). */
    maxFileNameLength: z.number().int().positive().default(255),
    /** Where the files live. */
    store: z.discriminatedUnion('kind', [
      z.object({
        kind: z.literal('disk'),
        /** Directory of the files; `<dataDir>/uploads` when absent. */
        dir: z.string().optional(),
        /** Base URL of the HTTP listener as clients reach it; `c2s.http.publicUrl`, else the listener's own address. */
        url: z.string().url().optional(),
      }),
      z.object({
        kind: z.literal('s3'),
        bucket: z.string().min(1),
        region: z.string().default('us-east-1'),
        /** An S3-compatible server's URL (MinIO, Ceph, …); AWS when absent. */
        endpoint: z.string().url().optional(),
        /** Address objects as endpoint/bucket/key instead of bucket.endpoint/key (most S3-compatible servers want this). */
        forcePathStyle: z.boolean().default(false),
        /** Credentials; the AWS SDK's usual chain (environment, profile, instance role) when absent. */
        accessKeyId: z.string().optional(),
        secretAccessKey: z.string().optional(),
        /** Keys of the files start with this. */
        prefix: z.string().default('upload/'),
        /**
         * Base URL where the bucket's objects are readable by anyone (a CDN, a public bucket): GET URLs are then
         * `<publicUrl>/<key>`; when absent they are presigned, valid for the file's lifetime up to S3's 7 days.
         */
        publicUrl: z.string().url().optional(),
      }),
    ]).default({ kind: 'disk' }),
  }).default({}),

  session: z.object({
    /** Seconds an actor with no mailbox and no sessions stays in memory. */
    actorIdleSeconds: z.number().positive().default(120),
    /** Envelopes queued for one bare JID before further ones are refused with resource-constraint. */
    maxMailbox: z.number().int().positive().default(10_000),
    /** Timeout for a c2s → actor request (bind). */
    requestTimeoutMs: z.number().int().positive().default(10_000),
    /** A failed store write that must not be lost (a managed session's queue and record, the message archive) is tried again this many times… */
    storeRetries: z.number().int().min(0).default(3),
    /** …first after this many milliseconds, the wait doubling each time. */
    storeRetryDelayMs: z.number().int().positive().default(500),
  }).default({}),

  /** XEP-0198 stream management: acks both ways, and sessions that survive their connection (resumption on any c2s node). */
  streamManagement: z.object({
    enabled: z.boolean().default(true),
    /** Seconds a session whose connection is gone waits for the client to resume it, when the client names no `max`. */
    resumeTimeoutSeconds: z.number().int().min(0).default(300),
    /** Ceiling for the client's requested `max`; 0 turns resumption off (acks only). */
    maxResumeTimeoutSeconds: z.number().int().min(0).default(3600),
    /** The server asks the client for an ack (<r/>) after this many unacknowledged stanzas… */
    ackRequestStanzas: z.number().int().positive().default(5),
    /** …or once its oldest unacknowledged stanza is this many seconds old. */
    ackRequestSeconds: z.number().positive().default(30),
    /** Unacknowledged stanzas kept per session; beyond it the session ends and they are routed as if it had closed. */
    maxQueue: z.number().int().positive().default(5000),
    /**
     * A client's stanza is acknowledged only once its account's actor has confirmed it safe (applied, and a message
     * for another account applied by that account's actor). One unconfirmed this long makes the c2s ask for the
     * confirmation; an `<r/>` waits at most this long for it before being answered with what is confirmed.
     */
    confirmAfterMs: z.number().int().positive().default(1000),
    /** Asked and still unconfirmed this long: the bus lost something (a process or NATS server died); send again. */
    resendAfterMs: z.number().int().positive().default(2000),
    /** The actor confirms on its own after this many stanzas, so the c2s keeps few even when the client never asks. */
    confirmEvery: z.number().int().positive().default(32),
    /** What contacts see while a session waits: its last presence ('keep'), or unavailable until it resumes. */
    presenceWhileWaiting: z.enum(['keep', 'unavailable']).default('keep'),
    /**
     * A client that closes its stream with stanzas it has not acknowledged is asked for an ack (<r/>) and given this
     * long to answer before the server closes its side; what it acknowledges is not handed back for delivery again.
     * 0 closes at once.
     */
    closeAckWaitMs: z.number().int().min(0).max(30_000).default(1500),
  }).default({}),

  /** XEP-0280 message carbons. */
  carbons: z.object({
    enabled: z.boolean().default(true),
  }).default({}),

  /** XEP-0313 message archive management of each account (with XEP-0059 paging and XEP-0359 stanza ids). */
  mam: z.object({
    enabled: z.boolean().default(true),
    /** What a new account archives until its owner sets preferences: every chat message, only those with roster contacts, or nothing. */
    default: z.enum(['always', 'roster', 'never']).default('always'),
    /** Messages kept per account; the oldest go first (0: no limit). */
    maxMessages: z.number().int().min(0).default(10_000),
    /** Days a message is kept (0: no limit). */
    maxAgeDays: z.number().min(0).default(0),
    /** Page size when the query names none. */
    defaultPage: z.number().int().positive().default(50),
    /** Largest page one query returns. */
    maxPage: z.number().int().positive().default(250),
  }).default({}),

  /**
   * Where message archives (mam) live. Without `postgres`, in the store: lmdb embedded, Redis in a cluster (in
   * memory). With it, in PostgreSQL, in a table range-partitioned by archive time; the rest of the state stays in
   * the store.
   */
  archive: z.object({
    postgres: z.object({
      /** postgres://user:password@host:port/database */
      url: z.string().min(1),
      /** Connections each session process keeps to PostgreSQL. */
      poolSize: z.number().int().positive().max(1000).default(10),
      /** The archive table; its partitions are named after it (`<table>_p202612`, `<table>_default`). */
      table: z.string().regex(/^[a-z_][a-z0-9_]{0,40}$/, 'a lower-case SQL identifier of at most 41 characters').default('message_archive'),
      /** One partition per day or per month of archive time: retention drops whole partitions. */
      partition: z.enum(['day', 'month']).default('month'),
      /** Partitions made ahead of the current one (at start and by the periodic upkeep). */
      partitionsAhead: z.number().int().min(1).max(366).default(2),
      /**
       * Days a partition is kept once its whole range is past: a message goes between this many days and that plus
       * one partition interval after it was archived. Absent: mam.maxAgeDays; 0 keeps everything.
       */
      retentionDays: z.number().min(0).optional(),
      /** How often one session process of the deployment makes partitions ahead and drops expired ones. */
      upkeepSeconds: z.number().int().positive().default(3600),
      /** Rows per INSERT at most. */
      maxBatch: z.number().int().positive().max(10_000).default(500),
      /** How long an archived message waits for others to share its INSERT (0: until the next turn of the event loop). */
      batchMs: z.number().int().min(0).max(1000).default(2),
      /** How long opening a connection may take. */
      connectTimeoutMs: z.number().int().positive().default(10_000),
      /** How long one statement may run before PostgreSQL cancels it. */
      statementTimeoutMs: z.number().int().positive().default(10_000),
    }).optional(),
  }).default({}),

  /** XEP-0357 push notifications to the app servers clients register. */
  push: z.object({
    enabled: z.boolean().default(true),
    /** What a notification tells the app server: only that something arrived ('none'), the sender too, or the sender and the body. */
    include: z.enum(['none', 'sender', 'body']).default('none'),
    /** App-server registrations per account. */
    maxRegistrations: z.number().int().positive().default(16),
  }).default({}),

  /**
   * XEP-0215 external services: the STUN/TURN servers this server's users are told of, with time-limited TURN
   * credentials derived per request from a secret shared with the TURN server (the TURN REST scheme coturn
   * implements with `use-auth-secret` / `static-auth-secret`). None configured: the feature is not advertised.
   */
  externalServices: z.array(z.object({
    /** Host name or address clients connect to. */
    host: z.string().min(1),
    port: z.number().int().min(1).max(65_535).optional(),
    type: z.enum(['stun', 'stuns', 'turn', 'turns']),
    transport: z.enum(['udp', 'tcp']).default('udp'),
    /** Human-readable name shown by clients. */
    name: z.string().optional(),
    /** The TURN server's static-auth-secret; with it, every answer carries a username/password valid for `credentialTtlSeconds`. */
    secret: z.string().min(1).optional(),
    /** How long derived credentials stay valid (the `expires` attribute; the TURN server refuses them after). */
    credentialTtlSeconds: z.number().int().positive().default(86_400),
  })).default([]),

  /** Spam and abuse: blocking reports, a rate limit on messages to strangers, what happens to messages from strangers. */
  spam: z.object({
    /** XEP-0377 reports carried in a block: kept per domain for the operator (`parley reports list`). */
    reports: z.object({
      enabled: z.boolean().default(true),
      /** Reports kept per domain; the oldest go first. */
      maxPerDomain: z.number().int().positive().default(10_000),
      /** Longest report text kept, in characters; a longer one is refused (not-acceptable) and nothing is blocked. */
      maxTextLength: z.number().int().positive().default(2_000),
      /** Stanza ids one report may cite; more are refused (not-acceptable). */
      maxStanzaIds: z.number().int().positive().default(20),
    }).default({}),
    /**
     * Messages to JIDs that are not contacts with a subscription (either way) of the sender, counted over a fixed
     * window per account and per domain; past either limit the sender gets policy-violation and nothing is delivered.
     */
    strangerRate: z.object({
      enabled: z.boolean().default(true),
      windowMs: z.number().int().positive().default(60_000),
      /** Messages to strangers one account may send per window (generous: a person typing stays far below it, a bulk sender does not). */
      perAccount: z.number().int().positive().default(600),
      /** Messages to strangers all accounts of one domain may send per window (shared through Redis in a cluster). */
      perDomain: z.number().int().positive().default(100_000),
    }).default({}),
    /**
     * Messages from JIDs not in the recipient's roster: delivered as they are, delivered with a marker element
     * clients can show ('mark'), held until the recipient adds the sender to the roster ('hold'), or refused ('drop').
     */
    strangers: z.object({
      policy: z.enum(['deliver', 'mark', 'hold', 'drop']).default('deliver'),
      /** Messages held per account under 'hold'; past it further messages from strangers are refused. */
      maxHeld: z.number().int().positive().default(100),
    }).default({}),
  }).default({}),
});

export type Config = z.infer<typeof configSchema>;
