// A session process: it serves the shards the membership gives it, runs the
// actors of their bare JIDs, and cleans up after connection managers that die.
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { Bus, Subjects } from '../../libs/bus/bus.ts';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import type { LeaseTable } from '../../libs/cluster/lease.ts';
import type { Membership } from '../../libs/cluster/membership.ts';
import { hash32, ownerOf } from '../../libs/cluster/shards.ts';
import type { ComponentDirectory } from '../../libs/components/index.ts';
import type { Config } from '../../libs/config/schema.ts';
import { errorReply } from '../../libs/errors/index.ts';
import { bareJid, domainPart, resourcePart } from '../../libs/jid/split.ts';
import { logger } from '../../libs/log/index.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import type { Store } from '../../libs/store/store.ts';
import { openConfiguredArchive } from '../../libs/archive/index.ts';
import { MemoryWindowCounters, type WindowCounters } from '../../libs/cluster/window-counters.ts';
import { ActorSystem } from './actor-system.ts';
import { nodeSessions } from './directory.ts';
import type { AdminOperations } from '../admin/operations.ts';
import { ModuleRegistry } from './module.ts';
import { ServiceDomains } from './service-domains.ts';
import { modules } from './modules/index.ts';
import { Router, type FanoutData } from './router.ts';
import { newResource, type SessionServices } from './services.ts';
import { ShardHost } from './shard-host.ts';
import { wakeWaiting } from './sm/waiting.ts';

const log = logger('session');

/** To a connection manager: the sessions of it that were ended (services/c2s/c2s-node.ts, same name). */
const OP_SESSIONS_ENDED = 'sessions-ended';
/** Session ids per notice: 1,000 keep an envelope's header near 17 KB, well under its 64 KB. */
const NOTICE_SIDS = 1000;

export interface SessionNodeOptions {
  config: Config;
  bus: Bus;
  subjects: Subjects;
  store: Store;
  hosts: HostedDomains;
  /** The session processes (this one included). */
  membership: Membership;
  /** The live connection managers. */
  c2sMembers: () => readonly string[];
  /** Overrides the liveness test built on c2sMembers (an administrative process that must leave sessions alone). */
  c2sAlive?: (node: string) => boolean;
  counters?: SessionServices['counters'];
  /** Rate counters shared by the session processes (Redis in a cluster); absent: this process counts alone. */
  rates?: WindowCounters;
  /** Some federation process is alive to take stanzas for other servers. */
  s2sAvailable?: () => boolean;
  /** External components (libs/components): where stanzas for their domains go. */
  components?: ComponentDirectory;
  /** The shard leases (libs/cluster/lease.ts) and how long one lasts (Infinity: this process alone). */
  leases: LeaseTable;
  leaseTtlMs: number;
  /** Counts for the metrics endpoint: a lease lost, a write refused for its stale fencing token. */
  onLeaseLost?: (reason: 'expired' | 'taken') => void;
  onLeaseLapsed?: () => void;
  onStaleWrite?: () => void;
}

export class SessionNode {
  readonly actors: ActorSystem;
  readonly shards: ShardHost;
  readonly router: Router;
  private readonly periodic: NodeJS.Timeout[] = [];
  private readonly registry: ModuleRegistry;
  private readonly context: SessionServices['context'];

