// Prometheus metrics (prom-client) and the HTTP endpoint that serves them
// with /healthz and /readyz.
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Where the gauges read their values at scrape time. */
export interface GaugeSources {
  connections(): Record<string, number>;
  shardsOwned(): number;
  actors(): number;
  mailboxDepth(): number;
  busPublished(): number;
}

export class Metrics {
  readonly registry = new Registry();
  sources: GaugeSources = { connections: () => ({}), shardsOwned: () => 0, actors: () => 0, mailboxDepth: () => 0, busPublished: () => 0 };
  private readonly src = () => this.sources;
  readonly connections = new Gauge({
    name: 'parley_c2s_connections', help: 'Open client connections', labelNames: ['transport'] as const, registers: [this.registry],
    collect: () => { for (const [t, n] of Object.entries(this.src().connections())) this.connections.labels(t).set(n); },
  });
  readonly stanzasIn = new Counter({ name: 'parley_stanzas_in_total', help: 'Stanzas received from clients', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly stanzasOut = new Counter({ name: 'parley_stanzas_out_total', help: 'Stanzas delivered to clients', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly auth = new Counter({ name: 'parley_auth_total', help: 'SASL outcomes', labelNames: ['mechanism', 'result'] as const, registers: [this.registry] });
  readonly shardsOwned: Gauge = new Gauge({ name: 'parley_shards_owned', help: 'Shards this session process serves', registers: [this.registry], collect: (): void => this.shardsOwned.set(this.src().shardsOwned()) });
  readonly actors: Gauge = new Gauge({ name: 'parley_actors', help: 'Live bare-JID actors', registers: [this.registry], collect: (): void => this.actors.set(this.src().actors()) });
  readonly mailboxDepth: Gauge = new Gauge({ name: 'parley_actor_mailbox_depth', help: 'Envelopes queued in all actor mailboxes', registers: [this.registry], collect: (): void => this.mailboxDepth.set(this.src().mailboxDepth()) });
  readonly busPublished: Gauge = new Gauge({ name: 'parley_bus_published_total', help: 'Messages this process published on the bus (NATS: several envelopes for one subject in one event-loop turn travel as one)', registers: [this.registry], collect: (): void => this.busPublished.set(this.src().busPublished()) });
  readonly storeLatency = new Histogram({ name: 'parley_store_seconds', help: 'Store operation latency', labelNames: ['op'] as const, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers: [this.registry] });

  readonly routingLatency = new Histogram({ name: 'parley_routing_seconds', help: 'From receipt of a stanza from a client to its delivery to a client', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [this.registry] });
  readonly offline = new Counter({ name: 'parley_offline_messages_total', help: 'Messages kept for accounts with no available resource, and delivered from storage', labelNames: ['event'] as const, registers: [this.registry] });
  readonly leasesLapsed = new Counter({ name: 'parley_shard_leases_lapsed_total', help: 'Shard leases not renewed in time (a stall, a slow or unreachable Redis): the shard held its traffic until a renewal said whether it was still this process\'s', registers: [this.registry] });
  readonly leasesLost = new Counter({ name: 'parley_shard_leases_lost_total', help: 'Shard leases this process lost (not renewed in time, or taken): it stopped serving those shards', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly processFaults = new Counter({ name: 'parley_process_faults_total', help: 'Promise rejections nobody handled (the process went on) and exceptions nobody caught (it exited): each one a bug, logged with its stack', labelNames: ['kind'] as const, registers: [this.registry] });
  readonly staleWrites = new Counter({ name: 'parley_store_stale_writes_total', help: 'Writes the store refused because they carried an older fencing token than the account had seen', registers: [this.registry] });
  readonly busRtt = new Gauge({ name: 'parley_bus_rtt_seconds', help: 'Round trip to the bus server, last measured', registers: [this.registry] });
  readonly ready = new Gauge({ name: 'parley_ready', help: '1 while this process can serve (/readyz answers 200), 0 otherwise', registers: [this.registry] });

  // Pre-bound children: the hot path must not look labels up per stanza.
  private readonly inByKind = new Map<string, Counter.Internal>();
  private readonly outByKind = new Map<string, Counter.Internal>();

  constructor(defaults = true) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
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
