// XEP-0425 message moderation: a moderator retracts an occupant's message by
// the stanza-id the room gave it (XEP-0359). The room tells every occupant
// (an XEP-0424 retraction from the room) and keeps a tombstone in place of
// the message, so the archive and the history show that it was removed, by
// whom and when, and no longer what it said.
//
// Both versions are understood: urn:xmpp:message-moderate:1 (a <moderate/>
// with an id) and :0 (inside an XEP-0422 <apply-to/>, what slixmpp sends).
// What the room sends carries both, so clients of either version follow.
import { StanzaError } from '../../../libs/errors/index.ts';
import { child, el, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { escapeAttr, escapeText, serialize } from '../../../libs/xml/serialize.ts';
import { isOccupantId } from './occupant-id.ts';
import { NS_SID } from './stanzas.ts';

export const NS_MODERATE_0 = 'urn:xmpp:message-moderate:0';
export const NS_MODERATE_1 = 'urn:xmpp:message-moderate:1';
export const NS_RETRACT_0 = 'urn:xmpp:message-retract:0';
export const NS_RETRACT_1 = 'urn:xmpp:message-retract:1';
export const NS_FASTEN = 'urn:xmpp:fasten:0';

export interface ModerationRequest {
  /** The stanza-id of the message to retract. */
  id: string;
  reason: string;
}

/** An iq payload as a moderation request, or undefined when it is none. */
export function parseModeration(q: Element, maxReasonLength: number): ModerationRequest | undefined {
  let moderate: Element | undefined;
  let id: string | undefined;
  let retract: Element | undefined;
  if (q.name === 'moderate' && q.attrs.xmlns === NS_MODERATE_1) {
    moderate = q;
    id = q.attrs.id;
    retract = child(q, 'retract', NS_RETRACT_1);
  } else if (q.name === 'apply-to' && q.attrs.xmlns === NS_FASTEN) {
    moderate = child(q, 'moderate', NS_MODERATE_0);
    if (!moderate) return undefined;
    id = q.attrs.id;
    retract = child(moderate, 'retract', NS_RETRACT_0);
  } else {
    return undefined;
  }
  if (!id) throw new StanzaError('bad-request', 'name the stanza-id of the message to moderate');
  if (!retract) throw new StanzaError('bad-request', 'the only moderation offered is a retraction (<retract/>)');
  const reason = text(child(moderate, 'reason'));
  if (reason.length > maxReasonLength) throw new StanzaError('not-acceptable', `a reason is at most ${maxReasonLength} characters`);
  return { id, reason };
}

export interface Moderation {
  /** The moderator's occupant JID and occupant id. */
  by: string;
  byOccupantId: string;
  reason: string;
  stamp: number;
}

const reasonXml = (reason: string): string => (reason ? `<reason>${escapeText(reason)}</reason>` : '');

/**
 * What the room broadcasts: the retraction of message `id`, in both versions.
 * No fallback body: a client that knows no retraction would show it as a
 * line of chat from the room, and archive it as one.
 */
export function moderationAnnouncement(room: string, id: string, m: Moderation): string {
  const by = escapeAttr(m.by);
  const target = escapeAttr(id);
  const occ = `<occupant-id xmlns="urn:xmpp:occupant-id:0" id="${m.byOccupantId}"/>`;
  return `<message from="${escapeAttr(room)}" type="groupchat" id="moderation-${target}">`
    + `<retract xmlns="${NS_RETRACT_1}" id="${target}"><moderated xmlns="${NS_MODERATE_1}" by="${by}">${occ}</moderated>${reasonXml(m.reason)}</retract>`
    + `<apply-to xmlns="${NS_FASTEN}" id="${target}"><moderated xmlns="${NS_MODERATE_0}" by="${by}"><retract xmlns="${NS_RETRACT_0}"/>${reasonXml(m.reason)}</moderated></apply-to>`
    + '</message>';
}

/**
 * A kept message as its tombstone: the same sender, type, ids (stanza-id,
 * occupant-id), everything it said gone, and who removed it when.
 */
export function tombstone(kept: string, m: Moderation): string {
  const original = parseFragment(kept);
  const keep = original.children.filter((c): c is Element =>
    typeof c !== 'string' && (isOccupantId(c) || (c.name === 'stanza-id' && c.attrs.xmlns === NS_SID)));
  const stamp = new Date(m.stamp).toISOString();
  const occ = el('occupant-id', { xmlns: 'urn:xmpp:occupant-id:0', id: m.byOccupantId });
  const reason = () => (m.reason ? el('reason', {}, m.reason) : undefined);
  const stone = el('message', { ...original.attrs },
    el('retracted', { xmlns: NS_RETRACT_1, by: m.by, stamp },
      el('moderated', { xmlns: NS_MODERATE_1, by: m.by }, occ), reason()),
    el('moderated', { xmlns: NS_MODERATE_0, by: m.by, stamp },
      el('retracted', { xmlns: NS_RETRACT_0, stamp }), reason()),
    ...keep);
  return serialize(stone);
}
