// The actor of one bare JID: it owns the account's sessions, roster and
// presence, applies the outbound rules to what the account's clients send and
// the inbound rules to what is sent to the account (RFC 6120 §10, RFC 6121).
// Everything for one account runs here, one envelope at a time, which is what
// keeps the subscription state machine free of races.
import { emptyMap, filledMap } from '../../libs/lazy/index.ts';
import { pack, unpack } from 'msgpackr';
import { Accounts } from '../../libs/accounts/index.ts';
import { envelope, type Envelope, type StanzaKind, type Track } from '../../libs/bus/envelope.ts';
import { errorReply, StanzaError } from '../../libs/errors/index.ts';
import { bareJid, domainPart, hasLocalpart, resourcePart } from '../../libs/jid/split.ts';
import { OP_MUC_HERE } from './muc/fanout.ts';
import { logger } from '../../libs/log/index.ts';
import { el, firstElement, type Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { Actor } from './actor.ts';
import { decodeItem, emptyItem, encodeItem, itemElement, NS_ROSTER, parseRosterSet, type RosterItem } from './im/roster.ts';
import { hasFrom, hasTo, inbound as inboundTransition, outbound as outboundTransition, type SubscriptionType } from './im/subscription.ts';
import type { AccountContext, AccountState, Contact, FilteredStanza, FilterVerdict, ServerContext, StanzaFilter, UnavailableEvent } from './module.ts';
import { MessageEvent, type Delivery, type DeliveryMark, type DetachReason, type MessageHooks } from './module.ts';
import type { SessionServices } from './services.ts';
import { DELIVERED_WAIT_MS, OP_DELIVERED, OP_DELIVERED_ASK, OP_DELIVERED_OVER, OP_ROUTED, SEEN, SeenMarks } from './tracked.ts';

const log = logger('user');

export interface SessionEntry {
  sid: string;
  node: string;
  priority: number;
  /** Sent initial presence and not since gone unavailable (RFC 6121 §4.2). */
  available: boolean;
  since: number;
  /** The last broadcast presence (answers probes), '' when unavailable. */
  presence: string;
  /** Full JIDs that got directed available presence (RFC 6121 §4.6). */
  directed: string[];
  /** Asked for the roster: an "interested resource" for pushes (RFC 6121 §2.1.6). */
  interested: boolean;
}

function encodeSession(s: SessionEntry): Uint8Array {
  return pack([s.sid, s.node, s.priority, s.available, s.since, s.presence, s.directed, s.interested]);
}

function decodeSession(b: Uint8Array): SessionEntry {
  const [sid, node, priority, available, since, presence, directed, interested] = unpack(b) as
    [string, string, number, boolean, number, string, string[], boolean];
  return { sid, node, priority, available, since, presence: presence ?? '', directed: directed ?? [], interested: interested ?? false };
}

const SUBSCRIPTION_TYPES = new Set(['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed']);

/** `next` after `first`, without a promise when `first` was synchronous. */
function andThen(first: void | Promise<void>, next: () => void | Promise<void>): void | Promise<void> {
  return first ? first.then(next) : next();
}
const NS_DELAY = 'urn:xmpp:delay';

/** The collections of an account's scope the core keeps; modules declare theirs. */
export const CORE_COLLECTIONS: readonly string[] = ['account', 'sessions', 'roster', 'offline'];

/** What a `remove-account` control envelope carries: where to answer. */
export interface RemoveAccountRequest {
  node: string;
}

interface ActiveFilter {
  filter: StanzaFilter<unknown>;
  state: unknown;
}

export interface BindRequest {
  node: string;
  resource: string;
  /**
   * Payloads of iq sets the new session asks for in the same request (XEP-0386 Bind2 inline features such as
   * <enable xmlns='urn:xmpp:carbons:2'/>), serialized: applied once bound, as if the session had sent each iq.
   */
  inline?: string[];
}

/** How each inline payload of a bind went: applied, or the stanza error it met. */
export type InlineOutcome = { ok: true } | { ok: false; condition: string; text?: string };

/** An iq a module sent (query()), awaiting its answer. */
interface PendingQuery {
  to: string;
  onReply: (reply: Element) => void | Promise<void>;
}

export class UserActor extends Actor implements AccountContext {
  private exists = false;
  readonly sessions = new Map<string, SessionEntry>();
  // The roster and the queries in flight hold the shared empty Map (libs/lazy) until their first entry: an account
  // without contacts or module queries pays no table for them; writes go through rosterForWrite() / queriesForWrite().
  private roster: ReadonlyMap<string, RosterItem> = emptyMap();
  /** What this account applied of other accounts' stream-managed sessions' messages, and the last write of a mark. */
  private readonly seen = new SeenMarks();
  private lastMark: Promise<unknown> = Promise.resolve();
  /** The tracked message being applied, and its mark until a delivery stores it. */
  private applying: { src: string; n: number; mark: DeliveryMark } | undefined;
  /** Tracked messages waiting for the connections to say what they delivered before this actor started (tracked.ts). */
  private stashed: Envelope[] | undefined;
  private deliveredAnswers = 0;
  private rosterVer = 0;
  private offlineCount = 0;
  private pushSeq = 0;
  /** Iqs the modules sent (query()) awaiting their answer, by id; bounded, oldest dropped. */
  private queries: ReadonlyMap<string, PendingQuery> = emptyMap();
  /** One value per module state definition (ModuleRegistry.states order). */
  private states: unknown[] = [];
  /** Filters with something to enforce; empty for an account without rules, so its stanzas skip filtering. */
  private filters: ActiveFilter[] = [];
  /** Some resource has rules of its own: bare-JID deliveries are checked per session. */
  private filterPerSession = false;
  private removeRequested = false;
  /** The slot of the session layer (stream management) while it is active for this account, else -1. */
  private layer = -1;
  /** While an inbound message is routed: the sessions it reached (for the message hooks). */
  private reached: SessionEntry[] | undefined;
  /** Routing again what an ended session left behind: no filters, no message hooks (they ran the first time). */
  private replaying = false;
  /** Background work under way (background()), and who waits for it to settle (idle()). */
  private pendingWork = 0;
  private workWaiters: (() => void)[] = [];

  constructor(readonly bare: string, shard: number, private readonly svc: SessionServices) {
    super(bare, shard, svc.config.session.maxMailbox);
  }

  private rosterForWrite(): Map<string, RosterItem> {
    const m = filledMap(this.roster);
    this.roster = m;
    return m;
  }

  private queriesForWrite(): Map<string, PendingQuery> {
    const m = filledMap(this.queries);
    this.queries = m;
    return m;
  }

  get hasSessions(): boolean {
    return this.sessions.size > 0;
  }

  /** Busy until background work has settled too (a shard handoff, a passivation and a shutdown ask this). */
  override get busy(): boolean {
    return super.busy || this.pendingWork > 0;
  }

  override async idle(): Promise<void> {
    for (;;) {
      // The base idle() resolves when the mailbox run ends, so ask it only while one is under way.
      if (super.busy) await super.idle();
      else if (this.pendingWork > 0) await new Promise<void>((r) => this.workWaiters.push(r));
      else return;
    }
  }

  protected async load(): Promise<void> {
    const [data, offline] = await Promise.all([
      this.svc.store.load(this.bare, ['account', 'sessions', 'roster', SEEN, ...this.svc.modules.loadCollections]),
      this.svc.store.llen(this.bare, 'offline'),
    ]);
    log.debug('actor started', { account: this.bare, shard: this.shard, token: this.svc.tokenOf?.(this.shard) ?? 0 });
    // A sending session can send a message again as long as it can be resumed; older marks are dropped.
    const sm = this.svc.config.streamManagement;
    const stale = this.seen.load(data.get(SEEN), (Math.max(sm.maxResumeTimeoutSeconds, sm.resumeTimeoutSeconds) + 600) * 1000, Date.now());
    if (stale.length) {
      const b = this.svc.store.batch(this.bare);
      for (const src of stale) b.hdel(SEEN, src);
      this.background(b.exec(), 'dropping old delivery marks');
    }
    const account = data.get('account');
    this.exists = account?.has('creds') === true;
    const ver = account?.get('rosterver');
    this.rosterVer = ver ? (unpack(ver) as number) : 0;
    this.offlineCount = offline;
    for (const [jid, raw] of data.get('roster') ?? []) this.rosterForWrite().set(jid, decodeItem(raw));
    const gone: [string, SessionEntry][] = [];
    const sids = new Map<string, string>();
    for (const [resource, raw] of data.get('sessions') ?? []) {
      const s = decodeSession(raw);
      sids.set(resource, s.sid);
      if (this.svc.c2sAlive(s.node)) this.sessions.set(resource, s);
      else gone.push([resource, s]);
    }
    this.states = this.svc.modules.states.map((def) => def.load(data, { account: this.bare, config: this.svc.config, sessions: sids }));
    this.rulesChanged();
    // Sessions of a connection manager that died while nobody served this account (the session layer may keep them for resumption).
    for (const [resource, s] of gone) {
      this.sessions.set(resource, s);
      if (!this.layerDetached(resource, s.sid, 'lost')) await this.endSession(resource, s);
    }
    await this.activatedHooks();
    this.askDelivered();
  }

  /**
   * Connections that outlived the previous owner (a failover, a handoff) may hold tracked messages it delivered
   * but could not store: ask each what it has, and hold tracked messages until they answered (tracked.ts).
   */
  private askDelivered(): void {
    if (this.sessions.size === 0) return;
    this.stashed = [];
    this.deliveredAnswers = this.sessions.size;
    for (const s of this.sessions.values()) this.svc.router.control(s.node, s.sid, OP_DELIVERED_ASK);
    this.later(DELIVERED_WAIT_MS, OP_DELIVERED_OVER);
  }

  /** A connection's answer (or the wait is over): raise the marks, then apply what waited, in order. */
  private async delivered(marks: ReadonlyArray<[string, number]> | undefined): Promise<void> {
    if (this.stashed === undefined) return;
    const now = Date.now();
    const b = this.svc.store.batch(this.bare);
    let raised = 0;
    for (const [src, n] of marks ?? []) {
      const value = this.seen.raise(src, n, now);
      if (value === undefined) continue;
      b.hset(SEEN, src, value);
      raised++;
    }
    if (raised > 0) {
      log.info('a connection had messages its account\'s previous owner delivered but did not store; not applying them again', { account: this.bare, senders: raised });
      this.lastMark = b.exec();
      this.background(this.lastMark, 'storing delivery marks a connection reported');
    }
    if (marks !== undefined && --this.deliveredAnswers > 0) return;
    const waiting = this.stashed;
    this.stashed = undefined;
    for (const env of waiting) {
      const r = this.trackedInbound(env);
      if (r) await r;
    }
  }

  protected handle(env: Envelope): void | Promise<void> {
    if (env.kind === 'ctl') return this.control(env);
    if (env.dir === 'out') return this.outbound(env);
    if (env.track !== undefined && env.track[0] !== '') return this.trackedInbound(env);
    return this.inbound(env);
  }

  /**
   * A message from another account's stream-managed session (services/session/tracked.ts): applied once, in that
   * session's order, and confirmed to the sender's actor once what it wrote here is stored.
   */
  private trackedInbound(env: Envelope): void | Promise<void> {
    if (this.stashed !== undefined) return void this.stashed.push(env);
    const track = env.track!;
    const verdict = this.seen.verdict(track);
    if (verdict === 'gap') return; // an earlier one is missing: the sender sends both again, in order
    if (verdict === 'again') return this.confirmTracked(env, this.lastMark);
    const [src, n] = track;
    const mark: DeliveryMark = { coll: SEEN, field: src, value: this.seen.applied(src, n, Date.now()) };
    this.applying = { src, n, mark };
    // The write that delivers it (a managed session's queue, offline storage) takes the mark into its batch;
    // otherwise (delivered to a session without stream management, bounced, dropped) it is stored alone after.
    let r: void | Promise<void>;
    try {
      r = this.inbound(env);
    } catch (e) {
      this.applying = undefined;
      throw e;
    }
    if (r) return r.then(() => this.trackedApplied(env, mark), (e: unknown) => { this.applying = undefined; throw e; });
    this.trackedApplied(env, mark);
  }

  /** A tracked message was applied: its mark is stored (with the delivering write, or alone), then its sender hears. */
  private trackedApplied(env: Envelope, mark: DeliveryMark): void {
    this.applying = undefined;
    // No such account: it was bounced, and there is nothing to keep a mark in.
    this.lastMark = mark.stored ?? (this.exists ? this.svc.store.hset(this.bare, SEEN, mark.field, mark.value) : Promise.resolve());
    this.confirmTracked(env, this.lastMark);
  }

  deliveryMark(track: Track | undefined): DeliveryMark | undefined {
    const a = this.applying;
    if (!a || !track || track[0] !== a.src || track[1] !== a.n || a.mark.stored) return undefined;
    return a.mark;
  }

  /** Once `written` (the mark, behind every write of the application on the same connection) is stored, tell the sender. */
  private confirmTracked(env: Envelope, written: Promise<unknown>): void {
    const { store } = this.svc;
    // Without replicas one step: a chat message's confirmation is on every managed message's path.
    this.background(store.replicated === undefined ? written.then((stored) => this.tellSender(env, stored))
      : written.then((stored) => stored !== false && store.replicated!(this.bare)).then((safe) => this.tellSender(env, safe)),
    'confirming a delivered message to its sender');
  }

  /**
   * Not stored (held in memory only), or in doubt (the primary failed under the write): no confirmation, so its
   * sender keeps it; a process that dies with it in memory loses nothing its client was told was safe. Nor from an
   * owner that lost the account meanwhile: its write may have landed before the new owner's fence.
   */
  private tellSender(env: Envelope, safe: unknown): void {
    if (safe === false || !this.acting) return;
    const [src, n] = env.track!;
    const sender = bareJid(env.from);
    this.svc.router.toActor(sender, envelope({ kind: 'ctl', dir: 'in', op: OP_ROUTED, to: sender, data: { src, n } }));
  }

  protected refuse(env: Envelope, reason: 'overflow' | 'unavailable' | 'failed'): void {
    const error = reason === 'overflow' ? new StanzaError('resource-constraint', 'too many stanzas queued for this account')
      : reason === 'unavailable' ? new StanzaError('internal-server-error', 'the account is temporarily unavailable')
        : new StanzaError('internal-server-error', 'the server could not complete this (a storage error); try again later');
    if (env.kind === 'ctl') {
      switch (env.op) {
        case 'bind': {
          const { node } = env.data as BindRequest;
          const busy = reason === 'overflow';
          this.svc.router.control(node, env.sid, 'bind-failed', { condition: busy ? 'resource-constraint' : 'internal-server-error',
            text: busy ? 'the account is busy; try again' : error.text });
          return;
        }
        case 'sm-resume': {
          const { node } = env.data as { node: string };
          this.svc.router.control(node, env.sid, 'sm-resume-failed', { condition: error.condition, text: error.text });
          return;
        }
        case 'undeliverable': {
          // A stanza handed back from a session that was gone: it had not reached anyone, its sender hears so.
          const { kind, kept } = env.data as { kind: StanzaKind; kept?: boolean };
          if (!kept && (kind === 'message' || (kind === 'iq' && (env.type === 'get' || env.type === 'set')))) this.background(this.bounce({ ...env, kind, dir: 'in', op: '', data: undefined }, error), 'bouncing a stanza');
          return;
        }
        default:
          return;
      }
    }
    this.background(this.bounce(env, error), 'bouncing a stanza');
  }

  // ================================================================ control

  private control(env: Envelope): void | Promise<void> {
    switch (env.op) {
      case 'bind': return this.bind(env.sid, env.data as BindRequest);
      case 'unbind': return this.unbind(env.sid, String((env.data as { resource: string }).resource), (env.data as { closed?: boolean }).closed === true);
      case 'undeliverable': return this.undeliverable(env);
      case 'remove-account': return this.removeOnRequest(env);
      case OP_DELIVERED: {
        // The session layer numbers on after what the connection wrote (sm/index.ts), before what waited is applied.
        const r = this.moduleControl(env);
        const marks = (env.data as { marks?: Array<[string, number]> }).marks ?? [];
        return r ? r.then(() => this.delivered(marks)) : this.delivered(marks);
      }
      case OP_DELIVERED_OVER: return this.delivered(undefined);
      default: return this.moduleControl(env);
    }
  }

  private moduleControl(env: Envelope): void | Promise<void> {
    const handler = this.svc.modules.controlHandler(env.op);
    if (!handler) return log.warn('unknown control op', { op: env.op });
    return handler({ op: env.op, sid: env.sid, data: env.data, xml: env.xml, track: env.track, account: this });
  }

  /**
   * An account created after this actor loaded may have been created with data (`parley import`): read its
   * roster and offline count as a fresh activation would.
   */
  private async reloadCreated(): Promise<void> {
    const [data, offline] = await Promise.all([this.svc.store.load(this.bare, ['account', 'roster']), this.svc.store.llen(this.bare, 'offline')]);
    const ver = data.get('account')?.get('rosterver');
    this.rosterVer = ver ? (unpack(ver) as number) : 0;
    this.roster = emptyMap();
    for (const [jid, raw] of data.get('roster') ?? []) this.rosterForWrite().set(jid, decodeItem(raw));
    this.offlineCount = offline;
  }

  private async bind(sid: string, req: BindRequest): Promise<void> {
    if (!this.exists) {
      // The account may have been created after this actor loaded.
      this.exists = (await this.svc.store.hget(this.bare, 'account', 'creds')) !== undefined;
      if (!this.exists) return this.svc.router.control(req.node, sid, 'bind-failed', { condition: 'not-authorized', text: 'no such account' });
      await this.reloadCreated();
    }
    let resource = req.resource || this.svc.newResource();
    const existing = this.sessions.get(resource);
    if (existing && existing.sid !== sid) {
      switch (this.svc.config.c2s.resourceConflict) {
        case 'reject':
          return this.svc.router.control(req.node, sid, 'bind-failed', { condition: 'conflict', text: `resource '${resource}' is in use` });
        case 'rename':
          resource = `${resource}.${this.svc.newResource().slice(0, 6)}`;
          break;
        case 'override':
          this.svc.router.control(existing.node, existing.sid, 'kick', { condition: 'conflict', text: 'replaced by a new connection with the same resource' });
          await this.endSession(resource, existing);
          break;
      }
    }
    const entry: SessionEntry = { sid, node: req.node, priority: 0, available: false, since: Date.now(), presence: '', directed: [], interested: false };
    this.sessions.set(resource, entry);
    try {
      await Promise.all([
        this.saveSession(resource, entry),
        this.svc.store.hset(`$node:${req.node}`, 'sessions', `${this.bare}/${resource}`, pack(sid)),
      ]);
    } catch (e) {
      // Not bound (the c2s hears bind-failed): no session is left behind that stanzas would be routed to.
      if (this.sessions.get(resource) === entry) this.sessions.delete(resource);
      throw e;
    }
    const inline: InlineOutcome[] = [];
    for (const xml of req.inline ?? []) inline.push(await this.applyInline(`${this.bare}/${resource}`, xml));
    this.svc.router.control(req.node, sid, 'bound', { resource, inline });
  }

  /** One inline payload of a bind, handled by the module that answers the iq set it stands for. */
  private async applyInline(from: string, xml: string): Promise<InlineOutcome> {
    try {
      const payload = parseFragment(xml);
      const handler = this.svc.modules.iqHandler('set', 'account', payload);
      if (!handler) throw new StanzaError('service-unavailable', `${payload.attrs.xmlns ?? ''} ${payload.name} is not supported here`);
      const stanza = el('iq', { type: 'set', id: 'inline', from, to: this.bare }, payload);
      await handler({ stanza, payload, from, to: this.bare, account: this }, this.svc.context);
      return { ok: true };
    } catch (e) {
      if (!(e instanceof StanzaError)) log.error('an inline bind request failed', { account: this.bare, error: e });
      return e instanceof StanzaError ? { ok: false, condition: e.condition, text: e.text } : { ok: false, condition: 'internal-server-error' };
    }
  }

  private async unbind(sid: string, resource: string, closed = false): Promise<void> {
    const s = this.sessions.get(resource);
    if (s && s.sid === sid && !this.layerDetached(resource, sid, closed ? 'closed' : 'lost')) await this.endSession(resource, s);
  }

  /** A session is over (closed, replaced, its node dead): tell whoever saw it available. */
  private async endSession(resource: string, s: SessionEntry): Promise<void> {
    this.sessions.delete(resource);
    let gone: Promise<void> | undefined;
    if (s.available) {
      const xml = serialize(el('presence', { type: 'unavailable', from: `${this.bare}/${resource}` }));
      this.broadcastUnavailable(resource, s, xml);
      gone = this.unavailableHooks({ resource, presence: xml, last: !this.available() });
    }
    await Promise.all([
      this.svc.store.hdel(this.bare, 'sessions', resource),
      this.svc.store.hdel(`$node:${s.node}`, 'sessions', `${this.bare}/${resource}`),
      gone,
      this.endedHooks(resource),
    ]);
  }

  /** A c2s found the target session gone: forget it and route the stanza again. */
  private async undeliverable(env: Envelope): Promise<void> {
    const resource = resourcePart(env.to);
    const s = this.sessions.get(resource);
    const { kind, kept } = env.data as { kind: StanzaKind; kept?: boolean };
    if (s && s.sid === env.sid) {
      // A session layer that keeps the session keeps the stanza too.
      if (this.layerDetached(resource, s.sid, 'undeliverable', { kind, from: env.from, to: env.to, type: env.type, xml: env.xml, t: env.t })) return;
      await this.endSession(resource, s);
    }
    // The session layer still holds what it transmitted (resent on resumption, routed when the session ends): once is enough.
    if (kept) return;
    // What the server itself sent one session (a presence copy, a roster push) has no one to go back to.
    if (env.from === '' && kind !== 'message') return;
    return this.inbound({ ...env, kind, dir: 'in', op: '', data: undefined });
  }

  private saveSession(resource: string, s: SessionEntry): Promise<void> {
    return this.svc.store.hset(this.bare, 'sessions', resource, encodeSession(s));
  }

  // ================================================================ outbound

  /** What one of this account's clients sent. */
  private outbound(env: Envelope): void | Promise<void> {
    if (this.layer >= 0 && !this.layerSent(env)) return;
    const to = env.to;
    if (this.filters.length !== 0 && to !== '' && bareJid(to) !== this.bare) {
      const v = this.verdict('out', env.kind as StanzaKind, env.type, to, resourcePart(env.from));
      if (v !== 'pass') return v === 'drop' ? undefined : this.bounce(env, v);
    }
    if (env.kind === 'presence') {
      if (to === '') return this.ownPresence(env);
      if (SUBSCRIPTION_TYPES.has(env.type)) return this.outboundSubscription(env, env.type as SubscriptionType);
      if (env.type === '' || env.type === 'unavailable') return this.directedPresence(env);
      return this.route(env);
    }
    if (to === '' || to === this.bare) {
      if (env.kind === 'iq') return this.serverIq(env, 'account', this.bare);
      // RFC 6120 §10.3.1: a message without 'to' is for the sender's own bare JID.
      return this.inbound({ ...env, to: this.bare, dir: 'in' });
    }
    if (env.kind === 'message' && this.svc.modules.messageSlots.length !== 0) return this.outboundMessage(env);
    return this.route(env);
  }

  /** Broadcast presence from one of our resources (RFC 6121 §4.2, §4.4, §4.5). */
  private async ownPresence(env: Envelope): Promise<void> {
    const resource = resourcePart(env.from);
    const s = this.sessions.get(resource);
    if (!s || s.sid !== env.sid) return;
    const xml = typeof env.xml === 'string' ? env.xml : Buffer.from(env.xml).toString();
    if (env.type === 'unavailable') {
      if (!s.available) return;
      s.available = false;
      s.presence = '';
      this.broadcastUnavailable(resource, s, xml);
      s.directed = [];
      await Promise.all([this.saveSession(resource, s), this.unavailableHooks({ resource, presence: xml, last: !this.available() })]);
      return;
    }
    if (env.type !== '') return; // probes, errors and subscription types without 'to' have no meaning here
    const initial = !s.available;
    s.available = true;
    s.priority = Number((env.data as { priority?: number } | undefined)?.priority ?? 0);
    s.presence = xml;
    const saved = this.saveSession(resource, s);
    const subscribers = this.presenceTargets(this.contacts((i) => hasFrom(i.subscription)), resource, '');
    if (subscribers.length) this.svc.router.fanout(subscribers, envelope({ kind: 'presence', dir: 'in', from: env.from, type: '', xml }));
    // RFC 6121 §4.2.2, §4.4.2: every available resource, the sender's own included, sees the new presence.
    for (const other of this.sessions.values()) if (other.available) this.deliverTo(other, 'presence', env.from, xml);
    const hooks = this.availableHooks(resource, initial, xml);
    if (initial) {
      // Learn the contacts' presence: probes, answered straight to this session
      // (not to contacts whose presence the rules would refuse anyway).
      let watched = this.contacts((i) => hasTo(i.subscription));
      if (this.filters.length !== 0) watched = watched.filter((w) => this.verdict('in', 'presence', '', w, resource) === 'pass' && this.verdict('out', 'presence', 'probe', w, resource) === 'pass');
      if (watched.length) this.svc.router.fanout(watched, envelope({ kind: 'presence', dir: 'in', from: env.from, type: 'probe', data: { node: s.node, sid: s.sid } }));
      for (const [r, other] of this.sessions) if (r !== resource && other.available) this.deliverTo(s, 'presence', `${this.bare}/${r}`, other.presence);
      for (const item of this.roster.values()) if (item.pendingIn && item.pendingXml) this.deliverTo(s, 'presence', '', item.pendingXml);
      if (s.priority >= 0 && this.offlineCount > 0) await this.flushOffline(s);
    }
    await Promise.all([saved, hooks]);
  }

  /** Unavailable to everyone who could see this resource. */
  private broadcastUnavailable(resource: string, s: SessionEntry, xml: string): void {
    const from = `${this.bare}/${resource}`;
    const subscribers = this.presenceTargets(this.contacts((i) => hasFrom(i.subscription)), resource, 'unavailable');
    if (subscribers.length) this.svc.router.fanout(subscribers, envelope({ kind: 'presence', dir: 'in', from, type: 'unavailable', xml }));
    for (const to of this.presenceTargets(s.directed, resource, 'unavailable')) this.routeStanza('presence', from, to, 'unavailable', xml);
    for (const other of this.sessions.values()) if (other !== s && other.available) this.deliverTo(other, 'presence', from, xml);
  }

  /** Presence with a 'to': routed, and remembered so unavailable follows it (RFC 6121 §4.6). */
  private async directedPresence(env: Envelope): Promise<void> {
    const resource = resourcePart(env.from);
    const s = this.sessions.get(resource);
    const target = env.to;
    const item = this.roster.get(bareJid(target));
    if (s && !(item && hasFrom(item.subscription) && s.available)) {
      const i = s.directed.indexOf(target);
      const changed = env.type === '' ? (i < 0 && s.directed.push(target) > 0) : (i >= 0 && s.directed.splice(i, 1).length > 0);
      if (changed) await this.saveSession(resource, s);
    }
    return this.route(env);
  }

  /** The user answers or asks for a subscription (RFC 6121 §3, Appendix A.2). */
  private async outboundSubscription(env: Envelope, type: SubscriptionType): Promise<void> {
    const contact = bareJid(env.to);
    if (contact === this.bare) return;
    const before = this.roster.get(contact) ?? emptyItem();
    if (type === 'subscribe' && !before.inRoster && this.rosterSize() >= this.svc.config.roster.maxItems) {
      return this.bounce(env, new StanzaError('not-allowed', `the roster is full (${this.svc.config.roster.maxItems} contacts)`));
    }
    const state = outboundTransition(before, type);
    const after: RosterItem = { ...before, ...state, pendingXml: state.pendingIn ? before.pendingXml : '' };
    // Asking, or granting a request, puts the contact in the roster (§3.1.2, §3.1.5).
    if (type === 'subscribe' || (type === 'subscribed' && state !== before)) after.inRoster = true;
    const changed = state !== before || after.inRoster !== before.inRoster;
    if (changed) await this.saveItem(contact, after, before.inRoster || after.inRoster);
    const onlyPreapproved = type === 'subscribed' && !before.pendingIn;
    if (onlyPreapproved) return;
    this.routeSubscription(type, contact, env.xml);
    if (type === 'subscribed' && changed) this.sendPresenceTo(contact);
    if (type === 'unsubscribed' && hasFrom(before.subscription)) this.sendUnavailableTo(contact);
  }

  /** Subscription stanzas travel between bare JIDs (RFC 6121 §3.1.2). */
  private routeSubscription(type: SubscriptionType, contact: string, original: string | Uint8Array): void {
    const stanza = parseFragment(original);
    stanza.attrs.from = this.bare;
    stanza.attrs.to = contact;
    stanza.attrs.type = type;
    delete stanza.attrs.id;
    this.routeStanza('presence', this.bare, contact, type, serialize(stanza));
  }

  /** Our current presence, from each available resource the rules let through, to one contact (§3.1.5). */
  private sendPresenceTo(contact: string): void {
    for (const r of this.sessions.keys()) {
      if (this.filters.length === 0 || this.verdict('out', 'presence', '', contact, r) === 'pass') this.sendPresence(contact, r);
    }
  }

  private sendUnavailableTo(contact: string): void {
    this.sendUnavailable(contact);
  }

  /** The entities of a presence broadcast from one resource that the rules let it reach. */
  private presenceTargets(targets: string[], resource: string, type: '' | 'unavailable'): string[] {
    if (this.filters.length === 0 || targets.length === 0) return targets;
    return targets.filter((t) => this.verdict('out', 'presence', type, t, resource) === 'pass');
  }

  /**
   * Send a stanza on to its addressee, wherever it lives. `fromServer`: an
   * answer or bounce this actor generated, which the account's own filters let through.
   */
  private route(env: Envelope, fromServer = false): void | Promise<void> {
    const toBare = bareJid(env.to);
    if (toBare === this.bare) return this.inbound({ ...env, dir: 'in' }, fromServer);
    const domain = domainPart(toBare);
    if (this.svc.services.has(domain)) {
      // A service domain (a room, the MUC service…): an actor on the shards like ours; told where the sending session is, it may answer it directly.
      const s = bareJid(env.from) === this.bare ? this.sessions.get(resourcePart(env.from)) : undefined;
      this.svc.router.toActor(toBare, { ...env, dir: 'in', origin: '', seq: 0, data: s ? { node: s.node, sid: s.sid } : undefined });
      return;
    }
    if (!this.svc.hosts.has(domain)) {
      // Another server's user: federation takes it, or the sender learns there is no route.
      if (this.svc.router.toRemote(domain, { ...env, dir: 'out', origin: '', seq: 0 })) return;
      return this.bounce(env, this.svc.router.noRoute(domain));
    }
    if (!hasLocalpart(toBare)) {
      if (env.kind === 'iq') return this.serverIq(env, 'host', domain);
      return; // messages and presence to a served domain itself have no recipient here
    }
    // A client's own number (['', n, 0]) may ride along: recipients only act on a track that names its session.
    const out: Envelope = { ...env, dir: 'in', origin: '', seq: 0 };
    // A message from one of our stream-managed sessions: kept until the recipient's actor confirms it.
    if (env.track !== undefined && this.layer >= 0 && env.kind === 'message' && env.type !== 'error' && bareJid(env.from) === this.bare) {
      const i = this.layer;
      this.svc.modules.states[i].layer!.routed?.(this.states[i], this, resourcePart(env.from), env.sid, env.track[1], out, toBare);
    }
    this.svc.router.toActor(toBare, out);
  }

  private routeStanza(kind: StanzaKind, from: string, to: string, type: string, xml: string): void {
    // To this account itself it may be handled here and now (offline storage): a failure there is logged, never unhandled.
    this.background(this.route(envelope({ kind, dir: 'in', from, to, type, xml })), 'routing a stanza from the server');
  }

  // ================================================================ inbound

  /** What is addressed to this account. */
  private inbound(env: Envelope, fromServer = false): void | Promise<void> {
    if (!this.exists) return this.noSuchAccount(env);
    if (this.filters.length !== 0 && !fromServer && env.from !== '' && bareJid(env.from) !== this.bare) {
      const v = this.verdict('in', env.kind as StanzaKind, env.type, env.from, resourcePart(env.to));
      if (v !== 'pass') return v === 'drop' ? undefined : this.bounce(env, v);
    }
    if (env.kind === 'presence') return this.inboundPresence(env);
    if (env.kind === 'message' && this.reached === undefined && !this.replaying && this.svc.modules.messageSlots.length !== 0) return this.inboundMessage(env, fromServer);
    const resource = resourcePart(env.to);
    if (resource !== '') {
      const s = this.sessions.get(resource);
      if (s) return this.deliverEnv(s, env);
      return this.fullJidUnavailable(env);
    }
    if (env.kind === 'message') return this.bareMessage(env);
    return this.serverIq(env, 'account', this.bare);
  }

  private inboundPresence(env: Envelope): void | Promise<void> {
    if (SUBSCRIPTION_TYPES.has(env.type)) return this.inboundSubscription(env, env.type as SubscriptionType);
    if (env.type === 'probe') return this.answerProbe(env);
    const hooks = this.contactPresenceHooks(env);
    const resource = resourcePart(env.to);
    if (resource !== '') {
      const s = this.sessions.get(resource);
      if (s) this.deliverEnv(s, env);
      return hooks;
    }
    if (env.type === 'error') return;
    for (const s of this.sessions.values()) if (s.available && this.deliverable(s, env)) this.deliverEnv(s, env);
    return hooks;
  }

  /** A contact asks what we are up to (RFC 6121 §4.3.2): only subscribers learn it. */
  private answerProbe(env: Envelope): void {
    const item = this.roster.get(bareJid(env.from));
    if (!item || !hasFrom(item.subscription)) return;
    const target = env.data as { node?: string; sid?: string } | undefined;
    let any = false;
    for (const [r, s] of this.sessions) {
      if (!s.available || !s.presence) continue;
      any = true;
      if (this.filters.length !== 0 && this.verdict('out', 'presence', '', env.from, r) !== 'pass') continue;
      if (target?.node && target.sid) this.svc.router.deliver(target.node, target.sid, 'presence', `${this.bare}/${r}`, env.from, '', s.presence);
      else this.routeStanza('presence', `${this.bare}/${r}`, env.from, '', s.presence);
    }
    if (!any) {
      const xml = serialize(el('presence', { from: this.bare, type: 'unavailable' }));
      if (target?.node && target.sid) this.svc.router.deliver(target.node, target.sid, 'presence', this.bare, env.from, 'unavailable', xml);
    }
  }

  /** The contact side of a subscription (RFC 6121 §3, Appendix A.3). */
  private async inboundSubscription(env: Envelope, type: SubscriptionType): Promise<void> {
    const user = bareJid(env.from);
    if (user === this.bare) return;
    const before = this.roster.get(user) ?? emptyItem();
    if (type === 'subscribe') {
      if (hasFrom(before.subscription)) return this.reply('subscribed', user); // already granted: say so again (§3.1.3)
      if (!before.pendingIn && !before.approved && this.pendingRequests() >= this.svc.config.roster.maxPendingRequests) {
        return this.bounce(env, new StanzaError('resource-constraint', 'too many unanswered subscription requests'));
      }
    }
    const state = inboundTransition(before, type);
    if (state === before) return;
    const xml = typeof env.xml === 'string' ? env.xml : Buffer.from(env.xml).toString();
    const after: RosterItem = { ...before, ...state, pendingXml: state.pendingIn ? (type === 'subscribe' ? xml : before.pendingXml) : '' };
    const granted = type === 'subscribe' && hasFrom(state.subscription); // pre-approved
    if (granted) after.inRoster = true;
    await this.saveItem(user, after, before.inRoster || after.inRoster);
    if (granted) {
      this.reply('subscribed', user);
      this.sendPresenceTo(user);
      return;
    }
    // The user's clients see the request, the grant or the cancelation.
    for (const s of this.sessions.values()) if (s.available) this.deliverTo(s, 'presence', user, xml);
    if (type === 'unsubscribe' && hasFrom(before.subscription)) this.sendUnavailableTo(user);
  }

  private reply(type: SubscriptionType, to: string): void {
    this.routeStanza('presence', this.bare, to, type, serialize(el('presence', { from: this.bare, to, type })));
  }

  /** RFC 6121 §8.5.3.2: the full JID has no session. */
  private fullJidUnavailable(env: Envelope): void | Promise<void> {
    switch (env.kind) {
      case 'message':
        if (env.type === 'groupchat') return this.bounce(env, new StanzaError('service-unavailable'));
        if (env.type === 'headline' || env.type === 'error') return;
        return this.bareMessage(env);
      case 'iq':
        if (env.type === 'get' || env.type === 'set') return this.bounce(env, new StanzaError('service-unavailable'));
        return;
      default:
        return;
    }
  }

  /** RFC 6121 §8.5.2: a message to the bare JID. */
  private bareMessage(env: Envelope): void | Promise<void> {
    if (env.type === 'error') return;
    let best = -129;
    for (const s of this.sessions.values()) if (s.available && s.priority >= 0 && s.priority > best) best = s.priority;
    if (best < 0) {
      if (env.type === 'headline') return;
      if (env.type === 'groupchat') return this.bounce(env, new StanzaError('service-unavailable'));
      return this.storeOffline(env);
    }
    if (env.type === 'headline') {
      for (const s of this.sessions.values()) if (s.available && s.priority >= 0 && this.deliverable(s, env)) this.deliverEnv(s, env);
      return;
    }
    const all = this.svc.config.routing.bareMessageTies === 'all';
    let newest: SessionEntry | undefined;
    let delivered = false;
    let refused: FilterVerdict = 'pass';
    for (const s of this.sessions.values()) {
      if (!s.available || s.priority !== best) continue;
      if (this.filterPerSession) {
        const v = this.sessionVerdict(s, env);
        if (v !== 'pass') {
          refused = v;
          continue;
        }
      }
      delivered = true;
      if (all) this.deliverEnv(s, env);
      else if (!newest || s.since > newest.since) newest = s;
    }
    if (newest) this.deliverEnv(newest, env);
    // Every session the message was for refuses it: the sender hears so, as from one session.
    if (!delivered && refused !== 'pass' && refused !== 'drop') return this.bounce(env, refused);
  }

  /** XEP-0160: keep a chat/normal message until the account comes online. */
  private async storeOffline(env: Envelope): Promise<void> {
    const { enabled, quota } = this.svc.config.offline;
    if (!enabled || this.offlineCount >= quota) {
      return this.bounce(env, new StanzaError('service-unavailable', enabled ? 'the recipient is offline and their message store is full' : 'the recipient is not online'));
    }
    const stanza = parseFragment(env.xml);
    // Stored again (handed back from a session that was gone): keep the first stamp. The stamp is when the message
    // reached the server (`t`), not when a session that did not acknowledge it ended.
    if (!stanza.children.some((c) => typeof c !== 'string' && c.name === 'delay' && c.attrs.xmlns === NS_DELAY && c.attrs.from === domainPart(this.bare))) {
      stanza.children.push(el('delay', { xmlns: NS_DELAY, from: domainPart(this.bare), stamp: new Date(env.t > 0 ? env.t : Date.now()).toISOString() }, 'Offline Storage'));
    }
    this.offlineCount++;
    this.svc.counters?.offline('stored', 1);
    const mark = this.deliveryMark(env.track);
    if (!mark) {
      await this.svc.store.rpush(this.bare, 'offline', Buffer.from(serialize(stanza)));
      return;
    }
    // A tracked message and its delivery mark land together.
    mark.stored = this.svc.store.batch(this.bare).rpush('offline', Buffer.from(serialize(stanza))).hset(mark.coll, mark.field, mark.value).exec();
    await mark.stored;
  }

  /** Deliver what was stored while we were away, then forget it (it is now with the client's c2s). */
  private async flushOffline(s: SessionEntry): Promise<void> {
    const stored = await this.svc.store.lrange(this.bare, 'offline', 0, -1);
    for (const raw of stored) this.deliverTo(s, 'message', '', raw);
    await this.svc.store.ltrim(this.bare, 'offline', stored.length, -1);
    this.offlineCount = Math.max(0, this.offlineCount - stored.length);
    this.svc.counters?.offline('delivered', stored.length);
  }

  /** RFC 6121 §8.5.1 and §3.1.3: there is no such account. */
  private noSuchAccount(env: Envelope): void | Promise<void> {
    if (env.kind === 'presence') {
      if (env.type === 'subscribe' || env.type === 'probe') this.reply('unsubscribed', bareJid(env.from));
      return;
    }
    if (env.kind === 'message' && (env.type === 'error' || env.type === 'groupchat' || env.type === 'headline')) return;
    if (env.kind === 'iq' && env.type !== 'get' && env.type !== 'set') return;
    return this.bounce(env, new StanzaError('service-unavailable'));
  }

  private deliverEnv(s: SessionEntry, env: Envelope): void {
    if (this.reached) this.reached.push(s);
    const where = env.data as { muc?: unknown; n?: unknown } | undefined;
    if (where?.muc === 'where') {
      // A room reaching this session through the account asks where it is now (services/session/muc: `located`).
      const room = bareJid(env.from);
      this.svc.router.toActor(room, envelope({ kind: 'ctl', dir: 'in', op: OP_MUC_HERE, from: this.fullJidOf(s), to: room, data: { n: where.n, node: s.node, sid: s.sid } }));
    }
    if (this.layer >= 0 && this.layerDeliver(s, env as Delivery)) return;
    this.svc.router.deliver(s.node, s.sid, env.kind as StanzaKind, env.from, env.to, env.type, env.xml, env.t);
  }

  /** A stanza for one session; `to` names it, so a node that finds the session gone can hand the stanza back. */
  private deliverTo(s: SessionEntry, kind: StanzaKind, from: string, xml: string | Uint8Array): void {
    const to = this.fullJidOf(s);
    if (this.layer >= 0 && this.layerDeliver(s, { kind, from, to, type: '', xml, t: 0 })) return;
    this.svc.router.deliver(s.node, s.sid, kind, from, to, '', xml);
  }

  private fullJidOf(s: SessionEntry): string {
    for (const [r, x] of this.sessions) if (x === s) return `${this.bare}/${r}`;
    return this.bare;
  }

  // ================================================================ roster

  private contacts(pred: (i: RosterItem) => boolean): string[] {
    const out: string[] = [];
    for (const [jid, i] of this.roster) if (i.inRoster && pred(i)) out.push(jid);
    return out;
  }

  private rosterSize(): number {
    let n = 0;
    for (const i of this.roster.values()) if (i.inRoster) n++;
    return n;
  }

  private pendingRequests(): number {
    let n = 0;
    for (const i of this.roster.values()) if (i.pendingIn) n++;
    return n;
  }

  /** Write one item (or forget it), bump the roster version, push to interested resources. */
  private async saveItem(jid: string, item: RosterItem | undefined, push: boolean): Promise<void> {
    const keep = item && (item.inRoster || item.pendingIn || item.approved || item.ask);
    const before = this.roster.get(jid);
    const b = this.svc.store.batch(this.bare);
    if (keep) {
      this.rosterForWrite().set(jid, item);
      b.hset('roster', jid, encodeItem(item));
    } else {
      this.rosterForWrite().delete(jid);
      b.hdel('roster', jid);
    }
    if (push) {
      this.rosterVer++;
      b.hset('account', 'rosterver', pack(this.rosterVer));
    }
    const ver = this.rosterVer;
    try {
      await b.exec();
    } catch (e) {
      // Not stored: memory goes back to what the store holds, and the caller's sender hears the error.
      if (this.roster.get(jid) === (keep ? item : undefined)) {
        if (before) this.rosterForWrite().set(jid, before);
        else this.rosterForWrite().delete(jid);
      }
      if (push && this.rosterVer === ver) this.rosterVer--;
      throw e;
    }
    if (push) this.pushRoster(jid, keep && item.inRoster ? item : 'remove');
    if (keep && item.inRoster && !before?.inRoster) await this.contactAddedHooks(jid);
  }

  /** RFC 6121 §2.1.6: every interested resource learns of each change. */
  private pushRoster(jid: string, item: RosterItem | 'remove'): void {
    const query = el('query', { xmlns: NS_ROSTER, ver: String(this.rosterVer) }, itemElement(jid, item));
    for (const [r, s] of this.sessions) {
      if (!s.interested) continue;
      const iq = el('iq', { type: 'set', id: `push${++this.pushSeq}`, to: `${this.bare}/${r}` }, query);
      this.deliverTo(s, 'iq', '', serialize(iq));
    }
  }

  /** jabber:iq:roster get and set from our own resources (RFC 6121 §2.1–§2.5). */
  private async rosterIq(env: Envelope, query: Element): Promise<Element | undefined> {
    if (bareJid(env.from) !== this.bare) throw new StanzaError('forbidden', 'a roster belongs to its account');
    const resource = resourcePart(env.from);
    if (env.type === 'get') {
      const s = this.sessions.get(resource);
      if (s && !s.interested) {
        s.interested = true;
        await this.saveSession(resource, s);
      }
      const ver = String(this.rosterVer);
      if (query.attrs.ver !== undefined && query.attrs.ver === ver) return undefined; // XEP-0237: unchanged
      const items: Element[] = [];
      for (const [jid, i] of this.roster) if (i.inRoster) items.push(itemElement(jid, i));
      return el('query', { xmlns: NS_ROSTER, ver }, ...items);
    }
    const { roster } = this.svc.config;
    const set = parseRosterSet(query, this.bare, { maxNameLength: roster.maxNameLength, maxGroups: roster.maxGroups });
    const before = this.roster.get(set.jid);
    if (set.remove) {
      if (!before?.inRoster) throw new StanzaError('item-not-found', `${set.jid} is not in the roster`);
      // §2.5.2: removing a contact cancels both directions of the subscription.
      if (hasTo(before.subscription) || before.ask) this.routeSubscription('unsubscribe', set.jid, serialize(el('presence', { type: 'unsubscribe' })));
      if (hasFrom(before.subscription) || before.pendingIn) {
        this.routeSubscription('unsubscribed', set.jid, serialize(el('presence', { type: 'unsubscribed' })));
        if (hasFrom(before.subscription)) this.sendUnavailableTo(set.jid);
      }
      await this.saveItem(set.jid, undefined, true);
      return undefined;
    }
    if (!before?.inRoster && this.rosterSize() >= roster.maxItems) {
      throw new StanzaError('not-allowed', `the roster is full (${roster.maxItems} contacts)`);
    }
    await this.saveItem(set.jid, { ...(before ?? emptyItem()), name: set.name, groups: set.groups, inRoster: true }, true);
    return undefined;
  }

  // ================================================================ iq answered by the server

  private async serverIq(env: Envelope, target: 'host' | 'account', addressed: string): Promise<void> {
    if (env.type !== 'get' && env.type !== 'set') return this.queryReply(env); // other results and errors to the server end here
    const stanza = parseFragment(env.xml);
    const payload = firstElement(stanza);
    let reply: Element;
    try {
      if (!payload || stanza.children.filter((c) => typeof c !== 'string').length !== 1) {
        throw new StanzaError('bad-request', 'an iq get/set carries exactly one payload element');
      }
      let result: Element | undefined | void;
      if (target === 'account' && payload.attrs.xmlns === NS_ROSTER && payload.name === 'query') {
        result = await this.rosterIq(env, payload);
      } else {
        const handler = this.svc.modules.iqHandler(env.type, target, payload);
        if (!handler) throw new StanzaError('service-unavailable', `${payload.attrs.xmlns ?? ''} ${payload.name} is not supported here`);
        if (target === 'account' && bareJid(env.from) !== this.bare && env.type === 'set') {
          throw new StanzaError('forbidden', 'only the account itself may change its data');
        }
        result = await handler({ stanza, payload, from: env.from, to: addressed, account: this }, this.svc.context);
      }
      const attrs: Record<string, string> = { type: 'result', id: stanza.attrs.id ?? '', to: env.from };
      if (env.to) attrs.from = env.to; // an iq without 'to' gets a reply without 'from' (RFC 6120 §10.3.3)
      reply = { name: 'iq', attrs, children: result ? [result] : [] };
    } catch (e) {
      const err = e instanceof StanzaError ? e : new StanzaError('internal-server-error', 'the server could not complete this request; try again later');
      if (!(e instanceof StanzaError)) log.error('iq handler failed', { error: e });
      reply = errorReply(stanza, err);
      this.removeRequested = false;
    }
    await this.sendFromServer('iq', reply);
    if (this.removeRequested) {
      // After the answer, so the client reads its result before the stream closes; it was answered, so a failure is only logged.
      this.removeRequested = false;
      await this.removeAccount().catch((e: unknown) => log.error('removing the account its owner unregistered failed', { account: this.bare, error: e }));
    }
  }

  /** The answer to an iq a module sent with query(), from the entity it asked. */
  private queryReply(env: Envelope): void | Promise<void> {
    if (this.queries.size === 0) return;
    const stanza = parseFragment(env.xml);
    const q = this.queries.get(stanza.attrs.id ?? '');
    if (!q || q.to !== env.from) return;
    this.queriesForWrite().delete(stanza.attrs.id ?? '');
    return q.onReply(stanza);
  }

  // ================================================================ answers and errors

  private sendFromServer(kind: StanzaKind, stanza: Element): void | Promise<void> {
    const env = envelope({ kind, dir: 'in', from: stanza.attrs.from ?? '', to: stanza.attrs.to ?? '', type: stanza.attrs.type ?? '', id: stanza.attrs.id ?? '', xml: serialize(stanza) });
    return this.route(env, true);
  }

  /** Return a stanza to its sender with an error (never an error for an error, nor for an iq result). */
  private bounce(env: Envelope, error: StanzaError): void | Promise<void> {
    if (env.type === 'error' || env.from === '' || (env.kind === 'iq' && env.type === 'result')) return;
    return this.sendFromServer(env.kind as StanzaKind, errorReply(parseFragment(env.xml), error));
  }

  // ================================================================ filters and hooks of the modules

  private verdict(dir: 'in' | 'out', kind: StanzaKind, type: string, peer: string, resource: string): FilterVerdict {
    const stanza: FilteredStanza = { dir, kind, type, peer, resource };
    for (const f of this.filters) {
      const v = f.filter.check(f.state, stanza, this);
      if (v !== 'pass') return v;
    }
    return 'pass';
  }

  /** A stanza to the bare JID, checked against one session's own rules when sessions differ (never otherwise: no cost). */
  private deliverable(s: SessionEntry, env: Envelope): boolean {
    return !this.filterPerSession || this.sessionVerdict(s, env) === 'pass';
  }

  private sessionVerdict(s: SessionEntry, env: Envelope): FilterVerdict {
    if (env.from === '' || bareJid(env.from) === this.bare) return 'pass';
    for (const [resource, entry] of this.sessions) {
      if (entry === s) return this.verdict('in', env.kind as StanzaKind, env.type, env.from, resource);
    }
    return 'pass';
  }

  // Hooks run only where a module has one: otherwise no promise is even made.
  private unavailableHooks(event: UnavailableEvent): Promise<void> | undefined {
    const { states, hookSlots } = this.svc.modules;
    if (hookSlots.unavailable.length === 0) return undefined;
    return (async () => {
      for (const i of hookSlots.unavailable) await states[i].hooks!.unavailable!(this.states[i], this, event);
    })();
  }

  private availableHooks(resource: string, initial: boolean, presence: string): Promise<void> | undefined {
    const { states, hookSlots } = this.svc.modules;
    if (hookSlots.available.length === 0) return undefined;
    return (async () => {
      for (const i of hookSlots.available) await states[i].hooks!.available!(this.states[i], this, resource, initial, presence);
    })();
  }

  /** Presence from a roster contact's resource (not subscriptions or probes). */
  private contactPresenceHooks(env: Envelope): Promise<void> | undefined {
    const { states, hookSlots } = this.svc.modules;
    if (hookSlots.contactPresence.length === 0 || (env.type !== '' && env.type !== 'unavailable')) return undefined;
    if (resourcePart(env.from) === '' || !this.contact(bareJid(env.from))) return undefined;
    const xml = typeof env.xml === 'string' ? env.xml : Buffer.from(env.xml).toString();
    const type = env.type;
    return (async () => {
      for (const i of hookSlots.contactPresence) await states[i].hooks!.contactPresence!(this.states[i], this, env.from, type, xml);
    })();
  }

  private contactAddedHooks(contact: string): Promise<void> | undefined {
    const { states, hookSlots } = this.svc.modules;
    if (hookSlots.contactAdded.length === 0) return undefined;
    return (async () => {
      for (const i of hookSlots.contactAdded) await states[i].hooks!.contactAdded!(this.states[i], this, contact);
    })();
  }

  private endedHooks(resource: string): Promise<void> | undefined {
    const { states, hookSlots } = this.svc.modules;
    if (hookSlots.ended.length === 0) return undefined;
    return (async () => {
      for (const i of hookSlots.ended) await states[i].hooks!.ended!(this.states[i], this, resource);
    })();
  }

  // ================================================================ AccountContext (what modules may use)

  get server(): ServerContext {
    return this.svc.context;
  }

  contact(bare: string): Contact | undefined {
    const i = this.roster.get(bare);
    return i !== undefined && i.inRoster ? i : undefined;
  }

  resources(): string[] {
    return [...this.sessions.keys()];
  }

  sessionId(resource: string): string | undefined {
    return this.sessions.get(resource)?.sid;
  }

  available(): boolean {
    for (const s of this.sessions.values()) if (s.available) return true;
    return false;
  }

  state<S>(def: AccountState<S>): S {
    return this.states[this.svc.modules.slot(def)] as S;
  }

  sendPush(resource: string, payload: Element): void {
    const s = this.sessions.get(resource);
    if (!s) return;
    this.deliverTo(s, 'iq', '', serialize(el('iq', { type: 'set', id: `push${++this.pushSeq}`, to: `${this.bare}/${resource}` }, payload)));
  }

  sendStanza(stanza: Element): void {
    const a = stanza.attrs;
    this.routeStanza(stanza.name as StanzaKind, a.from ?? this.bare, a.to ?? '', a.type ?? '', serialize(stanza));
  }

  query(to: string, payload: Element, onReply: (reply: Element) => void | Promise<void>): void {
    const id = `q${++this.pushSeq}`;
    if (this.queries.size >= 256) this.queriesForWrite().delete(this.queries.keys().next().value!);
    this.queriesForWrite().set(id, { to, onReply });
    this.sendStanza(el('iq', { type: 'get', id, from: this.bare, to }, payload));
  }

  presenceAudience(): string[] {
    const out = new Set(this.contacts((i) => hasFrom(i.subscription)));
    for (const s of this.sessions.values()) for (const d of s.directed) out.add(d);
    return [...out];
  }

  sendPresence(to: string, resource?: string): void {
    for (const [r, s] of this.sessions) {
      if ((resource === undefined || r === resource) && s.available && s.presence) this.routeStanza('presence', `${this.bare}/${r}`, to, '', s.presence);
    }
  }

  sendUnavailable(to: string, resource?: string): void {
    for (const r of this.sessions.keys()) {
      if (resource !== undefined && r !== resource) continue;
      const from = `${this.bare}/${r}`;
      this.routeStanza('presence', from, to, 'unavailable', serialize(el('presence', { type: 'unavailable', from, to })));
    }
  }

  rulesChanged(): void {
    const defs = this.svc.modules.states;
    const active: ActiveFilter[] = [];
    let perSession = false;
    for (let i = 0; i < defs.length; i++) {
      const filter = defs[i].filter;
      if (!filter || !filter.active(this.states[i])) continue;
      active.push({ filter, state: this.states[i] });
      if (filter.perSession(this.states[i])) perSession = true;
    }
    this.filters = active;
    const ls = this.svc.modules.layerSlot;
    this.layer = ls >= 0 && defs[ls].layer!.active(this.states[ls]) ? ls : -1;
    this.filterPerSession = perSession;
  }

  removeAfterReply(): void {
    this.removeRequested = true;
  }

  connection(resource: string): { sid: string; node: string } | undefined {
    const s = this.sessions.get(resource);
    return s ? { sid: s.sid, node: s.node } : undefined;
  }

  deliver(resource: string, d: Delivery): void {
    const s = this.sessions.get(resource);
    if (!s || (this.layer >= 0 && this.layerDeliver(s, d))) return;
    this.svc.router.deliver(s.node, s.sid, d.kind, d.from, d.to, d.type, d.xml, d.t);
  }

  transmit(resource: string, d: Delivery, tag?: unknown): void {
    const s = this.sessions.get(resource);
    if (!s) return;
    const env = envelope({ kind: d.kind, dir: 'deliver', sid: s.sid, from: d.from, to: d.to, type: d.type, xml: d.xml, t: d.t, data: tag });
    // The connection notes what it wrote of a tracked message, for this account's next owner (askDelivered).
    if (d.track !== undefined) env.track = d.track;
    this.svc.toC2s(s.node, env);
  }

  toAccount(bare: string, env: Envelope): void {
    this.svc.router.toActor(bare, env);
  }

  controlConnection(node: string, sid: string, op: string, data?: unknown): void {
    this.svc.router.control(node, sid, op, data);
  }

  later(ms: number, op: string, data?: unknown): void {
    // Through the bus: by then another process may own this account.
    setTimeout(() => {
      try {
        this.svc.router.toActor(this.bare, envelope({ kind: 'ctl', dir: 'in', op, to: this.bare, data }));
      } catch (e) {
        log.error('a timer could not reach its actor', { account: this.bare, op, error: e });
      }
    }, ms).unref();
  }

  background(work: void | Promise<unknown>, what: string): void {
    if (!work) return;
    this.pendingWork++;
    work.then(undefined, (e: unknown) => log.error(`${what} failed`, { account: this.bare, error: e })).finally(() => {
      if (--this.pendingWork === 0) for (const w of this.workWaiters.splice(0)) w();
    });
  }

  async moveSession(resource: string, node: string, sid: string): Promise<void> {
    const s = this.sessions.get(resource);
    if (!s) return;
    const full = `${this.bare}/${resource}`;
    const from = s.node;
    s.node = node;
    s.sid = sid;
    await Promise.all([
      this.saveSession(resource, s),
      from !== node ? this.svc.store.hdel(`$node:${from}`, 'sessions', full) : undefined,
      this.svc.store.hset(`$node:${node}`, 'sessions', full, pack(sid)),
    ]);
  }

  async terminateSession(resource: string): Promise<void> {
    const s = this.sessions.get(resource);
    if (s) await this.endSession(resource, s);
  }

  retrievable(resource: string, xml: string): boolean {
    const { states, messageSlots } = this.svc.modules;
    for (const i of messageSlots) if (states[i].messages!.retrievable?.(this.states[i], this, resource, xml)) return true;
    return false;
  }

  async reroute(d: Delivery): Promise<void> {
    const was = this.replaying;
    this.replaying = true;
    try {
      await this.inbound(envelope({ kind: d.kind, dir: 'in', from: d.from, to: d.to, type: d.type, xml: d.xml, t: d.t }), true);
    } finally {
      this.replaying = was;
    }
  }

  // ================================================================ the session layer and message hooks

  private resourceOf(s: SessionEntry): string | undefined {
    for (const [r, e] of this.sessions) if (e === s) return r;
    return undefined;
  }

  private layerSent(env: Envelope): boolean {
    if (env.sid === '') return true;
    const i = this.layer;
    return this.svc.modules.states[i].layer!.sent(this.states[i], this, resourcePart(env.from), env.sid, env.track?.[1]);
  }

  private layerDeliver(s: SessionEntry, d: Delivery): boolean {
    const resource = this.resourceOf(s);
    if (resource === undefined) return false;
    const i = this.layer;
    return this.svc.modules.states[i].layer!.deliver(this.states[i], this, resource, d);
  }

  /** The connection behind a session is gone: true when the session layer keeps the session. */
  private layerDetached(resource: string, sid: string, reason: DetachReason, d?: Delivery): boolean {
    const i = this.svc.modules.layerSlot;
    if (i < 0) return false;
    return this.svc.modules.states[i].layer!.detached(this.states[i], this, resource, sid, reason, d);
  }

  private async activatedHooks(): Promise<void> {
    const { states, activatedSlots } = this.svc.modules;
    for (const i of activatedSlots) await states[i].activated!(this.states[i], this);
  }

  /** The message hooks from slot `from` on; a promise only when some hook needs one (a chat message costs none otherwise). */
  private messageHooks(step: 'routing' | 'routed', msg: MessageEvent, from = 0): void | Promise<void> {
    const { states, messageSlots } = this.svc.modules;
    for (let k = from; k < messageSlots.length; k++) {
      const i = messageSlots[k];
      if (msg.stopped !== undefined) return;
      const r = states[i].messages![step]?.(this.states[i], this, msg);
      if (r) return r.then(() => this.messageHooks(step, msg, k + 1));
    }
  }

  /** A message one of our clients sent to someone else, past the hooks (archive before, carbon copies after). */
  private outboundMessage(env: Envelope): void | Promise<void> {
    const msg = new MessageEvent('out', env.from, env.to, env.type, typeof env.xml === 'string' ? env.xml : Buffer.from(env.xml).toString());
    return andThen(this.messageHooks('routing', msg), () => msg.stopped !== undefined ? this.stoppedMessage(env, msg)
      : andThen(this.route(msg.xml === env.xml ? env : { ...env, xml: msg.xml }), () => this.messageHooks('routed', msg)));
  }

  /** A routing hook stopped a message: its sender hears the refusal, or the hook kept it. */
  private stoppedMessage(env: Envelope, msg: MessageEvent): void | Promise<void> {
    if (msg.stopped instanceof StanzaError) return this.bounce(env, msg.stopped);
  }

  /** A message for this account, past the hooks, noting which sessions it reached. */
  private inboundMessage(env: Envelope, fromServer: boolean): void | Promise<void> {
    const msg = new MessageEvent('in', env.from, env.to, env.type, typeof env.xml === 'string' ? env.xml : Buffer.from(env.xml).toString());
    return andThen(this.messageHooks('routing', msg), () => {
      if (msg.stopped !== undefined) return this.stoppedMessage(env, msg);
      const reached: SessionEntry[] = [];
      this.reached = reached;
      let routed: void | Promise<void>;
      try {
        routed = this.inbound(msg.xml === env.xml ? env : { ...env, xml: msg.xml }, fromServer);
      } catch (e) {
        this.reached = undefined;
        throw e;
      }
      return routed ? routed.then(() => this.inboundRouted(msg, reached), (e: unknown) => { this.reached = undefined; throw e; })
        : this.inboundRouted(msg, reached);
    });
  }

  private inboundRouted(msg: MessageEvent, reached: SessionEntry[]): void | Promise<void> {
    this.reached = undefined;
    msg.delivered = [...new Set(reached.map((s) => this.resourceOf(s)).filter((r): r is string => r !== undefined))];
    return this.messageHooks('routed', msg);
  }

  // ================================================================ account removal

  /** The operator's removal (`parley user del`): remove, then tell whoever asked. */
  private async removeOnRequest(env: Envelope): Promise<void> {
    const { node } = env.data as RemoveAccountRequest;
    let existed = false;
    try {
      existed = await this.removeAccount();
      this.svc.router.control(node, env.sid, 'account-removed', { existed });
    } catch (e) {
      log.error('account removal failed', { account: this.bare, error: e });
      this.svc.router.control(node, env.sid, 'account-removed', { existed, error: e instanceof Error ? e.message : String(e) });
    }
  }

  /**
   * Remove the account and all its data: its sessions end (contacts see it go
   * unavailable, clients are disconnected), every subscription is cancelled
   * both ways so contacts' rosters follow (unsubscribe / unsubscribed), then
   * every collection of its scope — the core's and each module's — is deleted.
   */
  private async removeAccount(): Promise<boolean> {
    if (!this.exists) this.exists = (await this.svc.store.hget(this.bare, 'account', 'creds')) !== undefined;
    if (!this.exists) return false;
    for (const [resource, s] of [...this.sessions]) {
      this.svc.router.control(s.node, s.sid, 'kick', { condition: 'not-authorized', text: 'this account has been deleted' });
      await this.endSession(resource, s);
    }
    for (const [jid, i] of this.roster) {
      if (hasTo(i.subscription) || i.ask) this.routeSubscription('unsubscribe', jid, serialize(el('presence', { type: 'unsubscribe' })));
      if (hasFrom(i.subscription) || i.pendingIn) this.routeSubscription('unsubscribed', jid, serialize(el('presence', { type: 'unsubscribed' })));
    }
    await new Accounts(this.svc.store).remove(this.bare, [...CORE_COLLECTIONS, ...this.svc.modules.ownedCollections]);
    // An archive kept outside the store (PostgreSQL) goes too.
    await this.svc.context.archive?.remove(this.bare);
    this.exists = false;
    this.roster = emptyMap();
    this.rosterVer = 0;
    this.offlineCount = 0;
    const empty = new Map<string, Map<string, Uint8Array>>();
    this.states = this.svc.modules.states.map((def) => def.load(empty, { account: this.bare, config: this.svc.config, sessions: new Map() }));
    this.rulesChanged();
    log.info('account removed', { account: this.bare });
    return true;
  }
}
