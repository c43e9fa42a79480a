// The roster (RFC 6121 §2) as one account's actor holds it: contacts by bare
// JID with their subscription state. An entry may exist only to remember a
// pending inbound request (`inRoster` false): RFC 6121 §3.1.3 forbids adding
// the requester to the roster before the user approves.
import { pack, unpack } from 'msgpackr';
import { StanzaError } from '../../../libs/errors/index.ts';
import { parseJid } from '../../../libs/jid/index.ts';
import { children, el, text, type Element } from '../../../libs/xml/element.ts';
import { NONE, type SubscriptionState } from './subscription.ts';

export const NS_ROSTER = 'jabber:iq:roster';

export interface RosterItem extends SubscriptionState {
  name: string;
  groups: string[];
  /** Shown to the user (false: only a pending request is remembered). */
  inRoster: boolean;
  /** The subscribe stanza to show the user again at next login. */
  pendingXml: string;
}

export function emptyItem(): RosterItem {
  return { ...NONE, name: '', groups: [], inRoster: false, pendingXml: '' };
}

export function encodeItem(i: RosterItem): Uint8Array {
  return pack([i.name, i.groups, i.subscription, i.ask, i.pendingIn, i.approved, i.inRoster, i.pendingXml]);
}

export function decodeItem(b: Uint8Array): RosterItem {
  const [name, groups, subscription, ask, pendingIn, approved, inRoster, pendingXml] = unpack(b) as
    [string, string[], RosterItem['subscription'], boolean, boolean, boolean, boolean, string];
  return { name, groups, subscription, ask, pendingIn, approved, inRoster, pendingXml };
}

/**
 * <item/> as the roster result and pushes show it; approved='true' while the
 * user has pre-approved the contact's subscription (RFC 6121 §2.1.2.1, §3.4).
 */
export function itemElement(jid: string, i: RosterItem | 'remove'): Element {
  if (i === 'remove') return el('item', { jid, subscription: 'remove' });
  const attrs = { jid, name: i.name || undefined, subscription: i.subscription, ask: i.ask ? 'subscribe' : undefined, approved: i.approved ? 'true' : undefined };
  return el('item', attrs, ...i.groups.map((g) => el('group', {}, g)));
}

export interface RosterSet {
  jid: string;
  remove: boolean;
  name: string;
  groups: string[];
}

export interface RosterLimits {
  maxNameLength: number;
  maxGroups: number;
}

/** Validate a client's roster set (RFC 6121 §2.3.3, §2.5.3). */
export function parseRosterSet(query: Element, self: string, limits: RosterLimits): RosterSet {
  const items = children(query, 'item');
  if (items.length !== 1) throw new StanzaError('bad-request', 'a roster set carries exactly one item');
  const item = items[0];
  let jid: string;
  try {
    jid = parseJid(item.attrs.jid ?? '').bare;
  } catch {
    throw new StanzaError('bad-request', `'${item.attrs.jid ?? ''}' is not a valid JID`);
  }
  if (item.attrs.jid?.includes('/')) throw new StanzaError('bad-request', 'roster items are bare JIDs');
  if (jid === self) throw new StanzaError('not-allowed', 'you cannot add yourself to your roster');
  const sub = item.attrs.subscription;
  if (sub === 'remove') return { jid, remove: true, name: '', groups: [] };
  if (sub !== undefined && sub !== 'none' && sub !== 'to' && sub !== 'from' && sub !== 'both') {
    throw new StanzaError('bad-request', `unknown subscription '${sub}'`);
  }
  const name = item.attrs.name ?? '';
  if (name.length > limits.maxNameLength) throw new StanzaError('not-acceptable', `item names are limited to ${limits.maxNameLength} characters`);
  const groups = children(item, 'group').map((g) => text(g));
  if (groups.some((g) => g === '')) throw new StanzaError('not-acceptable', 'a group name must not be empty');
  if (groups.some((g) => g.length > limits.maxNameLength)) throw new StanzaError('not-acceptable', `group names are limited to ${limits.maxNameLength} characters`);
  if (new Set(groups).size !== groups.length) throw new StanzaError('bad-request', 'a group is listed twice');
  if (groups.length > limits.maxGroups) throw new StanzaError('not-acceptable', `an item may be in at most ${limits.maxGroups} groups`);
  return { jid, remove: false, name, groups };
}
