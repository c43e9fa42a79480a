// XEP-0016 privacy lists: named, ordered lists of allow/deny items by JID,
// roster group or subscription, for messages, iqs, inbound and outbound
// presence; one active list per resource and a default list for the account;
// every change pushed to the account's resources. The rules are enforced by
// the shared rule set (privacy-rules.ts) in the recipient's actor for inbound
// stanzas and in the sender's for outbound ones.
import { pack } from 'msgpackr';
import { StanzaError } from '../../../libs/errors/index.ts';
import { parseJid } from '../../../libs/jid/index.ts';
import { resourcePart } from '../../../libs/jid/split.ts';
import { children, el, type Element } from '../../../libs/xml/element.ts';
import { defineModule, requireOwner, type IqRequest, type ServerContext } from '../module.ts';
import {
  changeRules, CompiledList, encodeItems, EVERYTHING, IQ, MESSAGE, PRESENCE_IN, PRESENCE_OUT, PRIVACY, privacyRules,
  type ItemType, type PrivacyItem, type PrivacyRules,
} from './privacy-rules.ts';

export const NS_PRIVACY = 'jabber:iq:privacy';

const STANZA_BITS: Record<string, number> = { message: MESSAGE, iq: IQ, 'presence-in': PRESENCE_IN, 'presence-out': PRESENCE_OUT };
const SUBSCRIPTIONS = new Set(['none', 'to', 'from', 'both']);
const MAX_ORDER = 0xffffffff;

/** Validate one <item/> of a list set (XEP-0016 §2.1, §3). */
export function parseItem(item: Element): PrivacyItem {
  const { type = '', value, action, order } = item.attrs;
  if (action !== 'allow' && action !== 'deny') throw new StanzaError('bad-request', "an item's action is 'allow' or 'deny'");
  if (order === undefined || !/^\d{1,10}$/.test(order) || Number(order) > MAX_ORDER) {
    throw new StanzaError('bad-request', "an item's order is an unsigned integer");
  }
  if (type !== '' && type !== 'jid' && type !== 'group' && type !== 'subscription') throw new StanzaError('bad-request', `unknown item type '${type}'`);
  let v = '';
  if (type !== '') {
    if (value === undefined || value === '') throw new StanzaError('bad-request', `an item of type '${type}' needs a value`);
    v = value;
    if (type === 'jid') {
      try {
        v = parseJid(value).full;
      } catch {
        throw new StanzaError('bad-request', `'${value}' is not a valid JID`);
      }
    } else if (type === 'subscription' && !SUBSCRIPTIONS.has(value)) {
      throw new StanzaError('bad-request', "a subscription item's value is none, to, from or both");
    }
  }
  let mask = 0;
  for (const c of children(item)) {
    const bit = STANZA_BITS[c.name];
    if (bit === undefined) throw new StanzaError('bad-request', `unknown stanza type <${c.name}/> in an item`);
    mask |= bit;
  }
  return { type: type as ItemType, value: v, allow: action === 'allow', order: Number(order), mask: mask === 0 ? EVERYTHING : mask };
}

export function itemElement(i: PrivacyItem): Element {
  const kinds = i.mask === EVERYTHING ? [] : Object.entries(STANZA_BITS).filter(([, bit]) => (i.mask & bit) !== 0).map(([name]) => el(name));
  return el('item', { type: i.type || undefined, value: i.type ? i.value : undefined, action: i.allow ? 'allow' : 'deny', order: String(i.order) }, ...kinds);
}

/** The one child of a privacy query (XEP-0016 §2.3: exactly one element per request, when any). */
function single(query: Element): Element | undefined {
  const kids = children(query);
  if (kids.length > 1) throw new StanzaError('bad-request', 'a privacy request carries one element');
  return kids[0];
}

function get(req: IqRequest): Element {
  requireOwner(req);
  const rules = req.account.state(privacyRules);
  const what = single(req.payload);
  if (what === undefined || ((what.name === 'active' || what.name === 'default') && !what.attrs.name)) {
    // §2.3: the names of the lists, the active list of this resource and the default list
    // (also the answer to a bare <active/> or <default/>, which some clients ask).
    const active = rules.active.get(resourcePart(req.from))?.list;
    return el('query', { xmlns: NS_PRIVACY },
      active ? el('active', { name: active }) : undefined,
      rules.defaultList ? el('default', { name: rules.defaultList }) : undefined,
      ...[...rules.lists.keys()].sort().map((name) => el('list', { name })));
  }
  if (what.name !== 'list' || !what.attrs.name) throw new StanzaError('bad-request', 'ask for the lists, or for one <list name/>');
  const list = rules.lists.get(what.attrs.name);
  if (!list) throw new StanzaError('item-not-found', `no privacy list '${what.attrs.name}'`);
  return el('query', { xmlns: NS_PRIVACY }, el('list', { name: what.attrs.name }, ...[...list.items].sort((a, b) => a.order - b.order).map(itemElement)));
}

