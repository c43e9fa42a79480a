// The stanzas a room sends, built as strings without `to` (the c2s inserts
// it per recipient, services/c2s/room-fanout.ts). String building keeps a
// presence broadcast to thousands of occupants at one small allocation per
// variant instead of an element tree per recipient.
import { escapeAttr, escapeText } from '../../../libs/xml/serialize.ts';
import type { Affiliation, Role } from './roles.ts';

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_MUC_REQUEST = 'http://jabber.org/protocol/muc#request';
export const NS_MUC_ROOMINFO = 'http://jabber.org/protocol/muc#roominfo';
export const NS_SELF_PING = 'http://jabber.org/protocol/muc#self-ping-optimization';
export const NS_CONFERENCE = 'jabber:x:conference';
export const NS_SID = 'urn:xmpp:sid:0';
export const NS_MAM = 'urn:xmpp:mam:2';
export { NS_RSM } from '../rsm.ts';
export const NS_FORWARD = 'urn:xmpp:forward:0';
export const NS_PING = 'urn:xmpp:ping';
export const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
export const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';

/** XEP-0045 §15.6 status codes this room sends. */
export const Status = {
  NonAnonymous: 100,
  ConfigChanged: 104,
  Self: 110,
  LoggingOn: 170,
  LoggingOff: 171,
  NowNonAnonymous: 172,
  NowSemiAnonymous: 173,
  Created: 201,
  Banned: 301,
  NickChanged: 303,
  Kicked: 307,
  AffiliationChanged: 321,
  MembersOnly: 322,
  Shutdown: 332,
  Error: 333,
} as const;

export interface ItemInfo {
  affiliation: Affiliation;
  role: Role;
  /** The real JID, for recipients who may see it. */
  jid?: string;
  /** The new nick (nick change, status 303). */
  nick?: string;
  actor?: string;
  reason?: string;
}

export function itemXml(i: ItemInfo): string {
  let s = `<item affiliation="${i.affiliation}" role="${i.role}"`;
  if (i.jid) s += ` jid="${escapeAttr(i.jid)}"`;
  if (i.nick) s += ` nick="${escapeAttr(i.nick)}"`;
  if (!i.actor && !i.reason) return `${s}/>`;
  s += '>';
  if (i.actor) s += `<actor nick="${escapeAttr(i.actor)}"/>`;
  if (i.reason) s += `<reason>${escapeText(i.reason)}</reason>`;
  return `${s}</item>`;
}

export function statusXml(codes: readonly number[]): string {
  let s = '';
  for (const c of codes) s += `<status code="${c}"/>`;
  return s;
}

/** An occupant's presence as the room shows it: their own payload, then the muc#user part. */
export function occupantPresence(from: string, type: '' | 'unavailable', payload: string, item: ItemInfo, codes: readonly number[], extra = ''): string {
  return `<presence from="${escapeAttr(from)}"${type ? ` type="${type}"` : ''}>${payload}<x xmlns="${NS_MUC_USER}">${itemXml(item)}${statusXml(codes)}${extra}</x></presence>`;
}

export function subjectMessage(from: string, subject: string): string {
  const body = subject === '' ? '<subject/>' : `<subject>${escapeText(subject)}</subject>`;
  return `<message from="${escapeAttr(from)}" type="groupchat">${body}</message>`;
}

/** Status codes to every occupant about the room itself (§10.2.1). */
export function statusMessage(room: string, codes: readonly number[]): string {
  return `<message from="${escapeAttr(room)}" type="groupchat"><x xmlns="${NS_MUC_USER}">${statusXml(codes)}</x></message>`;
}

export function destroyXml(reason: string, alternate: string): string {
  const attrs = alternate ? ` jid="${escapeAttr(alternate)}"` : '';
  return reason ? `<destroy${attrs}><reason>${escapeText(reason)}</reason></destroy>` : `<destroy${attrs}/>`;
}
