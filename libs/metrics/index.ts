// Prometheus metrics (prom-client) and the HTTP endpoint that serves them
// with /healthz and /readyz.
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** One row of the connections gauge: a transport (tcp, tls for direct TLS, ws, bosh), whether TLS is in effect, how many. */
export interface ConnectionCount {
  transport: string;
  tls: 'yes' | 'no';
  n: number;
}

/** Where the gauges (and the counters read at scrape time) read their values. */
export interface GaugeSources {
  connections(): readonly ConnectionCount[];
  shardsOwned(): number;
  actors(): number;
  mailboxDepth(): number;
  busPublished(): number;
  /** Stanza error replies built so far, by condition (libs/errors). */
  stanzaErrors(): ReadonlyMap<string, number>;
  /** Authenticated server-to-server streams by direction. */
  s2sLinks(): { out: number; in: number };
  /** Stanzas waiting for outgoing server streams being set up. */
  s2sQueued(): number;
  /** Multi-user chat rooms live on this session process, and their occupants. */
  rooms(): { rooms: number; occupants: number };
}

/** The roles this process runs: a metric of a role it does not run is not exported (it would only ever say 0). */
export interface MetricRoles {
  c2s: boolean;
  session: boolean;
  s2s: boolean;
}

export const ALL_ROLES: MetricRoles = { c2s: true, session: true, s2s: true };

export class Metrics {
  readonly registry = new Registry();
  sources: GaugeSources = {
    connections: () => [], shardsOwned: () => 0, actors: () => 0, mailboxDepth: () => 0, busPublished: () => 0, stanzaErrors: () => new Map(),
    s2sLinks: () => ({ out: 0, in: 0 }), s2sQueued: () => 0, rooms: () => ({ rooms: 0, occupants: 0 }),
  };
  private readonly src = () => this.sources;
  /** Where a metric is exported: this process's registry when it runs the role, nowhere otherwise (it can still be updated). */
  private readonly all: Registry[];
  private readonly c2s: Registry[];
  private readonly session: Registry[];
  private readonly s2s: Registry[];

  readonly buildInfo: Gauge<'version' | 'node' | 'role'>;
  readonly connections: Gauge<'transport' | 'tls'>;
  readonly stanzasIn: Counter<'kind'>;
  readonly stanzasOut: Counter<'kind'>;
  readonly auth: Counter<'mechanism' | 'result'>;
  readonly authFailures: Counter;
  readonly authBlocks: Counter<'event'>;
  readonly smResumptions: Counter<'result'>;
  readonly admissionRefused: Counter<'what'>;
  readonly stanzaErrors: Counter<'condition'>;
  readonly shardsOwned: Gauge;
  readonly actors: Gauge;
  readonly mailboxDepth: Gauge;
  readonly busPublished: Counter;
  readonly storeLatency: Histogram<'op'>;
  readonly routingLatency: Histogram;
  readonly offline: Counter<'event'>;
  readonly leasesLapsed: Counter;
  readonly leasesLost: Counter<'reason'>;
  readonly processFaults: Counter<'kind'>;
  readonly staleWrites: Counter;
  readonly busRtt: Gauge;
  readonly ready: Gauge;
  readonly s2sLinks: Gauge<'direction'>;
  readonly s2sQueued: Gauge;
  readonly s2sStanzas: Counter<'direction' | 'kind'>;
  readonly s2sDialbackFailures: Counter<'side'>;
  readonly mucRooms: Gauge;
  readonly mucOccupants: Gauge;

  // Pre-bound children: the hot path must not look labels up per stanza.
  private readonly inByKind = new Map<string, Counter.Internal>();
  private readonly outByKind = new Map<string, Counter.Internal>();

  constructor(defaults = true, roles: MetricRoles = ALL_ROLES) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
    this.all = [this.registry];
    this.c2s = roles.c2s ? this.all : [];
    this.session = roles.session ? this.all : [];
    this.s2s = roles.s2s ? this.all : [];
    const { all, c2s, session, s2s } = this;
    // prom-client adds to a counter only: a total kept elsewhere is added to the counter by its growth since the last scrape.
    const grown = (c: Counter, now: number, last: number): number => {
      if (now > last) c.inc(now - last);
      return Math.max(now, last);
    };
    let published = 0;
    const errorsSeen = new Map<string, number>();

