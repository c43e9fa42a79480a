// One rule set per account, one enforcement path: XEP-0016 privacy lists and
// the XEP-0191 block list live here, and both modules (privacy.ts,
// blocking.ts) only edit it. The block list is the simple face of the same
// rules — an implicit first list of "deny everything" items by JID, checked
// before the active (or default) privacy list, with the same JID matching.
//
// Cost: an account with no rules is not filtered at all (the actor asks
// `active` when the rules change, not per stanza). With rules, a check is a
// handful of hash lookups whatever the list's length: items are indexed by
// JID, group and subscription at compile time, and the first match in list
// order is the smallest `order` among the candidates (privacy-rules.bench.ts).
//
// Storage, in the account's scope:
//   {bare}:blocklist  jid → ''                       (one field per blocked JID)
//   {bare}:privacy    list:<name> → msgpack(items)
//                     default → msgpack(name)
//                     active:<resource> → msgpack([sid, name])
//                     blockpush:<resource> → msgpack(sid)        (asked for the block list)
// Session fields carry the session id, so a field left by a session that
// ended without its actor (a process crash) never applies to a new session.
import { emptyMap, emptySet, filledMap, filledSet } from '../../../libs/lazy/index.ts';
import { pack, unpack } from 'msgpackr';
import { StanzaError } from '../../../libs/errors/index.ts';
import { el, type Element } from '../../../libs/xml/element.ts';
import { defineAccountState, type AccountContext, type Contact, type FilteredStanza, type FilterVerdict } from '../module.ts';

export const NS_BLOCKING_ERRORS = 'urn:xmpp:blocking:errors';
export const BLOCKLIST = 'blocklist';
export const PRIVACY = 'privacy';

// Stanza classes, as bits. OTHER (subscriptions, probes, presence errors) is
// blocked only by an item that names no stanza type, as XEP-0016 §2.1 reads.
export const MESSAGE = 1;
export const IQ = 2;
export const PRESENCE_IN = 4;
export const PRESENCE_OUT = 8;
export const OTHER = 16;
export const EVERYTHING = MESSAGE | IQ | PRESENCE_IN | PRESENCE_OUT | OTHER;

export type ItemType = '' | 'jid' | 'group' | 'subscription';

export interface PrivacyItem {
  type: ItemType;
  value: string;
  allow: boolean;
  order: number;
  /** Stanza classes the item applies to (EVERYTHING when it names none). */
  mask: number;
}

interface Rule {
  order: number;
  allow: boolean;
  mask: number;
}

/** The candidate with the smallest order among those that apply to the class. */
function firstFor(rules: Rule[] | undefined, bit: number, best: Rule | undefined): Rule | undefined {
  if (rules === undefined) return best;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    if ((r.mask & bit) !== 0) return best === undefined || r.order < best.order ? r : best;
  }
  return best;
}

function add(map: Map<string, Rule[]>, key: string, r: Rule): void {
  const list = map.get(key);
  if (list) list.push(r);
  else map.set(key, [r]);
}

/** The parts of a normalized JID string that XEP-0016 §2.1 matches on. */
export interface PeerKeys {
  full: string;
  bare: string;
  domain: string;
  /** domain/resource, or '' when the JID has no resource or no localpart. */
  domainResource: string;
}

export function peerKeys(jid: string): PeerKeys {
  const slash = jid.indexOf('/');
  const bare = slash < 0 ? jid : jid.slice(0, slash);
  const at = bare.indexOf('@');
  const domain = at < 0 ? bare : bare.slice(at + 1);
  const domainResource = slash >= 0 && at >= 0 ? `${domain}${jid.slice(slash)}` : '';
  return { full: jid, bare, domain, domainResource };
}

/** A privacy list compiled for lookups: cost per check does not grow with its length. */
export class CompiledList {
  private readonly byJid = new Map<string, Rule[]>();
  private readonly byGroup = new Map<string, Rule[]>();
  private readonly bySubscription = new Map<string, Rule[]>();
  private readonly fallThrough: Rule[] = [];
  /** Whether any item needs the contact's roster entry. */
  readonly usesRoster: boolean;

  constructor(readonly items: readonly PrivacyItem[]) {
    let roster = false;
    for (const i of [...items].sort((a, b) => a.order - b.order)) {
      const r: Rule = { order: i.order, allow: i.allow, mask: i.mask };
      switch (i.type) {
        case 'jid': add(this.byJid, i.value, r); break;
        case 'group': add(this.byGroup, i.value, r); roster = true; break;
        case 'subscription': add(this.bySubscription, i.value, r); roster = true; break;
        default: this.fallThrough.push(r);
      }
    }
    this.usesRoster = roster;
  }

