// XEP-0163 personal eventing on each account's bare JID: the part of XEP-0060
// publish-subscribe PEP needs (publish with auto-create and XEP-0223
// publish-options, items, retract, delete, node configuration), access models
// presence / open / whitelist, and notifications to the resources whose
// entity capabilities (XEP-0115) ask for `<node>+notify`.
//
// Storage, in the account's scope: `pep` (loaded at activation) holds each
// node's configuration and its item ids, oldest first; `pepitems` holds the
// items, field `<node>\n<id>`, read only when a request needs them. `pepcaps`
// (loaded) remembers which full JIDs (own resources and contacts' resources
// whose presence reached the account) advertise which caps, so an actor that
// is reactivated still knows whom to notify.
import { deleteFrom, emptyMap, filledMap } from '../../../libs/lazy/index.ts';
import { randomUUID } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import { StanzaError, type StanzaErrorCondition } from '../../../libs/errors/index.ts';
import { bareJid } from '../../../libs/jid/split.ts';
import type { Bytes } from '../../../libs/store/store.ts';
import { child, children, el, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { hasFrom } from '../im/subscription.ts';
import { defineAccountState, defineModule, requireOwner, type AccountContext, type IqRequest, type ServerContext } from '../module.ts';
import { capsKey, knownCaps, notifyNodes, presenceCaps, storeCaps, verificationString, type Caps } from '../pep/caps.ts';

export const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_EVENT = `${NS_PUBSUB}#event`;
const NS_OWNER = `${NS_PUBSUB}#owner`;
const NS_ERRORS = `${NS_PUBSUB}#errors`;
const NS_DATA = 'jabber:x:data';
const NS_INFO = 'http://jabber.org/protocol/disco#info';
const NODE_CONFIG = `${NS_PUBSUB}#node_config`;
const PUBLISH_OPTIONS = `${NS_PUBSUB}#publish-options`;

const NODES = 'pep';
const ITEMS = 'pepitems';
const CAPS = 'pepcaps';
/** A caps query nobody answered is asked again after this long. */
const REASK_MS = 30_000;

type Access = 'presence' | 'open' | 'whitelist';
const ACCESS_MODELS: readonly Access[] = ['presence', 'open', 'whitelist'];

interface NodeConfig {
  access: Access;
  maxItems: number;
  persist: boolean;
}

interface NodeMeta extends NodeConfig {
  /** Item ids, oldest first. */
  ids: string[];
}

interface Interest {
  caps: Caps;
  /** The +notify nodes once the caps are resolved. */
  notify?: ReadonlySet<string>;
}

interface PepState {
  // Each the shared empty Map (libs/lazy) until its first entry: most accounts publish nothing.
  nodes: ReadonlyMap<string, NodeMeta>;
  /** Full JID → what it advertised: own resources and contacts' resources. */
  peers: ReadonlyMap<string, Interest>;
  /** Caps being asked for, by key: when asked and what waits for the answer. */
  asking: ReadonlyMap<string, { since: number; then: (() => Promise<void>)[] }>;
}

/** XEP-0060 errors carry a pubsub#errors condition beside the RFC 6120 one. */
class PubsubError extends StanzaError {
  constructor(condition: StanzaErrorCondition, private readonly app: string | undefined, text?: string, private readonly appAttrs: Record<string, string> = {}) {
    super(condition, text);
  }

  override toElement(): Element {
    const e = super.toElement();
    if (this.app) e.children.splice(1, 0, el(this.app, { xmlns: NS_ERRORS, ...this.appAttrs }));
    return e;
  }
}

const encodeMeta = (m: NodeMeta): Uint8Array => pack([m.access, m.maxItems, m.persist, m.ids]);

function decodeMeta(b: Bytes): NodeMeta {
  const [access, maxItems, persist, ids] = unpack(b) as [Access, number, boolean, string[]];
  return { access, maxItems, persist, ids };
}

const itemField = (node: string, id: string) => `${node}\n${id}`;

export const pepState = defineAccountState<PepState>({
  name: 'pep',
  collections: [NODES, CAPS],
  load(data) {
    let nodes = emptyMap<string, NodeMeta>();
    for (const [node, raw] of data.get(NODES) ?? []) (nodes = filledMap(nodes)).set(node, decodeMeta(raw));
    let peers = emptyMap<string, Interest>();
    for (const [jid, raw] of data.get(CAPS) ?? []) {
      const [hash, node, ver] = unpack(raw) as [string, string, string];
      (peers = filledMap(peers)).set(jid, { caps: { hash, node, ver } });
    }
    return { nodes, peers, asking: emptyMap() };
  },
  hooks: {
    available(state, account, resource, initial, presence) {
      return tracked(state, account, `${account.bare}/${resource}`, presence, initial);
    },
    unavailable(state, account, event) {
      return untrack(state, account, `${account.bare}/${event.resource}`);
    },
    ended(state, account, resource) {
      return untrack(state, account, `${account.bare}/${resource}`);
    },
    contactPresence(state, account, from, type, presence) {
      if (type === 'unavailable') return untrack(state, account, from);
      return tracked(state, account, from, presence, !state.peers.has(from));
    },
  },
});

// ---------------------------------------------------------------- caps and interest

/** Remember what a resource advertises; on arrival it gets the last item of each node it wants (XEP-0163 §6.2). */
async function tracked(state: PepState, account: AccountContext, full: string, presence: string, arrived: boolean): Promise<void> {
  const caps = presenceCaps(presence);
  const before = state.peers.get(full);
  if (!caps) {
    if (before) await untrack(state, account, full);
    return;
  }
  if (before && capsKey(before.caps) === capsKey(caps) && !arrived) return;
  const interest: Interest = { caps };
  (state.peers = filledMap(state.peers)).set(full, interest);
  if (!before || capsKey(before.caps) !== capsKey(caps)) await account.server.store.hset(account.bare, CAPS, full, pack([caps.hash, caps.node, caps.ver]));
  await resolve(state, account, full, interest, arrived ? () => sendLastItems(state, account, full) : undefined);
}

async function untrack(state: PepState, account: AccountContext, full: string): Promise<void> {
  if (!deleteFrom(state.peers, full)) return;
  await account.server.store.hdel(account.bare, CAPS, full);
}

/** Fill in an interest's +notify nodes: from the cluster's cache, else by asking the client (disco#info). */
async function resolve(state: PepState, account: AccountContext, full: string, interest: Interest, then?: () => Promise<void>): Promise<void> {
  const key = capsKey(interest.caps);
  const known = await knownCaps(account.server.store, key);
  if (known) {
    interest.notify = known;
    return then?.();
  }
  const asked = state.asking.get(key);
  if (asked && Date.now() - asked.since < REASK_MS) {
    if (then) asked.then.push(then);
    return;
  }
  (state.asking = filledMap(state.asking)).set(key, { since: Date.now(), then: then ? [then] : [] });
  const { node, ver, hash } = interest.caps;
  account.query(full, el('query', { xmlns: NS_INFO, node: `${node}#${ver}` }), async (reply) => {
    const waiting = state.asking.get(key);
    deleteFrom(state.asking, key);
    const query = reply.attrs.type === 'result' ? child(reply, 'query', NS_INFO) : undefined;
    if (!query) return;
    const features = children(query, 'feature').map((f) => f.attrs.var ?? '');
    // Only an answer that matches its hash is shared; an unverified one serves this client alone.
    const nodes = verificationString(query, hash) === ver ? await storeCaps(account.server.store, key, features) : notifyNodes(features);
    for (const i of state.peers.values()) if (capsKey(i.caps) === key) i.notify ??= nodes;
    for (const t of waiting?.then ?? []) await t();
  });
}

/** May `who` (a bare JID) read this account's node? */
function mayRead(account: AccountContext, meta: NodeConfig, who: string): boolean {
  if (who === account.bare) return true;
  if (meta.access === 'open') return true;
  if (meta.access === 'presence') {
    const c = account.contact(who);
    return c !== undefined && hasFrom(c.subscription);
  }
  return false;
}

/** Full JIDs to notify of an event on a node: allowed to read it and asking for +notify. */
async function audience(state: PepState, account: AccountContext, node: string, meta: NodeConfig): Promise<string[]> {
  const out: string[] = [];
  for (const [full, i] of state.peers) {
    if (!mayRead(account, meta, bareJid(full))) continue;
    if (!i.notify) i.notify = await knownCaps(account.server.store, capsKey(i.caps));
    if (i.notify?.has(node)) out.push(full);
  }
  return out;
}

function eventMessage(from: string, to: string, payload: Element): Element {
  return el('message', { from, to, type: 'headline', id: randomUUID() }, el('event', { xmlns: NS_EVENT }, payload));
}

async function loadItems(account: AccountContext, node: string, ids: readonly string[]): Promise<Element[]> {
  const raws = await Promise.all(ids.map((id) => account.server.store.hget(account.bare, ITEMS, itemField(node, id))));
  return raws.flatMap((r) => (r ? [parseFragment(r)] : []));
}

async function sendLastItems(state: PepState, account: AccountContext, full: string): Promise<void> {
  const interest = state.peers.get(full);
  if (!interest?.notify) return;
  for (const node of interest.notify) {
    const meta = state.nodes.get(node);
    const last = meta?.ids.at(-1);
    if (!meta || last === undefined || !mayRead(account, meta, bareJid(full))) continue;
    const items = await loadItems(account, node, [last]);
    if (items.length) account.sendStanza(eventMessage(account.bare, full, el('items', { node }, ...items)));
  }
}

async function notify(state: PepState, account: AccountContext, node: string, meta: NodeConfig, payload: Element): Promise<void> {
  for (const to of await audience(state, account, node, meta)) account.sendStanza(eventMessage(account.bare, to, payload));
}

// ---------------------------------------------------------------- configuration forms

/** The fields of a data form by var, first value each (`pubsub#…`). */
function formFields(x: Element | undefined, formType: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!x) return out;
  if (x.attrs.xmlns !== NS_DATA) throw new PubsubError('bad-request', 'invalid-options', 'the options are a jabber:x:data form');
  for (const f of children(x, 'field')) {
    const v = f.attrs.var;
    if (!v) throw new PubsubError('bad-request', 'invalid-options', 'a form field needs a var');
    out.set(v, text(child(f, 'value')).trim());
  }
  const ft = out.get('FORM_TYPE');
  if (ft !== undefined && ft !== formType) throw new PubsubError('bad-request', 'invalid-options', `FORM_TYPE must be ${formType}`);
  return out;
}

