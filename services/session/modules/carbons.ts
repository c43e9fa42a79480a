// XEP-0280 message carbons: every resource that asked gets a copy of the chat
// messages its account sends (<sent/>) and receives (<received/>) on its other
// resources, wherever their connections are (a copy is one more delivery from
// the account's actor, so a managed session numbers and keeps it like any
// other). Enabled resources are kept in the account's `carbons` hash, so a
// session process that takes over the account knows them.
import { emptySet, filledSet } from '../../../libs/lazy/index.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { bareJid, resourcePart } from '../../../libs/jid/split.ts';
import { child, el, type Element } from '../../../libs/xml/element.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { defineAccountState, defineModule, requireOwner, type AccountContext, type IqRequest, type MessageEvent } from '../module.ts';

export const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_HINTS = 'urn:xmpp:hints';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const CARBONS = 'carbons';
const EMPTY = new Uint8Array(0);

/** Resources with carbons enabled: the shared empty Set (libs/lazy) until one enables them. */
interface CarbonsState {
  on: ReadonlySet<string>;
}

export const carbonResources = defineAccountState<CarbonsState>({
  name: 'carbons',
  collections: [CARBONS],
  // A resource whose session is no longer listed was left over by a process that died; it is not enabled.
  load(data, ctx) {
    const on = [...(data.get(CARBONS)?.keys() ?? [])].filter((r) => ctx.sessions.has(r));
    return { on: on.length ? new Set(on) : emptySet() };
  },
  hooks: {
    async ended(state, account, resource) {
      if (state.on.has(resource) && filledSet(state.on).delete(resource)) await account.server.store.hdel(account.bare, CARBONS, resource);
    },
  },
  messages: {
    routed(state, account, msg) {
      if (state.on.size === 0 || !copied(msg)) return;
      if (msg.dir === 'out') {
        const from = resourcePart(msg.from);
        for (const r of state.on) if (r !== from) copy(account, r, 'sent', msg);
      } else if (msg.delivered.length > 0) {
        // A message stored offline reached no resource: nobody is there to be copied.
        for (const r of state.on) if (!msg.delivered.includes(r)) copy(account, r, 'received', msg);
      }
    },
  },
});

/** XEP-0280 §6: chat messages, and normal ones with a body; never what asks not to be copied. */
function copied(msg: MessageEvent): boolean {
  const type = msg.type === '' ? 'normal' : msg.type;
  if (type !== 'chat' && type !== 'normal') return false;
  if (msg.dir === 'out' && bareJid(msg.to) === bareJid(msg.from)) return false;
  const s = msg.stanza();
  if (type === 'normal' && !child(s, 'body')) return false;
  return !child(s, 'private', NS_CARBONS) && !child(s, 'no-copy', NS_HINTS) && !child(s, 'x', NS_MUC_USER)
    && !child(s, 'sent', NS_CARBONS) && !child(s, 'received', NS_CARBONS);
}

function copy(account: AccountContext, resource: string, how: 'sent' | 'received', msg: MessageEvent): void {
  if (!account.connection(resource)) return;
  const original = msg.stanza();
  // The forwarded stanza stands alone inside <forwarded/>: it names its namespace.
  const inner: Element = { name: 'message', attrs: { ...original.attrs, xmlns: 'jabber:client' }, children: original.children };
  const to = `${account.bare}/${resource}`;
  const xml = serialize(el('message', { from: account.bare, to, type: msg.type || undefined },
    el(how, { xmlns: NS_CARBONS }, el('forwarded', { xmlns: NS_FORWARD }, inner))));
  account.deliver(resource, { kind: 'message', from: account.bare, to, type: msg.type, xml, t: 0 });
}

async function enable(req: IqRequest): Promise<undefined> {
  requireOwner(req);
  const resource = resourcePart(req.from);
  if (!resource) throw new StanzaError('bad-request', 'carbons are enabled per resource');
  const state = req.account.state(carbonResources);
  if (!state.on.has(resource)) {
    await req.account.server.store.hset(req.account.bare, CARBONS, resource, EMPTY);
    (state.on = filledSet(state.on)).add(resource);
  }
  return undefined;
}

async function disable(req: IqRequest): Promise<undefined> {
  requireOwner(req);
  const resource = resourcePart(req.from);
  const state = req.account.state(carbonResources);
  if (state.on.has(resource) && filledSet(state.on).delete(resource)) await req.account.server.store.hdel(req.account.bare, CARBONS, resource);
  return undefined;
}

export default defineModule({
  name: 'carbons',
  enabled: (config) => config.carbons.enabled,
  disco: { host: [NS_CARBONS] },
  state: [carbonResources],
  iq: {
    'set/account/urn:xmpp:carbons:2:enable': enable,
    'set/account/urn:xmpp:carbons:2:disable': disable,
  },
});
