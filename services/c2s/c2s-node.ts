// A connection manager: it holds live client connections and nothing else.
// Stanzas go to the sender's actor over the bus; deliveries come back on this
// node's own subject, addressed by session id.
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Accounts } from '../../libs/accounts/index.ts';
import { FastTokens } from '../../libs/auth/fast.ts';
import type { Store } from '../../libs/store/store.ts';
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { Bus, Subjects, Subscription } from '../../libs/bus/bus.ts';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';
import type { Config } from '../../libs/config/schema.ts';
import { StreamError, type StanzaErrorCondition, type StreamErrorCondition } from '../../libs/errors/index.ts';
import { logger } from '../../libs/log/index.ts';
import { Admission, AdmissionPeers, BUSY_TEXT, type AdmissionAnnouncement, type AdmissionKind } from './admission.ts';
import { AuthThrottle, MemoryAuthCounters, type AuthCounters } from './auth-throttle.ts';
import { loadDomainCertificates, type DomainCertificates } from './certificates.ts';
import type { SessionInfo } from '../admin/operations.ts';
import { ClientStream, unavailableError } from './client-stream.ts';
import type { BindResult, C2sContext, C2sMetrics, InlineOutcome } from './context.ts';
import { startListeners, type Listeners } from './listeners.ts';
import { proxyPolicy } from './proxy-protocol.ts';
import { expandRoomFanout, OP_ROOM_FANOUT } from './room-fanout.ts';
import { listenTcp } from './tcp.ts';
import { listenError } from '../listen-error.ts';
import type { ClientTransport } from './transport.ts';
import type { ConnectionCount } from '../../libs/metrics/index.ts';

const log = logger('c2s');

/** The transport label of the connection gauge, as the log lines name it: tls is direct TLS (XEP-0368). */
const TRANSPORT_LABELS: Record<ClientTransport['kind'], string> = { tcp: 'tcp', tls: 'tls', websocket: 'ws', bosh: 'bosh' };

export interface C2sNodeOptions {
  nodeId: string;
  config: Config;
  bus: Bus;
  subjects: Subjects;
  hosts: HostedDomains;
  accounts: Accounts;
  tls: SecureContext | undefined;
  metrics: C2sMetrics;
  /** The live session processes (for envelopes sent by way of their holder); none known: by shard subject. */
  sessionNodes?: () => readonly string[];
  /** Where failed logins are counted (a cluster: Redis, shared by every connection manager); by default in this process. */
  authCounters?: AuthCounters;
  /** Where FAST tokens are kept (the deployment's store, so any connection manager accepts them). */
  store: Store;
  /** The live connection managers (admission: only those are offered to clients sent elsewhere); undefined: any heard of. */
  c2sNodes?: () => readonly string[];
  /** What else this process serves that a drain must move too (the external component listener). */
  onDrain?: () => void;
}

export class C2sNode implements C2sContext {
  readonly config: Config;
  readonly hosts: HostedDomains;
  readonly accounts: Accounts;
  readonly metrics: C2sMetrics;
  readonly nodeId: string;
  readonly authThrottle: AuthThrottle;
  readonly fastTokens: FastTokens;
  private readonly streams = new Map<string, ClientStream>();
  private readonly pendingBinds = new Map<string, { resolve: (r: BindResult) => void; timer: NodeJS.Timeout }>();
  private servers: Server[] = [];
  private sub: Subscription | undefined;
  private accepting = true;
  /** Our membership expired (membershipExpired): the cluster may count this node dead. */
  private cutOff = false;
  /** Direct TLS and the HTTP listener (WebSocket, BOSH), when configured. */
  private listeners: Listeners | undefined;
  /** Each stream's transport, for the connection gauge (its kind, and whether TLS is in effect now). */
  private readonly transports = new Map<string, ClientTransport>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Streams with client stanzas not yet confirmed by their actor, and the timer that watches them. */
  private readonly unconfirmed = new Set<ClientStream>();
  private confirmSweeper: NodeJS.Timeout | undefined;
  /** Token buckets on new streams, logins and resumptions (admission.ts). */
  readonly admission: Admission;
  private readonly peers: AdmissionPeers;
  private admissionSub: Subscription | undefined;
  private announcer: NodeJS.Timeout | undefined;

  /** The fallback certificate and the per-domain ones; replaced whole by reloadCertificates(). */
  private tlsContext: SecureContext | undefined;
  private certificates: DomainCertificates | undefined;