/** What a form asks of a node's configuration; values checked against the limits. */
function parseOptions(fields: Map<string, string>, ctx: ServerContext): Partial<NodeConfig> {
  const out: Partial<NodeConfig> = {};
  const access = fields.get('pubsub#access_model');
  if (access !== undefined) {
    if (!ACCESS_MODELS.includes(access as Access)) throw new PubsubError('not-acceptable', 'unsupported', `access model '${access}' is not supported (presence, open, whitelist are)`, { feature: 'access-authorize' });
    out.access = access as Access;
  }
  const max = fields.get('pubsub#max_items');
  if (max !== undefined) {
    const limit = ctx.config.pep.maxItems;
    const n = max === 'max' ? limit : /^\d+$/.test(max) ? Number(max) : NaN;
    if (!Number.isSafeInteger(n) || n < 1) throw new PubsubError('not-acceptable', 'invalid-options', `pubsub#max_items must be a positive integer or 'max', not '${max}'`);
    if (n > limit) throw new PubsubError('not-acceptable', 'invalid-options', `pubsub#max_items is at most ${limit} on this server`);
    out.maxItems = n;
  }
  const persist = fields.get('pubsub#persist_items');
  if (persist !== undefined) {
    if (!['0', '1', 'true', 'false'].includes(persist)) throw new PubsubError('not-acceptable', 'invalid-options', 'pubsub#persist_items is a boolean');
    out.persist = persist === '1' || persist === 'true';
  }
  return out;
}

