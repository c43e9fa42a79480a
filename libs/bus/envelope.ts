// The bus envelope: routing metadata beside the stanza's raw bytes, so a hop
// that only routes never parses XML.
//
// Wire format (NATS):  u8 version(1) | u16 headerLength | msgpack(header) | stanza bytes
// header = [kind|dir, from, to, type, id, origin, seq, sid, op, data, t, track]
// In-process the Envelope object itself is handed over; nothing is encoded.
import { Packr } from 'msgpackr';

export type StanzaKind = 'message' | 'presence' | 'iq';

/**
 * Where a stanza of a stream-managed session stands in its sender's count
 * (services/session/sm/confirm.ts): [src, n, prev]. From a c2s: src '' and n,
 * the client's number for the stanza. Between accounts: src, the sending
 * session's stream management id; n; and prev, the number of the previous
 * stanza that session sent to the same account (0: none, -1: not known).
 */
export type Track = [src: string, n: number, prev: number];
export type EnvelopeKind = StanzaKind | 'ctl';

/** Which rules the receiving actor applies: the sender's outbound or the recipient's inbound. */
export interface Envelope {
  kind: EnvelopeKind;
  /** Outbound envelopes go to the sender's actor, inbound to the recipient's, deliveries to a c2s node. */
  dir: 'out' | 'in' | 'deliver';
  from: string;
  to: string;
  type: string;
  id: string;
  /** The stanza as serialized bytes (empty for control envelopes). */
  xml: string | Uint8Array;
  /** Target or source session id (c2s deliveries, binds). */
  sid: string;
  /** Control operation name, when kind is 'ctl'. */
  op: string;
  /** Control payload (msgpack-encodable). */
  data: unknown;
  /** Publishing process and its per-process sequence number: what handoff deduplicates on. */
  origin: string;
  seq: number;
  /** When the c2s received the stanza (ms since the epoch; 0 if the server made it): routing latency. */
  t: number;
  /** Delivery tracking of a stream-managed session's stanza; undefined when untracked. */
  track?: Track;
}

const KIND_CODE: Record<EnvelopeKind, number> = { message: 1, presence: 2, iq: 3, ctl: 4 };
const CODE_KIND: EnvelopeKind[] = ['ctl', 'message', 'presence', 'iq', 'ctl'];
const DIR_CODE = { out: 1, in: 2, deliver: 3 } as const;
const CODE_DIR: Envelope['dir'][] = ['deliver', 'out', 'in', 'deliver'];

const packr = new Packr({ useRecords: false, moreTypes: false });
const utf8 = new TextEncoder();

export function envelope(init: Partial<Envelope> & Pick<Envelope, 'kind' | 'dir'>): Envelope {
  return {
    from: '', to: '', type: '', id: '', xml: '', sid: '', op: '', data: undefined, origin: '', seq: 0, t: 0,
    ...init,
  };
}

export function encodeEnvelope(e: Envelope): Uint8Array {
  const header = packr.pack([
    KIND_CODE[e.kind] | (DIR_CODE[e.dir] << 4), e.from, e.to, e.type, e.id, e.origin, e.seq, e.sid, e.op,
    e.data === undefined ? null : e.data, e.t, e.track ?? null,
  ]);
  // The header length is a u16: a larger header would be read back as garbage.
  if (header.length > 0xffff) throw new RangeError(`envelope header of ${header.length} bytes exceeds 65535 (op ${e.op || e.kind})`);
  const body = typeof e.xml === 'string' ? utf8.encode(e.xml) : e.xml;
  const out = new Uint8Array(3 + header.length + body.length);
  out[0] = 1;
  out[1] = header.length >> 8;
  out[2] = header.length & 0xff;
  out.set(header, 3);
  out.set(body, 3 + header.length);
  return out;
}

export function decodeEnvelope(buf: Uint8Array): Envelope {
  if (buf[0] !== 1) throw new Error(`unknown envelope version ${buf[0]}`);
  const hlen = (buf[1] << 8) | buf[2];
  const h = packr.unpack(buf.subarray(3, 3 + hlen)) as [number, string, string, string, string, string, number, string, string, unknown, number, Track | null | undefined];
  return {
    kind: CODE_KIND[h[0] & 0xf], dir: CODE_DIR[h[0] >> 4],
    from: h[1], to: h[2], type: h[3], id: h[4], origin: h[5], seq: h[6], sid: h[7], op: h[8],
    data: h[9] === null ? undefined : h[9],
    t: h[10] ?? 0,
    xml: buf.subarray(3 + hlen),
    ...(h[11] ? { track: h[11] } : {}),
  };
}
