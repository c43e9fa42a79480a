// What a room keeps in the store, under the room's bare JID as scope (so in
// Redis every key of a room shares one hash tag):
//
//   {room@conference.example.com}:muc           config, subject, locked, created
//   {room@conference.example.com}:affiliations  bare JID → [affiliation, reason, registered nick]
//   {room@conference.example.com}:occupants     nick → [real JID, c2s node, session id, role, presence payload]
//   {room@conference.example.com}:archive       list of [id, stamp, nick, sender, stanza] (history + XEP-0313)
//   {room@conference.example.com}:retracted     archive id → tombstone stanza (XEP-0425, shown in place of the message)
//   {$muc:conference.example.com}:rooms         public rooms: room JID → [name]
//
// Occupants are written through like an account's sessions: when the room's
// shard moves, the new owner rebuilds the room from these, nobody rejoins.
import { pack, unpack } from 'msgpackr';
import type { Affiliation, Role } from './roles.ts';
import type { Target } from './fanout.ts';

export const ROOM_COLLECTIONS = ['muc', 'affiliations', 'occupants', 'retracted'] as const;

export interface Occupant extends Target {
  nick: string;
  /** Real full JID. */
  jid: string;
  bare: string;
  node: string;
  sid: string;
  role: Role;
  /** The children of the occupant's last presence, serialized (show, status, caps…), the MUC parts removed. */
  payload: string;
}

export function encodeOccupant(o: Occupant): Uint8Array {
  return pack([o.jid, o.node, o.sid, o.role, o.payload]);
}

export function decodeOccupant(nick: string, raw: Uint8Array): Occupant {
  const [jid, node, sid, role, payload] = unpack(raw) as [string, string, string, Role, string];
  const slash = jid.indexOf('/');
  return { nick, jid, bare: slash < 0 ? jid : jid.slice(0, slash), node, sid, role, payload: payload ?? '' };
}

export interface AffiliationEntry {
  affiliation: Exclude<Affiliation, 'none'>;
  reason: string;
  /** The nickname registered with the room (XEP-0045 §7.10), reserved for this user. */
  nick?: string;
}

export function encodeAffiliation(a: AffiliationEntry): Uint8Array {
  return pack(a.nick ? [a.affiliation, a.reason, a.nick] : [a.affiliation, a.reason]);
}

export function decodeAffiliation(raw: Uint8Array): AffiliationEntry {
  const [affiliation, reason, nick] = unpack(raw) as [AffiliationEntry['affiliation'], string, string | undefined];
  return { affiliation, reason: reason ?? '', nick: nick || undefined };
}

export interface Subject {
  text: string;
  /** Who set it ('' for the room itself). */
  nick: string;
  stamp: number;
}

export const encodeSubject = (s: Subject): Uint8Array => pack([s.text, s.nick, s.stamp]);

export function decodeSubject(raw: Uint8Array): Subject {
  const [text, nick, stamp] = unpack(raw) as [string, string, number];
  return { text, nick, stamp };
}

/** The store scope listing a service's public rooms. */
export const listingScope = (service: string): string => `$muc:${service}`;
