// The account services every client expects, seen by real clients
// (@xmpp/client): service discovery, ping, time, version, blocking (XEP-0191),
// privacy lists (XEP-0016), vCards (XEP-0054/0153), last activity (XEP-0012),
// private storage (XEP-0049), in-band registration (XEP-0077) and the CLI.
// Run against the embedded server and the cluster (users on different c2s nodes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, isMessageWithBody, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { befriend, errorCondition, jid, presenceFrom, rosterGet, rosterPush } from '../support/im.ts';
import { PASSWORD, type Deployment } from '../support/parley.ts';
import { rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';

const run = promisify(execFile);

/** Limits these scenarios exercise; small where that keeps them fast. */
export const ACCOUNT_CONFIG = {
  privacy: { maxBlockedJids: 10_000, maxListItems: 1000 },
  vcard: { maxBytes: 8192 },
  privateStorage: { maxBytes: 4096, maxElements: 4 },
  registration: { open: true, maxPerIp: 3, windowSeconds: 3600, minPasswordLength: 6 },
  contactAddresses: { abuse: ['mailto:abuse@localhost'], admin: ['xmpp:admin@localhost'] },
  c2s: { pingIntervalSeconds: 1, pingTimeoutSeconds: 5 },
};

const NS_BLOCKING = 'urn:xmpp:blocking';
const NS_PRIVACY = 'jabber:iq:privacy';
const NS_VCARD = 'vcard-temp';
const NS_LAST = 'jabber:iq:last';
const NS_PRIVATE = 'jabber:iq:private';
const NS_REGISTER = 'jabber:iq:register';
const NS_INFO = 'http://jabber.org/protocol/disco#info';

let n = 0;
const fresh = (tag: string) => `${tag}${++n}s`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface IqFailure { condition?: string; element?: Stanza }

const request = (c: TestClient, type: 'get' | 'set', payload: Stanza, to?: string): Promise<Stanza> =>
  c.xmpp.iqCaller.request(xml('iq', { type, to }, payload), 30_000);

const refused = (c: TestClient, type: 'get' | 'set', payload: Stanza, to?: string): Promise<IqFailure> =>
  request(c, type, payload, to).then((r) => { throw new Error(`expected an error, got ${r.toString()}`); }, (e: IqFailure) => e);

/** The <text/> of a refused iq (the client's error carries the <error/> element or the whole stanza). */
const errorText = (e: IqFailure): string => {
  const el = e.element;
  const error = el?.name === 'error' ? el : el?.getChild('error');
  return error?.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-stanzas') ?? '';
};

const items = (name: string, jids: string[]) => xml(name, { xmlns: NS_BLOCKING }, ...jids.map((j) => xml('item', { jid: j })));

const blockPush = (kind: 'block' | 'unblock', pred: (jids: string[]) => boolean = () => true) => (s: Stanza) => {
  if (!s.is('iq') || s.attrs.type !== 'set') return false;
  const p = s.getChild(kind, NS_BLOCKING);
  return p !== undefined && pred(p.getChildren('item').map((i) => i.attrs.jid!));
};

const privacyPush = (list: string) => (s: Stanza) =>
  s.is('iq') && s.attrs.type === 'set' && s.getChild('query', NS_PRIVACY)?.getChild('list')?.attrs.name === list;

type Item = { type?: string; value?: string; action: 'allow' | 'deny'; order: number; stanzas?: string[] };
const privacyList = (name: string, list: Item[]) => xml('query', NS_PRIVACY, xml('list', { name },
  ...list.map((i) => xml('item', { type: i.type, value: i.value, action: i.action, order: String(i.order) }, ...(i.stanzas ?? []).map((k) => xml(k))))));

const message = (to: string, body: string, id?: string) => xml('message', { to, type: 'chat', id }, xml('body', {}, body));
const isError = (id: string) => (s: Stanza) => s.attrs.id === id && s.attrs.type === 'error';

export interface AccountScenarioOptions {
  /** A config file the CLI can run with against this deployment. */
  cliConfig(): string;
  /** The CLI can reach live actors (cluster); otherwise `user del` is tested after the server stops. */
  liveRemoval: boolean;
}

export function cli(config: string, ...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['bin/parley.mjs', ...args, '--config', config], { timeout: 30_000 });
}

