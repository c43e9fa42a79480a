// What stream management keeps per session, beside the account's actor and in
// the store (so any session process can take it over):
//   {bare}:smstate         hash  resource → record (below)
//   {bare}:smq:<smid>      log   the stanzas given to the client and not yet
//                                acknowledged, by number n: [n, kind, from, to, type, xml]
// `smid` is the session id at <enable/>; it names the queue and the
// resumption id and survives every resumption. Neither collection is the
// embedded mode's in-memory `sessions`: a queue outlives a crash of the
// process, and what it held is routed again when the account next activates.
import { emptyMap } from '../../../libs/lazy/index.ts';
import { pack, unpack } from 'msgpackr';
import type { Envelope, StanzaKind } from '../../../libs/bus/envelope.ts';
import type { Delivery } from '../module.ts';
import { RelayOrder } from './relay-order.ts';

export const SM_STATE = 'smstate';
export const queueOf = (smid: string): string => `smq:${smid}`;

export interface SmSession {
  readonly smid: string;
  /** The connection behind the session now, and its c2s node. */
  sid: string;
  node: string;
  resumable: boolean;
  /** Seconds the session waits for resumption once its connection is gone. */
  max: number;
  /** Stanzas from the client applied here, by the c2s's numbering (what arrives again at or below it is dropped), not wrapped. */
  handled: number;
  /**
   * Of those, how many are safe (services/session/sm/confirm.ts): applied, and each message for another account applied
   * by that account's actor. `confirmed` was written into the session's record; `stored` is what a write of the record
   * has kept for sure, and all the client may hear as `h`.
   */
  confirmed: number;
  stored: number;
  // pending, heard and chains: the shared empty Map (libs/lazy) until the session routes a message to another account.
  /** Messages routed to other accounts and not yet confirmed by their actors, by the client's number. */
  pending: ReadonlyMap<number, PendingRoute>;
  /** Per recipient account with messages pending, when it last confirmed one (a recipient still confirming is not resent to). */
  heard: ReadonlyMap<string, number>;
  /** Per recipient account, the number of the last message routed to it (its `prev`); `chainsKnown` false after a reactivation. */
  chains: ReadonlyMap<string, number>;
  chainsKnown: boolean;
  /** The c2s asked for a confirmation up to this number. */
  barrier: number;
  /** When this actor last asked the c2s to send again from a gap. */
  gapAskedAt: number;
  /** Number of the last stanza given to the client (its `h` counts the same), not wrapped. */
  out: number;
  /** Stanzas the client acknowledged; the queue holds acked+1 … out. */
  acked: number;
  /** When the connection went away; 0 while one is attached. */
  detachedAt: number;
  /** XEP-0352 inactive: what may wait is held here, not yet numbered, newest presence per sender. */
  inactive: boolean;
  held: Delivery[];
  /** The last queued store write; reads of the queue wait for it. */
  writes: Promise<unknown>;
  /** A retransmission check is scheduled. */
  checking: boolean;
  /** Stanzas the connection relayed with a sequence, put back in its order (in memory: a gap is bridged, not stored). */
  relays: RelayOrder<Delivery>;
}

/** A message this session sent, routed to another account and kept until that account's actor confirms it. */
export interface PendingRoute {
  to: string;
  env: Envelope;
  sentAt: number;
}

export type SmSessions = Map<string, SmSession>;

export function newSession(smid: string, sid: string, node: string, resumable: boolean, max: number): SmSession {
  return { smid, sid, node, resumable, max, handled: 0, confirmed: 0, stored: 0, pending: emptyMap(), heard: emptyMap(), chains: emptyMap(), chainsKnown: true, barrier: 0, gapAskedAt: 0,
    out: 0, acked: 0, detachedAt: 0, inactive: false, held: [], writes: Promise.resolve(), checking: false, relays: new RelayOrder(sid) };
}

export function encodeRecord(s: SmSession): Uint8Array {
  // The count kept is the confirmed one: a new owner of the account starts from what is safe, and the client sends the rest again.
  return pack([s.smid, s.sid, s.node, s.resumable, s.max, s.confirmed, s.acked, s.detachedAt]);
}

export function decodeRecord(b: Uint8Array): SmSession {
  const [smid, sid, node, resumable, max, handled, acked, detachedAt] = unpack(b) as [string, string, string, boolean, number, number, number, number];
  const s = newSession(smid, sid, node, resumable, max);
  s.relays = new RelayOrder(); // where the connection's count is, its first relay tells
  s.handled = handled;
  s.confirmed = handled;
  s.stored = handled;
  // What this session routed before is not known here: the next message to each account names no predecessor.
  s.chainsKnown = false;
  s.acked = acked;
  s.out = acked;
  s.detachedAt = detachedAt;
  return s;
}

export interface QueuedStanza extends Delivery {
  readonly n: number;
}

export function encodeEntry(n: number, d: Delivery): Uint8Array {
  const xml = typeof d.xml === 'string' ? d.xml : Buffer.from(d.xml.buffer, d.xml.byteOffset, d.xml.byteLength).toString();
  return pack([n, d.kind, d.from, d.to, d.type, xml, d.t]);
}

export function decodeEntry(b: Uint8Array): QueuedStanza {
  const [n, kind, from, to, type, xml, t] = unpack(b) as [number, StanzaKind, string, string, string, string, number];
  return { n, kind, from, to, type, xml, t: t ?? 0 };
}

// ---- XEP-0352 at the actor: for a stream-managed session the count the
// client acknowledges must equal the numbering here, so what CSI collapses is
// collapsed before it is numbered (the c2s's own CSI queue serves the rest).

const MAX_HELD = 500;

function carriesBody(xml: string | Uint8Array): boolean {
  return typeof xml === 'string' ? xml.includes('<body') : Buffer.from(xml.buffer, xml.byteOffset, xml.byteLength).includes('<body');
}

/** What may wait while inactive: presence (not subscriptions) and messages without a body. */
function canWait(d: Delivery): boolean {
  if (d.kind === 'presence') return d.type === '' || d.type === 'unavailable';
  if (d.kind === 'message') return d.type !== 'error' && !carriesBody(d.xml);
  return false;
}

/** Take the stanza into the held list if it may wait; a newer presence from the same sender replaces the older. */
export function hold(s: SmSession, d: Delivery): boolean {
  if (!s.inactive || !canWait(d) || s.held.length >= MAX_HELD) return false;
  if (d.kind === 'presence' && d.from !== '') {
    const i = s.held.findIndex((h) => h.kind === 'presence' && h.from === d.from);
    if (i >= 0) {
      s.held[i] = d;
      return true;
    }
  }
  s.held.push(d);
  return true;
}
