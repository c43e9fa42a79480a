// The personal eventing service (XEP-0163) seen by real clients
// (@xmpp/client): publish/items/retract/delete, publish-options and access
// models, +notify notifications resolved through entity capabilities
// (XEP-0115, answered by the clients' own disco#info), last-item delivery on
// login, and the payloads modern clients keep there (OMEMO, avatars, nickname,
// bookmarks) carried unchanged. Run against the embedded server and the
// cluster (users on different c2s nodes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { befriend, jid, rosterGet } from '../support/im.ts';
import type { Deployment } from '../support/parley.ts';

/** Small limits, so the refusals are quick to reach. */
export const PEP_CONFIG = { pep: { maxItems: 10, maxItemBytes: 4096 } };

const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_OWNER = `${NS_PUBSUB}#owner`;
const NS_EVENT = `${NS_PUBSUB}#event`;
const NS_ERRORS = `${NS_PUBSUB}#errors`;
const NS_INFO = 'http://jabber.org/protocol/disco#info';
const NS_CAPS = 'http://jabber.org/protocol/caps';
const NS_NICK = 'http://jabber.org/protocol/nick';
const DEVICELIST = 'eu.siacs.conversations.axolotl.devicelist';
const NS_OMEMO = 'eu.siacs.conversations.axolotl';

let n = 0;
const fresh = (tag: string) => `${tag}${++n}p`;

interface IqFailure { condition?: string; element?: Stanza }

const request = (c: TestClient, type: 'get' | 'set', payload: Stanza, to?: string): Promise<Stanza> =>
  c.xmpp.iqCaller.request(xml('iq', { type, to }, payload), 30_000);

const refused = (c: TestClient, type: 'get' | 'set', payload: Stanza, to?: string): Promise<IqFailure> =>
  request(c, type, payload, to).then((r) => { throw new Error(`expected an error, got ${r.toString()}`); }, (e: IqFailure) => e);

/** The pubsub#errors condition of a refusal, when there is one. */
const appCondition = (e: IqFailure): string | undefined => {
  const error = e.element?.name === 'error' ? e.element : e.element?.getChild('error');
  return error?.getChildElements().find((c) => c.attrs.xmlns === NS_ERRORS)?.name;
};

const form = (type: string, fields: Record<string, string>) => xml('x', { xmlns: 'jabber:x:data', type: 'submit' },
  xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, type)),
  ...Object.entries(fields).map(([k, v]) => xml('field', { var: k }, xml('value', {}, v))));

const publishIq = (node: string, payload: Stanza | undefined, opts: { id?: string; options?: Record<string, string> } = {}) =>
  xml('pubsub', NS_PUBSUB, xml('publish', { node }, xml('item', { id: opts.id }, payload)),
    opts.options ? xml('publish-options', {}, form(`${NS_PUBSUB}#publish-options`, opts.options)) : undefined);

const publish = async (c: TestClient, node: string, payload: Stanza, opts: { id?: string; options?: Record<string, string> } = {}): Promise<string> => {
  const r = await request(c, 'set', publishIq(node, payload, opts));
  return r.getChild('pubsub', NS_PUBSUB)!.getChild('publish')!.getChild('item')!.attrs.id!;
};

const itemsOf = async (c: TestClient, owner: string | undefined, node: string, attrs: { max_items?: string } = {}, ids: string[] = []): Promise<Stanza[]> => {
  const r = await request(c, 'get', xml('pubsub', NS_PUBSUB, xml('items', { node, ...attrs }, ...ids.map((id) => xml('item', { id })))), owner);
  return r.getChild('pubsub', NS_PUBSUB)!.getChild('items')!.getChildren('item');
};

const nick = (s: string) => xml('nick', NS_NICK, s);

/** XEP-0115 §5.1 for a client with one identity and these features. */
function capsVer(features: string[]): string {
  const s = `client/pc//Parley test<${[...features].sort().map((f) => `${f}<`).join('')}`;
  return createHash('sha1').update(s).digest('base64');
}

const isEvent = (from: string, node: string, pred: (items: Stanza) => boolean = () => true) => (s: Stanza) => {
  if (!s.is('message') || s.attrs.type !== 'headline' || s.attrs.from !== from) return false;
  const items = s.getChild('event', NS_EVENT)?.getChild('items');
  return items?.attrs.node === node && pred(items);
};