/** Connected resources other than the sender that the default list governs (no active list of their own). */
function othersOnDefault(req: IqRequest, rules: PrivacyRules): boolean {
  const me = resourcePart(req.from);
  return req.account.resources().some((r) => r !== me && !rules.active.has(r));
}

async function set(req: IqRequest, ctx: ServerContext): Promise<undefined> {
  requireOwner(req);
  const { account } = req;
  const rules = account.state(privacyRules);
  const what = single(req.payload);
  if (what === undefined) throw new StanzaError('bad-request', 'a privacy set carries one element');
  const resource = resourcePart(req.from);
  const name = what.attrs.name ?? '';
  const store = ctx.store;
  switch (what.name) {
    case 'active': {
      // §2.4: the sending resource's active list; no name declines it, and the default list governs the resource again.
      if (name && !rules.lists.has(name)) throw new StanzaError('item-not-found', `no privacy list '${name}'`);
      const sid = account.sessionId(resource);
      if (sid === undefined) throw new StanzaError('unexpected-request', 'the active list belongs to a bound session');
      await changeRules(account, rules, async () => {
        if (name) {
          await store.hset(account.bare, PRIVACY, `active:${resource}`, pack([sid, name]));
          rules.activeForWrite().set(resource, { sid, list: name });
        } else if (rules.activeForWrite().delete(resource)) {
          await store.hdel(account.bare, PRIVACY, `active:${resource}`);
        }
      });
      return undefined;
    }
    case 'default': {
      // §2.5: not while another connected resource is governed by the default list.
      if (name && !rules.lists.has(name)) throw new StanzaError('item-not-found', `no privacy list '${name}'`);
      if (name === rules.defaultList) return undefined;
      if (othersOnDefault(req, rules)) throw new StanzaError('conflict', 'another connected resource uses the default list');
      await changeRules(account, rules, async () => {
        if (name) await store.hset(account.bare, PRIVACY, 'default', pack(name));
        else await store.hdel(account.bare, PRIVACY, 'default');
        rules.defaultList = name;
      });
      return undefined;
    }
    case 'list': {
      if (!name) throw new StanzaError('bad-request', 'a list needs a name');
      const items = children(what, 'item').map(parseItem);
      if (children(what).length !== items.length) throw new StanzaError('bad-request', 'a list holds <item/> elements only');
      if (items.length === 0) await removeList(req, rules, name);
      else await editList(req, ctx, rules, name, items);
      // §2.6, §2.8: every connected resource learns that the list changed.
      const push = el('query', { xmlns: NS_PRIVACY }, el('list', { name }));
      for (const r of account.resources()) account.sendPush(r, push);
      return undefined;
    }
    default:
      throw new StanzaError('bad-request', `unknown privacy element <${what.name}/>`);
  }
}

async function editList(req: IqRequest, ctx: ServerContext, rules: PrivacyRules, name: string, items: PrivacyItem[]): Promise<void> {
  const { maxListItems, maxLists } = ctx.config.privacy;
  if (items.length > maxListItems) throw new StanzaError('not-acceptable', `a privacy list holds at most ${maxListItems} items (this one has ${items.length})`);
  if (!rules.lists.has(name) && rules.lists.size >= maxLists) throw new StanzaError('not-acceptable', `an account keeps at most ${maxLists} privacy lists`);
  const orders = new Set(items.map((i) => i.order));
  if (orders.size !== items.length) throw new StanzaError('bad-request', 'two items of a list have the same order');
  const compiled = new CompiledList(items);
  const inUse = rules.defaultList === name || [...rules.active.values()].some((c) => c.list === name);
  const write = async () => {
    await ctx.store.hset(req.account.bare, PRIVACY, `list:${name}`, encodeItems(items));
    rules.listsForWrite().set(name, compiled);
  };
  if (inUse) await changeRules(req.account, rules, write);
  else await write();
}

async function removeList(req: IqRequest, rules: PrivacyRules, name: string): Promise<void> {
  if (!rules.lists.has(name)) throw new StanzaError('item-not-found', `no privacy list '${name}'`);
  // §2.8: not while it governs the account or another resource.
  if (rules.defaultList === name) throw new StanzaError('conflict', `'${name}' is the default list`);
  const me = resourcePart(req.from);
  for (const [r, c] of rules.active) if (r !== me && c.list === name) throw new StanzaError('conflict', `'${name}' is the active list of another resource`);
  const { account } = req;
  await changeRules(account, rules, async () => {
    const b = account.server.store.batch(account.bare).hdel(PRIVACY, `list:${name}`);
    if (rules.active.get(me)?.list === name) b.hdel(PRIVACY, `active:${me}`);
    await b.exec();
    rules.listsForWrite().delete(name);
    if (rules.active.get(me)?.list === name) rules.activeForWrite().delete(me);
  });
}

export default defineModule({
  name: 'privacy',
  disco: { host: [NS_PRIVACY] },
  state: [privacyRules],
  iq: {
    'get/account/jabber:iq:privacy:query': get,
    'set/account/jabber:iq:privacy:query': set,
  },
});