export function accountScenarios(deployment: () => Deployment, opts: AccountScenarioOptions): void {
  const port = (i: number) => deployment().ports[i % deployment().ports.length];

  async function online(local: string, i: number, o: { resource?: string; password?: string } = {}): Promise<TestClient> {
    const c = await connect(port(i), local, o);
    await rosterGet(c);
    await c.send(xml('presence'));
    return c;
  }

  async function users(...tags: string[]): Promise<string[]> {
    const out = tags.map(fresh);
    for (const u of out) await deployment().addUser(u);
    return out;
  }

  /** Message from → to until it arrives (initial presences are processed asynchronously). */
  async function reachable(from: TestClient, to: TestClient, toJid: string): Promise<void> {
    for (let i = 0; ; i++) {
      const body = `ready?${++n}`;
      await from.send(message(toJid, body));
      if (await to.waitFor(isMessageWithBody(body), 300).then(() => true, () => false)) return;
      if (i > 20) throw new Error(`${toJid} never became reachable`);
    }
  }

  test('disco#info of the server and of an account lists the enabled modules; XEP-0157 addresses; items', async () => {
    const [a, b] = await users('disco', 'discob');
    const alice = await connect(port(0), a);
    try {
      const info = (await request(alice, 'get', xml('query', NS_INFO), 'localhost')).getChild('query')!;
      assert.deepEqual(info.getChild('identity')!.attrs, { category: 'server', type: 'im', name: 'Parley' });
      const features = info.getChildren('feature').map((f) => f.attrs.var);
      for (const f of [NS_INFO, 'http://jabber.org/protocol/disco#items', 'urn:xmpp:ping', 'urn:xmpp:time', NS_LAST, NS_PRIVACY,
        NS_BLOCKING, NS_VCARD, NS_PRIVATE, NS_REGISTER]) assert.ok(features.includes(f), `server feature ${f}`);
      assert.ok(!features.includes('jabber:iq:version'), 'software version is off by default');
      const form = info.getChild('x', 'jabber:x:data')!;
      const field = (v: string) => form.getChildren('field').find((f) => f.attrs.var === v);
      assert.equal(field('FORM_TYPE')!.getChildText('value'), 'http://jabber.org/network/serverinfo');
      assert.deepEqual(field('abuse-addresses')!.getChildren('value').map((v) => v.getText()), ['mailto:abuse@localhost']);
      assert.deepEqual(field('admin-addresses')!.getChildren('value').map((v) => v.getText()), ['xmpp:admin@localhost']);

      for (const target of [jid(b), jid(a)]) {
        const acct = (await request(alice, 'get', xml('query', NS_INFO), target)).getChild('query')!;
        assert.deepEqual(acct.getChild('identity')!.attrs, { category: 'account', type: 'registered' });
        const af = acct.getChildren('feature').map((f) => f.attrs.var);
        for (const f of [NS_VCARD, NS_LAST, 'urn:xmpp:ping']) assert.ok(af.includes(f), `account feature ${f}`);
        assert.ok(!af.includes(NS_BLOCKING), 'blocking is a server feature');
      }
      const itemsResult = await request(alice, 'get', xml('query', 'http://jabber.org/protocol/disco#items'), 'localhost');
      // The one service beside the server: multi-user chat (on by default).
      assert.deepEqual(itemsResult.getChild('query')!.getChildren('item').map((i) => i.attrs.jid), ['conference.localhost']);
      const node = await refused(alice, 'get', xml('query', { xmlns: NS_INFO, node: 'nope' }), 'localhost');
      assert.equal(node.condition, 'item-not-found');
    } finally {
      await alice.stop();
    }
  });

  test('ping both ways, entity time, software version off by default', async () => {
    const [a, b] = await users('ping', 'pingb');
    const alice = await connect(port(0), a);
    try {
      assert.equal((await request(alice, 'get', xml('ping', 'urn:xmpp:ping'), 'localhost')).attrs.type, 'result');
      assert.equal((await request(alice, 'get', xml('ping', 'urn:xmpp:ping'), jid(b))).attrs.type, 'result', 'an account is pinged through the server');
      // The server pings a silent client (interval 1 s here); answering keeps the session.
      await alice.waitFor((s) => s.is('iq') && s.attrs.type === 'get' && s.getChild('ping', 'urn:xmpp:ping') !== undefined, 5000);
      const time = (await request(alice, 'get', xml('time', 'urn:xmpp:time'), 'localhost')).getChild('time')!;
      assert.equal(time.getChildText('tzo'), '+00:00');
      assert.ok(Math.abs(Date.parse(time.getChildText('utc')!) - Date.now()) < 60_000, 'utc is now');
      const version = await refused(alice, 'get', xml('query', 'jabber:iq:version'), 'localhost');
      assert.equal(version.condition, 'service-unavailable');
      const uptime = (await request(alice, 'get', xml('query', NS_LAST), 'localhost')).getChild('query')!;
      assert.ok(Number(uptime.attrs.seconds) >= 0, 'server uptime');
    } finally {
      await alice.stop();
    }
  });

  test('blocking: the list, pushes to the resources that asked, unavailable to the blocked contact, polite refusal both ways, unblock', async () => {
    const [a, b] = await users('blka', 'blkb');
    const a1 = await online(a, 0, { resource: 'one' });
    const a2 = await online(a, 0, { resource: 'two' });
    const bob = await online(b, 1);
    try {
      await befriend(a1, a, bob, b);
      await bob.waitFor(presenceFrom(`${jid(a)}/one`));
      await bob.waitFor(presenceFrom(`${jid(a)}/two`));
      assert.equal((await request(a1, 'get', xml('blocklist', NS_BLOCKING))).getChild('blocklist')!.getChildren('item').length, 0);

      await request(a1, 'set', items('block', [jid(b)]));
      await a1.waitFor(blockPush('block', (j) => j.length === 1 && j[0] === jid(b)));
      for (const r of ['one', 'two']) await bob.waitFor((s) => s.is('presence') && s.attrs.type === 'unavailable' && s.attrs.from === `${jid(a)}/${r}`);

      // bob hears nothing but "no such service"
      await bob.send(message(jid(a), 'let me in', 'blocked-1'));
      assert.equal(errorCondition(await bob.waitFor(isError('blocked-1'))), 'service-unavailable');
      await bob.send(message(`${jid(a)}/one`, 'let me in', 'blocked-2'));
      assert.equal(errorCondition(await bob.waitFor(isError('blocked-2'))), 'service-unavailable');
      assert.equal((await refused(bob, 'get', xml('ping', 'urn:xmpp:ping'), jid(a))).condition, 'service-unavailable');
      assert.equal((await refused(bob, 'get', xml('ping', 'urn:xmpp:ping'), `${jid(a)}/two`)).condition, 'service-unavailable');
      await bob.send(xml('presence', {}, xml('status', {}, 'can you see me')));
      // alice's own writes to bob are refused with the blocking error
      await a2.send(message(jid(b), 'psst', 'to-blocked'));
      const own = await a2.waitFor(isError('to-blocked'));
      assert.equal(errorCondition(own), 'not-acceptable');
      assert.ok(own.getChild('error')!.getChild('blocked', 'urn:xmpp:blocking:errors'), '<blocked/> application condition');
      await sleep(300);
      for (const c of [a1, a2]) {
        assert.ok(!c.received.some(isMessageWithBody('let me in')), 'no message from the blocked contact');
        assert.ok(!c.received.some((s) => s.is('presence') && s.getChildText('status') === 'can you see me'), 'no presence from the blocked contact');
      }
      assert.ok(!bob.received.some(isMessageWithBody('psst')));
      assert.ok(!a2.received.some(blockPush('block')), 'no push to a resource that never asked for the list');
      assert.deepEqual((await request(a2, 'get', xml('blocklist', NS_BLOCKING))).getChild('blocklist')!.getChildren('item').map((i) => i.attrs.jid), [jid(b)]);
      assert.equal((await refused(bob, 'get', xml('blocklist', NS_BLOCKING), jid(a))).condition, 'service-unavailable', 'a blocked entity cannot even ask');

      await request(a1, 'set', items('unblock', [jid(b)]));
      for (const c of [a1, a2]) await c.waitFor(blockPush('unblock', (j) => j[0] === jid(b)));
      await bob.waitFor((s) => presenceFrom(`${jid(a)}/one`)(s) && bob.received.indexOf(s) > bob.received.findIndex(isError('blocked-2')));
      await reachable(bob, a1, `${jid(a)}/one`);

      await request(a1, 'set', items('block', ['spammer@example.org', 'spam.example', `${jid(b)}/laptop`]));
      await request(a1, 'set', xml('unblock', NS_BLOCKING));
      await a2.waitFor(blockPush('unblock', (j) => j.length === 0));
      assert.equal((await request(a1, 'get', xml('blocklist', NS_BLOCKING))).getChild('blocklist')!.getChildren('item').length, 0, 'unblock-all');

      assert.equal((await refused(a1, 'set', xml('block', NS_BLOCKING))).condition, 'bad-request');
      assert.equal((await refused(a1, 'set', items('block', ['a@b@c']))).condition, 'jid-malformed');
    } finally {
      for (const c of [a1, a2, bob]) await c.stop();
    }
  });

  test('a block list of 10,000 JIDs is stored, listed and enforced; one more is refused with a clear error', async () => {
    const [a, b, c] = await users('bigblk', 'bigblkb', 'bigblkc');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    const carol = await online(c, 1);
    try {
      const t0 = Date.now();
      for (let batch = 0; batch < 10; batch++) {
        const jids = Array.from({ length: 1000 }, (_, i) => `spam${batch * 1000 + i}@example.org`);
        if (batch === 9) jids[999] = jid(b);
        await request(alice, 'set', items('block', jids));
      }
      const took = Date.now() - t0;
      const list = (await request(alice, 'get', xml('blocklist', NS_BLOCKING))).getChild('blocklist')!.getChildren('item');
      assert.equal(list.length, 10_000);
      await bob.send(message(jid(a), 'blocked among 10k', 'big-1'));
      assert.equal(errorCondition(await bob.waitFor(isError('big-1'))), 'service-unavailable');
      await reachable(carol, alice, jid(a));
      const over = await refused(alice, 'set', items('block', ['one-too-many@example.org']));
      assert.equal(over.condition, 'not-acceptable');
      assert.match(errorText(over), /limited to 10000 JIDs/);
      assert.ok(took < 20_000, `10 block requests of 1,000 took ${took} ms`);
    } finally {
      for (const x of [alice, bob, carol]) await x.stop();
    }
  });

  test('privacy lists: named lists, pushes, the active list per resource, per-session delivery to the bare JID, the default list and its conflicts', async () => {
    const [a, b] = await users('priva', 'privb');
    const r1 = await online(a, 0, { resource: 'r1' });
    const r2 = await online(a, 1, { resource: 'r2' });
    const bob = await online(b, 1);
    try {
      await request(r1, 'set', privacyList('nobob', [{ type: 'jid', value: jid(b), action: 'deny', order: 1, stanzas: ['message'] }]));
      for (const c of [r1, r2]) await c.waitFor(privacyPush('nobob'));
      await request(r1, 'set', privacyList('open', [{ action: 'allow', order: 1 }]));
      const names = (await request(r2, 'get', xml('query', NS_PRIVACY))).getChild('query')!;
      assert.deepEqual(names.getChildren('list').map((l) => l.attrs.name), ['nobob', 'open']);
      assert.equal(names.getChild('active'), undefined);
      const got = (await request(r2, 'get', xml('query', NS_PRIVACY, xml('list', { name: 'nobob' })))).getChild('query')!.getChild('list')!;
      assert.deepEqual(got.getChild('item')!.attrs, { type: 'jid', value: jid(b), action: 'deny', order: '1' });
      assert.ok(got.getChild('item')!.getChild('message'));

      await request(r1, 'set', xml('query', NS_PRIVACY, xml('active', { name: 'nobob' })));
      assert.equal((await request(r1, 'get', xml('query', NS_PRIVACY))).getChild('query')!.getChild('active')!.attrs.name, 'nobob');
      await bob.send(message(`${jid(a)}/r1`, 'to r1', 'p-r1'));
      assert.equal(errorCondition(await bob.waitFor(isError('p-r1'))), 'service-unavailable');
      await bob.send(message(`${jid(a)}/r2`, 'to r2'));
      await r2.waitFor(isMessageWithBody('to r2'));
      await bob.send(message(jid(a), 'to the bare jid'));
      await r2.waitFor(isMessageWithBody('to the bare jid'));
      await sleep(300);
      assert.ok(!r1.received.some(isMessageWithBody('to r1')) && !r1.received.some(isMessageWithBody('to the bare jid')), 'r1 gets nothing from bob');
      await bob.send(xml('presence', { to: `${jid(a)}/r1` }, xml('status', {}, 'presence still flows')));
      await r1.waitFor((s) => s.is('presence') && s.getChildText('status') === 'presence still flows');

      // r2 is governed by the default list (it has no active list): changing the default from r1 conflicts
      assert.equal((await refused(r1, 'set', xml('query', NS_PRIVACY, xml('default', { name: 'nobob' })))).condition, 'conflict');
      await request(r2, 'set', xml('query', NS_PRIVACY, xml('active', { name: 'open' })));
      await request(r1, 'set', xml('query', NS_PRIVACY, xml('default', { name: 'nobob' })));
      assert.equal((await request(r2, 'get', xml('query', NS_PRIVACY))).getChild('query')!.getChild('default')!.attrs.name, 'nobob');
      assert.equal((await refused(r1, 'set', xml('query', NS_PRIVACY, xml('list', { name: 'nobob' })))).condition, 'conflict', 'the default list cannot be removed');
      assert.equal((await refused(r1, 'set', xml('query', NS_PRIVACY, xml('list', { name: 'open' })))).condition, 'conflict', "another resource's active list cannot be removed");
      assert.equal((await refused(r1, 'set', xml('query', NS_PRIVACY, xml('active', { name: 'nope' })))).condition, 'item-not-found');
      assert.equal((await refused(r1, 'set', privacyList('bad', [{ action: 'deny', order: 1 }, { action: 'allow', order: 1 }]))).condition, 'bad-request', 'orders are unique');
      assert.equal((await refused(r1, 'set', privacyList('bad', [{ type: 'subscription', value: 'maybe', action: 'deny', order: 1 }]))).condition, 'bad-request');
      assert.equal((await refused(bob, 'get', xml('query', NS_PRIVACY), jid(a))).condition, 'forbidden', "another account's lists are private");

      // r2 declines its active list: the default applies to it again; removing 'open' is now allowed
      await request(r2, 'set', xml('query', NS_PRIVACY, xml('active')));
      await bob.send(message(`${jid(a)}/r2`, 'default applies', 'p-def'));
      assert.equal(errorCondition(await bob.waitFor(isError('p-def'))), 'service-unavailable');
      await request(r1, 'set', xml('query', NS_PRIVACY, xml('list', { name: 'open' })));
      await r2.waitFor(privacyPush('open'));
    } finally {
      for (const c of [r1, r2, bob]) await c.stop();
    }
  });

  test('privacy lists by group and subscription: presence-out hidden from a group, messages only from mutual contacts, outbound refused', async () => {
    const [a, b, c] = await users('grpa', 'grpb', 'grpc');
    const alice = await online(a, 0, { resource: 'desk' });
    const bob = await online(b, 1);
    const carol = await online(c, 1);
    try {
      await befriend(alice, a, bob, b);
      await request(alice, 'set', xml('query', 'jabber:iq:roster', xml('item', { jid: jid(b) }, xml('group', {}, 'Work'))));
      await bob.waitFor(presenceFrom(`${jid(a)}/desk`));
      await request(alice, 'set', privacyList('hide-work', [
        { type: 'group', value: 'Work', action: 'deny', order: 10, stanzas: ['presence-out'] },
        { type: 'subscription', value: 'both', action: 'allow', order: 20, stanzas: ['message'] },
        { type: 'jid', value: jid(c), action: 'deny', order: 30 },
      ]));
      bob.received.length = 0;
      await request(alice, 'set', xml('query', NS_PRIVACY, xml('active', { name: 'hide-work' })));
      await bob.waitFor(presenceFrom(`${jid(a)}/desk`, 'unavailable'));
      await alice.send(xml('presence', {}, xml('status', {}, 'hidden from work')));
      await reachable(bob, alice, `${jid(a)}/desk`);
      await carol.send(message(`${jid(a)}/desk`, 'from a stranger', 'grp-c'));
      assert.equal(errorCondition(await carol.waitFor(isError('grp-c'))), 'service-unavailable');
      await alice.send(message(jid(c), 'to a stranger', 'grp-out'));
      const out = await alice.waitFor(isError('grp-out'));
      assert.equal(errorCondition(out), 'not-acceptable');
      assert.equal(out.getChild('error')!.getChild('blocked', 'urn:xmpp:blocking:errors'), undefined, 'a privacy list is not the block list');
      await sleep(300);
      assert.ok(!bob.received.some((s) => s.is('presence') && s.getChildText('status') === 'hidden from work'), 'presence-out denied to the group');
      assert.ok(!carol.received.some(isMessageWithBody('to a stranger')));
      // declining the list shows alice to bob again
      await request(alice, 'set', xml('query', NS_PRIVACY, xml('active')));
      await bob.waitFor((s) => presenceFrom(`${jid(a)}/desk`)(s) && s.getChildText('status') === 'hidden from work');
    } finally {
      for (const x of [alice, bob, carol]) await x.stop();
    }
  });

  test('a privacy list of 1,000 items is accepted and enforced; 1,001 items are refused with a clear error', async () => {
    const [a, b, c] = await users('bigpl', 'bigplb', 'bigplc');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    const carol = await online(c, 1);
    try {
      const list: Item[] = Array.from({ length: 999 }, (_, i) => ({ type: 'jid', value: `noise${i}@example.org`, action: 'deny', order: i + 1 }));
      list.push({ type: 'jid', value: jid(b), action: 'deny', order: 5000, stanzas: ['message'] });
      await request(alice, 'set', privacyList('big', list));
      await request(alice, 'set', xml('query', NS_PRIVACY, xml('default', { name: 'big' })));
      await bob.send(message(jid(a), 'denied by item 1000', 'pl-b'));
      assert.equal(errorCondition(await bob.waitFor(isError('pl-b'))), 'service-unavailable');
      await reachable(carol, alice, jid(a));
      const got = (await request(alice, 'get', xml('query', NS_PRIVACY, xml('list', { name: 'big' })))).getChild('query')!.getChild('list')!;
      assert.equal(got.getChildren('item').length, 1000);
      const over = await refused(alice, 'set', privacyList('bigger', [...list, { action: 'allow', order: 9999 }]));
      assert.equal(over.condition, 'not-acceptable');
      assert.match(errorText(over), /at most 1000 items/);
    } finally {
      for (const x of [alice, bob, carol]) await x.stop();
    }
  });

  test('vCard: set one\'s own, fetched by anyone while the owner is offline, the size limit stores nothing, XEP-0153 hash in presence carried through', async () => {
    const [a, b, c] = await users('vca', 'vcb', 'vcc');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await befriend(alice, a, bob, b);
      const photo = Buffer.alloc(600, 7).toString('base64');
      const card = xml('vCard', NS_VCARD, xml('FN', {}, 'Alice Liddell'), xml('NICKNAME', {}, 'alice'),
        xml('PHOTO', {}, xml('TYPE', {}, 'image/png'), xml('BINVAL', {}, photo)));
      await request(alice, 'set', card);
      assert.equal((await request(alice, 'get', xml('vCard', NS_VCARD))).getChild('vCard')!.getChildText('FN'), 'Alice Liddell');
      // XEP-0153: the avatar hash travels in presence untouched
      const hash = 'a3c1e4d2b5f60718293a4b5c6d7e8f9012345678';
      await alice.send(xml('presence', {}, xml('x', 'vcard-temp:x:update', xml('photo', {}, hash))));
      const p = await bob.waitFor((s) => presenceFrom(jid(a))(s) && s.getChild('x', 'vcard-temp:x:update') !== undefined);
      assert.equal(p.getChild('x', 'vcard-temp:x:update')!.getChildText('photo'), hash);

      const big = xml('vCard', NS_VCARD, xml('FN', {}, 'Too Big'), xml('DESC', {}, 'x'.repeat(9000)));
      const over = await refused(alice, 'set', big);
      assert.equal(over.condition, 'not-acceptable');
      assert.match(errorText(over), /at most 8192 bytes/);
      await alice.stop();
      // a stranger fetches it while alice is offline: the old one, nothing of the refused one
      const carol = await connect(port(1), c);
      try {
        const fetched = (await request(carol, 'get', xml('vCard', NS_VCARD), jid(a))).getChild('vCard')!;
        assert.equal(fetched.getChildText('FN'), 'Alice Liddell');
        assert.equal(fetched.getChild('PHOTO')!.getChildText('BINVAL'), photo);
        const none = (await request(carol, 'get', xml('vCard', NS_VCARD), jid(b))).getChild('vCard')!;
        assert.equal(none.children.length, 0, 'no vCard is an empty one');
        assert.equal((await refused(carol, 'set', card, jid(a))).condition, 'forbidden', "nobody sets another's vCard");
        assert.equal((await refused(carol, 'get', xml('vCard', NS_VCARD), 'nobody-at-all@localhost')).condition, 'service-unavailable');
      } finally {
        await carol.stop();
      }
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('last activity: a subscribed contact learns when an offline user left and what they said; others are refused', async () => {
    const [a, b, c] = await users('lasta', 'lastb', 'lastc');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    const carol = await online(c, 1);
    try {
      await befriend(alice, a, bob, b);
      assert.equal((await request(bob, 'get', xml('query', NS_LAST), jid(a))).getChild('query')!.attrs.seconds, '0', 'online: 0');
      await alice.send(xml('presence', { type: 'unavailable' }, xml('status', {}, 'gone fishing')));
      await bob.waitFor(presenceFrom(jid(a), 'unavailable'));
      await alice.stop();
      await sleep(1100);
      const last = (await request(bob, 'get', xml('query', NS_LAST), jid(a))).getChild('query')!;
      assert.ok(Number(last.attrs.seconds) >= 1, `seconds=${last.attrs.seconds}`);
      assert.equal(last.getText(), 'gone fishing');
      assert.equal((await refused(carol, 'get', xml('query', NS_LAST), jid(a))).condition, 'forbidden', 'not subscribed');
      assert.equal((await refused(bob, 'get', xml('query', NS_LAST), jid(c))).condition, 'forbidden');
    } finally {
      for (const x of [alice, bob, carol]) await x.stop();
    }
  });

  test('private XML storage: kept per account by name and namespace, limits, nobody else reads it', async () => {
    const [a, b] = await users('pvt', 'pvtb');
    const alice = await connect(port(0), a);
    const bob = await connect(port(1), b);
    try {
      const bookmarks = xml('storage', 'storage:bookmarks', xml('conference', { jid: 'room@conference.localhost', autojoin: 'true' }, xml('nick', {}, 'alice')));
      await request(alice, 'set', xml('query', NS_PRIVATE, bookmarks));
      const got = (await request(alice, 'get', xml('query', NS_PRIVATE, xml('storage', 'storage:bookmarks')))).getChild('query')!.getChild('storage', 'storage:bookmarks')!;
      assert.equal(got.getChild('conference')!.attrs.jid, 'room@conference.localhost');
      const empty = (await request(alice, 'get', xml('query', NS_PRIVATE, xml('prefs', 'urn:example:prefs')))).getChild('query')!.getChild('prefs', 'urn:example:prefs')!;
      assert.equal(empty.children.length, 0, 'nothing stored: the empty element');
      assert.equal((await refused(bob, 'get', xml('query', NS_PRIVATE, xml('storage', 'storage:bookmarks')), jid(a))).condition, 'forbidden');
      assert.equal((await refused(alice, 'set', xml('query', NS_PRIVATE, xml('x', NS_PRIVATE)))).condition, 'not-acceptable');
      const big = await refused(alice, 'set', xml('query', NS_PRIVATE, xml('big', 'urn:example:big', 'y'.repeat(5000))));
      assert.equal(big.condition, 'not-acceptable');
      assert.match(errorText(big), /at most 4096/);
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('in-band registration before authentication, limited per IP address; the new account logs in', async () => {
    const name = fresh('inband');
    const raw = await rawConnect(port(0));
    try {
      raw.send(STREAM_OPEN());
      const features = await raw.waitFor(/<\/stream:features>/);
      assert.match(features, /<register xmlns="http:\/\/jabber.org\/features\/iq-register"\/>/);
      raw.send(`<iq type='get' id='r0'><query xmlns='${NS_REGISTER}'/></iq>`);
      assert.match(await raw.waitFor(/id="r0"[^]*<\/iq>/), /<username\/><password\/>/);
      const reg = (id: string, user: string, pw = PASSWORD) => raw.send(`<iq type='set' id='${id}'><query xmlns='${NS_REGISTER}'><username>${user}</username><password>${pw}</password></query></iq>`);
      reg('r1', name);
      assert.match(await raw.waitFor(/<iq type="result" id="r1"/), /type="result" id="r1"/);
      reg('r2', name);
      assert.match(await raw.waitFor(/id="r2"[^]*<\/iq>/), /id="r2"[^]*<conflict/);
      reg('r3', `${name}x`, 'short');
      assert.match(await raw.waitFor(/id="r3"[^]*<\/iq>/), /id="r3"[^]*<not-acceptable[^]*at least 6 characters/);
      reg('r4', `${name}y`);
      const limited = await raw.waitFor(/id="r4"[^]*<\/iq>/);
      assert.match(limited, /id="r4"[^]*<resource-constraint[^]*too many registration requests/);
    } finally {
      raw.close();
    }
    const c = await connect(port(1), name);
    try {
      assert.equal(c.jid.split('/')[0], jid(name));
    } finally {
      await c.stop();
    }
    await assert.rejects(connect(port(0), `${name}y`), 'the refused registration created nothing');
  });

  test('in-band registration answers the first thing to fix: the form, then the username (malformed, taken), then the password policy', async () => {
    const [taken] = await users('regtaken');
    const name = fresh('regfree');
    // Each address has its own request budget (3 in ACCOUNT_CONFIG): two addresses, neither the other test's.
    const first = await rawConnect(port(1), '127.0.0.1', '127.0.0.2');
    const second = await rawConnect(port(0), '127.0.0.1', '127.0.0.3');
    const reply = async (raw: RawClient, id: string, query: string) => {
      raw.send(`<iq type='set' id='${id}'><query xmlns='${NS_REGISTER}'>${query}</query></iq>`);
      const out = await raw.waitFor(new RegExp(`<iq [^>]*id="${id}"[^]*?</iq>`));
      return new RegExp(`<iq [^>]*id="${id}"[^]*?</iq>`).exec(out)![0];
    };
    try {
      for (const raw of [first, second]) {
        raw.send(STREAM_OPEN());
        await raw.waitFor(/<\/stream:features>/);
      }
      const conflict = await reply(first, 'o1', `<username>${taken}</username><password>short</password>`);
      assert.match(conflict, /type="error"/);
      assert.match(conflict, /<error type="cancel"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/><text [^>]*>[^<]*is taken<\/text>/,
        'a taken username is a conflict even with a password the policy refuses');
      assert.doesNotMatch(conflict, /short/, 'the password is not echoed back');
      assert.match(await reply(first, 'o2', '<username>a b</username><password>short</password>'), /<jid-malformed /,
        'a malformed username comes before the password policy');
      const weak = await reply(first, 'o3', `<username>${name}</username><password>short</password>`);
      assert.match(weak, /<error type="modify"><not-acceptable [^>]*\/><text [^>]*>the password must have at least 6 characters<\/text>/);

      assert.match(await reply(second, 'o4', `<username>${name}</username><username>${name}x</username><password>${PASSWORD}</password>`),
        /<error type="modify"><bad-request [^>]*\/><text [^>]*>a registration carries one username and one password</,
        'a malformed form comes first');
      assert.match(await reply(second, 'o5', `<username>${taken}</username>`),
        /<error type="modify"><not-acceptable [^>]*\/><text [^>]*>a username and a password are required</,
        'missing information is not-acceptable (XEP-0077 §3.1), before the username is looked at');
    } finally {
      first.close();
      second.close();
    }
    await assert.rejects(connect(port(0), name, { password: 'short' }), 'nothing was created');
  });

  test('password change in-band; account removal tells contacts, ends the sessions and leaves no data', async () => {
    const [a, b] = await users('rema', 'remb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await befriend(alice, a, bob, b);
      await request(alice, 'set', xml('query', NS_REGISTER, xml('username', {}, a), xml('password', {}, 'new-secret')));
      assert.equal((await refused(alice, 'set', xml('query', NS_REGISTER, xml('username', {}, b), xml('password', {}, 'hijack!!')), 'localhost')).condition, 'not-allowed');
      await assert.rejects(connect(port(1), a), 'the old password no longer works');
      const again = await connect(port(1), a, { password: 'new-secret', resource: 'again' });
      await again.stop();
      await request(alice, 'set', xml('vCard', NS_VCARD, xml('FN', {}, 'to be deleted')));
      await request(alice, 'set', items('block', ['someone@example.org']));

      const closed = new Promise<string>((resolve) => alice.xmpp.on('error', (e) => resolve(String((e as { condition?: string }).condition))));
      await request(alice, 'set', xml('query', NS_REGISTER, xml('remove')), 'localhost');
      assert.equal(await closed, 'not-authorized', 'the stream ends once the account is gone');
      await bob.waitFor(presenceFrom(jid(a), 'unavailable'));
      await bob.waitFor(presenceFrom(jid(a), 'unsubscribe'));
      await bob.waitFor(presenceFrom(jid(a), 'unsubscribed'));
      await bob.waitFor(rosterPush(jid(a), (i) => i.attrs.subscription === 'none'));
      const store = deployment().store;
      for (const coll of ['account', 'roster', 'sessions', 'vcard', 'blocklist', 'privacy', 'last']) {
        assert.equal((await store.hgetall(jid(a), coll)).size, 0, `no ${coll} left`);
      }
      await assert.rejects(connect(port(0), a, { password: 'new-secret' }), 'the account is gone');
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('CLI: a user\'s roster, block list and vCard; `user del` removes every trace and tells the contacts', async () => {
    const [a, b] = await users('clia', 'clib');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await befriend(alice, a, bob, b);
      await request(alice, 'set', items('block', ['spam@example.org']));
      await request(alice, 'set', xml('vCard', NS_VCARD, xml('FN', {}, 'Alice from the CLI')));
      await alice.stop();
      const config = opts.cliConfig();
      assert.match((await cli(config, 'user', 'roster', jid(a))).stdout, new RegExp(`^${jid(b)}\\tboth`, 'm'));
      assert.equal((await cli(config, 'user', 'blocks', jid(a))).stdout.trim(), 'spam@example.org');
      assert.match((await cli(config, 'user', 'vcard', jid(a))).stdout, /<FN>Alice from the CLI<\/FN>/);
      await assert.rejects(cli(config, 'user', 'roster', 'nobody-at-all@localhost'), /no account/);
      if (!opts.liveRemoval) return;
      assert.match((await cli(config, 'user', 'del', jid(a))).stdout, /deleted/);
      await bob.waitFor(presenceFrom(jid(a), 'unsubscribed'));
      await bob.waitFor(rosterPush(jid(a), (i) => i.attrs.subscription === 'none'));
      for (const coll of ['account', 'roster', 'vcard', 'blocklist']) assert.equal((await deployment().store.hgetall(jid(a), coll)).size, 0, `no ${coll} left`);
      await assert.rejects(cli(config, 'user', 'del', jid(a)), /no account/);
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });
}