export function pepScenarios(deployment: () => Deployment): void {
  const port = (i: number) => deployment().ports[i % deployment().ports.length];

  async function users(...tags: string[]): Promise<string[]> {
    const out = tags.map(fresh);
    for (const u of out) await deployment().addUser(u);
    return out;
  }

  /** A client that answers disco#info with its features and advertises them in caps; counts the queries. */
  async function online(local: string, i: number, notify: string[] = [], resource?: string): Promise<TestClient & { discoAsked: () => number }> {
    const c = await connect(port(i), local, { resource });
    const features = [NS_INFO, ...notify.map((node) => `${node}+notify`)];
    const ver = capsVer(features);
    let asked = 0;
    c.xmpp.iqCallee.get(NS_INFO, 'query', () => {
      asked++;
      return xml('query', { xmlns: NS_INFO, node: `https://parley.test#${ver}` }, xml('identity', { category: 'client', type: 'pc', name: 'Parley test' }),
        ...features.map((f) => xml('feature', { var: f })));
    });
    await rosterGet(c);
    await c.send(xml('presence', {}, xml('c', { xmlns: NS_CAPS, hash: 'sha-1', node: 'https://parley.test', ver })));
    return Object.assign(c, { discoAsked: () => asked });
  }

  test('disco#info of an account shows the PEP identity and the pubsub features', async () => {
    const [a] = await users('pepdisco');
    const alice = await online(a, 0);
    try {
      const q = (await request(alice, 'get', xml('query', NS_INFO), jid(a))).getChild('query')!;
      assert.deepEqual(q.getChildren('identity').map((i) => `${i.attrs.category}/${i.attrs.type}`), ['account/registered', 'pubsub/pep']);
      const features = q.getChildren('feature').map((f) => f.attrs.var);
      for (const f of ['publish', 'retract-items', 'delete-nodes', 'publish-options', 'access-presence', 'access-open', 'access-whitelist',
        'persistent-items', 'auto-create', 'last-published']) assert.ok(features.includes(`${NS_PUBSUB}#${f}`), `feature #${f}`);
    } finally {
      await alice.stop();
    }
  });

  test('publish creates the node; items (all, by id, max_items), retract, delete; ids are made when absent', async () => {
    const [a] = await users('pepitems');
    const alice = await online(a, 0);
    try {
      const node = 'urn:example:notes';
      const ids = [await publish(alice, node, xml('note', 'urn:example', 'one'), { id: 'first' })];
      for (const t of ['two', 'three']) ids.push(await publish(alice, node, xml('note', 'urn:example', t)));
      assert.equal(ids[0], 'first');
      assert.ok(ids[1] && ids[2] && ids[1] !== ids[2], 'the server made distinct ids');
      const all = await itemsOf(alice, undefined, node);
      assert.deepEqual(all.map((i) => i.attrs.id), ids);
      assert.deepEqual(all.map((i) => i.getChildText('note', 'urn:example')), ['one', 'two', 'three']);
      assert.deepEqual((await itemsOf(alice, jid(a), node, { max_items: '2' })).map((i) => i.getChildText('note', 'urn:example')), ['two', 'three']);
      assert.deepEqual((await itemsOf(alice, jid(a), node, {}, ['first'])).map((i) => i.attrs.id), ['first']);
      // Publishing an existing id replaces that item.
      await publish(alice, node, xml('note', 'urn:example', 'uno'), { id: 'first' });
      assert.deepEqual((await itemsOf(alice, undefined, node)).map((i) => i.getChildText('note', 'urn:example')), ['two', 'three', 'uno']);
      await request(alice, 'set', xml('pubsub', NS_PUBSUB, xml('retract', { node }, xml('item', { id: ids[1] }))));
      assert.deepEqual((await itemsOf(alice, undefined, node)).map((i) => i.attrs.id), [ids[2], 'first']);
      assert.equal((await refused(alice, 'set', xml('pubsub', NS_PUBSUB, xml('retract', { node }, xml('item', { id: 'nope' }))))).condition, 'item-not-found');
      await request(alice, 'set', xml('pubsub', NS_OWNER, xml('delete', { node })));
      assert.equal((await refused(alice, 'get', xml('pubsub', NS_PUBSUB, xml('items', { node })))).condition, 'item-not-found');
    } finally {
      await alice.stop();
    }
  });

  test('access models: presence (subscribed contacts), open (anyone), whitelist (the owner only); preconditions', async () => {
    const [a, b, c] = await users('pepacca', 'pepaccb', 'pepaccc');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    const carol = await online(c, 1);
    try {
      await befriend(alice, a, bob, b);
      await publish(alice, NS_NICK, nick('Alice'));
      assert.equal((await itemsOf(bob, jid(a), NS_NICK))[0].getChildText('nick', NS_NICK), 'Alice');
      const stranger = await refused(carol, 'get', xml('pubsub', NS_PUBSUB, xml('items', { node: NS_NICK })), jid(a));
      assert.equal(stranger.condition, 'not-authorized');
      assert.equal(appCondition(stranger), 'presence-subscription-required');

      await publish(alice, 'urn:example:open', xml('x', 'urn:example', 'public'), { options: { 'pubsub#access_model': 'open' } });
      assert.equal((await itemsOf(carol, jid(a), 'urn:example:open')).length, 1);

      await publish(alice, 'urn:example:secret', xml('x', 'urn:example', 'mine'), { options: { 'pubsub#access_model': 'whitelist', 'pubsub#persist_items': 'true' } });
      const closed = await refused(bob, 'get', xml('pubsub', NS_PUBSUB, xml('items', { node: 'urn:example:secret' })), jid(a));
      assert.equal(closed.condition, 'not-allowed');
      assert.equal(appCondition(closed), 'closed-node');
      assert.equal((await itemsOf(alice, undefined, 'urn:example:secret')).length, 1);

      // §7.1.5: options that do not match the existing node refuse the publish and change nothing.
      const pre = await refused(alice, 'set', publishIq('urn:example:secret', xml('x', 'urn:example', 'leak'), { options: { 'pubsub#access_model': 'open' } }));
      assert.equal(pre.condition, 'conflict');
      assert.equal(appCondition(pre), 'precondition-not-met');
      assert.deepEqual((await itemsOf(alice, undefined, 'urn:example:secret')).map((i) => i.getChildText('x', 'urn:example')), ['mine']);
      // The owner may reconfigure (what OMEMO clients do after a precondition failure).
      await request(alice, 'set', xml('pubsub', NS_OWNER, xml('configure', { node: 'urn:example:secret' }, form(`${NS_PUBSUB}#node_config`, { 'pubsub#access_model': 'open' }))));
      assert.equal((await itemsOf(carol, jid(a), 'urn:example:secret')).length, 1);
    } finally {
      await Promise.all([alice.stop(), bob.stop(), carol.stop()]);
    }
  });

  test('bad input is refused with the XEP-0060 error and changes nothing', async () => {
    const [a, b] = await users('pepbada', 'pepbadb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      const node = 'urn:example:limits';
      await publish(alice, node, xml('x', 'urn:example', 'kept'), { id: 'k' });
      const forbidden = await refused(bob, 'set', publishIq(node, xml('x', 'urn:example', 'forged')), jid(a));
      assert.equal(forbidden.condition, 'forbidden');
      const tooMany = await refused(alice, 'set', publishIq('urn:example:big', xml('x', 'urn:example', 'x'), { options: { 'pubsub#max_items': '11' } }));
      assert.equal(tooMany.condition, 'not-acceptable');
      const tooBig = await refused(alice, 'set', publishIq(node, xml('x', 'urn:example', 'y'.repeat(5000))));
      assert.equal(tooBig.condition, 'not-acceptable');
      assert.equal(appCondition(tooBig), 'payload-too-big');
      const noItem = await refused(alice, 'set', xml('pubsub', NS_PUBSUB, xml('publish', { node })));
      assert.equal(noItem.condition, 'bad-request');
      const twoPayloads = await refused(alice, 'set', xml('pubsub', NS_PUBSUB, xml('publish', { node }, xml('item', {}, xml('a', 'urn:a'), xml('b', 'urn:b')))));
      assert.equal(twoPayloads.condition, 'bad-request');
      assert.equal(appCondition(twoPayloads), 'invalid-payload');
      const noNode = await refused(alice, 'set', xml('pubsub', NS_PUBSUB, xml('publish', {}, xml('item', {}, xml('a', 'urn:a')))));
      assert.equal(appCondition(noNode), 'nodeid-required');
      // The node's configuration: beyond the server's max_items, malformed forms, an unsupported access model.
      const configure = (fields: Record<string, string>, formType = `${NS_PUBSUB}#node_config`) =>
        refused(alice, 'set', xml('pubsub', NS_OWNER, xml('configure', { node }, form(formType, fields))));
      assert.equal((await configure({ 'pubsub#max_items': '11' })).condition, 'not-acceptable');
      assert.equal((await configure({ 'pubsub#max_items': 'lots' })).condition, 'not-acceptable');
      assert.equal((await configure({ 'pubsub#access_model': 'open' }, 'urn:example:other')).condition, 'bad-request', 'wrong FORM_TYPE');
      const noVar = await refused(alice, 'set', xml('pubsub', NS_OWNER, xml('configure', { node },
        xml('x', { xmlns: 'jabber:x:data', type: 'submit' }, xml('field', {}, xml('value', {}, 'open'))))));
      assert.equal(noVar.condition, 'bad-request', 'a field without a var');
      const authorize = await configure({ 'pubsub#access_model': 'authorize' });
      assert.equal(authorize.condition, 'not-acceptable');
      assert.equal(appCondition(authorize), 'unsupported');
      const optionsOver = await refused(alice, 'set', publishIq(node, xml('x', 'urn:example', 'z'), { options: { 'pubsub#max_items': '11' } }));
      assert.equal(optionsOver.condition, 'not-acceptable', 'publish-options beyond the limit on an existing node');
      const cfg = await request(alice, 'get', xml('pubsub', NS_OWNER, xml('configure', { node })));
      const value = (v: string) => cfg.getChild('pubsub', NS_OWNER)!.getChild('configure')!.getChild('x', 'jabber:x:data')!
        .getChildren('field').find((f) => f.attrs.var === v)?.getChildText('value');
      assert.deepEqual([value('pubsub#access_model'), value('pubsub#max_items')], ['presence', '10'], 'the configuration is as it was');
      assert.deepEqual((await itemsOf(alice, undefined, node)).map((i) => i.getChildText('x', 'urn:example')), ['kept']);
      assert.equal((await refused(alice, 'get', xml('pubsub', NS_PUBSUB, xml('items', { node: 'urn:example:big' })))).condition, 'item-not-found');
      // The node keeps at most max_items: the oldest goes.
      await publish(alice, 'urn:example:two', xml('x', 'urn:example', '1'), { options: { 'pubsub#max_items': '2' } });
      for (const v of ['2', '3']) await publish(alice, 'urn:example:two', xml('x', 'urn:example', v));
      assert.deepEqual((await itemsOf(alice, undefined, 'urn:example:two')).map((i) => i.getChildText('x', 'urn:example')), ['2', '3']);
    } finally {
      await Promise.all([alice.stop(), bob.stop()]);
    }
  });

  test('notifications go to +notify resources allowed by the access model; last item on login; caps asked once per ver', async () => {
    const [a, b, c] = await users('pepnota', 'pepnotb', 'pepnotc');
    const alice = await online(a, 0, [NS_NICK]);
    const bob = await online(b, 1, [NS_NICK]);
    const carol = await online(c, 1, [NS_NICK]);
    const bobQuiet = await online(b, 0, [], 'quiet'); // no +notify: nothing for this one
    const clients = [alice, bob, carol, bobQuiet];
    try {
      await befriend(alice, a, bob, b);
      // Bob's presence (with caps) reached Alice's account; its disco#info answer may still be on its way.
      for (let i = 0; ; i++) {
        const id = `n${i}`;
        await publish(alice, NS_NICK, nick(`Alice ${i}`), { id });
        if (await bob.waitFor(isEvent(jid(a), NS_NICK, (items) => items.getChild('item')?.attrs.id === id), 500).then(() => true, () => false)) break;
        if (i > 20) throw new Error('bob never got a notification');
      }
      await publish(alice, NS_NICK, nick('Alice!'), { id: 'final' });
      const ev = await bob.waitFor(isEvent(jid(a), NS_NICK, (items) => items.getChild('item')?.attrs.id === 'final'));
      assert.equal(ev.getChild('event', NS_EVENT)!.getChild('items')!.getChild('item')!.getChildText('nick', NS_NICK), 'Alice!');
      await alice.waitFor(isEvent(jid(a), NS_NICK, (items) => items.getChild('item')?.attrs.id === 'final'));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(carol.received.filter(isEvent(jid(a), NS_NICK)).length, 0, 'a stranger gets nothing from a presence node');
      assert.equal(bobQuiet.received.filter(isEvent(jid(a), NS_NICK)).length, 0, 'a resource without +notify gets nothing');

      // A new resource of the contact gets the last item when it comes online.
      const bob2 = await online(b, 0, [NS_NICK], 'second');
      clients.push(bob2);
      const last = await bob2.waitFor(isEvent(jid(a), NS_NICK));
      assert.equal(last.getChild('event', NS_EVENT)!.getChild('items')!.getChild('item')!.attrs.id, 'final');
      assert.ok(alice.discoAsked() + bob.discoAsked() + carol.discoAsked() >= 1, 'an unknown ver was resolved by asking a client');
      assert.equal(bob2.discoAsked(), 0, 'the caps of this ver were known (cached cluster-wide): the client was not asked');
    } finally {
      await Promise.all(clients.map((x) => x.stop()));
    }
  });

  test('OMEMO device list and bundle (open) fetched by another user, avatars, nickname, bookmarks: payloads unchanged', async () => {
    const [a, b] = await users('pepomea', 'pepomeb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      const open = { 'pubsub#access_model': 'open' };
      const devicelist = xml('list', NS_OMEMO, xml('device', { id: '1234', label: 'Phone "α" & <tab>' }), xml('device', { id: '5678' }));
      const bundle = xml('bundle', NS_OMEMO,
        xml('signedPreKeyPublic', { signedPreKeyId: '1' }, 'BcFzDh+kDYOEJFfL3Dv2ZaN1rPRjZAM4MFcr3OD+Ux4y'),
        xml('signedPreKeySignature', {}, 'xK0+3ZX9b4e5Kf2r4RK0SKk0ntq0uY5GFSJ0GJkXb0yU/4c2Wn8RE0/l3QWJFA=='),
        xml('identityKey', {}, 'BYvK7gtfbPe1t3yQnXyKfOqLBG4s6QvfHUIiQd2Cmm1Q'),
        xml('prekeys', {}, ...[1, 2, 3].map((id) => xml('preKeyPublic', { preKeyId: String(id) }, `BQ${id}+/key==`))));
      const bundleNode = `${NS_OMEMO}.bundles:1234`;
      await publish(alice, DEVICELIST, devicelist, { id: 'current', options: open });
      await publish(alice, bundleNode, bundle, { id: 'current', options: open });
      // Bob is no contact of Alice: open nodes are for anyone.
      const [gotList] = await itemsOf(bob, jid(a), DEVICELIST);
      assert.equal(gotList.getChildElements()[0].toString(), devicelist.toString());
      const [gotBundle] = await itemsOf(bob, jid(a), bundleNode, { max_items: '1' });
      assert.equal(gotBundle.attrs.id, 'current');
      assert.equal(gotBundle.getChildElements()[0].toString(), bundle.toString());

      // XEP-0084 avatar data + metadata, XEP-0172 nickname, XEP-0402 bookmarks (whitelist).
      const data = xml('data', 'urn:xmpp:avatar:data', 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==');
      const hash = '9f1c0c1f5b0d6f4e3e1f1a4b0f3e2d1c0b9a8f7e';
      const metadata = xml('metadata', 'urn:xmpp:avatar:metadata', xml('info', { bytes: '70', id: hash, height: '1', width: '1', type: 'image/png' }));
      await publish(alice, 'urn:xmpp:avatar:data', data, { id: hash, options: open });
      await publish(alice, 'urn:xmpp:avatar:metadata', metadata, { id: hash, options: open });
      await publish(alice, NS_NICK, nick('Ålice'), { options: open });
      const conference = xml('conference', { xmlns: 'urn:xmpp:bookmarks:1', name: 'The Room', autojoin: 'true' }, xml('nick', {}, 'al'));
      await publish(alice, 'urn:xmpp:bookmarks:1', conference, { id: 'room@conference.localhost', options: { 'pubsub#access_model': 'whitelist', 'pubsub#persist_items': 'true', 'pubsub#max_items': 'max' } });
      for (const [node, payload] of [['urn:xmpp:avatar:data', data], ['urn:xmpp:avatar:metadata', metadata]] as const) {
        const [item] = await itemsOf(bob, jid(a), node, {}, [hash]);
        assert.equal(item.getChildElements()[0].toString(), payload.toString(), node);
      }
      assert.equal((await itemsOf(bob, jid(a), NS_NICK))[0].getChildText('nick', NS_NICK), 'Ålice');
      const [bm] = await itemsOf(alice, undefined, 'urn:xmpp:bookmarks:1');
      assert.equal(bm.attrs.id, 'room@conference.localhost');
      assert.equal(bm.getChildElements()[0].toString(), conference.toString());
      assert.equal((await refused(bob, 'get', xml('pubsub', NS_PUBSUB, xml('items', { node: 'urn:xmpp:bookmarks:1' })), jid(a))).condition, 'not-allowed');
    } finally {
      await Promise.all([alice.stop(), bob.stop()]);
    }
  });
}
