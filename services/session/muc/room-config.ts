// A room's configuration (XEP-0045 §10.2): its defaults, the owner's form
// (muc#roomconfig), and reading a submitted form into a new configuration. A
// form with any bad value changes nothing: the whole form is read first.
import { pack, unpack } from 'msgpackr';
import type { Config } from '../../../libs/config/schema.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import type { Element } from '../../../libs/xml/element.ts';
import {
  booleanField, formElement, hidden, integerField, listMulti, listSingle, parseSubmitted, textField, type FormField,
} from './forms.ts';
import type { Role } from './roles.ts';

export const NS_ROOMCONFIG = 'http://jabber.org/protocol/muc#roomconfig';

export type Whois = 'moderators' | 'anyone';
export type AllowPm = 'anyone' | 'participants' | 'moderators' | 'none';
export type BroadcastRole = Exclude<Role, 'none'>;

export interface RoomConfig {
  name: string;
  description: string;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  moderated: boolean;
  passwordProtected: boolean;
  password: string;
  maxUsers: number;
  whois: Whois;
  changeSubject: boolean;
  allowInvites: boolean;
  allowPm: AllowPm;
  presenceBroadcast: BroadcastRole[];
  historyLength: number;
  archive: boolean;
}

export type MucConfig = Config['muc'];

export function defaultRoomConfig(muc: MucConfig): RoomConfig {
  const d = muc.defaults;
  return {
    name: '', description: '', persistent: d.persistent, public: d.public, membersOnly: d.membersOnly,
    moderated: d.moderated, passwordProtected: false, password: '',
    maxUsers: Math.min(d.maxUsers, muc.maxOccupantsLimit), whois: d.whois, changeSubject: d.changeSubject,
    allowInvites: d.allowInvites, allowPm: d.allowPm, presenceBroadcast: [...d.presenceBroadcast],
    historyLength: Math.min(d.historyLength, muc.maxHistory), archive: d.archive && muc.archiveMaxMessages > 0,
  };
}

export function encodeRoomConfig(c: RoomConfig): Uint8Array {
  return pack(c);
}

/** Fields missing from an older stored configuration take today's defaults. */
export function decodeRoomConfig(raw: Uint8Array, muc: MucConfig): RoomConfig {
  return { ...defaultRoomConfig(muc), ...(unpack(raw) as Partial<RoomConfig>) };
}

const WHOIS: readonly Whois[] = ['moderators', 'anyone'];
const ALLOW_PM: readonly AllowPm[] = ['anyone', 'participants', 'moderators', 'none'];
const BROADCAST: readonly BroadcastRole[] = ['moderator', 'participant', 'visitor'];
const bool = (b: boolean): string[] => [b ? '1' : '0'];

/** The owner's configuration form, filled with the current values (§10.2). */
export function configForm(c: RoomConfig, muc: MucConfig): Element {
  const f = (v: string, type: FormField['type'], label: string, values: readonly string[], options?: FormField['options']): FormField =>
    ({ var: `muc#roomconfig_${v}`, type, label, values, options });
  const sizes = [10, 20, 50, 100, 200, 500, 1000, 5000, 20000].filter((n) => n <= muc.maxOccupantsLimit);
  return formElement('form', [
    hidden('FORM_TYPE', NS_ROOMCONFIG),
    f('roomname', 'text-single', 'Name', [c.name]),
    f('roomdesc', 'text-single', 'Description', [c.description]),
    f('persistentroom', 'boolean', 'Make room persistent', bool(c.persistent)),
    f('publicroom', 'boolean', 'Make room publicly searchable', bool(c.public)),
    f('membersonly', 'boolean', 'Make room members-only', bool(c.membersOnly)),
    f('moderatedroom', 'boolean', 'Make room moderated', bool(c.moderated)),
    f('passwordprotectedroom', 'boolean', 'Password required to enter', bool(c.passwordProtected)),
    f('roomsecret', 'text-private', 'Password', [c.password]),
    f('maxusers', 'list-single', 'Maximum number of occupants', [String(c.maxUsers)], sizes.map((n) => ({ value: String(n) }))),
    f('whois', 'list-single', 'Who may discover real JIDs', [c.whois],
      [{ value: 'moderators', label: 'Moderators only' }, { value: 'anyone', label: 'Anyone' }]),
    f('changesubject', 'boolean', 'Allow occupants to change the subject', bool(c.changeSubject)),
    f('allowinvites', 'boolean', 'Allow occupants to invite others', bool(c.allowInvites)),
    f('allowpm', 'list-single', 'Who may send private messages', [c.allowPm], ALLOW_PM.map((value) => ({ value }))),
    f('presencebroadcast', 'list-multi', 'Roles whose presence is broadcast', c.presenceBroadcast, BROADCAST.map((value) => ({ value }))),
    f('enablearchiving', 'boolean', 'Archive messages (XEP-0313)', bool(c.archive)),
    { var: 'muc#maxhistoryfetch', type: 'text-single', label: `Messages of history sent on join (at most ${muc.maxHistory})`, values: [String(c.historyLength)] },
  ], 'Room configuration');
}