    this.buildInfo = new Gauge({ name: 'parley_build_info', help: 'Always 1: the version this process runs, its node id and its role', labelNames: ['version', 'node', 'role'] as const, registers: all });
    this.busPublished = new Counter({
      name: 'parley_bus_published_total', help: 'Messages this process published on the bus (NATS: several envelopes for one subject in one event-loop turn travel as one)', registers: all,
      collect: () => { published = grown(this.busPublished, this.src().busPublished(), published); },
    });
    this.stanzaErrors = new Counter({
      name: 'parley_stanza_errors_total', help: 'Stanza error replies this process built (RFC 6120 §8.3), by defined condition', labelNames: ['condition'] as const, registers: all,
      collect: () => {
        for (const [condition, n] of this.src().stanzaErrors()) {
          const last = errorsSeen.get(condition) ?? 0;
          if (n > last) this.stanzaErrors.labels(condition).inc(n - last);
          errorsSeen.set(condition, Math.max(n, last));
        }
      },
    });
    this.storeLatency = new Histogram({ name: 'parley_store_seconds', help: 'Store operation latency', labelNames: ['op'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: all });
    this.processFaults = new Counter({ name: 'parley_process_faults_total', help: 'Promise rejections nobody handled (the process went on) and exceptions nobody caught (it exited): each one a bug, logged with its stack', labelNames: ['kind'] as const, registers: all });
    this.busRtt = new Gauge({ name: 'parley_bus_rtt_seconds', help: 'Round trip to the bus server, last measured', registers: all });
    this.ready = new Gauge({ name: 'parley_ready', help: '1 while this process can serve (/readyz answers 200), 0 otherwise', registers: all });

    this.connections = new Gauge({
      name: 'parley_c2s_connections', help: 'Open client connections, by transport (tcp, tls: direct TLS, ws, bosh) and whether TLS is in effect (a STARTTLS stream counts as tls="yes" once its handshake is done)',
      labelNames: ['transport', 'tls'] as const, registers: c2s,
      collect: () => { for (const r of this.src().connections()) this.connections.labels(r.transport, r.tls).set(r.n); },
    });
    this.stanzasIn = new Counter({ name: 'parley_stanzas_in_total', help: 'Stanzas received from clients', labelNames: ['kind'] as const, registers: c2s });
    this.stanzasOut = new Counter({ name: 'parley_stanzas_out_total', help: 'Stanzas delivered to clients', labelNames: ['kind'] as const, registers: c2s });
    this.auth = new Counter({ name: 'parley_auth_total', help: 'SASL outcomes', labelNames: ['mechanism', 'result'] as const, registers: c2s });
    this.authFailures = new Counter({ name: 'parley_auth_failures_total', help: 'Failed logins counted by the login throttle (each one an `auth failed` log line)', registers: c2s });
    this.authBlocks = new Counter({ name: 'parley_auth_blocks_total', help: 'Login throttle blocks: event="started" when an address is blocked, event="refused" for each attempt refused because its address is blocked', labelNames: ['event'] as const, registers: c2s });
    this.admissionRefused = new Counter({ name: 'parley_admission_refused_total', help: 'Refused by admission control (c2s.admission): what="stream" (a new stream, sent elsewhere or told to retry), "login" (a SASL success answered temporary-auth-failure), "resumption" (a XEP-0198 resumption answered <failed><resource-constraint/>)', labelNames: ['what'] as const, registers: c2s });
    this.smResumptions = new Counter({ name: 'parley_sm_resumptions_total', help: 'Stream management resumptions (XEP-0198): result="success", or "failure" when the client got <failed/>', labelNames: ['result'] as const, registers: c2s });
    this.routingLatency = new Histogram({ name: 'parley_routing_seconds', help: 'From receipt of a stanza from a client to its delivery to a client', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: c2s });

    this.shardsOwned = new Gauge({ name: 'parley_shards_owned', help: 'Shards this session process serves', registers: session, collect: (): void => this.shardsOwned.set(this.src().shardsOwned()) });
    this.actors = new Gauge({ name: 'parley_actors', help: 'Live bare-JID actors', registers: session, collect: (): void => this.actors.set(this.src().actors()) });
    this.mailboxDepth = new Gauge({ name: 'parley_actor_mailbox_depth', help: 'Envelopes queued in all actor mailboxes', registers: session, collect: (): void => this.mailboxDepth.set(this.src().mailboxDepth()) });
    this.offline = new Counter({ name: 'parley_offline_messages_total', help: 'Messages kept for accounts with no available resource, and delivered from storage', labelNames: ['event'] as const, registers: session });
    this.leasesLapsed = new Counter({ name: 'parley_shard_leases_lapsed_total', help: 'Shard leases not renewed in time (a stall, a slow or unreachable Redis): the shard held its traffic until a renewal said whether it was still this process\'s', registers: session });
    this.leasesLost = new Counter({ name: 'parley_shard_leases_lost_total', help: 'Shard leases this process lost (not renewed in time, or taken): it stopped serving those shards', labelNames: ['reason'] as const, registers: session });
    this.staleWrites = new Counter({ name: 'parley_store_stale_writes_total', help: 'Writes the store refused because they carried an older fencing token than the account had seen', registers: session });
    this.mucRooms = new Gauge({ name: 'parley_muc_rooms', help: 'Multi-user chat rooms live on this session process (their actors in memory)', registers: session,
      collect: (): void => this.mucRooms.set(this.src().rooms().rooms) });
    this.mucOccupants = new Gauge({ name: 'parley_muc_occupants', help: 'Occupants of the rooms live on this session process (remote users included)', registers: session,
      collect: (): void => this.mucOccupants.set(this.src().rooms().occupants) });

    this.s2sLinks = new Gauge({
      name: 'parley_s2s_links', help: 'Authenticated server-to-server streams, by direction (out: opened by us and established; in: opened by a peer that proved a domain)',
      labelNames: ['direction'] as const, registers: s2s,
      collect: () => {
        const l = this.src().s2sLinks();
        this.s2sLinks.labels('out').set(l.out);
        this.s2sLinks.labels('in').set(l.in);
      },
    });
    this.s2sQueued = new Gauge({ name: 'parley_s2s_queued', help: 'Stanzas waiting for outgoing server-to-server streams being set up (each route holds up to s2s.maxQueue)', registers: s2s,
      collect: (): void => this.s2sQueued.set(this.src().s2sQueued()) });
    this.s2sStanzas = new Counter({ name: 'parley_s2s_stanzas_total', help: 'Stanzas over server-to-server streams: received from peers (in) and written to them (out), by kind', labelNames: ['direction', 'kind'] as const, registers: s2s });
    this.s2sDialbackFailures = new Counter({
      name: 'parley_s2s_dialback_failures_total', help: 'Server dialback that did not authenticate: side="in" a peer\'s key we refused (invalid, or not verifiable), side="out" our key a peer refused',
      labelNames: ['side'] as const, registers: s2s,
    });
    // Present from the start, so a dashboard and an alert see 0 rather than nothing.
    for (const d of ['in', 'out']) for (const k of ['message', 'presence', 'iq']) this.s2sStanzas.labels(d, k).inc(0);
    for (const side of ['in', 'out']) this.s2sDialbackFailures.labels(side).inc(0);
  }

