// Room traffic goes to connection managers, not to occupants: one bus message
// per c2s node carries a stanza without `to` and the session ids it is for;
// the node writes it to each of those sessions with that session's own JID as
// `to` (services/c2s/room-fanout.ts). A stanza to N occupants on k nodes costs
// k bus messages. Several stanzas for one session (what a joining occupant
// gets) travel as one batch, split only to stay far below the bus payload limit.
import { envelope, type Envelope, type StanzaKind } from '../../../libs/bus/envelope.ts';
import { escapeAttr } from '../../../libs/xml/serialize.ts';

/** The c2s control op that expands a room batch; c2s-node.ts dispatches it. */
export const OP_ROOM_FANOUT = 'muc-fanout';
/** What a c2s sends back to the room: the sessions of a batch it no longer holds, and the batch's stanzas (same layout). */
export const OP_ROOM_UNDELIVERED = 'muc-undelivered';
/** What an occupant's account answers a stanza routed with `{ muc: 'where', n }`: the session's node and id now. */
export const OP_MUC_HERE = 'muc-here';

/** The session ids and stanzas of a batch (either direction). */
export function readBatch(data: RoomFanoutData, xml: string | Uint8Array): { sids: string[]; stanzas: string[] } {
  const all = typeof xml === 'string' ? Buffer.from(xml) : Buffer.from(xml.buffer, xml.byteOffset, xml.byteLength);
  const sids = all.toString('latin1', 0, data.targets).split(' ');
  const stanzas: string[] = [];
  if (data.parts && data.parts.length > 0) {
    let off = data.targets;
    for (const n of data.parts) {
      stanzas.push(all.toString('utf8', off, off + n));
      off += n;
    }
  } else {
    stanzas.push(all.toString('utf8', data.targets));
  }
  return { sids, stanzas };
}

/**
 * What a room batch carries in its header. The session ids travel in the
 * bytes, not in the header: the envelope header is msgpack behind a u16
 * length (libs/bus/envelope.ts), and thousands of ids would overflow it.
 * Bytes: the session ids separated by spaces (`targets` bytes), then the
 * stanzas back to back.
 */
export interface RoomFanoutData {
  /** Byte length of the space-separated session ids at the start of the bytes. */
  targets: number;
  /** Byte length of each stanza when the batch holds more than one. */
  parts?: number[];
}

/** Session ids per envelope: 16384 × 17 bytes plus a stanza stays below NATS' 1 MB default payload limit. */
export const MAX_TARGETS = 16_384;
/** Bytes of stanzas per envelope of a batch to one session. */
export const MAX_BATCH_BYTES = 256 * 1024;

/** Where an occupant's session is: a c2s node and session id, or '' for a user of another server. */
export interface Target {
  readonly node: string;
  readonly sid: string;
  /** The occupant's real full JID: the `to` of what it gets. */
  readonly jid: string;
}

/** A stanza serialized without `to`, with it inserted after the element name. */
export function withTo(xml: string, to: string): string {
  let i = 1;
  for (;;) {
    const c = xml.charCodeAt(i);
    if (c === 0x20 || c === 0x3e || c === 0x2f || Number.isNaN(c)) break;
    i++;
  }
  return `${xml.slice(0, i)} to="${escapeAttr(to)}"${xml.slice(i)}`;
}

export function kindOf(xml: string): StanzaKind {
  const c = xml.charCodeAt(1);
  return c === 0x6d ? 'message' : c === 0x70 ? 'presence' : 'iq';
}

export class RoomFanout {
  constructor(
    private readonly room: string,
    /** Publish to a c2s node's subject. */
    private readonly toC2s: (node: string, env: Envelope) => void,
    /** A complete stanza (with `to`) for a target with no c2s session here: routed like any stanza. */
    private readonly route: (to: string, kind: StanzaKind, xml: string) => void,
  ) {}

  /** Bus messages this room published (the cost, counted for tests). */
  published = 0;

  /** One stanza to every target, grouped by node. `groups` may be a cached grouping. */
  toGroups(xml: string, groups: ReadonlyMap<string, readonly string[]>, remote: readonly Target[] = []): void {
    if (groups.size > 0) {
      const bytes = Buffer.from(xml);
      for (const [node, sids] of groups) {
        for (let i = 0; i < sids.length; i += MAX_TARGETS) {
          this.publish(node, sids.length <= MAX_TARGETS ? sids : sids.slice(i, i + MAX_TARGETS), [bytes]);
        }
      }
    }
    for (const t of remote) this.route(t.jid, kindOf(xml), withTo(xml, t.jid));
  }

  toMany(xml: string, targets: Iterable<Target>): void {
    const { groups, remote } = group(targets);
    this.toGroups(xml, groups, remote);
  }

  /** Several stanzas to one target, in order: one envelope unless they are very large. */
  toOne(t: Target, stanzas: readonly string[]): void {
    if (stanzas.length === 0) return;
    if (t.node === '') {
      for (const x of stanzas) this.route(t.jid, kindOf(x), withTo(x, t.jid));
      return;
    }
    let chunk: Buffer[] = [];
    let size = 0;
    const flush = () => {
      if (chunk.length === 0) return;
      this.publish(t.node, [t.sid], chunk);
      chunk = [];
      size = 0;
    };
    for (const x of stanzas) {
      const b = Buffer.from(x);
      if (size + b.length > MAX_BATCH_BYTES) flush();
      chunk.push(b);
      size += b.length;
    }
    flush();
  }

  /** The encoded id list of a cached grouping, reused until the grouping changes. */
  private readonly ids = new WeakMap<readonly string[], Buffer>();

  private publish(node: string, sids: readonly string[], stanzas: readonly Buffer[]): void {
    this.published++;
    let ids = this.ids.get(sids);
    if (!ids) this.ids.set(sids, (ids = Buffer.from(sids.join(' '), 'latin1')));
    const data: RoomFanoutData = { targets: ids.length, parts: stanzas.length > 1 ? stanzas.map((b) => b.length) : undefined };
    this.toC2s(node, envelope({ kind: 'ctl', dir: 'deliver', op: OP_ROOM_FANOUT, from: this.room, data, xml: Buffer.concat([ids, ...stanzas]) }));
  }
}

/** Targets by c2s node (session ids), and those reached by routing. */
export function group(targets: Iterable<Target>): { groups: Map<string, string[]>; remote: Target[] } {
  const groups = new Map<string, string[]>();
  const remote: Target[] = [];
  for (const t of targets) {
    if (t.node === '') {
      remote.push(t);
      continue;
    }
    let l = groups.get(t.node);
    if (!l) groups.set(t.node, (l = []));
    l.push(t.sid);
  }
  return { groups, remote };
}
