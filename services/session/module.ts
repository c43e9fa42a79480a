// What a protocol feature module looks like (Prosody's mod_* shape): it names
// the disco features it adds and the iq payloads it answers; the core routes.
// The core never names a XEP: everything a feature needs from an account's
// actor comes through the few generic hooks below.
//
// Handler keys: `${'get'|'set'}/${'host'|'account'}/${xmlns}:${payloadName}`
//  - host:    the iq is addressed to a served domain — answered by the server
//             itself, in the sender's actor (a local user), or in the domain's
//             own actor for another server's entity (services/session/server-actor.ts),
//             where the request carries no account;
//  - account: the iq is addressed to a user's bare JID (or has no `to`) —
//             answered by the server on behalf of that account, in its actor.
//
// Per-account state (AccountState) is declared once and may be shared by
// several modules (privacy lists and blocking edit one rule set): the actor
// loads every declared collection in its one activation round trip, keeps one
// value per definition, runs the definition's stanza filter on its inbound
// and outbound paths and calls its session hooks.
import type { Envelope, StanzaKind, Track } from '../../libs/bus/envelope.ts';
import { StanzaError } from '../../libs/errors/index.ts';
import type { Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import type { Config } from '../../libs/config/schema.ts';
import type { Bytes, Store } from '../../libs/store/store.ts';
import type { MessageArchive } from '../../libs/archive/archive.ts';
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { WindowCounters } from '../../libs/cluster/window-counters.ts';
import { bareJid } from '../../libs/jid/split.ts';
import type { Subscription } from './im/subscription.ts';
import { coreDiscoFeatures } from '../features.ts';
import type { DomainService } from './service-domains.ts';
import type { AdminOperations } from '../admin/operations.ts';

export type DiscoTarget = 'host' | 'account';

/** What disco#info shows, per target, from every enabled module. */
/** A disco#info identity a module adds for a target (XEP-0030 §3.1). */
export interface DiscoIdentity {
  readonly category: string;
  readonly type: string;
  readonly name?: string;
}

export interface Disco {
  features(target: DiscoTarget): readonly string[];
  /** Identities the modules add beside the target's own. */
  identities(target: DiscoTarget): readonly DiscoIdentity[];
  /** XEP-0128 extended information (data forms) for the target. */
  forms(target: DiscoTarget): Element[];
  /** What disco#items of a served domain lists: the services beside the server. */
  hostItems(domain: string): DiscoItem[];
  /** disco#items of a node of a served domain (XEP-0050's commands node), for the asker; undefined: no such node. */
  nodeItems(node: string, req: HostIqRequest, ctx: ServerContext): DiscoItem[] | undefined;
}

/** An entity in a disco#items answer (XEP-0030 §4.1). */
export interface DiscoItem {
  readonly jid: string;
  readonly name?: string;
  readonly node?: string;
}

export interface ServerContext {
  readonly config: Config;
  readonly store: Store;
  readonly hosts: HostedDomains;
  readonly disco: Disco;
  /** Rate counters every process of the deployment shares (in Redis in a cluster, in this process otherwise). */
  readonly rates: WindowCounters;
  /** The administration operations (services/admin), once the process has them; absent in a CLI's own actors. */
  admin?: AdminOperations;
  /** Message archives outside the store (PostgreSQL, `archive.postgres`), once opened; absent: they live in the store. */
  archive?: MessageArchive;
}

/** A roster entry as modules see it (read-only). */
export interface Contact {
  readonly subscription: Subscription;
  readonly groups: readonly string[];
}

/**
 * The account whose actor runs a handler or hook: the addressed account for
 * account iqs, the sender for host iqs. Everything here runs inside the
 * actor's mailbox turn, so reads and writes of its state cannot race.
 */
export interface AccountContext {
  readonly bare: string;
  readonly server: ServerContext;
  /** The roster entry of a contact, when the contact is in the roster. */
  contact(bare: string): Contact | undefined;
  /** Bound resources. */
  resources(): string[];
  /** The session id bound to a resource (what session-scoped data is checked against). */
  sessionId(resource: string): string | undefined;
  /** At least one resource has sent available presence. */
  available(): boolean;
  /** The value a state definition holds for this account (the module must declare it). */
  state<S>(def: AccountState<S>): S;
  /** An iq-set push to one of the account's resources (block list, privacy list pushes). */
  sendPush(resource: string, payload: Element): void;
  /** Send a stanza on the account's behalf (its `from` set by the caller: the bare JID or a resource), wherever its `to` lives. */
  sendStanza(stanza: Element): void;
  /**
   * An iq get from the bare JID to an entity; `onReply` gets the result or
   * error when it comes back, inside a later turn of this actor (never if it does not).
   */
  query(to: string, payload: Element, onReply: (reply: Element) => void | Promise<void>): void;
  /** Who sees this account's presence now: contacts with a 'from' subscription and directed-presence targets. */
  presenceAudience(): string[];
  /** Current presence of every available resource (or of one) to an entity; bypasses filters: the caller decided. */
  sendPresence(to: string, resource?: string): void;
  /** Unavailable from every resource (or from one) to an entity; bypasses filters. */
  sendUnavailable(to: string, resource?: string): void;
  /** A state's rules changed: the actor re-reads which filters are active. */
  rulesChanged(): void;
  /** Once the current iq is answered, remove the account with all its data, telling its contacts. */
  removeAfterReply(): void;

  // What a session layer (stream management) and message hooks need:
  /** Where a session's connection is. */
  connection(resource: string): { sid: string; node: string } | undefined;
  /** A stanza to one of the account's sessions, through the session layer (carbon copies, archive results). */
  deliver(resource: string, d: Delivery): void;
  /** A stanza to a session's connection as it is, past every layer; `tag` travels in the envelope's data. */
  transmit(resource: string, d: Delivery, tag?: unknown): void;
  /** A control envelope to a connection on a c2s node. */
  controlConnection(node: string, sid: string, op: string, data?: unknown): void;
  /** This process still acts for the account (services/session/actor.ts): confirmations begun earlier check it. */
  readonly acting: boolean;
  /** An envelope to another account's actor as it is (a tracked message sent again). */
  toAccount(bare: string, env: Envelope): void;
  /**
   * The mark of the tracked message being applied, when `track` is that message's and nobody stored the mark yet:
   * the caller adds it to the batch that delivers the message and sets `stored` (so the message and the record that
   * it was applied land together, and a crash cannot leave one without the other).
   */
  deliveryMark(track: Track | undefined): DeliveryMark | undefined;
  /** After `ms`, the control envelope `op` to this account's actor, wherever it runs then (a module's timer). */
  later(ms: number, op: string, data?: unknown): void;
  /** The connection behind a session changed (stream resumption): deliveries go there from now on. */
  moveSession(resource: string, node: string, sid: string): Promise<void>;
  /** End a session now: contacts see it unavailable, session hooks run. */
  terminateSession(resource: string): Promise<void>;
  /** A stanza for the account handled again as if just arrived, past filters and message hooks (what an ended session leaves behind). */
  reroute(d: Delivery): void | Promise<void>;
  /** A message that session `resource` ended without acknowledging: whether a message hook says its client fetches it elsewhere (`MessageHooks.retrievable`). */
  retrievable(resource: string, xml: string): boolean;
  /**
   * Work a handler started and does not wait for (a store write being tried again): the actor counts as busy
   * until it settles, so a shard handoff, a passivation or a shutdown waits for it. A rejection is logged with `what`.
   */
  background(work: Promise<unknown>, what: string): void;
}

export interface IqRequest {
  /** The whole iq stanza, `from` stamped by the server. */
  stanza: Element;
  /** Its single payload child. */
  payload: Element;
  from: string;
  /** The addressed entity: a domain (host) or a bare JID (account). */
  to: string;
  account: AccountContext;
}

/** An iq to a served domain: `account` is the sender's when it is a local user, undefined for another server's entity. */
export interface HostIqRequest extends Omit<IqRequest, 'account'> {
  account: AccountContext | undefined;
}

type IqResult = Element | undefined | void | Promise<Element | undefined | void>;

/** Return the result payload (or nothing for an empty result); throw a StanzaError to refuse. */
export type IqHandler = (req: IqRequest, ctx: ServerContext) => IqResult;
export type HostIqHandler = (req: HostIqRequest, ctx: ServerContext) => IqResult;

export type IqKey = `${'get' | 'set'}/${'host' | 'account'}/${string}`;

/** Handlers by key: those for a served domain may be asked by another server's entity, with no account. */
export type IqHandlers = { [K in `${'get' | 'set'}/host/${string}`]?: HostIqHandler } & { [K in `${'get' | 'set'}/account/${string}`]?: IqHandler };

// ---------------------------------------------------------------- filters

/** What a stanza filter sees: routing metadata only, never parsed XML. */
export interface FilteredStanza {
  /** 'in': addressed to the account; 'out': sent by it (or on its behalf). */
  readonly dir: 'in' | 'out';
  readonly kind: StanzaKind;
  readonly type: string;
  /** The other party: the sender of an inbound stanza, the addressee of an outbound one. */
  readonly peer: string;
  /** The account's resource the stanza is for or from; '' for the account as a whole. */
  readonly resource: string;
}

/** 'pass', 'drop' silently, or answer the sender with this error. */
export type FilterVerdict = 'pass' | 'drop' | StanzaError;

export interface StanzaFilter<S> {
  /** Whether there is anything to enforce; asked after load and rulesChanged(), never per stanza. */
  active(state: S): boolean;
  /** Whether resources may differ in their rules, so bare-JID deliveries are checked per session. */
  perSession(state: S): boolean;
  check(state: S, stanza: FilteredStanza, account: AccountContext): FilterVerdict;
}

// ---------------------------------------------------------------- hooks

export interface UnavailableEvent {
  resource: string;
  /** The unavailable presence as sent (or generated when the session ended without one). */
  presence: string;
  /** No resource of the account is available any more. */
  last: boolean;
}

export interface SessionHooks<S> {
  /** A resource sent available presence; `initial` when it was not available before. */
  available?(state: S, account: AccountContext, resource: string, initial: boolean, presence: string): void | Promise<void>;
  /** A resource became unavailable, by presence or because its session ended. */
  unavailable?(state: S, account: AccountContext, event: UnavailableEvent): void | Promise<void>;
  /** A session ended: forget what was kept for that resource. */
  ended?(state: S, account: AccountContext, resource: string): void | Promise<void>;
  /** Available or unavailable presence from a roster contact's resource reached the account. */
  contactPresence?(state: S, account: AccountContext, from: string, type: '' | 'unavailable', presence: string): void | Promise<void>;
  /** A bare JID that was not in the roster now is (the user added it, asked for or granted a subscription). */
  contactAdded?(state: S, account: AccountContext, contact: string): void | Promise<void>;
}

/** The hashes an actor read at activation, by collection (absent ones are empty). */
export type LoadedCollections = ReadonlyMap<string, ReadonlyMap<string, Bytes>>;

export interface LoadContext {
  readonly account: string;
  readonly config: Config;
  /** Resource → session id of the sessions the store lists (stale ones end right after loading). */
  readonly sessions: ReadonlyMap<string, string>;
}

export interface AccountState<S> {
  readonly name: string;
  /** Hash collections of the account's scope read at activation, in the same round trip as the roster. */
  readonly collections: readonly string[];
  load(data: LoadedCollections, ctx: LoadContext): S;
  /** Enforcement the actor runs on both paths while `active`. */
  readonly filter?: StanzaFilter<S>;
  readonly hooks?: SessionHooks<S>;
  /** At most one enabled state may stand between the actor and its sessions. */
  readonly layer?: SessionLayer<S>;
  readonly messages?: MessageHooks<S>;
  /** After the actor loaded, before its first envelope (re-arm timers, read what `load` could not). */
  activated?(state: S, account: AccountContext): void | Promise<void>;
}

export function defineAccountState<S>(def: AccountState<S>): AccountState<S> {
  return def;
}

// ---------------------------------------------------------------- deliveries, the session layer, messages

/** One stanza on its way to one of the account's sessions. */
export interface Delivery {
  readonly kind: StanzaKind;
  readonly from: string;
  readonly to: string;
  readonly type: string;
  readonly xml: string | Uint8Array;
  /** When the stanza entered the server (0: made by the server). */
  readonly t: number;
  /** A message from another account's stream-managed session (services/session/tracked.ts). */
  readonly track?: Track;
}

/** The delivery mark of a tracked message, to store in the same batch as the write that delivers it. */
export interface DeliveryMark {
  readonly coll: string;
  readonly field: string;
  readonly value: Bytes;
  /** Set by whoever stores it with its write: the write's completion (resolving to false: not stored, after every retry). */
  stored?: Promise<unknown>;
}

/** Why a session's connection went away: the client closed its stream, it was lost, or a delivery found it gone. */
export type DetachReason = 'closed' | 'lost' | 'undeliverable';

/**
 * What may stand between the actor and its sessions' connections (stream
 * management): it may take deliveries, keep a session whose connection went
 * away, and drop what a replaced connection still sends. Asked only while
 * `active`, so an account without it pays nothing.
 */
export interface SessionLayer<S> {
  active(state: S): boolean;
  /** A stanza from connection `sid` of a resource, before any rule; `n`: the client's number for it, when tracked. False drops it. */
  sent(state: S, account: AccountContext, resource: string, sid: string, n?: number): boolean;
  /** Client stanza `n` of a session goes to another account as message `env` (the layer may track it: services/session/sm/confirm.ts). */
  routed?(state: S, account: AccountContext, resource: string, sid: string, n: number, env: Envelope, to: string): void;
  /** A stanza for a session; true when the layer took it (it transmits it itself). */
  deliver(state: S, account: AccountContext, resource: string, d: Delivery): boolean;
  /** The connection behind a session is gone; true keeps the session (the layer ends it later). `d`: the delivery that found it gone. */
  detached(state: S, account: AccountContext, resource: string, sid: string, reason: DetachReason, d?: Delivery): boolean;
}

/** A message through the account: sent by it ('out') or addressed to it ('in'). Parsed at most once, on demand. */
export class MessageEvent {
  private parsed: Element | undefined;
  /** Inbound, once routed: the resources it was delivered to ([] when it was stored offline or refused). */
  delivered: readonly string[] = [];
  /**
   * Set by a `routing` hook to stop the message there: refused (its sender gets this error), or 'kept' (the hook
   * keeps it for later: a quarantine). No later hook runs and nothing is routed or delivered.
   */
  stopped: StanzaError | 'kept' | undefined;

  constructor(readonly dir: 'in' | 'out', readonly from: string, readonly to: string, readonly type: string, private raw: string) {}

  get xml(): string {
    return this.raw;
  }

  stanza(): Element {
    return (this.parsed ??= parseFragment(this.raw));
  }

  /** What is routed on or delivered instead (a `routing` hook stamping a stanza id). */
  replace(stanza: Element): void {
    this.parsed = stanza;
    this.raw = serialize(stanza);
  }

  /** Stop the message here: its sender gets `error`. */
  refuse(error: StanzaError): void {
    this.stopped = error;
  }

  /** Stop the message here: the hook keeps it (and routes it later, as a new message, if ever). */
  keep(): void {
    this.stopped = 'kept';
  }

  /** The same, from serialized XML (a hook that edits the bytes without parsing). */
  rewrite(xml: string): void {
    this.parsed = undefined;
    this.raw = xml;
  }
}

export interface MessageHooks<S> {
  /** Before an outbound message is routed on, or an inbound one delivered (archives, stanza ids). */
  routing?(state: S, account: AccountContext, msg: MessageEvent): void | Promise<void>;
  /** After (carbon copies, push notifications). */
  routed?(state: S, account: AccountContext, msg: MessageEvent): void | Promise<void>;
  /**
   * A message session `resource` was given and ended without acknowledging: true when that session's client will
   * fetch it again by itself (it is in the archive the client reads), so it is not offered again (offline storage).
   */
  retrievable?(state: S, account: AccountContext, resource: string, xml: string): boolean;
}

/** A control envelope for the account's actor that a module handles (from a c2s node, or a timer of its own). */
export interface ControlRequest {
  readonly op: string;
  readonly sid: string;
  readonly data: unknown;
  readonly xml: string | Uint8Array;
  /** Where a tracked client stanza stands (libs/bus/envelope.ts `Track`). */
  readonly track?: Track;
  readonly account: AccountContext;
}

export type ControlHandler = (req: ControlRequest) => void | Promise<void>;

// ---------------------------------------------------------------- modules

export interface XmppModule {
  name: string;
  /** Off unless this says otherwise (default: on); `modules.disabled` turns any module off. */
  enabled?(config: Config): boolean;
  /** Disco features per target; `hostForms` adds XEP-0128 forms to the server's disco#info. */
  disco?: {
    host?: readonly string[];
    account?: readonly string[];
    hostForms?(config: Config): Element[];
    /** Entities disco#items of a served domain lists (a service on a subdomain of it). */
    hostItems?(config: Config, domain: string): DiscoItem[];
    /** disco#items of nodes of a served domain, by node, for the asker. */
    nodeItems?: Readonly<Record<string, (req: HostIqRequest, ctx: ServerContext) => DiscoItem[]>>;
    identities?: Partial<Record<DiscoTarget, readonly DiscoIdentity[]>>;
  };
  /** Per-account state the module reads or changes; shared by identity with other modules. */
  state?: readonly AccountState<unknown>[];
  /** Collections of the account's scope the module writes but does not load (removed with the account). */
  stored?: readonly string[];
  iq?: IqHandlers;
  /** Control envelopes by op (stream management's requests from c2s nodes, the module's own timers). */
  control?: Readonly<Record<string, ControlHandler>>;
  /** A service on a subdomain of every served domain, served by its own actors on the shards (services/session/service-domains.ts). */
  service?: DomainService;
  /** Work repeated every `everyMs` by one session process of the cluster (the one holding the shard of `$periodic:<name>`). */
  periodic?: { everyMs(config: Config): number; run(ctx: ServerContext): Promise<void> };
}

export function defineModule(m: XmppModule): XmppModule {
  return m;
}

/** Iqs that only the account itself may send (its own lists, storage, settings); never another server's entity. */
export function requireOwner(req: HostIqRequest): asserts req is IqRequest {
  if (!req.account || bareJid(req.from) !== req.account.bare) throw new StanzaError('forbidden', 'only the account itself may do this');
}

/** The lookup tables the actors use, built once per process from the enabled modules. */
export class ModuleRegistry implements Disco {
  private readonly handlers = new Map<string, IqHandler | HostIqHandler>();
  private readonly featureLists: Record<DiscoTarget, string[]> = { host: [], account: [] };
  private readonly formMakers: ((config: Config) => Element[])[] = [];
  private readonly itemMakers: ((config: Config, domain: string) => DiscoItem[])[] = [];
  private readonly nodeItemMakers = new Map<string, (req: HostIqRequest, ctx: ServerContext) => DiscoItem[]>();
  private readonly identityLists: Record<DiscoTarget, DiscoIdentity[]> = { host: [], account: [] };
  readonly enabled: readonly XmppModule[];
  /** Distinct state definitions; an actor keeps one value per slot, in this order. */
  readonly states: readonly AccountState<unknown>[];
  private readonly slots = new Map<AccountState<unknown>, number>();
  /** Slots whose definition has each session hook (so an actor without any skips the loop). */
  readonly hookSlots: { readonly available: readonly number[]; readonly unavailable: readonly number[]; readonly ended: readonly number[]; readonly contactPresence: readonly number[]; readonly contactAdded: readonly number[] };
  /** Collections every actor loads at activation for the modules. */
  readonly loadCollections: readonly string[];
  /** Services on subdomains of the served domains, from the enabled modules. */
  readonly services: readonly DomainService[];
  /** Every collection the modules keep in an account's scope (what account removal deletes). */
  readonly ownedCollections: readonly string[];

  constructor(modules: readonly XmppModule[], private readonly config: Config) {
    const off = new Set(config.modules.disabled);
    this.enabled = modules.filter((m) => !off.has(m.name) && (m.enabled?.(config) ?? true));
    const states: AccountState<unknown>[] = [];
    const stored = new Set<string>();
    for (const m of this.enabled) {
      for (const target of ['host', 'account'] as const) {
        for (const f of m.disco?.[target] ?? []) if (!this.featureLists[target].includes(f)) this.featureLists[target].push(f);
        this.identityLists[target].push(...(m.disco?.identities?.[target] ?? []));
      }
      if (m.disco?.hostForms) this.formMakers.push(m.disco.hostForms);
      if (m.disco?.hostItems) this.itemMakers.push(m.disco.hostItems);
      for (const [node, f] of Object.entries(m.disco?.nodeItems ?? {})) this.nodeItemMakers.set(node, f);
      for (const [k, h] of Object.entries(m.iq ?? {})) {
        if (this.handlers.has(k)) throw new Error(`two modules handle ${k}`);
        if (h) this.handlers.set(k, h);
      }
      for (const s of m.state ?? []) {
        if (!this.slots.has(s)) {
          this.slots.set(s, states.length);
          states.push(s);
        }
      }
      for (const c of m.stored ?? []) stored.add(c);
    }
    this.services = this.enabled.flatMap((m) => (m.service ? [m.service] : []));
    // What the core implements outside the modules (services/features.ts) is announced beside what they declare.
    for (const target of ['host', 'account'] as const) {
      for (const f of coreDiscoFeatures(config, target)) if (!this.featureLists[target].includes(f)) this.featureLists[target].push(f);
    }
    this.featureLists.host.sort();
    this.featureLists.account.sort();
    this.states = states;
    const withHook = (k: keyof SessionHooks<unknown>) => states.flatMap((s, i) => (s.hooks?.[k] ? [i] : []));
    this.hookSlots = { available: withHook('available'), unavailable: withHook('unavailable'), ended: withHook('ended'), contactPresence: withHook('contactPresence'), contactAdded: withHook('contactAdded') };
    const load = [...new Set(states.flatMap((s) => s.collections))];
    this.loadCollections = load;
    this.ownedCollections = [...new Set([...load, ...stored])];
    this.messageSlots = states.flatMap((s, i) => (s.messages ? [i] : []));
    this.activatedSlots = states.flatMap((s, i) => (s.activated ? [i] : []));
    const layers = states.flatMap((s, i) => (s.layer ? [i] : []));
    if (layers.length > 1) throw new Error('two account states declare a session layer');
    this.layerSlot = layers.length ? layers[0] : -1;
    for (const m of this.enabled) {
      for (const [op, h] of Object.entries(m.control ?? {})) {
        if (this.controls.has(op)) throw new Error(`two modules handle control op ${op}`);
        this.controls.set(op, h);
      }
    }
  }

  /** Slots with message hooks, with an activation step; the one with the session layer (-1: none). */
  readonly messageSlots: readonly number[];
  readonly activatedSlots: readonly number[];
  readonly layerSlot: number;
  private readonly controls = new Map<string, ControlHandler>();

  controlHandler(op: string): ControlHandler | undefined {
    return this.controls.get(op);
  }

  features(target: DiscoTarget): readonly string[] {
    return this.featureLists[target];
  }

  identities(target: DiscoTarget): readonly DiscoIdentity[] {
    return this.identityLists[target];
  }

  forms(target: DiscoTarget): Element[] {
    return target === 'host' ? this.formMakers.flatMap((f) => f(this.config)) : [];
  }

  nodeItems(node: string, req: HostIqRequest, ctx: ServerContext): DiscoItem[] | undefined {
    return this.nodeItemMakers.get(node)?.(req, ctx);
  }

  hostItems(domain: string): DiscoItem[] {
    return this.itemMakers.flatMap((f) => f(this.config, domain));
  }

  /** The slot of a state definition; throws when no enabled module declared it. */
  slot(def: AccountState<unknown>): number {
    const i = this.slots.get(def);
    if (i === undefined) throw new Error(`account state '${def.name}' is used but no enabled module declares it`);
    return i;
  }

  iqHandler(type: string, target: 'host' | 'account', payload: Element): IqHandler | HostIqHandler | undefined {
    return this.handlers.get(`${type}/${target}/${payload.attrs.xmlns ?? ''}:${payload.name}`);
  }

  /** A handler for an iq to a served domain, as another server's entity asks it (no account). */
  hostIqHandler(type: string, payload: Element): HostIqHandler | undefined {
    return this.handlers.get(`${type}/host/${payload.attrs.xmlns ?? ''}:${payload.name}`) as HostIqHandler | undefined;
  }
}
