// Messages between people who do not know each other, the usual shape of spam
// on a public server:
//  - outbound: an account may send so many messages per window to JIDs that
//    are not contacts with a subscription (spam.strangerRate), and all
//    accounts of a domain together so many; past either, the sender gets
//    <policy-violation/> (RFC 6120 §8.3.3.12: a local service policy was
//    broken; not resource-constraint, which says the server is short of
//    resources and invites a retry that would be refused the same way).
//    The account's count lives in its actor (one owner per account, so
//    nothing to share; a handoff starts a new window); the domain's count is
//    shared through ServerContext.rates (Redis in a cluster).
//  - inbound (spam.strangers.policy): a message from a JID not in the
//    recipient's roster is delivered, delivered with a <stranger/> marker
//    ('mark'), held until the recipient adds the sender to the roster
//    ('hold'), or refused with <service-unavailable/>, the answer an absent
//    account gets, so the sender learns nothing ('drop').
// The server's own service domains (rooms) and entities without a localpart
// are never strangers.
import { deleteFrom, emptyMap, filledMap } from '../../../libs/lazy/index.ts';
import { pack, unpack } from 'msgpackr';
import { StanzaError } from '../../../libs/errors/index.ts';
import { bareJid, domainPart, hasLocalpart } from '../../../libs/jid/split.ts';
import { logger, throttledWarn } from '../../../libs/log/index.ts';
import { child, el, isElement, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { defineAccountState, defineModule, type AccountContext, type MessageEvent } from '../module.ts';

/** The marker a client may show beside a message from someone not in the roster ('by': the server that marked it). */
export const NS_STRANGER = 'urn:parley:stranger:0';
const NS_DELAY = 'urn:xmpp:delay';
const HELD = 'strangers-held';

const log = logger('strangers');
const warn = throttledWarn(log, 10_000);

interface HeldMessage {
  from: string;
  xml: string;
}

export interface StrangerState {
  /** This account's messages to strangers in the current window. */
  windowEnds: number;
  sent: number;
  /** Held messages by store field (`<sender bare>\0<sequence>`, so a sender's are together and in order). */
  held: ReadonlyMap<string, HeldMessage>;
}

let sequence = 0;

export const strangerState = defineAccountState<StrangerState>({
  name: 'strangers',
  collections: [HELD],
  load: (data) => {
    // The shared empty Map (libs/lazy) until a first message is held: most accounts hold none.
    let held = emptyMap<string, HeldMessage>();
    for (const [k, v] of data.get(HELD) ?? []) {
      const [from, xml] = unpack(v) as [string, string];
      (held = filledMap(held)).set(k, { from, xml });
    }
    return { windowEnds: 0, sent: 0, held };
  },
  hooks: {
    contactAdded: (state, account, contact) => release(state, account, contact),
  },
  messages: {
    routing(state, account, msg) {
      return msg.dir === 'out' ? limitOutbound(state, account, msg) : inbound(state, account, msg);
    },
  },
});

/** A peer that cannot be a stranger: the account itself, a server, a service on a subdomain of a served domain. */
function neverStranger(account: AccountContext, peer: string): boolean {
  if (peer === account.bare || !hasLocalpart(peer)) return true;
  const domain = domainPart(peer);
  const { hosts } = account.server;
  return !hosts.has(domain) && hosts.has(domain.slice(domain.indexOf('.') + 1));
}

function counted(type: string): boolean {
  return type !== 'error' && type !== 'groupchat';
}

function limitOutbound(state: StrangerState, account: AccountContext, msg: MessageEvent): void | Promise<void> {
  const rule = account.server.config.spam.strangerRate;
  if (!rule.enabled || !counted(msg.type)) return;
  const peer = bareJid(msg.to);
  const c = account.contact(peer);
  if ((c && c.subscription !== 'none') || neverStranger(account, peer)) return;
  const now = Date.now();
  if (now >= state.windowEnds) {
    state.windowEnds = now + rule.windowMs;
    state.sent = 0;
  }
  if (++state.sent > rule.perAccount) {
    msg.refuse(new StanzaError('policy-violation', `too many messages to people who are not your contacts: at most ${rule.perAccount} per ${rule.windowMs / 1000} s`, 'wait'));
    return;
  }
  const domain = domainPart(account.bare);
  return account.server.rates.hit(`strangers:${domain}`, rule.windowMs).then((n) => {
    if (n > rule.perDomain) msg.refuse(new StanzaError('policy-violation', `too many messages from ${domain} to people who are not contacts; try again later`, 'wait'));
  }, (e: unknown) => {
    // The shared counters failing never stops a message: the account's own limit still holds.
    warn('the domain rate counter is unavailable; messages to strangers are limited per account only', { error: e });
  });
}

function inbound(state: StrangerState, account: AccountContext, msg: MessageEvent): void | Promise<void> {
  const { policy, maxHeld } = account.server.config.spam.strangers;
  if (policy === 'deliver' || !counted(msg.type)) return;
  const domain = domainPart(account.bare);
  const peer = bareJid(msg.from);
  if (account.contact(peer) || neverStranger(account, peer)) {
    // Only this server says who is a stranger: a marker that came with the message is not ours.
    if (policy === 'mark' && msg.xml.includes(NS_STRANGER)) msg.replace(withoutMarker(msg.stanza(), domain));
    return;
  }
  switch (policy) {
    case 'mark': {
      const stanza = withoutMarker(msg.stanza(), domain);
      stanza.children.push(el('stranger', { xmlns: NS_STRANGER, by: domain }));
      msg.replace(stanza);
      return;
    }
    case 'drop':
      msg.refuse(new StanzaError('service-unavailable', 'the recipient takes messages only from contacts'));
      return;
    case 'hold': {
      // Chat states and receipts from a stranger mean nothing later: only messages with a body wait.
      if (!child(msg.stanza(), 'body')) {
        msg.keep();
        return;
      }
      if (state.held.size >= maxHeld) {
        msg.refuse(new StanzaError('resource-constraint', 'too many messages from people who are not contacts wait for this recipient', 'wait'));
        return;
      }
      return hold(state, account, msg, peer, domain);
    }
  }
}

function withoutMarker(stanza: Element, domain: string): Element {
  stanza.children = stanza.children.filter((c) => !(isElement(c) && c.name === 'stranger' && c.attrs.xmlns === NS_STRANGER && c.attrs.by === domain));
  return stanza;
}

async function hold(state: StrangerState, account: AccountContext, msg: MessageEvent, peer: string, domain: string): Promise<void> {
  const stanza = msg.stanza();
  // When it reached the server, as offline storage says it (XEP-0203).
  if (!stanza.children.some((c) => isElement(c) && c.name === 'delay' && c.attrs.xmlns === NS_DELAY && c.attrs.from === domain)) {
    stanza.children.push(el('delay', { xmlns: NS_DELAY, from: domain, stamp: new Date().toISOString() }, 'Held: sender not in roster'));
  }
  const field = `${peer}\u0000${String(Date.now() * 1000 + (sequence++ % 1000)).padStart(20, '0')}`;
  const held = { from: msg.from, xml: serialize(stanza) };
  await account.server.store.hset(account.bare, HELD, field, pack([held.from, held.xml]));
  (state.held = filledMap(state.held)).set(field, held);
  msg.keep();
}

/** The recipient added `contact`: what it sent meanwhile is routed to the account now, as if just sent. */
async function release(state: StrangerState, account: AccountContext, contact: string): Promise<void> {
  if (state.held.size === 0) return;
  const fields = [...state.held.keys()].filter((k) => k.slice(0, k.indexOf('\u0000')) === contact).sort();
  if (fields.length === 0) return;
  const b = account.server.store.batch(account.bare);
  for (const f of fields) b.hdel(HELD, f);
  await b.exec();
  for (const f of fields) {
    const { xml } = state.held.get(f)!;
    deleteFrom(state.held, f);
    account.sendStanza(parseFragment(xml));
  }
}

/** How many messages wait for an account (tests, the CLI). */
export async function heldCount(store: AccountContext['server']['store'], bare: string): Promise<number> {
  return store.hlen(bare, HELD);
}

export default defineModule({
  name: 'strangers',
  state: [strangerState],
});
