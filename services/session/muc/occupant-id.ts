// XEP-0421 occupant ids: one id per real bare JID per room, the same across
// nick changes, sessions and visits, so clients can tell who is who without
// seeing real JIDs. It is an HMAC of the bare JID under a random salt the room
// keeps to itself: stable for the room, unlinkable across rooms, and not
// reversible by anyone who guesses JIDs.
import { createHmac, randomBytes } from 'node:crypto';
import type { Node } from '../../../libs/xml/element.ts';

export const NS_OCCUPANT_ID = 'urn:xmpp:occupant-id:0';

export const newOccupantSalt = (): Uint8Array => randomBytes(16);

export function occupantId(salt: Uint8Array, bare: string): string {
  return createHmac('sha256', salt).update(bare).digest('base64url').slice(0, 22);
}

export const occupantIdXml = (id: string): string => `<occupant-id xmlns="${NS_OCCUPANT_ID}" id="${id}"/>`;

/** An occupant-id a client put in its own stanza: only the room may say who someone is (XEP-0421 §4). */
export function isOccupantId(n: Node): boolean {
  return typeof n !== 'string' && n.name === 'occupant-id' && n.attrs.xmlns === NS_OCCUPANT_ID;
}