  constructor(private readonly o: SessionNodeOptions) {
    const registry = (this.registry = new ModuleRegistry(modules, o.config));
    const serviceDomains = new ServiceDomains(registry.services, o.config, o.hosts);
    // Every write for an account or a room carries the fencing token of its shard's lease here (account and room
    // scopes are bare JIDs; '$' scopes are shared and not fenced).
    const store = o.store.fenced
      ? o.store.fenced((scope) => (scope.charCodeAt(0) === 36 /* $ */ ? undefined : this.shards.token(this.router.shardOf(scope))), (e) => {
        o.onStaleWrite?.();
        log.warn('refused a write with a stale fencing token', { scope: e.scope, error: e.message });
      })
      : o.store;
    this.router = new Router(o.bus, o.subjects, o.config.cluster.shards, (shard) => this.shards.holderOf(shard),
      o.config.s2s.enabled ? o.config.s2s.shards : 0,
      { isLocal: (domain) => o.hosts.has(domain) || serviceDomains.has(domain), s2sAvailable: o.s2sAvailable ?? (() => o.config.s2s.enabled) }, o.components);
    this.context = { config: o.config, store, hosts: o.hosts, disco: registry, rates: o.rates ?? new MemoryWindowCounters() };
    const svc: SessionServices = {
      config: o.config,
      store,
      router: this.router,
      hosts: o.hosts,
      modules: registry,
      context: this.context,
      c2sAlive: o.c2sAlive ?? ((node) => o.c2sMembers().includes(node)),
      newResource,
      counters: o.counters,
      services: serviceDomains,
      toC2s: (node, env) => o.bus.publish(o.subjects.c2s(node), env),
      serving: (shard) => this.shards.mayAct(shard),
      tokenOf: (shard) => this.shards.token(shard),
    };
    this.actors = new ActorSystem(svc);
    this.shards = new ShardHost(o.bus, o.subjects, o.membership, {
      shards: o.config.cluster.shards,
      handoffTimeoutMs: o.config.cluster.handoffTimeoutMs,
      deliver: (shard, env) => (this.forComponent(env) ? undefined : this.actors.deliver(shard, env)),
      drain: (shard) => this.actors.drainShard(shard),
      drop: (shard) => this.actors.dropShard(shard),
      resume: (shard) => this.actors.resumeShard(shard),
      maxSuspendedBuffer: o.config.session.maxMailbox,
      leases: o.leases,
      leaseTtlMs: o.leaseTtlMs,
      renewMs: o.config.cluster.heartbeatMs,
      onLeaseLost: (_shard, reason) => o.onLeaseLost?.(reason),
      onLeaseLapsed: () => o.onLeaseLapsed?.(),
      // Accounts with a session waiting for resumption: their timers died with whoever served the shard before.
      live: (shard) => void wakeWaiting(o.store, shard, (bare, env) => this.router.toActor(bare, env))
        .catch((e: unknown) => log.warn('waking waiting sessions failed', { shard, error: e })),
    });
    this.router.serveLocally(this.shards);
  }

  /** The administration operations the modules may call (XEP-0133 ad-hoc commands), once the process has built them. */
  useAdmin(admin: AdminOperations): void {
    this.context.admin = admin;
  }

  async start(): Promise<void> {
    // Archives in PostgreSQL (archive.postgres): table and partitions ready before the first message is archived.
    this.context.archive = await openConfiguredArchive(this.o.config);
    this.o.bus.subscribe(this.o.subjects.session(this.o.membership.self), (env) => (env.op === 'fanout' ? this.fanout(env) : this.toHeldActor(env)));
    await this.o.membership.start();
    this.shards.start();
    await this.o.bus.flush();
    this.actors.startSweeper(this.o.config.session.actorIdleSeconds * 1000);
    this.startPeriodic();
  }

  /** Modules' periodic work, run by the process that holds the shard of `$periodic:<module>` (one in the cluster). */
  private startPeriodic(): void {
    for (const m of this.registry.enabled) {
      const p = m.periodic;
      if (!p) continue;
      const shard = this.router.shardOf(`$periodic:${m.name}`);
      let running = false;
      const timer = setInterval(() => {
        if (running || !this.shards.owns(shard) || !this.shards.mayAct(shard)) return;
        running = true;
        p.run(this.context).catch((e: unknown) => log.warn('periodic work failed', { module: m.name, error: e })).finally(() => { running = false; });
      }, p.everyMs(this.o.config));
      timer.unref();
      this.periodic.push(timer);
    }
  }

