// One multi-user chat room (XEP-0045): an actor keyed by the room's bare JID,
// on the same shards as accounts, so a room moves with its shard through the
// same handoff and processes one stanza at a time — the order every occupant
// sees is the order the room handled them. Its state is written through to
// the store (state.ts), occupants included, so a new owner of the shard
// rebuilds the room and nobody has to rejoin.
//
// Cost of a message to the room: c2s → sender's actor → room (2 bus messages),
// then one bus message per c2s node holding occupants (fanout.ts). A join
// sends the joiner everything (occupants, history, subject) in one batch to
// its node and its presence to the others in one message per node.
import { pack, unpack } from 'msgpackr';
import type { Envelope } from '../../../libs/bus/envelope.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { tryParseJid } from '../../../libs/jid/index.ts';
import { bareJid, domainPart, resourcePart } from '../../../libs/jid/split.ts';
import { logger } from '../../../libs/log/index.ts';
import { child, children, el, firstElement, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { escapeAttr, escapeText, serialize } from '../../../libs/xml/serialize.ts';
import type { SessionServices } from '../services.ts';
import { archiveForm, finElement, page, parseArchiveQuery, queryRange, resultMessage } from './archive.ts';
import { group, OP_MUC_HERE, OP_ROOM_UNDELIVERED, readBatch, withTo, type RoomFanoutData } from './fanout.ts';
import { formElement, hidden, NS_DATA, parseSubmitted, booleanField } from './forms.ts';
import { decodeArchived, encodeArchived, nextArchiveId, parseHistoryRequest, selectHistory, type ArchivedMessage } from './history.ts';
import { MucActor, viaOf, type Via } from './muc-actor.ts';
import { WriteQueue } from './write-queue.ts';
import { moderationAnnouncement, NS_MODERATE_0, NS_MODERATE_1, parseModeration, tombstone, type ModerationRequest } from './moderation.ts';
import { isOccupantId, newOccupantSalt, NS_OCCUPANT_ID, occupantId, occupantIdXml } from './occupant-id.ts';
import {
  NODE_ROOMUSER, NS_REGISTER, parseRegistration, registrationOutcome, registrationQuery, registrationRequest, roomUserItem,
} from './registration.ts';
import {
  affiliationAtLeast, checkAffiliationChange, checkRoleChange, defaultRole, isAffiliation, isRole, roleAfterAffiliation,
  roleAtLeast, type Affiliation, type Role,
} from './roles.ts';
import {
  applyConfigForm, configFeatures, configForm, decodeRoomConfig, defaultRoomConfig, encodeRoomConfig, type BroadcastRole, type MucConfig, type RoomConfig,
} from './room-config.ts';
import {
  decodeAffiliation, decodeOccupant, decodeSubject, encodeAffiliation, encodeOccupant, encodeSubject, listingScope,
  ROOM_COLLECTIONS, type AffiliationEntry, type Occupant, type Subject,
} from './state.ts';
import {
  destroyXml, NS_CONFERENCE, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MAM, NS_MUC, NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_REQUEST,
  NS_MUC_ROOMINFO, NS_MUC_USER, NS_PING, NS_SELF_PING, NS_SID, occupantPresence, Status, statusMessage, subjectMessage,
} from './stanzas.ts';

const log = logger('muc');

/** Errors from an occupant's address that mean its session is gone (XEP-0045 §18.1.2): the room lets it go. */
const GONE_CONDITIONS = new Set(['gone', 'item-not-found', 'recipient-unavailable', 'redirect', 'remote-server-not-found', 'remote-server-timeout', 'service-unavailable']);
/** The archive list may run this far past its cap before it is trimmed (one LTRIM per that many messages). */
const TRIM_SLACK = 64;

interface RemovalOptions {
  /** The occupant's own unavailable payload (its <status/>). */
  payload?: string;
  reason?: string;
  actor?: string;
  /** Extra muc#user children (a <destroy/>). */
  extra?: string;
  /** The affiliation to show (after a ban it is outcast). */
  affiliation?: Affiliation;
}

export class RoomActor extends MucActor {
  private readonly muc: MucConfig;
  private readonly service: string;
  private exists = false;
  /** XEP-0045 §10.1: created and not yet configured; only its owner may enter. */
  private locked = false;
  private config: RoomConfig;
  private subject: Subject = { text: '', nick: '', stamp: 0 };
  private readonly affiliations = new Map<string, AffiliationEntry>();
  /** Registered nicknames (XEP-0045 §7.10) → the bare JID they are reserved for. */
  private readonly reserved = new Map<string, string>();
  /** The room's secret salt for XEP-0421 occupant ids, and the ids computed so far. */
  private salt: Uint8Array = newOccupantSalt();
  private readonly occupantIds = new Map<string, string>();
  /** Tombstones of moderated messages (XEP-0425) by archive id, shown in their place. */
  private readonly retracted = new Map<string, string>();
  private readonly byNick = new Map<string, Occupant>();
  private readonly byJid = new Map<string, Occupant>();
  /** Earlier session ids of occupants whose session moved, for batches still on their way to the old one. */
  private readonly retired = new Map<string, Occupant>();
  /**
   * Occupants whose session a c2s handed back (gone from the node the room
   * knew, e.g. resumed elsewhere): reached through their accounts, each stanza
   * numbered, until an account answers the latest with where the session is
   * now (`muc-here`) — or the occupant's own next stanza says so.
   */
  private readonly located = new Map<Occupant, { asked: number; lost: string }>();
  /** Occupants grouped by c2s node, rebuilt only when someone comes, goes or moves. */
  private grouped: ReturnType<typeof group> | undefined;
  /** The newest kept messages (discussion history). */
  private history: ArchivedMessage[] = [];
  private lastId = '';
  /** Every id in the archive list, in list order; read on the first archive query, then kept in step. */
  private archiveIds: string[] | undefined;
  /** Entries in the archive list once every issued write has landed. */
  private archiveLength = 0;
  /** The room's own writes, and its line in the service's listing: each applied in issue order. */
  private readonly writes: WriteQueue;
  private readonly listingWrites: WriteQueue;

  constructor(jid: string, shard: number, svc: SessionServices) {
    super(jid, shard, svc);
    this.muc = svc.config.muc;
    this.service = domainPart(jid);
    this.config = defaultRoomConfig(this.muc);
    const onError = (e: unknown) => log.error('room write failed', { room: this.jid, error: e });
    this.writes = new WriteQueue(svc.store, jid, onError);
    this.listingWrites = new WriteQueue(svc.store, listingScope(this.service), onError);
  }

  get hasSessions(): boolean {
    return this.byNick.size > 0;
  }

  /** Occupants now, or undefined while no such room exists (the metrics count rooms by this). */
  get occupants(): number | undefined {
    return this.exists ? this.byNick.size : undefined;
  }

  /** Busy until every write has landed too, so a shutdown waits for them (ActorSystem.idle asks this). */
  override get busy(): boolean {
    return super.busy || this.writes.pending || this.listingWrites.pending;
  }

  /** Idle means the mailbox is empty and every write has landed: what a shard handoff waits for. */
  override async idle(): Promise<void> {
    for (;;) {
      // The base idle() resolves when the mailbox run ends, so ask it only while one is under way.
      if (super.busy) await super.idle();
      else if (this.writes.pending || this.listingWrites.pending) await this.writesDone();
      else return;
    }
  }

  // ================================================================ state

  protected async load(): Promise<void> {
    const tail = Math.max(1, this.muc.maxHistory);
    const [data, kept, length] = await Promise.all([
      this.svc.store.load(this.jid, ROOM_COLLECTIONS),
      this.svc.store.lrange(this.jid, 'archive', -tail, -1),
      this.svc.store.llen(this.jid, 'archive'),
    ]);
    this.archiveLength = length;
    const meta = data.get('muc');
    const config = meta?.get('config');
    if (!meta || !config) return; // no such room (yet)
    this.exists = true;
    this.config = decodeRoomConfig(config, this.muc);
    const locked = meta.get('locked');
    this.locked = locked ? (unpack(locked) as boolean) : false;
    const subject = meta.get('subject');
    if (subject) this.subject = decodeSubject(subject);
    const salt = meta.get('salt');
    if (salt) this.salt = salt;
    else this.saveSalt(); // a room stored before occupant ids
    for (const [bare, raw] of data.get('affiliations') ?? []) {
      const a = decodeAffiliation(raw);
      this.affiliations.set(bare, a);
      if (a.nick) this.reserved.set(a.nick, bare);
    }
    for (const [id, raw] of data.get('retracted') ?? []) this.retracted.set(id, Buffer.from(raw).toString());
    const history = kept.map((raw) => this.shown(decodeArchived(raw)));
    this.lastId = history.at(-1)?.id ?? '';
    this.history = this.muc.maxHistory > 0 ? history.slice(-this.muc.maxHistory) : [];
    const stale: Occupant[] = [];
    for (const [nick, raw] of data.get('occupants') ?? []) {
      const o = decodeOccupant(nick, raw);
      this.byNick.set(nick, o);
      this.byJid.set(o.jid, o);
      if (o.node !== '' && !this.svc.c2sAlive(o.node)) stale.push(o);
    }
    // Occupants whose connection manager died while nobody served this room.
    for (const o of stale) this.remove(o, [Status.Error], {});
  }

  /** What an owner or admin changed is answered once it is stored (and listed), not before; `mark`: failures() before the change. */
  private async durable(mark: number): Promise<undefined> {
    await this.writesDone();
    if (this.failures() > mark) throw new StanzaError('internal-server-error', 'the change could not be stored; try again later');
    return undefined;
  }

  private failures(): number {
    return this.writes.failures + this.listingWrites.failures;
  }

  private async writesDone(): Promise<void> {
    await Promise.all([this.writes.done(), this.listingWrites.done()]);
  }

  private saveOccupant(o: Occupant): void {
    const nick = o.nick;
    const v = encodeOccupant(o);
    this.writes.batch((b) => b.hset('occupants', nick, v));
  }

  private saveConfig(): void {
    const config = encodeRoomConfig(this.config);
    const locked = pack(this.locked);
    this.writes.batch((b) => b.hset('muc', 'config', config).hset('muc', 'locked', locked));
    this.updateListing();
  }

  private saveSalt(): void {
    const salt = this.salt;
    this.writes.batch((b) => b.hset('muc', 'salt', salt));
  }

  /** Public rooms are listed at the service (disco#items); hidden and locked ones are not. */
  private updateListing(): void {
    if (this.exists && !this.locked && this.config.public) {
      const entry = pack([this.config.name]);
      this.listingWrites.batch((b) => b.hset('rooms', this.jid, entry));
    } else {
      this.listingWrites.batch((b) => b.hdel('rooms', this.jid));
    }
  }

  private affiliationOf(bare: string): Affiliation {
    return this.affiliations.get(bare)?.affiliation ?? 'none';
  }

  /** §7.2.9, §7.10: a registered nickname is for its owner only. */
  private reservedForOther(nick: string, bare: string): boolean {
    const owner = this.reserved.get(nick);
    return owner !== undefined && owner !== bare;
  }

  /** `nick`: a nickname to register for the user; without it a registered one stays, unless the user loses its affiliation. */
  private setAffiliation(bare: string, a: Affiliation, reason: string, nick?: string): void {
    const before = this.affiliations.get(bare)?.nick;
    const kept = a === 'none' || a === 'outcast' ? undefined : nick ?? before;
    if (before !== undefined && before !== kept) this.reserved.delete(before);
    if (kept !== undefined) this.reserved.set(kept, bare);
    if (a === 'none') {
      this.affiliations.delete(bare);
      this.writes.batch((b) => b.hdel('affiliations', bare));
    } else {
      const entry: AffiliationEntry = { affiliation: a, reason, nick: kept };
      this.affiliations.set(bare, entry);
      const v = encodeAffiliation(entry);
      this.writes.batch((b) => b.hset('affiliations', bare, v));
    }
  }

  private create(owner: string): void {
    this.exists = true;
    this.locked = this.muc.lockNewRooms;
    this.config = defaultRoomConfig(this.muc);
    this.subject = { text: '', nick: '', stamp: 0 };
    this.affiliations.clear();
    this.reserved.clear();
    this.retracted.clear();
    this.occupantIds.clear();
    this.salt = newOccupantSalt();
    this.history = [];
    this.lastId = '';
    this.archiveIds = undefined;
    const created = pack(Date.now());
    this.writes.batch((b) => b.hset('muc', 'created', created));
    this.saveSalt();
    this.saveConfig();
    this.setAffiliation(owner, 'owner', '');
    log.debug('room created', { room: this.jid, owner });
  }

  /** Forget the room: the last occupant of a temporary room left, or an owner destroyed it. */
  private destroyState(): void {
    this.exists = false;
    this.locked = false;
    this.config = defaultRoomConfig(this.muc);
    this.subject = { text: '', nick: '', stamp: 0 };
    this.affiliations.clear();
    this.reserved.clear();
    this.retracted.clear();
    this.occupantIds.clear();
    this.history = [];
    this.lastId = '';
    this.archiveIds = undefined;
    this.archiveLength = 0;
    this.writes.batch((b) => b.del('muc').del('affiliations').del('occupants').del('archive').del('retracted'));
    this.listingWrites.batch((b) => b.hdel('rooms', this.jid));
  }

  // ================================================================ occupants

  private occupantJid(nick: string): string {
    return `${this.jid}/${nick}`;
  }

  /** XEP-0421: the occupant id of a real bare JID in this room. */
  private occupantIdOf(bare: string): string {
    let id = this.occupantIds.get(bare);
    if (id === undefined) {
      if (this.occupantIds.size >= 4096) this.occupantIds.clear(); // a cache, not a record
      this.occupantIds.set(bare, (id = occupantId(this.salt, bare)));
    }
    return id;
  }

  /** A stanza from an occupant as the room passes it on: from its occupant JID, with the room's occupant-id in place of any the client put. */
  private stampOccupant(stanza: Element, o: Occupant): void {
    stanza.attrs.from = this.occupantJid(o.nick);
    delete stanza.attrs.to;
    stanza.children = stanza.children.filter((c) => !isOccupantId(c));
    stanza.children.push(el('occupant-id', { xmlns: NS_OCCUPANT_ID, id: this.occupantIdOf(o.bare) }));
  }

  /** A kept message as it is shown now: its tombstone once moderated. */
  private shown(m: ArchivedMessage): ArchivedMessage {
    const stone = this.retracted.get(m.id);
    return stone === undefined ? m : { ...m, xml: stone };
  }

  private grouping(): ReturnType<typeof group> {
    return (this.grouped ??= group(this.byNick.values()));
  }

  private add(o: Occupant): void {
    this.byNick.set(o.nick, o);
    this.byJid.set(o.jid, o);
    this.grouped = undefined;
    this.saveOccupant(o);
  }

  /** The sender's session moved (a new c2s node or session id for the same full JID). */
  private track(o: Occupant, via: Via | undefined): void {
    if (!via || (o.node === via.node && o.sid === via.sid)) return;
    if (o.sid) this.retired.set(o.sid, o);
    o.node = via.node;
    o.sid = via.sid;
    this.grouped = undefined;
    this.saveOccupant(o);
  }

  /**
   * A c2s no longer holds some sessions of a batch: they ended, or stream
   * management resumed them on another node. Those stanzas go through the
   * occupants' accounts (which know the current session, or bounce, and the
   * bounce takes the occupant out), and so does what follows until the
   * occupant's next stanza says where it is now.
   */
  private undelivered(env: Envelope): void {
    const { sids, stanzas } = readBatch(env.data as RoomFanoutData, env.xml);
    for (const sid of sids) {
      const o = this.retired.get(sid) ?? [...this.byNick.values()].find((x) => x.sid === sid);
      if (!o || this.byNick.get(o.nick) !== o) continue;
      if (o.sid === sid) {
        this.located.set(o, { asked: this.located.get(o)?.asked ?? 0, lost: sid });
        o.node = '';
        o.sid = '';
        this.grouped = undefined;
        this.saveOccupant(o);
      }
      for (const x of stanzas) this.route(o.jid, withTo(x, o.jid), this.locating(o.jid));
    }
  }

  protected override locating(to: string): unknown {
    const o = this.byJid.get(to);
    const l = o && this.located.get(o);
    return l ? { muc: 'where', n: ++l.asked } : undefined;
  }

  /**
   * An account answered where its session is. Taken only as the answer to the
   * latest stanza routed that way (so every earlier one has been handed to
   * the session before anything goes there directly), and only if it names a
   * session other than the one that was lost (a session waiting for
   * resumption is still at the lost one).
   */
  private here(env: Envelope): void {
    const o = this.byJid.get(env.from);
    const l = o && this.located.get(o);
    const d = env.data as { n?: number; node?: string; sid?: string } | undefined;
    if (!o || !l || !d || d.n !== l.asked || !d.node || !d.sid || d.sid === l.lost) return;
    this.located.delete(o);
    this.track(o, { node: d.node, sid: d.sid });
  }

  private seesJids(o: Occupant): boolean {
    return this.config.whois === 'anyone' || o.role === 'moderator';
  }

  private broadcasts(r: Role): boolean {
    return r !== 'none' && this.config.presenceBroadcast.includes(r as BroadcastRole);
  }

  private presenceOf(o: Occupant, seesJid: boolean, codes: readonly number[]): string {
    return occupantPresence(this.occupantJid(o.nick), '', o.payload + occupantIdXml(this.occupantIdOf(o.bare)), { affiliation: this.affiliationOf(o.bare), role: o.role, jid: seesJid ? o.jid : undefined }, codes);
  }

  /** One stanza about `about` to every other occupant, in the variant each may see (with or without real JIDs). */
  private toOthers(about: Occupant, build: (seesJid: boolean) => string): void {
    if (this.config.whois === 'anyone') {
      const others: Occupant[] = [];
      for (const o of this.byNick.values()) if (o !== about) others.push(o);
      if (others.length) this.fanout.toMany(build(true), others);
      return;
    }
    const seeing: Occupant[] = [];
    const blind: Occupant[] = [];
    for (const o of this.byNick.values()) if (o !== about) (o.role === 'moderator' ? seeing : blind).push(o);
    if (seeing.length) this.fanout.toMany(build(true), seeing);
    if (blind.length) this.fanout.toMany(build(false), blind);
  }

  /** An occupant's presence changed (payload, role, affiliation): everyone who sees it, and itself with 110. */
  private broadcastPresence(o: Occupant): void {
    if (this.broadcasts(o.role)) this.toOthers(o, (sees) => this.presenceOf(o, sees, []));
    this.fanout.toOne(o, [this.presenceOf(o, this.seesJids(o), [Status.Self])]);
  }

  /** Take an occupant out: unavailable to itself (110 + codes) and to everyone who saw it. */
  private remove(o: Occupant, codes: number[], opts: RemovalOptions): void {
    if (this.byNick.get(o.nick) !== o) return;
    const sawJids = this.seesJids(o);
    this.byNick.delete(o.nick);
    this.byJid.delete(o.jid);
    for (const [sid, r] of this.retired) if (r === o) this.retired.delete(sid);
    this.located.delete(o);
    this.grouped = undefined;
    const gone = o.nick;
    this.writes.batch((b) => b.hdel('occupants', gone));
    const affiliation = opts.affiliation ?? this.affiliationOf(o.bare);
    const build = (sees: boolean, self: boolean) => occupantPresence(this.occupantJid(o.nick), 'unavailable', (opts.payload ?? '') + occupantIdXml(this.occupantIdOf(o.bare)),
      { affiliation, role: 'none', jid: sees ? o.jid : undefined, actor: opts.actor, reason: opts.reason },
      self ? [...codes, Status.Self].sort((a, b) => a - b) : codes, opts.extra);
    if (this.broadcasts(o.role)) this.toOthers(o, (sees) => build(sees, false));
    this.fanout.toOne(o, [build(sawJids, true)]);
    if (this.byNick.size === 0 && this.exists && (this.locked || !this.config.persistent)) this.destroyState();
  }

  // ================================================================ stanzas

  protected handle(env: Envelope): void | Promise<void> {
    if (env.kind === 'ctl') {
      if (env.op === OP_ROOM_UNDELIVERED) this.undelivered(env);
      else if (env.op === OP_MUC_HERE) this.here(env);
      return;
    }
    const via = viaOf(env);
    const occ = this.byJid.get(env.from);
    if (occ && via) {
      this.located.delete(occ);
      this.track(occ, via);
    }
    if (env.kind === 'presence') return this.presence(env, via, occ);
    if (env.kind === 'message') return this.message(env, via, occ);
    return this.iq(env, via, occ);
  }

  // ---------------------------------------------------------------- presence

  private presence(env: Envelope, via: Via | undefined, occ: Occupant | undefined): void {
    switch (env.type) {
      case 'unavailable':
        if (occ) this.remove(occ, [], { payload: payloadOf(parseFragment(env.xml)) });
        return;
      case 'error':
        if (occ && goneError(parseFragment(env.xml))) this.remove(occ, [Status.Error], {});
        return;
      case '':
        break;
      default:
        return; // probes and subscription requests mean nothing to a room
    }
    const nick = resourcePart(env.to);
    if (nick === '') return this.bounce(env, via, new StanzaError('jid-malformed', 'enter a room with a nickname: room@service/nick'));
    const stanza = parseFragment(env.xml);
    if (!occ) return this.join(env, via, stanza, nick);
    if (occ.nick !== nick) return this.changeNick(env, via, occ, nick, stanza);
    return this.updatePresence(occ, stanza);
  }

  /** §7.2: enter the room (creating it, §10.1, when it does not exist). */
  private join(env: Envelope, via: Via | undefined, stanza: Element, nick: string): void {
    const x = child(stanza, 'x', NS_MUC);
    const bare = bareJid(env.from);
    let created = false;
    // Checked before a room is created for it, so a refused first join leaves no empty room behind.
    if (nick.length > this.muc.maxNickLength) return this.bounce(env, via, new StanzaError('not-acceptable', `nicknames are at most ${this.muc.maxNickLength} characters`));
    if (!this.exists) {
      if (this.muc.createRooms === 'local' && !this.svc.hosts.has(domainPart(bare))) {
        return this.bounce(env, via, new StanzaError('not-allowed', 'only users of this server may create rooms'));
      }
      this.create(bare);
      created = true;
    }
    const affiliation = this.affiliationOf(bare);
    const refuse = (e: StanzaError) => this.bounce(env, via, e);
    if (this.locked && affiliation !== 'owner') return refuse(new StanzaError('item-not-found', 'the room is being created; try again once its owner has configured it'));
    if (affiliation === 'outcast') return refuse(new StanzaError('forbidden', 'you are banned from this room'));
    if (this.config.membersOnly && !affiliationAtLeast(affiliation, 'member')) return refuse(new StanzaError('registration-required', 'this room is members-only'));
    if (this.config.passwordProtected && affiliation !== 'owner' && text(child(x ?? el('x'), 'password')) !== this.config.password) {
      return refuse(new StanzaError('not-authorized', 'this room needs a password'));
    }
    if (this.byNick.has(nick)) return refuse(new StanzaError('conflict', `the nickname ${nick} is in use`));
    if (this.reservedForOther(nick, bare)) return refuse(new StanzaError('conflict', `the nickname ${nick} is registered to someone else`));
    if (this.byNick.size >= this.config.maxUsers && !affiliationAtLeast(affiliation, 'admin')) {
      return refuse(new StanzaError('service-unavailable', 'the room is full'));
    }
    const occ: Occupant = {
      nick, jid: env.from, bare, node: via?.node ?? '', sid: via?.sid ?? '',
      role: defaultRole(affiliation, this.config.moderated), payload: payloadOf(stanza),
    };
    this.add(occ);
    this.sendRoomState(occ, x, created);
    if (this.broadcasts(occ.role)) this.toOthers(occ, (sees) => this.presenceOf(occ, sees, []));
  }

  /** What an occupant gets on entering, in one batch (§7.2.3–§7.2.16): others' presence, its own, history, subject. */
  private sendRoomState(occ: Occupant, x: Element | undefined, created: boolean): void {
    const sees = this.seesJids(occ);
    const batch: string[] = [];
    for (const o of this.byNick.values()) if (o !== occ && this.broadcasts(o.role)) batch.push(this.presenceOf(o, sees, []));
    const codes: number[] = [];
    if (this.config.whois === 'anyone') codes.push(Status.NonAnonymous);
    codes.push(Status.Self);
    if (this.config.archive) codes.push(Status.LoggingOn);
    if (created) codes.push(Status.Created);
    batch.push(this.presenceOf(occ, sees, codes));
    const req = parseHistoryRequest(x ? child(x, 'history') : undefined);
    for (const h of selectHistory(this.history, req, this.config.historyLength, this.jid, Date.now())) batch.push(h);
    batch.push(subjectMessage(this.subject.nick ? this.occupantJid(this.subject.nick) : this.jid, this.subject.text));
    this.fanout.toOne(occ, batch);
  }

  /** §7.6: a new nickname: unavailable with 303 from the old one, then available from the new one. */
  private changeNick(env: Envelope, via: Via | undefined, occ: Occupant, nick: string, stanza: Element): void {
    if (nick.length > this.muc.maxNickLength) return this.bounce(env, via, new StanzaError('not-acceptable', `nicknames are at most ${this.muc.maxNickLength} characters`));
    if (this.byNick.has(nick)) return this.bounce(env, via, new StanzaError('conflict', `the nickname ${nick} is in use`));
    if (this.reservedForOther(nick, occ.bare)) return this.bounce(env, via, new StanzaError('conflict', `the nickname ${nick} is registered to someone else`));
    const old = occ.nick;
    const affiliation = this.affiliationOf(occ.bare);
    const gone = (sees: boolean, self: boolean) => occupantPresence(this.occupantJid(old), 'unavailable', occupantIdXml(this.occupantIdOf(occ.bare)),
      { affiliation, role: occ.role, jid: sees ? occ.jid : undefined, nick }, self ? [Status.Self, Status.NickChanged] : [Status.NickChanged]);
    this.byNick.delete(old);
    occ.nick = nick;
    occ.payload = payloadOf(stanza);
    this.byNick.set(nick, occ);
    this.grouped = undefined;
    const v = encodeOccupant(occ);
    this.writes.batch((b) => b.hdel('occupants', old).hset('occupants', nick, v));
    if (this.broadcasts(occ.role)) {
      this.toOthers(occ, (sees) => gone(sees, false));
      this.toOthers(occ, (sees) => this.presenceOf(occ, sees, []));
    }
    const sees = this.seesJids(occ);
    this.fanout.toOne(occ, [gone(sees, true), this.presenceOf(occ, sees, [Status.Self])]);
  }

  /** A presence update from an occupant; one that carries <x xmlns=muc/> again asks for the room state again. */
  private updatePresence(occ: Occupant, stanza: Element): void {
    const payload = payloadOf(stanza);
    const changed = payload !== occ.payload;
    occ.payload = payload;
    if (changed) this.saveOccupant(occ);
    const x = child(stanza, 'x', NS_MUC);
    if (x) this.sendRoomState(occ, x, false);
    else this.fanout.toOne(occ, [this.presenceOf(occ, this.seesJids(occ), [Status.Self])]);
    if (changed && this.broadcasts(occ.role)) this.toOthers(occ, (sees) => this.presenceOf(occ, sees, []));
  }

  // ---------------------------------------------------------------- messages

  private message(env: Envelope, via: Via | undefined, occ: Occupant | undefined): void {
    if (env.type === 'error') {
      if (occ && goneError(parseFragment(env.xml))) this.remove(occ, [Status.Error], {});
      return;
    }
    if (!this.exists) return this.bounce(env, via, new StanzaError('item-not-found', 'no such room'));
    const nick = resourcePart(env.to);
    if (nick !== '') return this.privateMessage(env, via, occ, nick);
    if (env.type === 'groupchat') return this.groupchat(env, via, occ);
    return this.roomMessage(env, via, occ);
  }

  /** §7.4: a message to everyone. The room stamps `from` with the sender's occupant JID itself. */
  private groupchat(env: Envelope, via: Via | undefined, occ: Occupant | undefined): void {
    if (!occ) return this.bounce(env, via, new StanzaError('not-acceptable', 'only occupants may send messages to the room'));
    if (!roleAtLeast(occ.role, 'participant')) return this.bounce(env, via, new StanzaError('forbidden', 'visitors may not speak in this room; ask a moderator for voice'));
    const stanza = parseFragment(env.xml);
    const body = child(stanza, 'body');
    const subject = child(stanza, 'subject');
    if (subject && !body && !child(stanza, 'thread')) return this.changeSubject(env, via, occ, stanza, text(subject));
    this.stampOccupant(stanza, occ);
    // XEP-0359: a stanza-id claiming to be ours that we did not add must go.
    stanza.children = stanza.children.filter((c) => typeof c === 'string' || !(c.name === 'stanza-id' && c.attrs.xmlns === NS_SID && c.attrs.by === this.jid));
    const now = Date.now();
    let id = '';
    if (body) {
      id = nextArchiveId(this.lastId, now);
      this.lastId = id;
      if (this.config.archive) stanza.children.push(el('stanza-id', { xmlns: NS_SID, id, by: this.jid }));
    }
    const xml = serialize(stanza);
    const g = this.grouping();
    this.fanout.toGroups(xml, g.groups, g.remote);
    if (body) this.keep({ id, stamp: now, nick: occ.nick, sender: occ.bare, xml });
  }

  /** Discussion history and archive: one list, capped (archive size when archiving, else history size). */
  private keep(m: ArchivedMessage): void {
    if (this.muc.maxHistory > 0) {
      this.history.push(m);
      if (this.history.length > this.muc.maxHistory) this.history.shift();
    }
    const cap = this.config.archive ? this.muc.archiveMaxMessages : this.muc.maxHistory;
    if (cap === 0) return;
    this.archiveIds?.push(m.id);
    const v = encodeArchived(m);
    this.writes.batch((b) => b.rpush('archive', v));
    this.archiveLength++;
    if (this.archiveLength > cap + TRIM_SLACK) {
      const drop = this.archiveLength - cap;
      this.archiveLength = cap;
      this.archiveIds?.splice(0, drop);
      this.writes.run(() => this.trimArchive(drop));
    }
  }

  /** Drop the oldest messages, and the tombstones of any among them. */
  private async trimArchive(drop: number): Promise<void> {
    await this.svc.store.ltrim(this.jid, 'archive', drop, -1);
    if (this.retracted.size === 0) return;
    const [first] = await this.svc.store.lrange(this.jid, 'archive', 0, 0);
    const oldest = first ? decodeArchived(first).id : undefined;
    const gone = [...this.retracted.keys()].filter((id) => oldest === undefined || id < oldest);
    for (const id of gone) this.retracted.delete(id);
    if (gone.length === 0) return;
    const b = this.svc.store.batch(this.jid);
    for (const id of gone) b.hdel('retracted', id);
    await b.exec();
  }

  /** §8.1: a subject change, by a moderator or (if the room allows it) a participant. */
  private changeSubject(env: Envelope, via: Via | undefined, occ: Occupant, stanza: Element, subject: string): void {
    if (!(occ.role === 'moderator' || (this.config.changeSubject && occ.role === 'participant'))) {
      return this.bounce(env, via, new StanzaError('forbidden', 'you may not change the subject of this room'));
    }
    if (subject.length > this.muc.maxSubjectLength) {
      return this.bounce(env, via, new StanzaError('not-acceptable', `a subject is at most ${this.muc.maxSubjectLength} characters`));
    }
    this.subject = { text: subject, nick: occ.nick, stamp: Date.now() };
    const v = encodeSubject(this.subject);
    this.writes.batch((b) => b.hset('muc', 'subject', v));
    this.stampOccupant(stanza, occ);
    const g = this.grouping();
    this.fanout.toGroups(serialize(stanza), g.groups, g.remote);
  }

  /** §7.5: a private message to one occupant, from the sender's occupant JID. */
  private privateMessage(env: Envelope, via: Via | undefined, occ: Occupant | undefined, nick: string): void {
    if (env.type === 'groupchat') return this.bounce(env, via, new StanzaError('bad-request', 'groupchat messages go to the room, not to one occupant'));
    if (!occ) return this.bounce(env, via, new StanzaError('not-acceptable', 'only occupants may send private messages'));
    const target = this.byNick.get(nick);
    if (!target) return this.bounce(env, via, new StanzaError('item-not-found', `nobody called ${nick} is in the room`));
    const pm = this.config.allowPm;
    const allowed = pm === 'anyone' || (pm === 'participants' && roleAtLeast(occ.role, 'participant')) || (pm === 'moderators' && occ.role === 'moderator');
    if (!allowed) return this.bounce(env, via, new StanzaError('forbidden', 'private messages are not allowed here'));
    const stanza = parseFragment(env.xml);
    this.stampOccupant(stanza, occ);
    if (!child(stanza, 'x', NS_MUC_USER)) stanza.children.push(el('x', { xmlns: NS_MUC_USER }));
    this.fanout.toOne(target, [serialize(stanza)]);
  }

  /** A non-groupchat message to the room itself: invitations, declines, voice requests and their approval. */
  private roomMessage(env: Envelope, via: Via | undefined, occ: Occupant | undefined): void {
    const stanza = parseFragment(env.xml);
    const x = child(stanza, 'x', NS_MUC_USER);
    if (x) {
      const invites = children(x, 'invite');
      if (invites.length) return this.invite(env, via, occ, invites);
      const decline = child(x, 'decline');
      if (decline) return this.decline(env, decline);
    }
    const form = child(stanza, 'x', NS_DATA);
    if (form) return this.voiceRequest(env, via, occ, form);
    if (child(stanza, 'body')) return this.bounce(env, via, new StanzaError('bad-request', "send messages to everyone with type='groupchat'"));
  }

  /** §7.8.2 mediated invitation: the room passes it on in its own name, with the inviter's JID. */
  private invite(env: Envelope, via: Via | undefined, occ: Occupant | undefined, invites: Element[]): void {
    // Who may invite is asked first: a non-member writing to a members-only room learns no more than 'forbidden'.
    const affiliation = this.affiliationOf(bareJid(env.from));
    const mayInvite = !this.config.membersOnly || affiliationAtLeast(affiliation, 'admin') || (this.config.allowInvites && occ !== undefined);
    if (!mayInvite) return this.bounce(env, via, new StanzaError('forbidden', 'only admins and owners may invite to this room'));
    if (!occ) return this.bounce(env, via, new StanzaError('not-acceptable', 'only occupants may invite'));
    const targets: string[] = [];
    for (const i of invites) {
      const j = tryParseJid(i.attrs.to ?? '');
      if (!j) return this.bounce(env, via, new StanzaError('jid-malformed', `cannot invite '${i.attrs.to ?? ''}'`));
      targets.push(j.full);
    }
    invites.forEach((i, n) => {
      const to = targets[n];
      const toBare = bareJid(to);
      // An invitation by someone allowed to invite into a members-only room makes the invitee a member (§7.8.2).
      if (this.config.membersOnly && !affiliationAtLeast(this.affiliationOf(toBare), 'member')) this.setAffiliation(toBare, 'member', '');
      const reason = text(child(i, 'reason'));
      const password = this.config.passwordProtected ? `<password>${escapeText(this.config.password)}</password>` : '';
      const continueEl = child(i, 'continue');
      const body = `${occ.bare} invites you to the room ${this.jid}${reason ? `: ${reason}` : ''}`;
      this.route(to, `<message from="${escapeAttr(this.jid)}" to="${escapeAttr(to)}"><x xmlns="${NS_MUC_USER}"><invite from="${escapeAttr(occ.bare)}">${reason ? `<reason>${escapeText(reason)}</reason>` : ''}${continueEl ? serialize(continueEl) : ''}</invite>${password}</x><x xmlns="${NS_CONFERENCE}" jid="${escapeAttr(this.jid)}"${reason ? ` reason="${escapeAttr(reason)}"` : ''}/><body>${escapeText(body)}</body></message>`);
    });
  }

  /** §7.8.3: the invitee says no; the room tells the inviter. */
  private decline(env: Envelope, decline: Element): void {
    const to = tryParseJid(decline.attrs.to ?? '');
    if (!to) return;
    const reason = text(child(decline, 'reason'));
    this.route(to.full, `<message from="${escapeAttr(this.jid)}" to="${escapeAttr(to.full)}"><x xmlns="${NS_MUC_USER}"><decline from="${escapeAttr(bareJid(env.from))}">${reason ? `<reason>${escapeText(reason)}</reason>` : ''}</decline></x></message>`);
  }

  /** §8.6: a visitor asks for voice (the form goes to every moderator); a moderator's approval grants it. */
  private voiceRequest(env: Envelope, via: Via | undefined, occ: Occupant | undefined, x: Element): void {
    let form;
    try {
      form = parseSubmitted(x);
    } catch (e) {
      return this.bounce(env, via, e as StanzaError);
    }
    if (form.formType !== NS_MUC_REQUEST) return this.bounce(env, via, new StanzaError('bad-request', 'unknown form'));
    if (!occ) return this.bounce(env, via, new StanzaError('not-acceptable', 'only occupants may ask for voice'));
    const nickField = form.fields.get('muc#roomnick');
    if (occ.role === 'moderator' && nickField) {
      // A moderator answered a request.
      let allow: boolean;
      try {
        allow = booleanField('muc#request_allow', form.fields.get('muc#request_allow') ?? ['false']);
      } catch (e) {
        return this.bounce(env, via, e as StanzaError);
      }
      const target = this.byNick.get(nickField[0] ?? '');
      if (!allow || !target || target.role !== 'visitor') return;
      try {
        checkRoleChange({ role: occ.role, affiliation: this.affiliationOf(occ.bare) }, { role: target.role, affiliation: this.affiliationOf(target.bare) }, 'participant');
      } catch (e) {
        return this.bounce(env, via, e as StanzaError);
      }
      target.role = 'participant';
      this.saveOccupant(target);
      this.broadcastPresence(target);
      return;
    }
    if (occ.role !== 'visitor') return;
    const request = formElement('form', [
      hidden('FORM_TYPE', NS_MUC_REQUEST),
      { var: 'muc#role', type: 'list-single', label: 'Requested role', values: ['participant'], options: [{ value: 'participant' }] },
      { var: 'muc#jid', type: 'jid-single', label: 'User ID', values: [occ.jid] },
      { var: 'muc#roomnick', type: 'text-single', label: 'Room Nickname', values: [occ.nick] },
      { var: 'muc#request_allow', type: 'boolean', label: 'Grant voice to this person?', values: ['false'] },
    ], 'Voice request');
    const moderators = [...this.byNick.values()].filter((o) => o.role === 'moderator');
    if (moderators.length) this.fanout.toMany(serialize(el('message', { from: this.jid }, request)), moderators);
  }

  // ---------------------------------------------------------------- iq

  private iq(env: Envelope, via: Via | undefined, occ: Occupant | undefined): void | Promise<void> {
    const nick = resourcePart(env.to);
    if (nick !== '') return this.occupantIq(env, via, occ, nick);
    if (env.type !== 'get' && env.type !== 'set') return;
    const q = firstElement(parseFragment(env.xml));
    const bare = bareJid(env.from);
    const get = env.type === 'get';
    // The archive answers with messages before its result, so it replies itself.
    if (q && !get && q.name === 'query' && q.attrs.xmlns === NS_MAM) return this.archiveQuery(env, via, q, bare, occ);
    return this.answer(env, via, () => {
      if (!q) throw new StanzaError('bad-request', 'an iq get/set carries one payload element');
      this.checkExists(bare);
      const ns = q.attrs.xmlns ?? '';
      if (ns === NS_DISCO_INFO && get && q.name === 'query') return this.roomInfo(q, bare);
      if (ns === NS_DISCO_ITEMS && get && q.name === 'query') return this.roomItems(q, occ);
      if (ns === NS_PING && get) return undefined;
      const mark = this.failures();
      if (ns === NS_REGISTER && q.name === 'query') {
        if (get) return registrationQuery(this.jid, this.registrationOf(bare));
        return this.register(q, bare, env.from).then(() => this.durable(mark));
      }
      const moderation = get ? undefined : parseModeration(q, this.muc.maxSubjectLength);
      if (moderation) return this.moderate(moderation, occ).then(() => this.durable(mark));
      if (ns === NS_MUC_ADMIN && q.name === 'query') return get ? this.adminGet(q, bare, occ) : this.adminSet(q, bare, occ).then(() => this.durable(mark));
      if (ns === NS_MUC_OWNER && q.name === 'query') return get ? this.ownerGet(bare) : this.ownerSet(q, bare).then(() => this.durable(mark));
      if (ns === NS_MAM && q.name === 'query' && get) {
        this.checkArchiveAccess(bare, occ);
        return archiveForm();
      }
      throw new StanzaError('service-unavailable', `${ns} ${q.name} is not supported by rooms`);
    });
  }

  /** A locked room is invisible to all but its owner (§10.1.3). */
  private checkExists(bare: string): void {
    if (!this.exists || (this.locked && this.affiliationOf(bare) !== 'owner')) throw new StanzaError('item-not-found', 'no such room');
  }

  /** XEP-0410 self-ping, and iq between occupants passed through under occupant JIDs. */
  private occupantIq(env: Envelope, via: Via | undefined, occ: Occupant | undefined, nick: string): void {
    const request = env.type === 'get' || env.type === 'set';
    if (!occ) {
      if (request) this.bounce(env, via, new StanzaError('not-acceptable', 'you are not an occupant of this room'));
      return;
    }
    const target = this.byNick.get(nick);
    if (request) {
      const stanza = parseFragment(env.xml);
      const q = firstElement(stanza);
      if (target === occ && q?.name === 'ping' && q.attrs.xmlns === NS_PING) return this.iqResult(env, via);
      if (!target) return this.bounce(env, via, new StanzaError('item-not-found', `nobody called ${nick} is in the room`));
      stanza.attrs.from = this.occupantJid(occ.nick);
      delete stanza.attrs.to;
      return this.fanout.toOne(target, [serialize(stanza)]);
    }
    if (!target) return;
    const stanza = parseFragment(env.xml);
    stanza.attrs.from = this.occupantJid(occ.nick);
    delete stanza.attrs.to;
    this.fanout.toOne(target, [serialize(stanza)]);
  }

  /** §6.4 disco#info: identity, features (muc_* for the configuration) and the muc#roominfo form. */
  private roomInfo(q: Element, bare: string): Element {
    if (q.attrs.node === NODE_ROOMUSER) return roomUserItem(this.registrationOf(bare));
    if (q.attrs.node) throw new StanzaError('item-not-found', `no node '${q.attrs.node}'`);
    const features = [NS_MUC, NS_DISCO_INFO, NS_DISCO_ITEMS, NS_SELF_PING, NS_SID, NS_OCCUPANT_ID, NS_REGISTER, ...configFeatures(this.config)];
    if (this.config.archive) features.push(NS_MAM, NS_MODERATE_0, NS_MODERATE_1);
    const form = formElement('result', [
      hidden('FORM_TYPE', NS_MUC_ROOMINFO),
      { var: 'muc#roominfo_description', type: 'text-single', label: 'Description', values: [this.config.description] },
      { var: 'muc#roominfo_occupants', type: 'text-single', label: 'Number of occupants', values: [String(this.byNick.size)] },
      { var: 'muc#roominfo_subject', type: 'text-single', label: 'Subject', values: [this.subject.text] },
      { var: 'muc#roomconfig_roomname', type: 'text-single', label: 'Name', values: [this.config.name] },
      { var: 'muc#maxhistoryfetch', type: 'text-single', label: 'Maximum history', values: [String(this.config.historyLength)] },
    ]);
    return el('query', { xmlns: NS_DISCO_INFO },
      el('identity', { category: 'conference', type: 'text', name: this.config.name || this.jid.slice(0, this.jid.indexOf('@')) }),
      ...features.sort().map((f) => el('feature', { var: f })),
      form);
  }

  /**
   * §6.5: the occupants, to those who may know who is here: moderators, and
   * in a non-anonymous room its occupants (or anyone, if the room is open).
   * Everyone else gets an empty list. Occupants whose presence the room does
   * not broadcast are listed to moderators only.
   */
  private roomItems(q: Element, occ: Occupant | undefined): Element {
    if (q.attrs.node) throw new StanzaError('item-not-found', `no node '${q.attrs.node}'`);
    const moderator = occ?.role === 'moderator';
    const allowed = moderator || (this.config.whois === 'anyone' && (occ !== undefined || !this.config.membersOnly));
    const items: Element[] = [];
    if (allowed) {
      for (const o of this.byNick.values()) if (moderator || this.broadcasts(o.role)) items.push(el('item', { jid: this.occupantJid(o.nick) }));
    }
    return el('query', { xmlns: NS_DISCO_ITEMS }, ...items);
  }

  // ---------------------------------------------------------------- registration (§7.10)

  private registrationOf(bare: string): string | undefined {
    return this.affiliations.get(bare)?.nick;
  }

  /** A submitted registration form: see registration.ts for who becomes what. Refusals change nothing. */
  private async register(q: Element, bare: string, from: string): Promise<void> {
    const nick = parseRegistration(q, this.muc.maxNickLength);
    const affiliation = this.affiliationOf(bare);
    const outcome = registrationOutcome(affiliation, this.config.membersOnly);
    if (this.reservedForOther(nick, bare)) throw new StanzaError('conflict', `the nickname ${nick} is registered to someone else`);
    const present = this.byNick.get(nick);
    if (present && present.bare !== bare) throw new StanzaError('conflict', `the nickname ${nick} is in use`);
    if (outcome === 'request') {
      const request = registrationRequest(this.jid, bare, nick);
      for (const [jid, a] of this.affiliations) if (affiliationAtLeast(a.affiliation, 'admin')) this.route(jid, withTo(request, jid));
      return;
    }
    if (outcome === 'reserve') {
      this.setAffiliation(bare, affiliation, this.affiliations.get(bare)?.reason ?? '', nick);
      return;
    }
    this.applyAffiliation(bare, 'member', '', '', nick);
  }

  // ---------------------------------------------------------------- moderation (XEP-0425)

  /** A moderator retracts a kept message: every occupant is told, the archive keeps a tombstone in its place. */
  private async moderate(req: ModerationRequest, occ: Occupant | undefined): Promise<void> {
    if (occ?.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators may moderate messages');
    if (this.retracted.has(req.id)) return; // already done: nothing more to say
    const kept = await this.findKept(req.id);
    if (!kept || kept.nick === '') throw new StanzaError('item-not-found', `no message with stanza-id ${req.id} in this room`);
    if (this.retracted.has(req.id)) return;
    if (this.byNick.get(occ.nick) !== occ) throw new StanzaError('forbidden', 'only moderators may moderate messages, and you left the room');
    const m = { by: this.occupantJid(occ.nick), byOccupantId: this.occupantIdOf(occ.bare), reason: req.reason, stamp: Date.now() };
    const stone = tombstone(kept.xml, m);
    this.retracted.set(req.id, stone);
    const v = Buffer.from(stone);
    this.writes.batch((b) => b.hset('retracted', req.id, v));
    const i = this.history.findIndex((h) => h.id === req.id);
    if (i >= 0) this.history[i] = { ...this.history[i], xml: stone };
    // The announcement is kept too, so a client catching up through the archive learns of it.
    const id = nextArchiveId(this.lastId, m.stamp);
    this.lastId = id;
    let xml = moderationAnnouncement(this.jid, req.id, m);
    if (this.config.archive) xml = `${xml.slice(0, -'</message>'.length)}<stanza-id xmlns="${NS_SID}" id="${id}" by="${escapeAttr(this.jid)}"/></message>`;
    const g = this.grouping();
    this.fanout.toGroups(xml, g.groups, g.remote);
    this.keep({ id, stamp: m.stamp, nick: '', sender: this.jid, xml });
  }

  /** A kept message by its archive id: from the history in memory, else from the archive. */
  private async findKept(id: string): Promise<ArchivedMessage | undefined> {
    const recent = this.history.find((h) => h.id === id);
    if (recent) return recent;
    await this.writesDone();
    const ids = await this.loadArchiveIds();
    const i = ids.indexOf(id);
    if (i < 0) return undefined;
    const [raw] = await this.svc.store.lrange(this.jid, 'archive', i, i);
    return raw ? decodeArchived(raw) : undefined;
  }

  private async loadArchiveIds(): Promise<string[]> {
    if (!this.archiveIds) {
      const all = await this.svc.store.lrange(this.jid, 'archive', 0, -1);
      this.archiveIds = all.map((raw) => decodeArchived(raw).id);
    }
    return this.archiveIds;
  }

  // ---------------------------------------------------------------- admin (§8, §9)

  private adminGet(q: Element, bare: string, occ: Occupant | undefined): Element {
    const items = children(q, 'item');
    if (items.length !== 1) throw new StanzaError('bad-request', 'ask for one list: one <item/> with an affiliation or a role');
    const { affiliation, role } = items[0].attrs;
    if (isAffiliation(affiliation) && affiliation !== 'none') {
      if (!affiliationAtLeast(this.affiliationOf(bare), 'admin')) throw new StanzaError('forbidden', 'only admins and owners may see affiliation lists');
      const list: Element[] = [];
      for (const [jid, a] of this.affiliations) {
        if (a.affiliation === affiliation) list.push(el('item', { affiliation, jid, nick: a.nick }, a.reason ? el('reason', {}, a.reason) : undefined));
      }
      return el('query', { xmlns: NS_MUC_ADMIN }, ...list);
    }
    if (isRole(role) && role !== 'none') {
      if (occ?.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators may see role lists');
      const list: Element[] = [];
      for (const o of this.byNick.values()) {
        if (o.role === role) list.push(el('item', { role, nick: o.nick, affiliation: this.affiliationOf(o.bare), jid: o.jid }));
      }
      return el('query', { xmlns: NS_MUC_ADMIN }, ...list);
    }
    throw new StanzaError('bad-request', 'unknown affiliation or role');
  }

  /** Every item is checked before any is applied: a request with one bad item changes nothing. */
  private async adminSet(q: Element, bare: string, occ: Occupant | undefined): Promise<void> {
    const items = children(q, 'item');
    if (items.length === 0) throw new StanzaError('bad-request', 'nothing to change');
    const actor = { role: occ?.role ?? ('none' as Role), affiliation: this.affiliationOf(bare) };
    const plan: (() => void)[] = [];
    let owners = 0;
    for (const a of this.affiliations.values()) if (a.affiliation === 'owner') owners++;
    for (const item of items) {
      const reason = text(child(item, 'reason'));
      const { role, affiliation, nick } = item.attrs;
      if (affiliation !== undefined) {
        if (!isAffiliation(affiliation)) throw new StanzaError('bad-request', `unknown affiliation '${affiliation}'`);
        let target = '';
        if (item.attrs.jid !== undefined) {
          const j = tryParseJid(item.attrs.jid);
          if (!j) throw new StanzaError('jid-malformed', `'${item.attrs.jid}' is not a JID`);
          target = j.bare;
        } else if (nick !== undefined) {
          const o = this.byNick.get(nick);
          if (!o) throw new StanzaError('item-not-found', `nobody called ${nick} is in the room`);
          target = o.bare;
        } else {
          throw new StanzaError('bad-request', 'an affiliation change names a jid');
        }
        const current = this.affiliationOf(target);
        checkAffiliationChange(actor.affiliation, current, affiliation, owners);
        // A grant that names a nick with the jid registers it for the user (§9.3: approving a registration).
        const register = item.attrs.jid !== undefined && nick ? nick : undefined;
        if (register !== undefined) {
          if (!affiliationAtLeast(affiliation, 'member')) throw new StanzaError('bad-request', 'only members, admins and owners have registered nicknames');
          if (register.length > this.muc.maxNickLength) throw new StanzaError('not-acceptable', `nicknames are at most ${this.muc.maxNickLength} characters`);
          if (this.reservedForOther(register, target)) throw new StanzaError('conflict', `the nickname ${register} is registered to someone else`);
        }
        if (current === 'owner' && affiliation !== 'owner') owners--;
        if (current !== 'owner' && affiliation === 'owner') owners++;
        plan.push(() => this.applyAffiliation(target, affiliation, reason, occ?.nick ?? '', register));
      } else if (role !== undefined) {
        if (!isRole(role)) throw new StanzaError('bad-request', `unknown role '${role}'`);
        if (nick === undefined) throw new StanzaError('bad-request', 'a role change names a nick');
        const target = this.byNick.get(nick);
        if (!target) throw new StanzaError('item-not-found', `nobody called ${nick} is in the room`);
        checkRoleChange(actor, { role: target.role, affiliation: this.affiliationOf(target.bare) }, role);
        plan.push(() => this.applyRole(target, role, reason, occ?.nick ?? ''));
      } else {
        throw new StanzaError('bad-request', 'an item changes a role or an affiliation');
      }
    }
    for (const step of plan) step();
  }

  private applyRole(target: Occupant, role: Role, reason: string, actor: string): void {
    if (this.byNick.get(target.nick) !== target) return;
    if (role === 'none') return this.remove(target, [Status.Kicked], { reason, actor });
    if (role === target.role) return;
    target.role = role;
    this.saveOccupant(target);
    this.broadcastPresence(target);
  }

  private applyAffiliation(bare: string, affiliation: Affiliation, reason: string, actor: string, nick?: string): void {
    this.setAffiliation(bare, affiliation, reason, nick);
    for (const o of [...this.byNick.values()]) {
      if (o.bare !== bare) continue;
      const role = roleAfterAffiliation(o.role, affiliation, this.config.moderated, this.config.membersOnly);
      if (role === 'none') {
        this.remove(o, [affiliation === 'outcast' ? Status.Banned : Status.AffiliationChanged], { reason, actor, affiliation });
      } else {
        o.role = role;
        this.saveOccupant(o);
        this.broadcastPresence(o);
      }
    }
  }

  // ---------------------------------------------------------------- owner (§10)

  private ownerGet(bare: string): Element {
    if (this.affiliationOf(bare) !== 'owner') throw new StanzaError('forbidden', 'only owners may configure the room');
    return el('query', { xmlns: NS_MUC_OWNER }, configForm(this.config, this.muc));
  }

  private async ownerSet(q: Element, bare: string): Promise<void> {
    if (this.affiliationOf(bare) !== 'owner') throw new StanzaError('forbidden', 'only owners may configure the room');
    const destroy = child(q, 'destroy');
    if (destroy) {
      this.destroyRoom(text(child(destroy, 'reason')), destroy.attrs.jid ?? '');
      return;
    }
    const x = child(q, 'x', NS_DATA);
    if (!x) throw new StanzaError('bad-request', 'submit a configuration form or destroy the room');
    if (x.attrs.type === 'cancel') {
      // §10.1.3: cancelling the first configuration of a new room destroys it.
      if (this.locked) this.destroyRoom('', '');
      return;
    }
    const prev = this.config;
    const next = applyConfigForm(prev, x, this.muc);
    const wasLocked = this.locked;
    this.config = next;
    this.locked = false;
    this.saveConfig();
    const codes: number[] = [];
    if (!wasLocked) {
      if (JSON.stringify({ ...prev, whois: '', archive: false }) !== JSON.stringify({ ...next, whois: '', archive: false })) codes.push(Status.ConfigChanged);
      if (prev.archive !== next.archive) codes.push(next.archive ? Status.LoggingOn : Status.LoggingOff);
      if (prev.whois !== next.whois) codes.push(next.whois === 'anyone' ? Status.NowNonAnonymous : Status.NowSemiAnonymous);
    }
    if (codes.length) this.fanout.toGroups(statusMessage(this.jid, codes), this.grouping().groups, this.grouping().remote);
    if (next.membersOnly && !prev.membersOnly) {
      for (const o of [...this.byNick.values()]) {
        if (!affiliationAtLeast(this.affiliationOf(o.bare), 'member')) this.remove(o, [Status.MembersOnly], {});
      }
    }
    if (this.byNick.size === 0 && !next.persistent) this.destroyState();
  }

  /** §10.9: everyone leaves with a <destroy/>, then the room is gone. */
  private destroyRoom(reason: string, alternate: string): void {
    const extra = destroyXml(reason, alternate);
    for (const o of [...this.byNick.values()]) this.remove(o, [], { extra, affiliation: 'none' });
    if (this.exists) this.destroyState();
  }

  // ---------------------------------------------------------------- archive (XEP-0313)

  private checkArchiveAccess(bare: string, occ: Occupant | undefined): void {
    if (!this.config.archive) throw new StanzaError('service-unavailable', 'this room keeps no archive');
    const open = this.config.public && !this.config.membersOnly && !this.config.passwordProtected;
    if (!occ && !open && !affiliationAtLeast(this.affiliationOf(bare), 'member')) {
      throw new StanzaError('forbidden', 'only occupants and members may read this archive');
    }
  }

  private async archiveQuery(env: Envelope, via: Via | undefined, q: Element, bare: string, occ: Occupant | undefined): Promise<void> {
    try {
      this.checkExists(bare);
      this.checkArchiveAccess(bare, occ);
      const query = parseArchiveQuery(q, this.jid, this.muc.archiveMaxPage);
      await this.writesDone();
      const { lo, hi } = queryRange(await this.loadArchiveIds(), query);
      let matching: ArchivedMessage[];
      if (query.withNick === undefined) {
        // Only the page is read: its bounds follow from the range alone.
        const backwards = query.before !== undefined;
        const from = backwards ? Math.max(lo, hi - query.max) : lo;
        const to = backwards ? hi : Math.min(hi, lo + query.max);
        const rows = to > from ? await this.svc.store.lrange(this.jid, 'archive', from, to - 1) : [];
        const messages = rows.map((raw) => this.shown(decodeArchived(raw)));
        const p = { messages, firstIndex: from - lo, count: hi - lo, complete: backwards ? from === lo : to === hi };
        return this.sendArchivePage(env, via, query.queryId, p);
      }
      const rows = hi > lo ? await this.svc.store.lrange(this.jid, 'archive', lo, hi - 1) : [];
      matching = rows.map((raw) => this.shown(decodeArchived(raw))).filter((m) => m.nick === query.withNick);
      return this.sendArchivePage(env, via, query.queryId, page(matching, query));
    } catch (e) {
      this.bounce(env, via, e instanceof StanzaError ? e : new StanzaError('internal-server-error', 'the archive could not be read; try again later'));
      if (!(e instanceof StanzaError)) log.error('archive query failed', { room: this.jid, error: e });
    }
  }

  /** Results then the iq answer, in one batch so they arrive in that order. */
  private sendArchivePage(env: Envelope, via: Via | undefined, queryId: string, p: ReturnType<typeof page>): void {
    const out = p.messages.map((m) => resultMessage(this.jid, queryId, m));
    out.push(serialize(el('iq', { type: 'result', id: env.id || undefined, from: this.jid }, finElement(p))));
    this.reply(env, via, ...out);
  }
}

/** A presence's children as the room shows them: its own muc parts and any occupant-id the client made up go. */
function payloadOf(stanza: Element): string {
  let s = '';
  for (const c of stanza.children) {
    if (typeof c === 'string') continue;
    const ns = c.attrs.xmlns;
    if (ns === NS_MUC || ns === NS_MUC_USER || (c.name === 'occupant-id' && ns === 'urn:xmpp:occupant-id:0')) continue;
    s += serialize(c);
  }
  return s;
}

function goneError(stanza: Element): boolean {
  const err = child(stanza, 'error');
  const cond = err ? firstElement(err) : undefined;
  return cond !== undefined && GONE_CONDITIONS.has(cond.name);
}
