// XEP-0357 push notifications. A device registers its app server's pubsub
// JID and node (with the publish options the app server wants, usually a
// secret); when a message arrives while that device cannot get it — the
// account has no session that took it (offline storage), or the device's
// session waits for resumption — the account publishes a notification there.
// It is routed like any stanza from the account: to a local entity, or out
// through federation. What it says is configurable (push.include) and by
// default only that something arrived: app servers and the phone makers'
// push services behind them learn nothing of whom or what.
import { deleteFrom, emptyMap, filledMap } from '../../../libs/lazy/index.ts';
import { pack, unpack } from 'msgpackr';
import { StanzaError } from '../../../libs/errors/index.ts';
import { tryParseJid } from '../../../libs/jid/index.ts';
import { resourcePart } from '../../../libs/jid/split.ts';
import { child, el, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { defineAccountState, defineModule, requireOwner, type AccountContext, type IqRequest, type MessageEvent } from '../module.ts';
import { streamManagement } from '../sm/index.ts';

export const NS_PUSH = 'urn:xmpp:push:0';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_DATA = 'jabber:x:data';
const PUSH = 'push';

export interface PushRegistration {
  jid: string;
  node: string;
  /** The publish-options form the device gave (serialized), sent with every notification. */
  options: string;
  /** The resource that registered: its session waiting for resumption is what "cannot get it" means for this device. */
  resource: string;
  /** Notifications since the device last had a live session (message-count). */
  pending: number;
}

const key = (jid: string, node: string) => `${jid}\u0000${node}`;
const encode = (r: PushRegistration) => pack([r.jid, r.node, r.options, r.resource]);
function decode(b: Uint8Array): PushRegistration {
  const [jid, node, options, resource] = unpack(b) as [string, string, string, string];
  return { jid, node, options, resource, pending: 0 };
}

/** The account's registrations by key: the shared empty Map (libs/lazy) until a first one. */
interface PushState {
  registrations: ReadonlyMap<string, PushRegistration>;
}

export const pushRegistrations = defineAccountState<PushState>({
  name: 'push',
  collections: [PUSH],
  load(data) {
    const stored = data.get(PUSH);
    return { registrations: stored?.size ? new Map([...stored].map(([k, v]) => [k, decode(v)])) : emptyMap() };
  },
  hooks: {
    available(state, _account, resource) {
      for (const r of state.registrations.values()) if (r.resource === resource) r.pending = 0;
    },
  },
  messages: {
    routed(state, account, msg) {
      if (state.registrations.size === 0 || msg.dir !== 'in') return;
      const type = msg.type === '' ? 'normal' : msg.type;
      if ((type !== 'chat' && type !== 'normal') || !child(msg.stanza(), 'body')) return;
      const waiting = (r: string) => (account.state(streamManagement).get(r)?.detachedAt ?? 0) > 0;
      for (const reg of state.registrations.values()) {
        // Stored offline: every device; delivered: only the devices whose session waits to be resumed.
        if (msg.delivered.length === 0 || (msg.delivered.includes(reg.resource) && waiting(reg.resource))) notify(account, reg, msg);
      }
    },
  },
});

function notify(account: AccountContext, reg: PushRegistration, msg: MessageEvent): void {
  reg.pending++;
  const include = account.server.config.push.include;
  const field = (v: string, value: string) => el('field', { var: v }, el('value', {}, value));
  const fields = [field('FORM_TYPE', 'urn:xmpp:push:summary'), field('message-count', String(reg.pending))];
  if (include !== 'none') fields.push(field('last-message-sender', msg.from));
  if (include === 'body') fields.push(field('last-message-body', text(child(msg.stanza(), 'body'))));
  const publish = el('publish', { node: reg.node }, el('item', {}, el('notification', { xmlns: NS_PUSH }, el('x', { xmlns: NS_DATA, type: 'submit' }, ...fields))));
  const options = reg.options ? el('publish-options', {}, parseFragment(reg.options)) : undefined;
  account.sendStanza(el('iq', { type: 'set', from: account.bare, to: reg.jid, id: `push-${Date.now().toString(36)}-${reg.pending}` },
    el('pubsub', { xmlns: NS_PUBSUB }, publish, options)));
}

function target(payload: Element, nodeRequired: boolean): { jid: string; node: string } {
  const j = tryParseJid(payload.attrs.jid ?? '');
  if (!j) throw new StanzaError('bad-request', "'jid' names the app server");
  const node = payload.attrs.node ?? '';
  if (nodeRequired && node === '') throw new StanzaError('bad-request', "'node' names the device's node on the app server");
  return { jid: j.full, node };
}

async function enable(req: IqRequest): Promise<undefined> {
  requireOwner(req);
  const { jid, node } = target(req.payload, true);
  const state = req.account.state(pushRegistrations);
  const k = key(jid, node);
  if (!state.registrations.has(k) && state.registrations.size >= req.account.server.config.push.maxRegistrations) {
    throw new StanzaError('resource-constraint', `at most ${req.account.server.config.push.maxRegistrations} push registrations per account`);
  }
  const form = child(req.payload, 'x', NS_DATA);
  const reg: PushRegistration = { jid, node, options: form ? serialize(form) : '', resource: resourcePart(req.from), pending: 0 };
  await req.account.server.store.hset(req.account.bare, PUSH, k, encode(reg));
  (state.registrations = filledMap(state.registrations)).set(k, reg);
  return undefined;
}

async function disable(req: IqRequest): Promise<undefined> {
  requireOwner(req);
  const { jid, node } = target(req.payload, false);
  const state = req.account.state(pushRegistrations);
  for (const [k, r] of [...state.registrations]) {
    if (r.jid !== jid || (node !== '' && r.node !== node)) continue;
    await req.account.server.store.hdel(req.account.bare, PUSH, k);
    deleteFrom(state.registrations, k);
  }
  return undefined;
}

/** The registrations as stored, for tests and the CLI. */
export async function storedRegistrations(store: AccountContext['server']['store'], bare: string): Promise<PushRegistration[]> {
  return [...(await store.hgetall(bare, PUSH)).values()].map(decode);
}

export default defineModule({
  name: 'push',
  enabled: (config) => config.push.enabled,
  disco: { account: [NS_PUSH] },
  state: [pushRegistrations, streamManagement],
  iq: {
    'set/account/urn:xmpp:push:0:enable': enable,
    'set/account/urn:xmpp:push:0:disable': disable,
  },
});