  /** true: allow, false: deny, undefined: no item matches (allowed). */
  decide(bit: number, peer: PeerKeys, contact: Contact | undefined): boolean | undefined {
    let best: Rule | undefined;
    if (this.byJid.size !== 0) {
      best = firstFor(this.byJid.get(peer.full), bit, best);
      if (peer.bare !== peer.full) best = firstFor(this.byJid.get(peer.bare), bit, best);
      if (peer.domainResource !== '' && peer.domainResource !== peer.full) best = firstFor(this.byJid.get(peer.domainResource), bit, best);
      if (peer.domain !== peer.bare) best = firstFor(this.byJid.get(peer.domain), bit, best);
    }
    if (this.usesRoster) {
      if (this.byGroup.size !== 0 && contact) for (const g of contact.groups) best = firstFor(this.byGroup.get(g), bit, best);
      best = firstFor(this.bySubscription.get(contact?.subscription ?? 'none'), bit, best);
    }
    best = firstFor(this.fallThrough, bit, best);
    return best?.allow;
  }
}

export function encodeItems(items: readonly PrivacyItem[]): Uint8Array {
  return pack(items.map((i) => [i.type, i.value, i.allow, i.order, i.mask]));
}

export function decodeItems(b: Uint8Array): PrivacyItem[] {
  return (unpack(b) as [ItemType, string, boolean, number, number][]).map(([type, value, allow, order, mask]) => ({ type, value, allow, order, mask }));
}

/** Session-scoped choice: which list a resource made active, and for which session. */
interface SessionChoice {
  sid: string;
  list: string;
}

export type Decision = 'allow' | 'blocked' | 'denied';

/** Where group and subscription items look the peer up. */
export type Roster = Pick<AccountContext, 'contact'>;

/** One account's rules as its actor holds them. */
export class PrivacyRules {
  // Most accounts have no rules: until the first entry each collection is the shared empty one (libs/lazy), and
  // writes go through the *ForWrite() methods.
  blocked: ReadonlySet<string> = emptySet();
  lists: ReadonlyMap<string, CompiledList> = emptyMap();
  defaultList = '';
  /** Resource → the active list it chose; absent: the default list applies. */
  active: ReadonlyMap<string, SessionChoice> = emptyMap();
  /** Resource → session id of resources that asked for the block list (they get pushes). */
  blockInterest: ReadonlyMap<string, string> = emptyMap();

  blockedForWrite(): Set<string> {
    const s = filledSet(this.blocked);
    this.blocked = s;
    return s;
  }

  listsForWrite(): Map<string, CompiledList> {
    const m = filledMap(this.lists);
    this.lists = m;
    return m;
  }

  activeForWrite(): Map<string, SessionChoice> {
    const m = filledMap(this.active);
    this.active = m;
    return m;
  }

  blockInterestForWrite(): Map<string, string> {
    const m = filledMap(this.blockInterest);
    this.blockInterest = m;
    return m;
  }
  /** Resources whose active list differs from the default (bare-JID deliveries are then checked per session). */
  private overrides = 0;

  get hasRules(): boolean {
    return this.blocked.size !== 0 || this.defaultList !== '' || this.active.size !== 0;
  }

  get perSession(): boolean {
    return this.overrides !== 0;
  }

  /** Call after any change of lists, default or active choices. */
  recount(): void {
    let n = 0;
    for (const c of this.active.values()) if (c.list !== this.defaultList) n++;
    this.overrides = n;
  }

  /** The list that governs a resource ('' = the account as a whole). */
  listFor(resource: string): CompiledList | undefined {
    if (resource !== '') {
      const c = this.active.get(resource);
      if (c !== undefined) return this.lists.get(c.list);
    } else if (this.overrides !== 0) {
      return undefined; // sessions differ: each one is checked at delivery
    }
    return this.defaultList === '' ? undefined : this.lists.get(this.defaultList);
  }

  isBlocked(peer: PeerKeys): boolean {
    const b = this.blocked;
    if (b.size === 0) return false;
    return b.has(peer.full) || b.has(peer.bare) || (peer.domainResource !== '' && b.has(peer.domainResource)) || b.has(peer.domain);
  }

  decide(bit: number, peerJid: string, resource: string, roster: Roster): Decision {
    const peer = peerKeys(peerJid);
    if (this.isBlocked(peer)) return 'blocked';
    const list = this.listFor(resource);
    if (list === undefined) return 'allow';
    return list.decide(bit, peer, list.usesRoster ? roster.contact(peer.bare) : undefined) === false ? 'denied' : 'allow';
  }

  /** Whether the account's presence from a resource may reach an entity now. */
  presenceAllowed(peerJid: string, resource: string, roster: Roster): boolean {
    return this.decide(PRESENCE_OUT, peerJid, resource, roster) === 'allow';
  }
}

