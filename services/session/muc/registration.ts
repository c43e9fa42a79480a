// Member registration with a room (XEP-0045 §7.10) and the reserved nickname
// it gives (§7.2.4). A registered user is affiliated with the room and its
// nickname is kept for it: nobody else may enter, change to or register it.
//
// Who becomes what:
// - an open room: registering makes the user a member, with the nickname;
// - a members-only room: a member (or admin, owner) registers a nickname for
//   itself; anyone else's registration is a request to the owners and admins,
//   who grant it by making the user a member with that nick (§9.3, an
//   <item affiliation='member' jid=… nick=…/>). Nobody talks their way in.
// - an outcast may not register.
import { StanzaError } from '../../../libs/errors/index.ts';
import { child, el, type Element } from '../../../libs/xml/element.ts';
import { escapeAttr, escapeText, serialize } from '../../../libs/xml/serialize.ts';
import { formElement, hidden, NS_DATA, parseSubmitted, textField } from './forms.ts';
import type { Affiliation } from './roles.ts';
import { NS_DISCO_INFO } from './stanzas.ts';

export const NS_REGISTER = 'jabber:iq:register';
export const NS_MUC_REGISTER = 'http://jabber.org/protocol/muc#register';
/** The disco#info node that tells a user its reserved nickname (§7.2.4). */
export const NODE_ROOMUSER = 'x-roomuser-item';
const NICK_FIELD = 'muc#register_roomnick';

/** What a get answers: the nickname already registered, or the form to register one. */
export function registrationQuery(room: string, registered: string | undefined): Element {
  if (registered !== undefined) return el('query', { xmlns: NS_REGISTER }, el('registered'), el('username', {}, registered));
  return el('query', { xmlns: NS_REGISTER },
    el('instructions', {}, `Register a nickname with ${room}: nobody else may use it here.`),
    formElement('form', [
      hidden('FORM_TYPE', NS_MUC_REGISTER),
      { var: NICK_FIELD, type: 'text-single', label: 'Desired Nickname', required: true },
    ], 'Room registration'));
}

/** The nickname of a submitted registration form. */
export function parseRegistration(q: Element, maxNickLength: number): string {
  if (child(q, 'remove')) throw new StanzaError('feature-not-implemented', 'to leave the member list, ask an admin of the room');
  const x = child(q, 'x', NS_DATA);
  if (!x) throw new StanzaError('bad-request', 'submit the muc#register form');
  const form = parseSubmitted(x);
  if (form.formType !== NS_MUC_REGISTER) throw new StanzaError('bad-request', `expected a ${NS_MUC_REGISTER} form`);
  const nick = textField(NICK_FIELD, form.fields.get(NICK_FIELD) ?? [], maxNickLength);
  if (nick === '') throw new StanzaError('not-acceptable', `${NICK_FIELD} is required`);
  return nick;
}

export type RegistrationOutcome = 'reserve' | 'join' | 'request';

/** §7.10: what a registration by a user of this affiliation does (see the top of this file). */
export function registrationOutcome(affiliation: Affiliation, membersOnly: boolean): RegistrationOutcome {
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this room');
  if (affiliation !== 'none') return 'reserve';
  return membersOnly ? 'request' : 'join';
}

/** §7.2.4: the user's reserved nickname as an identity, or an empty answer. */
export function roomUserItem(nick: string | undefined): Element {
  return el('query', { xmlns: NS_DISCO_INFO, node: NODE_ROOMUSER },
    nick !== undefined ? el('identity', { category: 'conference', type: 'text', name: nick }) : undefined);
}

/** A registration request to an owner or admin: who asks, for which nickname, and how to grant it. */
export function registrationRequest(room: string, jid: string, nick: string): string {
  const form = formElement('form', [
    hidden('FORM_TYPE', NS_MUC_REGISTER),
    { var: 'muc#jid', type: 'jid-single', label: 'User', values: [jid] },
    { var: NICK_FIELD, type: 'text-single', label: 'Desired Nickname', values: [nick] },
  ], 'Registration request');
  const body = `${jid} asks to become a member of ${room} as ${nick}. Grant it by making ${jid} a member with that nick.`;
  return `<message from="${escapeAttr(room)}" type="normal"><body>${escapeText(body)}</body>${serialize(form)}</message>`;
}