  /** What the s2s streams count (services/s2s/context.ts S2sCounters), children bound once. */
  s2sCounters(): { stanza(direction: 'in' | 'out', kind: string): void; dialbackFailed(side: 'in' | 'out'): void } {
    const stanzas = new Map<string, Counter.Internal>();
    const failures = { in: this.s2sDialbackFailures.labels('in'), out: this.s2sDialbackFailures.labels('out') };
    return {
      stanza: (direction, kind) => {
        const key = `${direction} ${kind}`;
        let c = stanzas.get(key);
        if (!c) stanzas.set(key, (c = this.s2sStanzas.labels(direction, kind)));
        c.inc();
      },
      dialbackFailed: (side) => failures[side].inc(),
    };
  }

  stanzaIn(kind: string): void {
    let c = this.inByKind.get(kind);
    if (!c) this.inByKind.set(kind, (c = this.stanzasIn.labels(kind)));
    c.inc();
  }

  stanzaOut(kind: string, receivedAt = 0): void {
    let c = this.outByKind.get(kind);
    if (!c) this.outByKind.set(kind, (c = this.stanzasOut.labels(kind)));
    c.inc();
    if (receivedAt > 0) this.routingLatency.observe((Date.now() - receivedAt) / 1000);
  }
}

export interface HealthProbe {
  /** Why this process cannot serve now (a short sentence for /readyz), or undefined when it can. */
  notReady(): string | undefined;
}

export function serveMetrics(metrics: Metrics, host: string, port: number, probe: HealthProbe): Promise<Server> {
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/metrics')) {
      metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(body);
      }, (e: unknown) => {
        res.writeHead(500);
        res.end(String(e));
      });
    } else if (url.startsWith('/healthz')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else if (url.startsWith('/readyz')) {
      const why = probe.notReady();
      res.writeHead(why === undefined ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(why === undefined ? 'ready\n' : `not ready: ${why}\n`);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
