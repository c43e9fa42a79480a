// Helpers for IM and presence tests: predicates on what a client received,
// roster calls, a raw login, and making two users contacts.
import { xml, type Stanza, type TestClient } from './clients.ts';
import { PASSWORD } from './parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from './raw.ts';

export const NS_ROSTER = 'jabber:iq:roster';
export const jid = (local: string) => `${local}@localhost`;

export const errorCondition = (s: Stanza) => s.getChild('error')?.getChildElements()[0]?.name;

export const presenceFrom = (from: string, type?: string) => (s: Stanza) =>
  s.is('presence') && (s.attrs.from === from || s.attrs.from?.startsWith(`${from}/`) === true) && s.attrs.type === type;

export const rosterPush = (contact: string, pred: (item: Stanza) => boolean = () => true) => (s: Stanza) => {
  if (!s.is('iq') || s.attrs.type !== 'set') return false;
  const item = s.getChild('query', NS_ROSTER)?.getChild('item');
  return item?.attrs.jid === contact && pred(item);
};

/** Authenticate on a raw socket (PLAIN over loopback) and restart the stream; not yet bound. */
export async function rawAuthenticated(port: number, user: string, timeoutMs = 5000): Promise<RawClient> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/, timeoutMs);
  c.send(plainAuth(user, PASSWORD));
  await c.waitFor(/<success/, timeoutMs);
  c.send(STREAM_OPEN());
  await c.waitFor(/urn:ietf:params:xml:ns:xmpp-bind/, timeoutMs);
  return c;
}

/** Log in on a raw socket (PLAIN over loopback) and bind a resource. */
export async function rawLogin(port: number, user: string, resource: string, timeoutMs = 5000): Promise<RawClient> {
  const c = await rawAuthenticated(port, user, timeoutMs);
  c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
  await c.waitFor(/<jid>/, timeoutMs);
  return c;
}

export async function rosterGet(c: TestClient, ver?: string): Promise<Stanza> {
  return c.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: NS_ROSTER, ver })));
}

/** a and b end with a subscription of 'both'. */
export async function befriend(a: TestClient, al: string, b: TestClient, bl: string): Promise<void> {
  await a.send(xml('presence', { to: jid(bl), type: 'subscribe' }));
  await b.waitFor(presenceFrom(jid(al), 'subscribe'));
  await b.send(xml('presence', { to: jid(al), type: 'subscribed' }));
  await b.send(xml('presence', { to: jid(al), type: 'subscribe' }));
  await a.waitFor(presenceFrom(jid(bl), 'subscribe'));
  await a.send(xml('presence', { to: jid(bl), type: 'subscribed' }));
  await a.waitFor(rosterPush(jid(bl), (i) => i.attrs.subscription === 'both'));
  await b.waitFor(rosterPush(jid(al), (i) => i.attrs.subscription === 'both'));
}
