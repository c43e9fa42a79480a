// Where envelopes go: to the actor of a bare JID (its shard's subject), to
// many actors at once (one batch per session process), or to a client session
// on a c2s node. One place knows the subject scheme.
import type { Bus, Subjects } from '../../libs/bus/bus.ts';
import { envelope, type Envelope, type StanzaKind } from '../../libs/bus/envelope.ts';
import { shardOf } from '../../libs/cluster/shards.ts';
import type { ComponentDirectory } from '../../libs/components/index.ts';
import { StanzaError } from '../../libs/errors/index.ts';
import { domainPart } from '../../libs/jid/split.ts';

/** What a fan-out batch carries beside the shared stanza. */
export interface FanoutData {
  targets: string[];
  data: unknown;
}

/** Shards served by this process, which take envelopes from it without the bus (ShardHost). */
export interface LocalShards {
  deliverLocally(shard: number, env: Envelope): boolean;
  sentOnBus(shard: number, seq: number): void;
}

export class Router {
  private local: LocalShards | undefined;

  constructor(
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    readonly shards: number,
    /** Which session process serves a shard (for batching). */
    private readonly holderOf: (shard: number) => string,
    /** Shards of remote domains over the s2s processes; 0 when federation is off. */
    private readonly s2sShards = 0,
    private readonly domains: { isLocal(domain: string): boolean; s2sAvailable(): boolean } = { isLocal: () => true, s2sAvailable: () => false },
    /** External components: domains served by a program connected to some connection manager. */
    private readonly components?: ComponentDirectory,
  ) {}

  /**
   * Hand a stanza for a domain beyond the shards to whoever serves it: an
   * external component's connection, or federation for another server; false
   * when there is none (the caller bounces with `noRoute`).
   */
  toRemote(domain: string, env: Envelope): boolean {
    if (this.components?.has(domain)) return this.components.send(domain, env);
    if (this.s2sShards === 0 || !this.domains.s2sAvailable()) return false;
    this.bus.publish(this.subjects.s2s(shardOf(domain, this.s2sShards)), env);
    return true;
  }

  /** The error for a stanza `toRemote` could not hand on. */
  noRoute(domain: string): StanzaError {
    return this.components?.has(domain)
      ? new StanzaError('service-unavailable', `the component ${domain} is not connected`)
      : new StanzaError('remote-server-not-found', `no route to ${domain}`);
  }

  shardOf(bare: string): number {
    return shardOf(bare, this.shards);
  }

  /** Envelopes to actors of shards served here skip the bus. */
  serveLocally(local: LocalShards): void {
    this.local = local;
  }

  toActor(bare: string, env: Envelope): void {
    const shard = shardOf(bare, this.shards);
    if (this.local === undefined) return this.bus.publish(this.subjects.shard(shard), env);
    if (this.local.deliverLocally(shard, env)) return;
    this.bus.publish(this.subjects.shard(shard), env);
    this.local.sentOnBus(shard, env.seq);
  }

  /**
   * The same stanza to many bare JIDs (presence broadcast, probes): one bus
   * message per session process instead of one per contact. The receiving
   * process hands each target to its actor, or forwards it to the shard's
   * subject if the shard has just moved.
   */
  fanout(bares: Iterable<string>, env: Envelope): void {
    const byNode = new Map<string, string[]>();
    for (const b of bares) {
      const domain = domainPart(b);
      if (!this.domains.isLocal(domain)) {
        // Contacts on other servers: straight to federation, in order with direct stanzas to them.
        this.toRemote(domain, { ...env, to: b, dir: 'out', op: '', origin: '', seq: 0 });
        continue;
      }
      const node = this.holderOf(shardOf(b, this.shards));
      let list = byNode.get(node);
      if (!list) byNode.set(node, (list = []));
      list.push(b);
    }
    for (const [node, targets] of byNode) {
      const data: FanoutData = { targets, data: env.data };
      this.bus.publish(this.subjects.session(node), { ...env, op: 'fanout', data });
    }
  }

  /** Hand a serialized stanza to one client session. */
  deliver(node: string, sid: string, kind: StanzaKind, from: string, to: string, type: string, xml: string | Uint8Array, t = 0): void {
    this.bus.publish(this.subjects.c2s(node), envelope({ kind, dir: 'deliver', sid, from, to, type, xml, t }));
  }

  control(node: string, sid: string, op: string, data?: unknown): void {
    this.bus.publish(this.subjects.c2s(node), envelope({ kind: 'ctl', dir: 'deliver', op, sid, data }));
  }
}
