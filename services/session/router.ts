// Where envelopes go: to the actor of a bare JID (its shard's subject) or to a
// client session on a c2s node. One place knows the subject scheme.
import type { Bus, Subjects } from '../../libs/bus/bus.ts';
import { envelope, type Envelope, type StanzaKind } from '../../libs/bus/envelope.ts';
import { shardOf } from '../../libs/cluster/shards.ts';

export class Router {
  constructor(private readonly bus: Bus, private readonly subjects: Subjects, readonly shards: number) {}

  shardOf(bare: string): number {
    return shardOf(bare, this.shards);
  }

  toActor(bare: string, env: Envelope): void {
    this.bus.publish(this.subjects.shard(shardOf(bare, this.shards)), env);
  }

  /** Hand a serialized stanza to one client session. */
  deliver(node: string, sid: string, kind: StanzaKind, from: string, to: string, type: string, xml: string | Uint8Array): void {
    this.bus.publish(this.subjects.c2s(node), envelope({ kind, dir: 'deliver', sid, from, to, type, xml }));
  }

  control(node: string, sid: string, op: string, data?: unknown): void {
    this.bus.publish(this.subjects.c2s(node), envelope({ kind: 'ctl', dir: 'deliver', op, sid, data }));
  }
}