  /**
   * One batch for many actors: those whose shard is here get it, the rest go
   * on to their shard, and contacts on other servers to federation (where no
   * actor of theirs exists to answer a probe for them).
   */
  private fanout(env: Envelope): void {
    const { targets } = env.data as FanoutData;
    for (const bare of targets) {
      const one = { ...env, to: bare, op: '', data: (env.data as FanoutData).data };
      const domain = domainPart(bare);
      if (!this.o.hosts.has(domain)) {
        this.router.toRemote(domain, { ...one, dir: 'out', origin: '', seq: 0 });
        continue;
      }
      const shard = this.router.shardOf(bare);
      if (this.shards.owns(shard)) this.actors.deliver(shard, one);
      else this.router.toActor(bare, { ...one, origin: '', seq: 0 });
    }
  }

  /**
   * A stanza on the shards for an external component's address (from
   * federation, or an error for a stanza the component sent): components have
   * no actor, so it goes on to the component's connection, or back to its
   * sender when none is connected.
   */
  private forComponent(env: Envelope): boolean {
    const components = this.o.components;
    if (components === undefined || env.kind === 'ctl' || env.dir !== 'in') return false;
    const domain = domainPart(env.to);
    if (!components.has(domain)) return false;
    if (this.router.toRemote(domain, env) || env.type === 'error' || (env.kind === 'iq' && env.type === 'result') || env.from === '') return true;
    const stanza = parseFragment(env.xml);
    stanza.attrs.from = env.from;
    stanza.attrs.to = env.to;
    const reply = serialize(errorReply(stanza, this.router.noRoute(domain)));
    const back = envelope({ kind: env.kind, dir: 'in', from: env.to, to: env.from, type: 'error', id: env.id, xml: reply });
    const senderDomain = domainPart(env.from);
    if (this.o.hosts.has(senderDomain)) this.router.toActor(bareJid(env.from), back);
    else this.router.toRemote(senderDomain, { ...back, dir: 'out' });
    return true;
  }

  /** One actor's envelope sent by way of this process (services/c2s `viaHolder`): here if its shard is, else on to the shard. */
  private toHeldActor(env: Envelope): void {
    const shard = this.router.shardOf(env.to);
    if (this.shards.owns(shard)) this.actors.deliver(shard, env);
    else this.router.toActor(env.to, { ...env, origin: '', seq: 0 });
  }

  /**
   * Connection managers that left the membership: the session process that
   * owns the dead node's cleanup shard tells each of its sessions' actors
   * (unbind, as for a lost connection: a resumable session waits), then the
   * node itself — it may be alive and only cut off from Redis, its clients
   * still connected to sessions that no longer exist; it closes their streams.
   */
  async c2sGone(node: string): Promise<void> {
    const cleanupShard = hash32(node) % this.o.config.cluster.shards;
    if (ownerOf(cleanupShard, this.o.membership.members()) !== this.o.membership.self) return;
    const sessions = await nodeSessions(this.o.store, node);
    log.info('connection manager gone; ending its sessions', { node, sessions: sessions.size });
    for (const [full, sid] of sessions) {
      const bare = bareJid(full);
      this.router.toActor(bare, envelope({ kind: 'ctl', dir: 'in', op: 'unbind', to: bare, sid, data: { resource: resourcePart(full) } }));
    }
    const sids = [...sessions.values()];
    for (let i = 0; i === 0 || i < sids.length; i += NOTICE_SIDS) {
      this.router.control(node, '', OP_SESSIONS_ENDED, { sids: sids.slice(i, i + NOTICE_SIDS), total: sids.length, first: i === 0 });
    }
    await this.o.store.del(`$node:${node}`, 'sessions');
  }

  async stop(graceful: boolean): Promise<void> {
    for (const t of this.periodic.splice(0)) clearInterval(t);
    if (graceful && this.o.membership.members().some((m) => m !== this.o.membership.self)) await this.shards.leave(this.o.config.cluster.handoffTimeoutMs);
    else await this.o.membership.stop();
    await this.actors.idle();
    await this.shards.stop();
    this.actors.stop();
    // After the actors: what they archived last is written before the pool closes.
    await this.context.archive?.close();
  }
}