/**
 * A submitted muc#roomconfig form applied to the current configuration.
 * Unknown fields are ignored (XEP-0004 lets a service skip what it does not
 * support); a known field with a bad value refuses the whole form.
 */
export function applyConfigForm(current: RoomConfig, x: Element, muc: MucConfig): RoomConfig {
  const form = parseSubmitted(x);
  if (form.formType !== undefined && form.formType !== NS_ROOMCONFIG) {
    throw new StanzaError('bad-request', `expected a ${NS_ROOMCONFIG} form, got ${form.formType}`);
  }
  const next: RoomConfig = { ...current, presenceBroadcast: [...current.presenceBroadcast] };
  for (const [name, values] of form.fields) {
    switch (name) {
      case 'muc#roomconfig_roomname': next.name = textField(name, values, muc.maxNameLength); break;
      case 'muc#roomconfig_roomdesc': next.description = textField(name, values, muc.maxDescriptionLength); break;
      case 'muc#roomconfig_persistentroom': next.persistent = booleanField(name, values); break;
      case 'muc#roomconfig_publicroom': next.public = booleanField(name, values); break;
      case 'muc#roomconfig_membersonly': next.membersOnly = booleanField(name, values); break;
      case 'muc#roomconfig_moderatedroom': next.moderated = booleanField(name, values); break;
      case 'muc#roomconfig_passwordprotectedroom': next.passwordProtected = booleanField(name, values); break;
      case 'muc#roomconfig_roomsecret': next.password = textField(name, values, 256); break;
      case 'muc#roomconfig_maxusers':
        next.maxUsers = values[0] === 'none' ? muc.maxOccupantsLimit : integerField(name, values, 1, muc.maxOccupantsLimit);
        break;
      case 'muc#roomconfig_whois': next.whois = listSingle(name, values, WHOIS); break;
      case 'muc#roomconfig_changesubject': next.changeSubject = booleanField(name, values); break;
      case 'muc#roomconfig_allowinvites': next.allowInvites = booleanField(name, values); break;
      case 'muc#roomconfig_allowpm': next.allowPm = listSingle(name, values, ALLOW_PM); break;
      case 'muc#roomconfig_presencebroadcast': next.presenceBroadcast = listMulti(name, values, BROADCAST); break;
      case 'muc#roomconfig_enablearchiving': next.archive = booleanField(name, values) && muc.archiveMaxMessages > 0; break;
      case 'muc#maxhistoryfetch': next.historyLength = integerField(name, values, 0, muc.maxHistory); break;
      default: break;
    }
  }
  if (next.passwordProtected && next.password === '') throw new StanzaError('not-acceptable', 'a password-protected room needs a password');
  if (!next.passwordProtected) next.password = '';
  return next;
}

/** The disco#info features that describe a configuration (§6.4, the XMPP Registrar's muc_* list). */
export function configFeatures(c: RoomConfig): string[] {
  return [
    c.persistent ? 'muc_persistent' : 'muc_temporary',
    c.public ? 'muc_public' : 'muc_hidden',
    c.membersOnly ? 'muc_membersonly' : 'muc_open',
    c.moderated ? 'muc_moderated' : 'muc_unmoderated',
    c.passwordProtected ? 'muc_passwordprotected' : 'muc_unsecured',
    c.whois === 'anyone' ? 'muc_nonanonymous' : 'muc_semianonymous',
  ];
}