function configForm(node: string, c: NodeConfig): Element {
  const field = (v: string, value: string) => el('field', { var: v }, el('value', {}, value));
  return el('pubsub', { xmlns: NS_OWNER }, el('configure', { node }, el('x', { xmlns: NS_DATA, type: 'form' },
    el('field', { var: 'FORM_TYPE', type: 'hidden' }, el('value', {}, NODE_CONFIG)),
    field('pubsub#access_model', c.access), field('pubsub#max_items', String(c.maxItems)), field('pubsub#persist_items', c.persist ? '1' : '0'))));
}

// ---------------------------------------------------------------- handlers

function nodeOf(e: Element): string {
  const node = e.attrs.node;
  if (!node) throw new PubsubError('bad-request', 'nodeid-required', `<${e.name}/> names a node`);
  return node;
}

/** The one pubsub verb a request carries (XEP-0060 allows publish-options beside publish only). */
function verb(payload: Element): Element {
  const kids = children(payload).filter((k) => k.name !== 'publish-options');
  if (kids.length !== 1) throw new StanzaError('bad-request', 'a pubsub request carries one verb');
  return kids[0];
}

async function publish(req: IqRequest, ctx: ServerContext, pub: Element): Promise<Element> {
  const { account } = req;
  const state = account.state(pepState);
  const node = nodeOf(pub);
  const items = children(pub, 'item');
  if (items.length !== 1 || children(pub).length !== 1) throw new PubsubError('bad-request', items.length ? 'invalid-payload' : 'item-required', 'publish one <item/> at a time');
  const payloads = children(items[0]);
  if (payloads.length !== 1) throw new PubsubError('bad-request', payloads.length ? 'invalid-payload' : 'payload-required', 'an item carries exactly one payload element');
  const po = child(req.payload, 'publish-options');
  const options = parseOptions(formFields(po && child(po, 'x'), PUBLISH_OPTIONS), ctx);
  const { maxItems, maxItemBytes, maxNodes } = ctx.config.pep;
  let meta = state.nodes.get(node);
  if (meta) {
    // XEP-0060 §7.1.5: options are preconditions on an existing node.
    for (const k of Object.keys(options) as (keyof NodeConfig)[]) {
      if (options[k] !== meta[k]) throw new PubsubError('conflict', 'precondition-not-met', `the node's ${k} is ${String(meta[k])}`);
    }
  } else if (state.nodes.size >= maxNodes) {
    throw new StanzaError('policy-violation', `an account keeps at most ${maxNodes} nodes`);
  }
  const id = items[0].attrs.id || randomUUID();
  const payload = payloads[0];
  payload.attrs.xmlns ??= NS_PUBSUB; // keep the namespace it inherited when it moves into <event/>
  const item = el('item', { id }, payload);
  const bytes = Buffer.from(serialize(item));
  if (bytes.length > maxItemBytes) throw new PubsubError('not-acceptable', 'payload-too-big', `the item is ${bytes.length} bytes; this server keeps items of at most ${maxItemBytes}`);

  const next: NodeMeta = meta
    ? { ...meta, ids: meta.ids.filter((i) => i !== id) }
    : { access: options.access ?? 'presence', maxItems: options.maxItems ?? maxItems, persist: options.persist ?? true, ids: [] };
  next.ids.push(id);
  // A node that does not persist keeps only its last item (for last-item delivery).
  const keep = next.persist ? next.maxItems : 1;
  const dropped = next.ids.splice(0, Math.max(0, next.ids.length - keep));
  const b = ctx.store.batch(account.bare);
  b.hset(NODES, node, encodeMeta(next));
  b.hset(ITEMS, itemField(node, id), bytes);
  for (const d of dropped) b.hdel(ITEMS, itemField(node, d));
  await b.exec();
  (state.nodes = filledMap(state.nodes)).set(node, next);
  meta = next;
  await notify(state, account, node, meta, el('items', { node }, item));
  return el('pubsub', { xmlns: NS_PUBSUB }, el('publish', { node }, el('item', { id })));
}