  constructor(private readonly o: C2sNodeOptions) {
    this.tlsContext = o.tls;
    this.config = o.config;
    this.hosts = o.hosts;
    this.accounts = o.accounts;
    this.metrics = o.metrics;
    this.nodeId = o.nodeId;
    const throttle = o.config.c2s.authThrottle;
    this.authThrottle = new AuthThrottle(throttle, o.authCounters ?? new MemoryAuthCounters(throttle.maxTracked),
      { failed: () => o.metrics.authFailed?.(), blocked: () => o.metrics.authBlocked?.('started') });
    this.fastTokens = new FastTokens(o.store, o.config.c2s.fast);
    this.admission = new Admission(o.config.c2s.admission, (what) => o.metrics.admissionRefused?.(what));
    // An announcement is trusted for three heartbeats: a killed node is forgotten within that.
    this.peers = new AdmissionPeers(o.nodeId, 3 * o.config.cluster.heartbeatMs);
  }

  admit(what: AdmissionKind): boolean {
    return this.admission.admit(what);
  }

  /**
   * A new stream past this node's bucket goes to a peer that announced room
   * (RFC 6120 §4.9.3.19 see-other-host), only over TCP: its address is a TCP
   * listener's, and a direct-TLS, WebSocket or BOSH client would reach it the
   * wrong way. Otherwise it is told to retry later: resource-constraint (§4.9.3.17,
   * "the server lacks the system resources necessary to service the stream"),
   * rather than policy-violation, which would blame the client.
   */
  busy(transport: ClientTransport['kind']): StreamError {
    const elsewhere = transport === 'tcp' ? this.peers.withRoom(this.o.c2sNodes?.()) : undefined;
    if (elsewhere) return new StreamError('see-other-host', elsewhere);
    return new StreamError('resource-constraint', BUSY_TEXT);
  }

  /** Tell the other connection managers where clients reach us and whether we have room (with c2s.publicAddress). */
  private announce(): void {
    const address = this.config.c2s.publicAddress;
    if (!address) return;
    const room = this.accepting && !this.unavailable() && this.streams.size < this.config.c2s.maxConnections * 0.9 && this.admission.hasRoom();
    const data: AdmissionAnnouncement = { node: this.nodeId, address, room };
    this.o.bus.publish(this.o.subjects.admission(), envelope({ kind: 'ctl', dir: 'deliver', op: 'admission', sid: '', data }));
  }

  get connections(): number {
    return this.streams.size;
  }

