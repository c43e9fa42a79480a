// A federation process (the s2s role). Outbound: remote domains hash into a
// fixed number of shards spread over the live s2s processes by the same
// rendezvous hashing and handoff the session processes use (ShardHost), so
// exactly one process holds the stream to a given remote domain and any
// session process reaches it through the shard's subject. Inbound: a remote
// server may connect to any s2s process; what it sends goes straight to the
// recipient's actor as an inbound envelope, whose answers come back through
// the outbound shard.
//
// "Local" is every domain served here (libs/accounts/served.ts): the hosted
// domains and the service domains beside them (conference.<domain>, …), so a
// room is reached from other servers, and writes to them, like an account.
// Stanzas for a served domain itself go to that domain's actor like any
// other, and are answered by the same modules that answer local users.
//
//   actor ──parley.s2s.<n>──▶ S2sNode ─▶ Route(local, remote) ─▶ OutgoingStream ─▶ peer
//   peer ─▶ IncomingStream ─▶ S2sNode.inbound ──parley.shard.<m> (dir in)──▶ actor
import { createServer, type Server, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { TLSSocket } from 'node:tls';
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { ServedDomains } from '../../libs/accounts/served.ts';
import type { Bus, Subjects } from '../../libs/bus/bus.ts';
import { envelope, type Envelope, type StanzaKind } from '../../libs/bus/envelope.ts';
import type { LeaseTable } from '../../libs/cluster/lease.ts';
import type { Membership } from '../../libs/cluster/membership.ts';
import { shardOf } from '../../libs/cluster/shards.ts';
import type { Config } from '../../libs/config/schema.ts';
import { parseTarget, resolveXmppService, type ServiceTarget, type SrvLookup } from '../../libs/dns/index.ts';
import { errorReply, StanzaError, StreamError, type StanzaErrorCondition } from '../../libs/errors/index.ts';
import { tryParseJid, type Jid } from '../../libs/jid/index.ts';
import { bareJid, domainPart, hasLocalpart } from '../../libs/jid/split.ts';
import { logger } from '../../libs/log/index.ts';
import type { Store } from '../../libs/store/store.ts';
import { DomainCertificates, type CertificatePair } from '../../libs/tls/index.ts';
import type { Element } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { ShardHost } from '../session/shard-host.ts';
import { S2sConnection, type ConnectionLimits } from './connection.ts';
import { NO_COUNTERS, type DialbackVerdict, type PairCheck, type S2sContext, type S2sCounters } from './context.ts';
import { DialbackKeys, sharedDialbackSecret } from './dialback.ts';
import { IncomingStream } from './incoming.ts';
import { listenError } from '../listen-error.ts';
import { OutgoingStream } from './outgoing.ts';
import { Route, type RouteOwner } from './route.ts';
import { envelopeStanza, NS_SERVER, wireStanza } from './stanza.ts';

const log = logger('s2s');

export interface S2sNodeOptions {
  config: Config;
  bus: Bus;
  subjects: Subjects;
  store: Store;
  /** The hosted domains and the service domains beside them. */
  served: ServedDomains;
  /** The s2s processes (this one included). */
  membership: Membership;
  /** The certificate of domains that have none of their own (the c2s one). */
  fallbackCertificate: CertificatePair;
  /** DNS, replaceable in tests. */
  resolver?: SrvLookup;
  /** The leases of the outgoing streams' shards (libs/cluster/lease.ts), and how long one lasts (Infinity: this process alone). */
  leases: LeaseTable;
  leaseTtlMs: number;
  /** Stanzas and dialback failures, for the metrics endpoint. */
  counters?: S2sCounters;
}

/** One stream as tests and operators see it. */
export interface S2sStreamInfo {
  direction: 'out' | 'in';
  local: string;
  /** The peer's domain(s) authenticated on this stream. */
  remote: string[];
  auth: 'none' | 'external' | 'dialback';
  tls: boolean;
  bidi: boolean;
  state: string;
}

export class S2sNode implements S2sContext, RouteOwner {
  readonly config: Config;
  readonly served: ServedDomains;
  readonly counters: S2sCounters;
  readonly certs: DomainCertificates;
  readonly limits: ConnectionLimits;
  readonly shards: ShardHost;
  private dialbackKeys: DialbackKeys | undefined;
  private readonly routes = new Map<string, Route>();
  /** Routes whose setup failed recently: until when their stanzas bounce without a new attempt. */
  private readonly failed = new Map<string, { until: number; condition: StanzaErrorCondition; text: string }>();
  private readonly incoming = new Set<IncomingStream>();
  /** XEP-0288: incoming streams the peer made bidirectional, by the (local, remote) pair they carry our stanzas for. */
  private readonly bidiStreams = new Map<string, IncomingStream>();
  private readonly verifying = new Set<OutgoingStream>();
  private readonly servers: Server[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(private readonly o: S2sNodeOptions) {
    this.config = o.config;
    this.served = o.served;
    this.counters = o.counters ?? NO_COUNTERS;
    const s2s = o.config.s2s;
    this.certs = new DomainCertificates({
      files: s2s.certificates,
      dir: s2s.certificateDir,
      fallback: o.fallbackCertificate,
      ca: s2s.caFile ? readFileSync(s2s.caFile, 'utf8') : undefined,
    });
    this.limits = { ...o.config.limits };
    // A shard space of its own: remote domains over s2s processes, with its own control subject.
    this.shards = new ShardHost(o.bus, { shard: (n) => o.subjects.s2s(n), control: (node) => `${o.subjects.control(node)}.s2s` }, o.membership, {
      shards: s2s.shards,
      handoffTimeoutMs: o.config.cluster.handoffTimeoutMs,
      deliver: (_shard, env) => this.send(env),
      drain: (shard) => this.drain(shard),
      // The lease is gone: another process may already stream to these domains; stop at once.
      drop: (shard) => { for (const r of this.routes.values()) if (shardOf(r.remote, this.config.s2s.shards) === shard) void r.abort(); },
      leases: o.leases,
      leaseTtlMs: o.leaseTtlMs,
      renewMs: o.config.cluster.heartbeatMs,
      maxSuspendedBuffer: o.config.session.maxMailbox,
    });
  }

  get ctx(): S2sContext {
    return this;
  }

  get hosts(): HostedDomains {
    return this.served.hosts;
  }

  get keys(): DialbackKeys {
    if (!this.dialbackKeys) throw new Error('the s2s node has not started');
    return this.dialbackKeys;
  }

  async start(): Promise<void> {
    const s2s = this.config.s2s;
    this.dialbackKeys = new DialbackKeys(s2s.dialbackSecret ?? await sharedDialbackSecret(this.o.store));
    this.servers.push(await this.listen(s2s.listen.host, s2s.listen.port, false).catch((e: unknown) => {
      throw listenError('the s2s listener', 's2s.listen', s2s.listen.host, s2s.listen.port, e);
    }));
    if (s2s.directTls.enabled) {
      this.servers.push(await this.listen(s2s.directTls.host, s2s.directTls.port, true).catch((e: unknown) => {
        throw listenError('the s2s direct TLS listener', 's2s.directTls', s2s.directTls.host, s2s.directTls.port, e);
      }));
    }
    await this.o.membership.start();
    this.shards.start();
    await this.o.bus.flush();
    const idleMs = s2s.idleSeconds * 1000;
    this.sweeper = setInterval(() => this.closeIdle(idleMs), Math.min(idleMs / 2, 30_000));
    this.sweeper.unref();
  }

  /** The port of the STARTTLS listener (or the direct TLS one). */
  port(direct = false): number {
    const s = this.servers[direct ? 1 : 0];
    const a = s?.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  streams(): S2sStreamInfo[] {
    const out: S2sStreamInfo[] = [];
    for (const r of this.routes.values()) {
      const s = r.stream;
      out.push({ direction: 'out', local: s.local, remote: [s.remote], auth: s.auth, tls: s.secure, bidi: s.bidi, state: s.state.name });
    }
    for (const s of this.incoming) {
      const auths = [...s.pairs.values()];
      out.push({
        direction: 'in', local: s.local, remote: [...s.pairs.keys()].map((p) => p.slice(p.indexOf(' ') + 1)),
        auth: auths.includes('external') ? 'external' : auths.length ? 'dialback' : 'none', tls: s.secure, bidi: s.bidi, state: s.state.name,
      });
    }
    return out;
  }

  /** Authenticated streams by direction (an outgoing one established, an incoming one with a pair proven), for the metrics. */
  linksUp(): { out: number; in: number } {
    let out = 0;
    let inbound = 0;
    for (const r of this.routes.values()) if (r.stream.state.name === 'established') out++;
    for (const s of this.incoming) if (s.pairs.size > 0 && s.open) inbound++;
    return { out, in: inbound };
  }

  /** Stanzas waiting for outgoing streams being set up, for the metrics. */
  queued(): number {
    let n = 0;
    for (const r of this.routes.values()) n += r.queued;
    return n;
  }

  // ================================================================ outbound

  /** An outbound envelope for a remote domain whose shard is ours. */
  private send(env: Envelope): void {
    if (env.kind === 'ctl') return;
    const local = domainPart(env.from);
    const remote = domainPart(env.to);
    if (!this.served.has(local)) {
      // Nothing served here may speak for that domain, and no peer would accept it from us.
      log.warn('dropped a stanza from a domain not served here', { from: env.from, to: env.to });
      return;
    }
    if (this.served.has(remote)) {
      // Added at run time after the sender's process looked: it is ours after all.
      const inbound: Envelope = { ...env, dir: 'in', origin: '', seq: 0 };
      if (this.served.send(remote, inbound) === undefined && (hasLocalpart(env.to) || this.served.isService(remote))) {
        this.o.bus.publish(this.o.subjects.shard(shardOf(bareJid(env.to), this.config.cluster.shards)), inbound);
      }
      return;
    }
    if (this.stopping) return this.bounce(env, 'remote-server-timeout', 'the server is shutting down');
    const key = `${local} ${remote}`;
    // The peer's own stream, made bidirectional, needs no stream of ours (and no dialback callback).
    const bidi = this.bidiStreams.get(key);
    if (bidi && bidi.state.name === 'open') return this.writeBidi(bidi, env);
    let route = this.routes.get(key);
    if (!route) {
      // A domain that just failed is not dialled again for every stanza (a presence broadcast would).
      const f = this.failed.get(key);
      if (f && f.until > Date.now()) return this.bounce(env, f.condition, f.text);
      this.failed.delete(key);
      route = new Route(local, remote, this);
      this.routes.set(key, route);
    }
    route.send(env);
  }

  private writeBidi(stream: IncomingStream, env: Envelope): void {
    let xml: string;
    try {
      xml = wireStanza(env);
    } catch (e) {
      log.error('cannot serialize a stanza for a remote server', { remote: stream.remote, error: e });
      return this.bounce(env, 'internal-server-error', 'the stanza could not be forwarded');
    }
    this.counters.stanza('out', env.kind);
    stream.send(xml);
  }

  ended(route: Route): void {
    if (this.routes.get(route.key) === route) this.routes.delete(route.key);
    const retryMs = this.config.s2s.retryAfterSeconds * 1000;
    if (route.failure && retryMs > 0 && !this.stopping) this.failed.set(route.key, { until: Date.now() + retryMs, ...route.failure });
  }

  /** RFC 6120 §10.4.3 and §8.3.1: back to the local sender, from the address it was sent to. */
  bounce(env: Envelope, condition: StanzaErrorCondition, text: string): void {
    // Never an error for an error, nor for an iq result; a probe has no one to tell.
    if (env.type === 'error' || (env.kind === 'iq' && env.type === 'result') || (env.kind === 'presence' && env.type === 'probe')) return;
    if (!hasLocalpart(env.from) || env.kind === 'ctl') return; // the server itself sent it
    let reply: Element;
    try {
      reply = errorReply(envelopeStanza(env), new StanzaError(condition, text, undefined, domainPart(env.from)));
    } catch {
      return;
    }
    this.o.bus.publish(this.o.subjects.shard(shardOf(bareJid(env.from), this.config.cluster.shards)), envelope({
      kind: env.kind, dir: 'in', from: env.to, to: env.from, type: 'error', id: env.id, xml: serialize(reply),
    }));
  }

  /** A stanza the s2s layer itself sends to a remote entity: through the owner of its domain's shard. */
  private toRemote(kind: StanzaKind, stanza: Element): void {
    const to = stanza.attrs.to ?? '';
    this.o.bus.publish(this.o.subjects.s2s(shardOf(domainPart(to), this.config.s2s.shards)), envelope({
      kind, dir: 'out', from: stanza.attrs.from ?? '', to, type: stanza.attrs.type ?? '', id: stanza.attrs.id ?? '', xml: serialize(stanza),
    }));
  }

  /** Handoff: the shard moves away; its streams finish what waits for them and close. */
  private async drain(shard: number): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const r of this.routes.values()) if (shardOf(r.remote, this.config.s2s.shards) === shard) closing.push(r.close());
    await Promise.all(closing);
  }

  async targets(domain: string): Promise<ServiceTarget[]> {
    const route = this.config.s2s.routes[domain];
    if (route !== undefined) return [parseTarget(route, 5269)];
    return resolveXmppService(domain, { service: 'server', defaultPort: 5269, resolver: this.o.resolver });
  }

  // ================================================================ inbound

  private listen(host: string, port: number, direct: boolean): Promise<Server> {
    const server = createServer({ noDelay: true }, (socket) => {
      if (this.stopping) return socket.destroy();
      if (!direct) return this.accept(socket);
      // XEP-0368: TLS from the first byte, certificate by SNI.
      const fallback = this.certs.defaultContext();
      const tls = new TLSSocket(socket, {
        isServer: true, secureContext: fallback, requestCert: true, rejectUnauthorized: false, ALPNProtocols: ['xmpp-server'],
        SNICallback: (name, cb) => cb(null, this.served.has(name.toLowerCase()) ? this.certs.context(name) : fallback),
      });
      const timer = setTimeout(() => tls.destroy(), this.config.s2s.connectTimeoutSeconds * 1000);
      tls.on('error', () => tls.destroy());
      tls.once('secure', () => {
        clearTimeout(timer);
        this.accept(tls);
      });
    });
    server.maxConnections = this.config.s2s.maxConnections;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.removeListener('error', reject);
        resolve(server);
      });
    });
  }

  private accept(socket: Socket): void {
    const stream = new IncomingStream(new S2sConnection(socket, this.limits), this, {
      bidiPair: (s, local, remote) => {
        // Only the holder of the remote domain's shard sends to it (the others' stanzas never come here).
        this.bidiStreams.set(`${local} ${remote}`, s);
        log.debug('incoming stream carries our stanzas too (XEP-0288)', { local, remote });
      },
      ended: (s) => {
        this.incoming.delete(s);
        for (const [k, b] of this.bidiStreams) if (b === s) this.bidiStreams.delete(k);
      },
    });
    this.incoming.add(stream);
  }

  /**
   * A stanza from a remote server, on a stream that authenticated some
   * (local, remote) pairs. Addresses are checked and normalized here, once;
   * then the recipient's actor applies the same inbound rules as for a local
   * sender.
   */
  inbound(e: Element, allowed: PairCheck, localFor: (remote: string) => string | undefined): StreamError | undefined {
    const name = e.name;
    if (name !== 'message' && name !== 'presence' && name !== 'iq') return new StreamError('unsupported-stanza-type', `<${name}/> is not a stanza`);
    const ns = e.attrs.xmlns;
    if (ns !== undefined) {
      if (ns !== NS_SERVER) return new StreamError('invalid-namespace', 'stanzas on a server stream are in jabber:server');
      delete e.attrs.xmlns; // the client stream supplies its own
    }
    const from = tryParseJid(e.attrs.from ?? '');
    if (!from) return new StreamError('invalid-from', `'${e.attrs.from ?? ''}' is not a valid sender`);
    if (e.attrs.to === undefined) return new StreamError('improper-addressing', 'a stanza between servers needs a to');
    const to = tryParseJid(e.attrs.to);
    // A malformed 'to' is usually a bad localpart or resource: its domain still says whom it was for.
    const toDomain = to?.domain ?? domainPart(e.attrs.to).toLowerCase();
    if (!this.served.has(toDomain)) {
      // RFC 6120 §8.3, not §4.9: one stanza astray gets its own error; the stream, which other stanzas share, goes on.
      // We relay for no one, so there is no route; the error comes from a domain of ours the sender's domain proved itself to.
      const local = localFor(from.domain);
      if (local === undefined) return new StreamError('invalid-from', `${from.domain} is not authenticated on this stream`);
      this.counters.stanza('in', name);
      this.replyError(e, from, local, new StanzaError('remote-server-not-found', `this server does not serve '${toDomain}' and relays for no one`));
      return undefined;
    }
    if (!allowed(toDomain, from.domain)) return new StreamError('invalid-from', `${from.domain} is not authenticated on this stream`);
    this.counters.stanza('in', name);
    if (!to) {
      this.replyError(e, from, toDomain, new StanzaError('jid-malformed', `'${e.attrs.to}' is not a valid JID`));
      return undefined;
    }
    e.attrs.from = from.full;
    e.attrs.to = to.full;
    const type = e.attrs.type ?? '';
    if (name === 'iq' && (e.attrs.id === undefined || (type !== 'get' && type !== 'set' && type !== 'result' && type !== 'error'))) {
      this.replyError(e, from, to.full, new StanzaError('bad-request', 'an iq needs an id and a type of get, set, result or error'));
      return undefined;
    }
    const env = envelope({ kind: name, dir: 'in', from: from.full, to: to.full, type, id: e.attrs.id ?? '', xml: serialize(e) });
    // A service with a connection of its own (an external component) takes its stanzas itself.
    const taken = this.served.send(to.domain, env);
    if (taken === false) this.replyError(e, from, to.full, new StanzaError('service-unavailable', `${to.domain} is not connected now`));
    // An account, a room, or a served domain itself (its actor answers with the modules' host handlers).
    if (taken === undefined) this.o.bus.publish(this.o.subjects.shard(shardOf(to.bare, this.config.cluster.shards)), env);
    return undefined;
  }

  /** An error back to a remote sender, from `as` (the address it wrote to, or our domain when that was unreadable). */
  private replyError(e: Element, from: Jid, as: string, err: StanzaError): void {
    if (e.attrs.type === 'error' || (e.name === 'iq' && e.attrs.type === 'result')) return;
    const reply = errorReply(e, err);
    reply.attrs.to = from.full;
    reply.attrs.from = as;
    this.toRemote(e.name as StanzaKind, reply);
  }

  /** Open a stream to `remote`'s authoritative server only to ask whether it issued a key (XEP-0220 §2.3). */
  verifyDialback(local: string, remote: string, streamId: string, key: string): Promise<DialbackVerdict> {
    return new Promise((resolve) => {
      const stream: OutgoingStream = new OutgoingStream(local, remote, { kind: 'verify', streamId, key }, this, {
        established: () => {},
        closed: () => {},
        failed: (condition, text) => {
          this.verifying.delete(stream);
          resolve({ error: condition, text });
        },
        verified: (valid) => {
          this.verifying.delete(stream);
          resolve(valid ? 'valid' : 'invalid');
        },
      });
      this.verifying.add(stream);
      stream.start();
    });
  }

  // ================================================================ upkeep

  private closeIdle(idleMs: number): void {
    const now = Date.now();
    const cutoff = now - idleMs;
    for (const [key, f] of this.failed) if (f.until <= now) this.failed.delete(key);
    for (const r of this.routes.values()) {
      if (r.stream.state.name === 'established' && r.stream.lastUsed < cutoff && r.queued === 0) {
        log.debug('closing idle outgoing stream', { local: r.local, remote: r.remote });
        void r.close();
      }
    }
    for (const s of this.incoming) if (s.lastActive < cutoff) s.close();
  }

  /** Graceful: hand the shards over (their streams drain), then close whatever is left. */
  async stop(graceful = true): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const s of this.servers) s.close();
    if (graceful && this.o.membership.members().some((m) => m !== this.o.membership.self)) {
      await this.shards.leave(this.config.cluster.handoffTimeoutMs);
    } else {
      await this.o.membership.stop();
    }
    this.stopping = true;
    await this.shards.stop();
    await Promise.all([...this.routes.values()].map((r) => r.abort()));
    for (const s of this.incoming) s.close(new StreamError('system-shutdown', 'the server is shutting down'));
    for (const v of this.verifying) v.close();
  }
}