async function retract(req: IqRequest, ctx: ServerContext, r: Element): Promise<undefined> {
  const { account } = req;
  const state = account.state(pepState);
  const node = nodeOf(r);
  const meta = state.nodes.get(node);
  if (!meta) throw new StanzaError('item-not-found', `no node '${node}'`);
  const ids = children(r, 'item').map((i) => i.attrs.id ?? '');
  if (ids.length === 0 || ids.includes('')) throw new PubsubError('bad-request', 'item-required', 'name the items to retract by id');
  const missing = ids.find((i) => !meta.ids.includes(i));
  if (missing !== undefined) throw new StanzaError('item-not-found', `no item '${missing}' in '${node}'`);
  const next: NodeMeta = { ...meta, ids: meta.ids.filter((i) => !ids.includes(i)) };
  const b = ctx.store.batch(account.bare);
  b.hset(NODES, node, encodeMeta(next));
  for (const i of ids) b.hdel(ITEMS, itemField(node, i));
  await b.exec();
  (state.nodes = filledMap(state.nodes)).set(node, next);
  if (r.attrs.notify === 'true' || r.attrs.notify === '1') {
    await notify(state, account, node, next, el('items', { node }, ...ids.map((id) => el('retract', { id }))));
  }
  return undefined;
}

async function set(req: IqRequest, ctx: ServerContext): Promise<Element | undefined> {
  requireOwner(req);
  const v = verb(req.payload);
  if (v.name === 'publish') return publish(req, ctx, v);
  if (child(req.payload, 'publish-options')) throw new StanzaError('bad-request', 'publish-options go with a publish');
  if (v.name === 'retract') return retract(req, ctx, v);
  throw new PubsubError('feature-not-implemented', 'unsupported', `'${v.name}' is not supported by this PEP service`, { feature: v.name });
}

