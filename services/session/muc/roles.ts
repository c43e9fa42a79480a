// Roles and affiliations (XEP-0045 §5): who may do what to whom. Every
// permission question of the room is answered here, so the rules sit on one
// screen and the room actor only asks.
import { StanzaError } from '../../../libs/errors/index.ts';

export type Role = 'moderator' | 'participant' | 'visitor' | 'none';
export type Affiliation = 'owner' | 'admin' | 'member' | 'none' | 'outcast';

export const ROLES: readonly Role[] = ['moderator', 'participant', 'visitor', 'none'];
export const AFFILIATIONS: readonly Affiliation[] = ['owner', 'admin', 'member', 'none', 'outcast'];

const ROLE_RANK: Record<Role, number> = { none: 0, visitor: 1, participant: 2, moderator: 3 };
const AFFILIATION_RANK: Record<Affiliation, number> = { outcast: 0, none: 1, member: 2, admin: 3, owner: 4 };

export const roleAtLeast = (r: Role, min: Role): boolean => ROLE_RANK[r] >= ROLE_RANK[min];
export const affiliationAtLeast = (a: Affiliation, min: Affiliation): boolean => AFFILIATION_RANK[a] >= AFFILIATION_RANK[min];

export function isRole(s: string | undefined): s is Role {
  return s !== undefined && (ROLES as readonly string[]).includes(s);
}

export function isAffiliation(s: string | undefined): s is Affiliation {
  return s !== undefined && (AFFILIATIONS as readonly string[]).includes(s);
}

/** §5.1.4: the role an occupant enters with. */
export function defaultRole(a: Affiliation, moderated: boolean): Role {
  if (a === 'owner' || a === 'admin') return 'moderator';
  if (a === 'member') return 'participant';
  return moderated ? 'visitor' : 'participant';
}

/** The role that fits an occupant whose affiliation changed while present (§9, §10). */
export function roleAfterAffiliation(current: Role, a: Affiliation, moderated: boolean, membersOnly: boolean): Role {
  if (a === 'outcast') return 'none';
  if (a === 'none' && membersOnly) return 'none';
  if (a === 'owner' || a === 'admin') return 'moderator';
  // Losing admin rights takes the moderator role that came with them; voice already granted stays.
  if (current === 'moderator') return defaultRole(a, moderated);
  if (a === 'member' && current === 'visitor') return 'participant';
  return current;
}

/** A moderator changes an occupant's role: kick (none), voice (participant/visitor), moderator (§8, §9.6). */
export function checkRoleChange(actor: { role: Role; affiliation: Affiliation }, target: { role: Role; affiliation: Affiliation }, to: Role): void {
  if (actor.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators may change roles');
  if (to !== 'moderator' && affiliationAtLeast(target.affiliation, 'admin')) {
    throw new StanzaError('not-allowed', 'admins and owners keep their moderator role');
  }
  const aboutModerators = to === 'moderator' || target.role === 'moderator';
  if (aboutModerators && !affiliationAtLeast(actor.affiliation, 'admin')) {
    throw new StanzaError('forbidden', 'only admins and owners may grant or revoke moderator status');
  }
}

/** An admin or owner changes a user's affiliation: ban, membership, admin, owner (§9, §10). */
export function checkAffiliationChange(actor: Affiliation, target: Affiliation, to: Affiliation, owners: number): void {
  if (!affiliationAtLeast(actor, 'admin')) throw new StanzaError('forbidden', 'only admins and owners may change affiliations');
  if (actor !== 'owner') {
    if (to === 'admin' || to === 'owner') throw new StanzaError('forbidden', 'only owners may grant admin or owner status');
    if (affiliationAtLeast(target, 'admin')) throw new StanzaError('not-allowed', 'an admin cannot change the affiliation of an admin or owner');
  }
  if (target === 'owner' && to !== 'owner' && owners <= 1) throw new StanzaError('conflict', 'a room keeps at least one owner');
}