export function classOf(s: FilteredStanza): number {
  if (s.kind === 'message') return MESSAGE;
  if (s.kind === 'iq') return IQ;
  if (s.type === '' || s.type === 'unavailable') return s.dir === 'in' ? PRESENCE_IN : PRESENCE_OUT;
  return OTHER;
}

/** XEP-0191 §3.3: what the user's own client hears when it writes to a JID it blocked. */
export class BlockedError extends StanzaError {
  constructor() {
    super('not-acceptable', 'you have blocked this entity; unblock it to communicate');
  }

  override toElement(): Element {
    const e = super.toElement();
    e.children.push(el('blocked', { xmlns: NS_BLOCKING_ERRORS }));
    return e;
  }
}

const NOT_THERE = new StanzaError('service-unavailable');
const NOT_ACCEPTABLE = new StanzaError('not-acceptable', 'your privacy list does not allow this stanza');
const BLOCKED = new BlockedError();

/**
 * What happens to a stanza the rules refuse. Inbound (XEP-0191 §3.3, XEP-0016
 * §2.13): the sender learns nothing beyond "no such service" — presence and
 * iq results vanish, messages and iq requests get service-unavailable, exactly
 * as for an account that does not exist. Outbound: the user's client is told.
 */
export function refusal(s: FilteredStanza, blocked: boolean): FilterVerdict {
  if (s.type === 'error') return 'drop';
  if (s.dir === 'in') {
    if (s.kind === 'message') return NOT_THERE;
    if (s.kind === 'iq' && (s.type === 'get' || s.type === 'set')) return NOT_THERE;
    return 'drop';
  }
  if (s.kind === 'iq' && s.type === 'result') return 'drop';
  return blocked ? BLOCKED : NOT_ACCEPTABLE;
}

export const privacyRules = defineAccountState<PrivacyRules>({
  name: 'privacy rules',
  collections: [PRIVACY, BLOCKLIST],
  load(data, ctx) {
    const rules = new PrivacyRules();
    for (const jid of data.get(BLOCKLIST)?.keys() ?? []) rules.blockedForWrite().add(jid);
    for (const [field, raw] of data.get(PRIVACY) ?? []) {
      if (field.startsWith('list:')) rules.listsForWrite().set(field.slice(5), new CompiledList(decodeItems(raw)));
      else if (field === 'default') rules.defaultList = unpack(raw) as string;
      else if (field.startsWith('active:')) {
        const resource = field.slice(7);
        const [sid, list] = unpack(raw) as [string, string];
        if (ctx.sessions.get(resource) === sid && rules.lists.has(list)) rules.activeForWrite().set(resource, { sid, list });
      } else if (field.startsWith('blockpush:')) {
        const resource = field.slice(10);
        const sid = unpack(raw) as string;
        if (ctx.sessions.get(resource) === sid) rules.blockInterestForWrite().set(resource, sid);
      }
    }
    if (rules.defaultList !== '' && !rules.lists.has(rules.defaultList)) rules.defaultList = '';
    rules.recount();
    return rules;
  },
  filter: {
    active: (rules) => rules.hasRules,
    perSession: (rules) => rules.perSession,
    check(rules, s, account) {
      const d = rules.decide(classOf(s), s.peer, s.resource, account);
      return d === 'allow' ? 'pass' : refusal(s, d === 'blocked');
    },
  },
  hooks: {
    async ended(rules, account, resource) {
      const hadActive = rules.activeForWrite().delete(resource);
      const hadInterest = rules.blockInterestForWrite().delete(resource);
      if (!hadActive && !hadInterest) return;
      rules.recount();
      account.rulesChanged();
      const b = account.server.store.batch(account.bare);
      if (hadActive) b.hdel(PRIVACY, `active:${resource}`);
      if (hadInterest) b.hdel(PRIVACY, `blockpush:${resource}`);
      await b.exec();
    },
  },
});

/**
 * Run a change of the rules and keep presence consistent with it (XEP-0191
 * §3.3/§3.4, XEP-0016 §2.11): whoever could see a resource and no longer may
 * gets unavailable from it; whoever may see it again gets its presence.
 */
export async function changeRules(account: AccountContext, rules: PrivacyRules, change: () => void | Promise<void>): Promise<void> {
  const audience = account.presenceAudience();
  const resources = account.available() ? account.resources() : [];
  const before = resources.map((r) => audience.map((peer) => rules.presenceAllowed(peer, r, account)));
  await change();
  rules.recount();
  account.rulesChanged();
  resources.forEach((r, i) => {
    audience.forEach((peer, j) => {
      const now = rules.presenceAllowed(peer, r, account);
      if (before[i][j] && !now) account.sendUnavailable(peer, r);
      else if (!before[i][j] && now) account.sendPresence(peer, r);
    });
  });
}