async function get(req: IqRequest): Promise<Element> {
  const { account } = req;
  const v = verb(req.payload);
  if (v.name !== 'items') throw new PubsubError('feature-not-implemented', 'unsupported', `'${v.name}' is not supported by this PEP service`, { feature: v.name });
  const node = nodeOf(v);
  const meta = account.state(pepState).nodes.get(node);
  if (!meta) throw new StanzaError('item-not-found', `no node '${node}'`);
  const who = bareJid(req.from);
  if (!mayRead(account, meta, who)) {
    if (meta.access === 'presence') throw new PubsubError('not-authorized', 'presence-subscription-required', 'the node is for contacts subscribed to the owner\'s presence');
    throw new PubsubError('not-allowed', 'closed-node', 'the node is private');
  }
  const asked = children(v, 'item').map((i) => i.attrs.id ?? '');
  let ids: readonly string[];
  if (asked.length) {
    ids = meta.ids.filter((i) => asked.includes(i));
  } else {
    const max = v.attrs.max_items;
    if (max !== undefined && !/^[1-9]\d*$/.test(max)) throw new StanzaError('bad-request', 'max_items is a positive integer');
    ids = max === undefined ? meta.ids : meta.ids.slice(-Number(max));
  }
  return el('pubsub', { xmlns: NS_PUBSUB }, el('items', { node }, ...(await loadItems(account, node, ids))));
}

async function ownerSet(req: IqRequest, ctx: ServerContext): Promise<undefined> {
  requireOwner(req);
  const { account } = req;
  const state = account.state(pepState);
  const v = verb(req.payload);
  const node = nodeOf(v);
  const meta = state.nodes.get(node);
  if (!meta) throw new StanzaError('item-not-found', `no node '${node}'`);
  const b = ctx.store.batch(account.bare);
  if (v.name === 'delete') {
    b.hdel(NODES, node);
    for (const i of meta.ids) b.hdel(ITEMS, itemField(node, i));
    await b.exec();
    deleteFrom(state.nodes, node);
    await notify(state, account, node, meta, el('delete', { node }));
    return undefined;
  }
  if (v.name === 'configure') {
    const options = parseOptions(formFields(child(v, 'x'), NODE_CONFIG), ctx);
    const next: NodeMeta = { ...meta, ...options, ids: [...meta.ids] };
    const dropped = next.ids.splice(0, Math.max(0, next.ids.length - (next.persist ? next.maxItems : 1)));
    b.hset(NODES, node, encodeMeta(next));
    for (const d of dropped) b.hdel(ITEMS, itemField(node, d));
    await b.exec();
    (state.nodes = filledMap(state.nodes)).set(node, next);
    return undefined;
  }
  throw new PubsubError('feature-not-implemented', 'unsupported', `'${v.name}' is not supported by this PEP service`, { feature: v.name });
}

function ownerGet(req: IqRequest): Element {
  requireOwner(req);
  const v = verb(req.payload);
  if (v.name !== 'configure') throw new PubsubError('feature-not-implemented', 'unsupported', `'${v.name}' is not supported by this PEP service`, { feature: v.name });
  const node = nodeOf(v);
  const meta = req.account.state(pepState).nodes.get(node);
  if (!meta) throw new StanzaError('item-not-found', `no node '${node}'`);
  return configForm(node, meta);
}

export default defineModule({
  name: 'pep',
  disco: {
    identities: { account: [{ category: 'pubsub', type: 'pep' }] },
    account: [NS_PUBSUB, ...['publish', 'retract-items', 'delete-nodes', 'publish-options', 'access-presence', 'access-open', 'access-whitelist',
      'persistent-items', 'auto-create', 'last-published', 'retrieve-items', 'config-node', 'presence-notifications'].map((f) => `${NS_PUBSUB}#${f}`)],
  },
  state: [pepState],
  stored: [ITEMS],
  iq: {
    [`set/account/${NS_PUBSUB}:pubsub`]: set,
    [`get/account/${NS_PUBSUB}:pubsub`]: get,
    [`set/account/${NS_OWNER}:pubsub`]: ownerSet,
    [`get/account/${NS_OWNER}:pubsub`]: ownerGet,
  },
});