  async start(): Promise<void> {
    this.sub = this.o.bus.subscribe(this.o.subjects.c2s(this.o.nodeId), (env) => this.fromBus(env));
    this.admissionSub = this.o.bus.subscribe(this.o.subjects.admission(), (env) => this.peers.heard(env.data as AdmissionAnnouncement));
    if (this.config.c2s.publicAddress) {
      this.announcer = setInterval(() => this.announce(), this.config.cluster.heartbeatMs);
      this.announcer.unref();
    }
    await this.o.bus.flush();
    const { config } = this;
    const limits = { maxStanzaBytes: config.limits.maxStanzaBytes, maxDepth: config.limits.maxDepth, maxAttributes: config.limits.maxAttributes };
    const interval = config.c2s.pingIntervalSeconds * 1000;
    const timeout = config.c2s.pingTimeoutSeconds * 1000;
    // One timer for all connections: per-connection timers cost memory at a million sockets.
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const s of this.streams.values()) s.checkAlive(now, interval, timeout);
    }, Math.max(100, Math.min(interval, timeout) / 2));
    this.sweeper.unref();
    const every = Math.max(50, Math.min(config.streamManagement.confirmAfterMs, config.streamManagement.resendAfterMs) / 4);
    this.confirmSweeper = setInterval(() => {
      const now = Date.now();
      for (const s of this.unconfirmed) if (!s.confirmTick(now)) this.unconfirmed.delete(s);
    }, every);
    this.confirmSweeper.unref();
    this.certificates = loadDomainCertificates(config);
    const proxy = proxyPolicy(config.c2s.proxyProtocol);
    // The listeners read the certificates at each connection, so a reload reaches new connections only.
    const node = this;
    const certificates: DomainCertificates = {
      sni: (name) => node.certificates!.sni(name),
      get files() { return node.certificates!.files; },
      get fallbackFiles() { return node.certificates!.fallbackFiles; },
    };
    this.servers.push(await listenTcp({
      host: config.c2s.tcp.host, port: config.c2s.tcp.port, limits, get tls() { return node.tlsContext; },
      maxConnections: config.c2s.maxConnections, accept: (t) => this.accept(t),
      proxy, sni: certificates.sni, backlog: config.c2s.tcp.backlog,
    }).catch((e: unknown) => {
      throw listenError('the c2s TCP listener', 'c2s.tcp', config.c2s.tcp.host, config.c2s.tcp.port, e);
    }));
    this.listeners = await startListeners({
      nodeId: this.o.nodeId, config, get tls() { return node.tlsContext; }, certificates, proxy, limits,
      refusal: () => {
        if (!this.accepting) return { reason: 'shutdown', text: 'this node is shutting down' };
        const why = this.unavailable();
        if (why) return { reason: 'unavailable', text: why };
        return this.streams.size >= config.c2s.maxConnections ? { reason: 'full', text: 'too many connections' } : undefined;
      },
      accept: (t) => this.accept(t),
      publish: (node, env) => this.o.bus.publish(this.o.subjects.c2s(node), env),
    });
  }

  /**
   * New certificates for new connections (`parley reload`), read by the
   * caller beforehand (loadDomainCertificates), so that a file that cannot be
   * read changes nothing. Open connections keep the certificate they were
   * made with; the HTTPS listener keeps its own until a restart.
   */
  installCertificates(fallback: SecureContext, certificates: DomainCertificates): void {
    this.tlsContext = fallback;
    this.certificates = certificates;
  }

  /** Bound sessions on this node (services/admin), optionally of one domain. */
  sessions(domain?: string): SessionInfo[] {
    const out: SessionInfo[] = [];
    for (const s of this.streams.values()) {
      const d = s.describe(this.nodeId);
      if (d && (domain === undefined || s.bare.endsWith(`@${domain}`))) out.push(d);
    }
    return out;
  }

  /** End the sessions of a full JID, or every session of a bare JID, on this node (an administrator's kick). */
  endSessions(jid: string, text: string): SessionInfo[] {
    const full = jid.includes('/');
    const out: SessionInfo[] = [];
    for (const s of [...this.streams.values()]) {
      if (!s.jid || (full ? s.jid !== jid : s.bare !== jid)) continue;
      const d = s.describe(this.nodeId);
      if (!d) continue;
      out.push(d);
      s.endByAdministrator(text);
    }
    return out;
  }

  /** Bound ports of the other listeners (0 when off). */
  directTlsPort(): number {
    const a = this.listeners?.directTls?.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  httpPort(): number {
    return this.listeners?.http?.port ?? 0;
  }

  /** Open streams by transport. */
  connectionsByTransport(): Record<ClientTransport['kind'], number> {
    const out: Record<ClientTransport['kind'], number> = { tcp: 0, tls: 0, websocket: 0, bosh: 0 };
    for (const t of this.transports.values()) out[t.kind]++;
    return out;
  }

  /** Open streams by transport and by whether TLS is in effect (STARTTLS done or not), for the connections gauge. */
  connectionCounts(): ConnectionCount[] {
    const out: ConnectionCount[] = [];
    const index = new Map<string, ConnectionCount>();
    for (const kind of ['tcp', 'tls', 'websocket', 'bosh'] as const) {
      for (const tls of ['yes', 'no'] as const) {
        const row: ConnectionCount = { transport: TRANSPORT_LABELS[kind], tls, n: 0 };
        out.push(row);
        index.set(`${kind} ${tls}`, row);
      }
    }
    for (const t of this.transports.values()) index.get(`${t.kind} ${t.secure ? 'yes' : 'no'}`)!.n++;
    return out;
  }

  /** The port actually bound (for port 0 in tests). */
  tcpPort(): number {
    const a = this.servers[0]?.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /**
   * Why this node cannot serve a stream now, or undefined. Cheap: checked for
   * every new connection, at every bind and resumption, and by /readyz.
   */
  unavailable(): string | undefined {
    if (!this.accepting) return 'this node is shutting down';
    if (this.cutOff) return 'this node lost contact with the cluster (its membership expired)';
    if (!this.o.bus.healthy()) return 'the bus is not connected';
    if (this.o.sessionNodes && this.o.sessionNodes().length === 0) return 'no session process is alive';
    return undefined;
  }

  accept(t: ClientTransport): void {
    if (!this.accepting) {
      t.closeStream(new StreamError('system-shutdown', 'this node is shutting down'));
      return;
    }
    const why = this.unavailable();
    if (why) {
      // At once, rather than a bind that times out after session.requestTimeoutMs.
      t.closeStream(unavailableError(why));
      return;
    }
    const s = new ClientStream(t, this);
    this.streams.set(s.sid, s);
    this.transports.set(s.sid, t);
  }

  awaitConfirmation(stream: ClientStream): void {
    this.unconfirmed.add(stream);
  }

  toActor(bare: string, env: Envelope): void {
    this.o.bus.publish(this.o.subjects.shard(shardOf(bare, this.config.cluster.shards)), env);
  }

  /**
   * To an actor by way of the session process that holds its shard: what one
   * room message sends to many managed sessions' accounts then shares one bus
   * message per session process (the bus frames what goes to one subject in a
   * turn). Shard subjects keep order across a handoff and this path does not,
   * so what goes this way carries its own sequence (services/session/sm).
   */
  viaHolder(bare: string, env: Envelope): void {
    const shard = shardOf(bare, this.config.cluster.shards);
    const holder = this.o.sessionNodes ? ownerOf(shard, this.o.sessionNodes()) : undefined;
    this.o.bus.publish(holder ? this.o.subjects.session(holder) : this.o.subjects.shard(shard), env);
  }

  bind(stream: ClientStream, resource: string, inline?: string[]): Promise<BindResult> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pendingBinds.delete(stream.sid);
        resolve({ condition: 'internal-server-error', text: 'the session service did not answer in time' });
      }, this.config.session.requestTimeoutMs);
      this.pendingBinds.set(stream.sid, { resolve, timer });
      this.toActor(stream.bare, envelope({ kind: 'ctl', dir: 'in', op: 'bind', to: stream.bare, sid: stream.sid, data: { node: this.o.nodeId, resource, inline } }));
    });
  }

  ended(stream: ClientStream, unbind: boolean, resource: string, closed = false): void {
    this.streams.delete(stream.sid);
    this.transports.delete(stream.sid);
    const p = this.pendingBinds.get(stream.sid);
    if (p) {
      clearTimeout(p.timer);
      this.pendingBinds.delete(stream.sid);
    }
    if ((unbind || p) && stream.bare) {
      this.toActor(stream.bare, envelope({ kind: 'ctl', dir: 'in', op: 'unbind', to: stream.bare, sid: stream.sid, data: { resource, closed } }));
    }
  }

  private fromBus(env: Envelope): void {
    const stream = this.streams.get(env.sid);
    if (env.kind !== 'ctl') {
      if (stream) return stream.deliver(env);
      // The session is gone: hand the stanza back so its actor can route it elsewhere.
      const bare = env.to.slice(0, env.to.indexOf('/') >>> 0);
      this.toActor(bare, envelope({ kind: 'ctl', dir: 'in', op: 'undeliverable', to: bare, sid: env.sid, data: { kind: env.kind, to: env.to, kept: env.data !== undefined },
        from: env.from, type: env.type, id: env.id, xml: env.xml }));
      return;
    }
    switch (env.op) {
      case 'bound':
      case 'bind-failed': {
        const p = this.pendingBinds.get(env.sid);
        if (!p) {
          // Bound after the stream went away: undo it.
          if (env.op === 'bound' && !stream) log.debug('late bind', { sid: env.sid });
          return;
        }
        clearTimeout(p.timer);
        this.pendingBinds.delete(env.sid);
        const d = env.data as { resource?: string; inline?: InlineOutcome[]; condition?: StanzaErrorCondition; text?: string };
        p.resolve(env.op === 'bound' ? { resource: String(d.resource), inline: d.inline ?? [] } : { condition: d.condition ?? 'internal-server-error', text: d.text });
        return;
      }
      case 'kick': {
        const d = env.data as { condition: StreamErrorCondition; text: string };
        stream?.kick(d.condition, d.text);
        return;
      }
      case OP_SESSIONS_ENDED: {
        // The session processes counted this node dead and ended these sessions (unbind, as for a lost connection:
        // a resumable one waits). Their streams must not stay open and silent: close them, unbind already sent.
        const { sids, total, first } = env.data as { sids: string[]; total: number; first: boolean };
        if (first) log.warn('the cluster counted this node dead and ended its sessions: closing their streams', { node: this.nodeId, sessions: total });
        const err = new StreamError('internal-server-error', 'the cluster ended this session: this node lost contact with it; reconnect (and resume)');
        for (const sid of sids) this.streams.get(sid)?.fail(err, false);
        return;
      }
      case OP_ROOM_FANOUT:
        // A room's stanzas for this node's occupants: one envelope, written to each session here.
        expandRoomFanout(env, (sid) => this.streams.get(sid), (room, back) => this.toActor(room, back));
        return;
      case OP_DRAIN: {
        // `parley c2s drain`: answer on the requester's subject once every stream is closed.
        const { reply } = env.data as { reply: string };
        const counts = this.drain();
        this.o.bus.publish(this.o.subjects.c2s(reply), envelope({ kind: 'ctl', dir: 'deliver', op: OP_DRAINED, sid: env.sid, data: counts }));
        return;
      }
      case 'bosh-relay':
      case 'bosh-relay-reply':
        // A BOSH request for a session held here, or the answer to one we passed on.
        this.listeners?.bosh?.fromBus(env);
        return;
      default:
        // Stream management answers from the account's actor (services/session/sm).
        if (env.op.startsWith('sm-')) {
          if (stream) return stream.smControl(env);
          // Resumed onto a connection that closed meanwhile: the session waits again.
          const d = env.data as { bare?: string; resource?: string };
          if (env.op === 'sm-resumed' && d.bare) this.toActor(d.bare, envelope({ kind: 'ctl', dir: 'in', op: 'unbind', to: d.bare, sid: env.sid, data: { resource: d.resource, closed: false } }));
          return;
        }
        log.warn('unknown control op', { op: env.op });
    }
  }

  /**
   * A rolling restart: stop accepting and close every stream with
   * <system-shutdown/>. A client with a resumable session (XEP-0198)
   * reconnects to another node and resumes it there — its session waits in its
   * account's actor, `<resumed h/>` tells it what was handled, and what it had
   * not acknowledged is sent again. Other sessions end as on any disconnect.
   * The node keeps its bus subscription, so deliveries already on their way
   * here go back to their actors (`undeliverable`). Stop the process after.
   */
  drain(): DrainResult {
    this.accepting = false;
    for (const srv of this.servers) srv.close();
    this.o.onDrain?.();
    const out: DrainResult = { resumable: 0, ended: 0 };
    for (const s of [...this.streams.values()]) {
      if (s.resumable) out.resumable++;
      else out.ended++;
      s.fail(new StreamError('system-shutdown', 'this node is being drained: reconnect, and resume, elsewhere'), true, false);
    }
    log.info('drained', { node: this.nodeId, ...out });
    return out;
  }

  /**
   * Our membership expired: no heartbeat reached Redis within
   * cluster.memberTtlMs, so the session processes may already have ended
   * every session here (SessionNode.c2sGone) and stopped routing to them.
   * Close every stream and refuse new ones until a heartbeat gets through.
   *
   * The condition is internal-server-error: the cause is inside the service,
   * which RFC 6120 §4.9.3.15 sends to it rather than to
   * remote-connection-failed; system-shutdown would claim the node is going
   * away, and see-other-host needs an address this node does not know (the
   * load balancer's, which already sees /readyz fail). Clients reconnect on
   * it; with stream management they resume elsewhere, the session having
   * waited in its account's actor.
   */
  membershipExpired(expired: boolean): void {
    if (expired === this.cutOff) return;
    this.cutOff = expired;
    if (!expired) {
      log.info('membership renewed: accepting streams again', { node: this.nodeId });
      return;
    }
    const streams = [...this.streams.values()];
    log.warn('membership expired (no heartbeat reached Redis in time): closing every stream, refusing new ones until it is renewed',
      { node: this.nodeId, streams: streams.length });
    const err = new StreamError('internal-server-error', 'this node lost contact with the cluster: reconnect (and resume)');
    for (const s of streams) s.fail(err);
  }

  /** Stop accepting, close every stream with a stream error, release the ports. */
  async stop(condition: StreamErrorCondition = 'system-shutdown'): Promise<void> {
    this.accepting = false;
    if (this.sweeper) clearInterval(this.sweeper);
    if (this.confirmSweeper) clearInterval(this.confirmSweeper);
    if (this.announcer) clearInterval(this.announcer);
    this.admissionSub?.unsubscribe();
    for (const srv of this.servers) srv.close();
    for (const s of [...this.streams.values()]) s.fail(new StreamError(condition, 'the server is shutting down'));
    this.listeners?.stop();
    this.sub?.unsubscribe();
  }
}

/** From the session processes (SessionNode.c2sGone): the sessions they ended, by session id. */
export const OP_SESSIONS_ENDED = 'sessions-ended';

export const OP_DRAIN = 'drain';
export const OP_DRAINED = 'drained';

/** Streams a drain closed: those whose client may resume elsewhere, and those that ended. */
export interface DrainResult {
  resumable: number;
  ended: number;
}

export function newNodeId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}
