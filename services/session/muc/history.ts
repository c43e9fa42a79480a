// Room messages as they are kept: one list per room serves both the
// discussion history sent on join (XEP-0045 §7.2.14) and the room archive
// (XEP-0313). An entry keeps the stanza as the room broadcast it (from the
// occupant JID, without `to`), so replaying it costs no parse.
import { pack, unpack } from 'msgpackr';
import { escapeAttr } from '../../../libs/xml/serialize.ts';
import type { Element } from '../../../libs/xml/element.ts';

export const NS_DELAY = 'urn:xmpp:delay';

export interface ArchivedMessage {
  /** Archive id: increasing within a room, also the XEP-0359 stanza-id. */
  id: string;
  /** Milliseconds since the epoch. */
  stamp: number;
  nick: string;
  /** The sender's real bare JID (what a MAM 'with' filter and moderators see). */
  sender: string;
  /** The message as broadcast, without `to`. */
  xml: string;
}

export function encodeArchived(m: ArchivedMessage): Uint8Array {
  return pack([m.id, m.stamp, m.nick, m.sender, m.xml]);
}

export function decodeArchived(raw: Uint8Array): ArchivedMessage {
  const [id, stamp, nick, sender, xml] = unpack(raw) as [string, number, string, string, string];
  return { id, stamp, nick, sender, xml };
}

/**
 * Archive ids sort as strings in time order: a base-36 millisecond stamp
 * padded to a fixed width, then a counter for messages in the same millisecond.
 */
export function nextArchiveId(previous: string, now: number): string {
  const t = now.toString(36).padStart(9, '0');
  if (previous.startsWith(t) && previous.length > 10) {
    const n = Number.parseInt(previous.slice(10), 36) + 1;
    return `${t}-${n.toString(36).padStart(3, '0')}`;
  }
  if (previous !== '' && previous.slice(0, 9) > t) return nextArchiveId(previous, Number.parseInt(previous.slice(0, 9), 36)); // clock went back
  return `${t}-000`;
}

/** A copy of a kept stanza marked as delayed (XEP-0203), `from` the room. */
export function withDelay(xml: string, room: string, stamp: number): string {
  const close = xml.lastIndexOf('</');
  const delay = `<delay xmlns="${NS_DELAY}" from="${escapeAttr(room)}" stamp="${new Date(stamp).toISOString()}"/>`;
  if (close < 0) return `${xml.slice(0, -2)}>${delay}</message>`; // a self-closed stanza (never stored in practice)
  return xml.slice(0, close) + delay + xml.slice(close);
}

export interface HistoryRequest {
  maxstanzas?: number;
  maxchars?: number;
  seconds?: number;
  /** Milliseconds since the epoch. */
  since?: number;
}

const count = (v: string | undefined): number | undefined => (v !== undefined && /^\d{1,9}$/.test(v) ? Number(v) : undefined);

/** The <history/> child of a join; attributes a client got wrong are ignored, as if absent. */
export function parseHistoryRequest(h: Element | undefined): HistoryRequest | undefined {
  if (!h) return undefined;
  const since = h.attrs.since !== undefined ? Date.parse(h.attrs.since) : Number.NaN;
  return {
    maxstanzas: count(h.attrs.maxstanzas),
    maxchars: count(h.attrs.maxchars),
    seconds: count(h.attrs.seconds),
    since: Number.isFinite(since) ? since : undefined,
  };
}

/**
 * What a joining occupant gets: the newest messages that satisfy every limit
 * the client gave (they combine, §7.2.14), at most `cap` of them, oldest first,
 * each with its delay. maxchars counts whole stanzas, markup included.
 */
export function selectHistory(kept: readonly ArchivedMessage[], req: HistoryRequest | undefined, cap: number, room: string, now: number): string[] {
  const max = Math.min(cap, req?.maxstanzas ?? cap);
  const after = Math.max(req?.since ?? -Infinity, req?.seconds !== undefined ? now - req.seconds * 1000 : -Infinity);
  const out: string[] = [];
  let chars = 0;
  for (let i = kept.length - 1; i >= 0 && out.length < max; i--) {
    const m = kept[i];
    if (m.stamp < after) break;
    const xml = withDelay(m.xml, room, m.stamp);
    if (req?.maxchars !== undefined) {
      chars += xml.length;
      if (chars > req.maxchars) break;
    }
    out.push(xml);
  }
  return out.reverse();
}
