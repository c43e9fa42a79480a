// The c2s half of room fan-out (the room's half: services/session/muc/fanout.ts;
// the two meet only on the bus). A room sends one envelope per node: stanzas
// serialized without `to`, and the session ids they are for. Each session gets
// each stanza with its own full JID inserted as `to` — a slice, a short
// attribute and a copy, no parse. Sessions no longer here (ended, or resumed
// on another node by stream management) are handed back to the room in one
// envelope, which routes those stanzas through the occupants' accounts.
import { envelope, type Envelope, type StanzaKind } from '../../libs/bus/envelope.ts';
import { escapeAttr } from '../../libs/xml/serialize.ts';

export const OP_ROOM_FANOUT = 'muc-fanout';
/** To the room: the sessions of a batch that were not here, with the batch's stanzas. */
export const OP_ROOM_UNDELIVERED = 'muc-undelivered';

/** The bytes start with the session ids (space-separated, `targets` bytes), then the stanzas. */
interface RoomFanoutData {
  targets: number;
  /** Byte length of each stanza when the envelope holds several. */
  parts?: number[];
}

/** What expansion needs of a client stream. */
export interface FanoutRecipient {
  readonly jid: string;
  deliver(env: Envelope): void;
}

interface Part {
  head: Buffer;
  tail: Buffer;
  kind: StanzaKind;
}

function split(b: Buffer): Part {
  let i = 1;
  while (i < b.length) {
    const c = b[i];
    if (c === 0x20 || c === 0x3e || c === 0x2f) break;
    i++;
  }
  const c = b[1];
  return { head: b.subarray(0, i), tail: b.subarray(i), kind: c === 0x6d ? 'message' : c === 0x70 ? 'presence' : 'iq' };
}

/**
 * Deliver a room batch to the sessions it names; returns how many stanzas were
 * written. `giveBack` gets the envelope for the room about sessions not here.
 */
export function expandRoomFanout(env: Envelope, streamOf: (sid: string) => FanoutRecipient | undefined, giveBack?: (room: string, env: Envelope) => void): number {
  const { targets, parts } = env.data as RoomFanoutData;
  const all = typeof env.xml === 'string' ? Buffer.from(env.xml) : Buffer.from(env.xml.buffer, env.xml.byteOffset, env.xml.byteLength);
  const sids = all.toString('latin1', 0, targets).split(' ');
  const pieces: Part[] = [];
  if (parts && parts.length > 0) {
    let off = targets;
    for (const n of parts) {
      pieces.push(split(all.subarray(off, off + n)));
      off += n;
    }
  } else {
    pieces.push(split(all.subarray(targets)));
  }
  const base: Envelope = { ...env, op: '', data: undefined };
  let written = 0;
  let missing: string[] | undefined;
  for (const sid of sids) {
    const s = streamOf(sid);
    if (!s || s.jid === '') {
      (missing ??= []).push(sid);
      continue;
    }
    const to = Buffer.from(` to="${escapeAttr(s.jid)}"`);
    for (const p of pieces) {
      // A fresh envelope per write: a stream may keep it (stream management queues what it sent).
      s.deliver({ ...base, kind: p.kind, to: s.jid, xml: Buffer.concat([p.head, to, p.tail], p.head.length + to.length + p.tail.length) });
      written++;
    }
  }
  if (missing && giveBack && env.from) {
    const ids = Buffer.from(missing.join(' '), 'latin1');
    giveBack(env.from, envelope({ kind: 'ctl', dir: 'in', op: OP_ROOM_UNDELIVERED, to: env.from, data: { targets: ids.length, parts },
      xml: Buffer.concat([ids, all.subarray(targets)]) }));
  }
  return written;
}
