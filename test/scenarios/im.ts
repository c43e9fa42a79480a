// Instant messaging and presence as RFC 6121 says, seen by real clients.
// Run against the embedded server and the cluster (users on different nodes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessageWithBody, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { befriend, errorCondition, jid, presenceFrom, rawLogin, rosterGet, rosterPush, NS_ROSTER } from '../support/im.ts';
import type { Deployment } from '../support/parley.ts';

/** The limits these scenarios exercise, small so the tests stay fast. */
export const IM_CONFIG = {
  roster: { maxItems: 20 },
  offline: { quota: 5 },
  c2s: { pingIntervalSeconds: 1, pingTimeoutSeconds: 1 },
};

let n = 0;
const fresh = (tag: string) => `${tag}${++n}x`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function imScenarios(deployment: () => Deployment): void {
  const port = (i: number) => deployment().ports[i % deployment().ports.length];

  /** Connect, fetch the roster (an interested resource) and send initial presence. */
  async function online(local: string, i: number, opts: { resource?: string; priority?: number; presence?: boolean } = {}): Promise<TestClient> {
    const c = await connect(port(i), local, { resource: opts.resource });
    await rosterGet(c);
    if (opts.presence !== false) await c.send(xml('presence', {}, opts.priority !== undefined ? xml('priority', {}, String(opts.priority)) : undefined));
    return c;
  }

  async function users(...tags: string[]): Promise<string[]> {
    const out = tags.map(fresh);
    for (const u of out) await deployment().addUser(u);
    return out;
  }

  test('roster: set, push to every interested resource, versioning, remove, errors', async () => {
    const [u] = await users('roster');
    const r1 = await online(u, 0, { resource: 'one' });
    const r2 = await online(u, 1, { resource: 'two' });
    try {
      const empty = await rosterGet(r1);
      const ver0 = empty.getChild('query')!.attrs.ver!;
      assert.equal(empty.getChild('query')!.getChildren('item').length, 0);
      await r1.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', NS_ROSTER,
        xml('item', { jid: 'friend@example.org', name: 'Friend' }, xml('group', {}, 'Pals'), xml('group', {}, 'Café')))));
      for (const r of [r1, r2]) {
        const push = await r.waitFor(rosterPush('friend@example.org'));
        const item = push.getChild('query')!.getChild('item')!;
        assert.equal(item.attrs.subscription, 'none');
        assert.deepEqual(item.getChildren('group').map((g) => g.getText()), ['Pals', 'Café']);
      }
      const full = await rosterGet(r1);
      const ver1 = full.getChild('query')!.attrs.ver!;
      assert.notEqual(ver1, ver0, 'the version changes with the roster');
      assert.equal(full.getChild('query')!.getChild('item')!.attrs.name, 'Friend');
      const unchanged = await rosterGet(r1, ver1);
      assert.equal(unchanged.getChild('query'), undefined, 'an up-to-date version gets an empty result (XEP-0237)');

      const bad = await r1.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', NS_ROSTER,
        xml('item', { jid: 'a@b' }), xml('item', { jid: 'c@d' })))).then(() => 'ok', (e: { condition?: string }) => e.condition);
      assert.equal(bad, 'bad-request', 'two items in one set');
      const missing = await r1.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', NS_ROSTER,
        xml('item', { jid: 'nobody@example.org', subscription: 'remove' })))).then(() => 'ok', (e: { condition?: string }) => e.condition);
      assert.equal(missing, 'item-not-found');

      await r1.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', NS_ROSTER, xml('item', { jid: 'friend@example.org', subscription: 'remove' }))));
      await r2.waitFor(rosterPush('friend@example.org', (i) => i.attrs.subscription === 'remove'));
      assert.equal((await rosterGet(r1)).getChild('query')!.getChildren('item').length, 0);
    } finally {
      await r1.stop();
      await r2.stop();
    }
  });

  test('roster size is limited with a clear error', async () => {
    const [u] = await users('full');
    const c = await online(u, 0);
    try {
      for (let i = 0; i < IM_CONFIG.roster.maxItems; i++) {
        await c.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', NS_ROSTER, xml('item', { jid: `c${i}@example.org` }))));
      }
      const over = await c.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', NS_ROSTER, xml('item', { jid: 'one-too-many@example.org' }))))
        .then(() => undefined, (e: { condition?: string; element?: Stanza }) => e);
      assert.equal(over?.condition, 'not-allowed');
      assert.match(over?.element?.toString() ?? '', /roster is full/);
    } finally {
      await c.stop();
    }
  });

  test('subscription requested while the contact is out of contact, approved later, both ways; presence flows', async () => {
    const [a, b] = await users('suba', 'subb');
    const alice = await online(a, 0);
    try {
      await alice.send(xml('presence', { to: jid(b), type: 'subscribe' }, xml('nick', 'http://jabber.org/protocol/nick', 'Alice')));
      const ask = await alice.waitFor(rosterPush(jid(b), (i) => i.attrs.ask === 'subscribe'));
      assert.equal(ask.getChild('query')!.getChild('item')!.attrs.subscription, 'none');
      await sleep(200);
      // bob comes online later: the stored request is delivered, never auto-approved (2.3.7, 3.2.2)
      const bob = await online(b, 1);
      try {
        const req = await bob.waitFor(presenceFrom(jid(a), 'subscribe'));
        assert.equal(req.attrs.from, jid(a), 'subscription requests come from the bare JID');
        assert.equal(req.getChild('nick', 'http://jabber.org/protocol/nick')?.getText(), 'Alice', 'extensions carried');
        assert.equal((await rosterGet(bob)).getChild('query')!.getChildren('item').length, 0, 'the requester is not in the roster before approval');
        await bob.send(xml('presence', { to: jid(a), type: 'subscribed' }));
        await alice.waitFor(rosterPush(jid(b), (i) => i.attrs.subscription === 'to' && i.attrs.ask === undefined));
        await bob.waitFor(rosterPush(jid(a), (i) => i.attrs.subscription === 'from'));
        await alice.waitFor(presenceFrom(jid(a).replace(a, b), undefined));
        // a presence change of bob's reaches alice; alice's does not reach bob (he is not subscribed)
        await bob.send(xml('presence', {}, xml('show', {}, 'away'), xml('status', { 'xml:lang': 'en' }, 'lunch'), xml('x', { xmlns: 'urn:example:custom' }, xml('mood', {}, 'hungry'))));
        const away = await alice.waitFor((s) => presenceFrom(jid(b))(s) && s.getChildText('show') === 'away');
        assert.equal(away.getChildText('status'), 'lunch');
        assert.equal(away.getChild('status')!.attrs['xml:lang'], 'en');
        assert.equal(away.getChild('x', 'urn:example:custom')?.getChildText('mood'), 'hungry', 'unknown extensions arrive untouched (3.1.4)');
        await alice.send(xml('presence', {}, xml('status', {}, 'alice-only-for-subscribers')));
        await sleep(500);
        assert.ok(!bob.received.some((s) => s.is('presence') && s.getChildText('status') === 'alice-only-for-subscribers'), 'no presence to a non-subscriber (2.3.1)');
        // unavailable on logout
        await bob.stop();
        await alice.waitFor(presenceFrom(jid(b), 'unavailable'));
      } finally {
        await bob.stop();
      }
    } finally {
      await alice.stop();
    }
  });

  test('refusal is reported (5.1.5); cancelation at any time by either side (5.1.7, 5.1.16)', async () => {
    const [a, b] = await users('refa', 'refb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await alice.send(xml('presence', { to: jid(b), type: 'subscribe' }));
      await bob.waitFor(presenceFrom(jid(a), 'subscribe'));
      await bob.send(xml('presence', { to: jid(a), type: 'unsubscribed' }));
      await alice.waitFor(presenceFrom(jid(b), 'unsubscribed'));
      await alice.waitFor(rosterPush(jid(b), (i) => i.attrs.subscription === 'none' && i.attrs.ask === undefined));

      await befriend(alice, a, bob, b);
      await alice.waitFor(presenceFrom(jid(b)));
      // alice cancels her subscription to bob: bob's side becomes 'to', alice sees bob go unavailable
      alice.received.length = 0;
      await alice.send(xml('presence', { to: jid(b), type: 'unsubscribe' }));
      await bob.waitFor(rosterPush(jid(a), (i) => i.attrs.subscription === 'to'));
      await bob.waitFor(presenceFrom(jid(a), 'unsubscribe'));
      await alice.waitFor(rosterPush(jid(b), (i) => i.attrs.subscription === 'from'));
      await alice.waitFor(presenceFrom(jid(b), 'unavailable'));
      // bob cancels alice's remaining... bob revokes the subscription alice still grants him? No: bob cancels hers to him
      bob.received.length = 0;
      await alice.send(xml('presence', { to: jid(b), type: 'unsubscribed' }));
      await bob.waitFor(rosterPush(jid(a), (i) => i.attrs.subscription === 'none'));
      await bob.waitFor(presenceFrom(jid(a), 'unavailable'));
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('no third party can create a subscription (5.1.6): an unrequested subscribed changes nothing', async () => {
    const [a, e] = await users('victim', 'eve');
    const alice = await online(a, 0);
    const eve = await online(e, 1);
    try {
      await eve.send(xml('presence', { to: jid(a), type: 'subscribed' }));
      await sleep(500);
      assert.equal((await rosterGet(alice)).getChild('query')!.getChildren('item').length, 0);
      assert.ok(!alice.received.some(rosterPush(jid(e))), 'no roster push');
    } finally {
      await alice.stop();
      await eve.stop();
    }
  });

  test('pre-approval (RFC 6121 §3.4): the roster shows approved=\'true\' until a later request is granted at once', async () => {
    const [a, b] = await users('prea', 'preb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    const itemOf = (iq: Stanza, contact: string) => iq.getChild('query', NS_ROSTER)?.getChildren('item').find((i) => i.attrs.jid === contact);
    try {
      await bob.send(xml('presence', { to: jid(a), type: 'subscribed' }));
      // §3.4.1: the contact is added with subscription none, and the push says it is pre-approved (§2.1.2.1).
      const push = itemOf(await bob.waitFor(rosterPush(jid(a))), jid(a))!;
      assert.deepEqual([push.attrs.subscription, push.attrs.approved, push.attrs.ask], ['none', 'true', undefined]);
      const listed = itemOf(await rosterGet(bob), jid(a));
      assert.equal(listed?.attrs.approved, 'true', 'the roster get shows the pre-approval');

      await alice.send(xml('presence', { to: jid(b), type: 'subscribe' }));
      await alice.waitFor(rosterPush(jid(b), (i) => i.attrs.subscription === 'to'));
      await alice.waitFor(presenceFrom(jid(b)));
      assert.ok(!bob.received.some(presenceFrom(jid(a), 'subscribe')), 'bob is not asked again');
      const consumed = itemOf(await bob.waitFor(rosterPush(jid(a), (i) => i.attrs.subscription === 'from')), jid(a))!;
      assert.equal(consumed.attrs.approved, undefined, 'the approval is used up: the push no longer carries it');
      assert.equal(itemOf(await rosterGet(bob), jid(a))?.attrs.approved, undefined, 'nor does the roster get');
      assert.equal(itemOf(await rosterGet(alice), jid(b))?.attrs.approved, undefined, 'alice approved nothing');
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('a subscription request to an account that does not exist is answered unsubscribed', async () => {
    const [a] = await users('lonely');
    const alice = await online(a, 0);
    try {
      await alice.send(xml('presence', { to: 'no-such-user@localhost', type: 'subscribe' }));
      await alice.waitFor(presenceFrom('no-such-user@localhost', 'unsubscribed'));
      await alice.waitFor(rosterPush('no-such-user@localhost', (i) => i.attrs.ask === undefined && i.attrs.subscription === 'none'));
    } finally {
      await alice.stop();
    }
  });

  test('directed presence reaches a non-contact, and unavailable follows it when the sender leaves (5.2.3)', async () => {
    const [a, c] = await users('dira', 'dirc');
    const alice = await online(a, 0);
    const carol = await online(c, 1, { resource: 'desk' });
    try {
      await alice.send(xml('presence', { to: `${jid(c)}/desk` }, xml('status', {}, 'just for you')));
      const p = await carol.waitFor((s) => s.is('presence') && s.getChildText('status') === 'just for you');
      assert.match(p.attrs.from!, new RegExp(`^${jid(a)}/`));
      await alice.stop();
      await carol.waitFor(presenceFrom(jid(a), 'unavailable'));
    } finally {
      await alice.stop();
      await carol.stop();
    }
  });

  test('messages to the bare JID follow priority; a negative priority gets none; full JIDs always reach', async () => {
    const [a, b] = await users('pria', 'prib');
    const alice = await online(a, 0);
    const high = await online(b, 1, { resource: 'high', priority: 5 });
    const low = await online(b, 0, { resource: 'low', priority: 1 });
    const neg = await online(b, 1, { resource: 'neg', priority: -1 });
    try {
      await sleep(300);
      await alice.send(xml('message', { to: jid(b), type: 'chat' }, xml('body', {}, 'to the bare jid')));
      await high.waitFor(isMessageWithBody('to the bare jid'));
      await alice.send(xml('message', { to: `${jid(b)}/neg`, type: 'chat' }, xml('body', {}, 'to neg')));
      await neg.waitFor(isMessageWithBody('to neg'));
      await sleep(300);
      assert.ok(!low.received.some(isMessageWithBody('to the bare jid')), 'lower priority gets none');
      assert.ok(!neg.received.some(isMessageWithBody('to the bare jid')), 'negative priority gets none');
    } finally {
      for (const c of [alice, high, low, neg]) await c.stop();
    }
  });

  test('a message carries ids, thread, several bodies with xml:lang and unknown payloads untouched, exactly once', async () => {
    const [a, b] = await users('rich', 'richb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await sleep(200);
      const encrypted = xml('encrypted', { xmlns: 'eu.siacs.conversations.axolotl' },
        xml('header', { sid: '12345' }, xml('key', { rid: '678', prekey: 'true' }, 'AAEC/+7d'), xml('iv', {}, 'q83v')), xml('payload', {}, 'ZXhhbXBsZQ=='));
      await alice.send(xml('message', { to: jid(b), type: 'chat', id: 'rich-1', 'xml:lang': 'en' },
        xml('body', {}, 'Hello'), xml('body', { 'xml:lang': 'de' }, 'Hallo'), xml('body', { 'xml:lang': 'ja' }, 'こんにちは 😀'),
        xml('subject', {}, 'greetings'), xml('thread', {}, 'thread-42'), encrypted));
      const m = await bob.waitFor((s) => s.is('message') && s.attrs.id === 'rich-1');
      assert.deepEqual(m.getChildren('body').map((x) => [x.attrs['xml:lang'], x.getText()]), [[undefined, 'Hello'], ['de', 'Hallo'], ['ja', 'こんにちは 😀']]);
      assert.equal(m.getChildText('thread'), 'thread-42');
      assert.equal(m.getChildText('subject'), 'greetings');
      assert.equal(m.getChild('encrypted', 'eu.siacs.conversations.axolotl')?.toString(), encrypted.toString(), 'end-to-end payload byte-for-byte');
      await sleep(300);
      assert.equal(bob.received.filter((s) => s.is('message') && s.attrs.id === 'rich-1').length, 1, 'exactly once (5.4.2)');
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('offline storage: kept, delivered with a delay stamp at the next initial presence, quota bounced', async () => {
    const [a, b] = await users('offa', 'offb');
    const alice = await online(a, 0);
    try {
      for (let i = 0; i < IM_CONFIG.offline.quota; i++) await alice.send(xml('message', { to: jid(b), type: 'chat', id: `off${i}` }, xml('body', {}, `while away ${i}`)));
      await alice.send(xml('message', { to: jid(b), type: 'chat', id: 'over' }, xml('body', {}, 'one too many')));
      const bounced = await alice.waitFor((s) => s.is('message') && s.attrs.id === 'over');
      assert.equal(errorCondition(bounced), 'service-unavailable');
      assert.ok(!alice.received.some((s) => s.attrs.type === 'error' && s.attrs.id?.startsWith('off')), 'stored messages are not bounced');
      const bob = await connect(port(1), b);
      try {
        await sleep(300);
        assert.ok(!bob.received.some(isMessageWithBody('while away 0')), 'nothing before initial presence');
        await bob.send(xml('presence'));
        await bob.waitFor(isMessageWithBody(`while away ${IM_CONFIG.offline.quota - 1}`));
        const got = bob.received.filter((s) => s.is('message') && s.getChildText('body')?.startsWith('while away'));
        assert.deepEqual(got.map((s) => s.attrs.id), Array.from({ length: IM_CONFIG.offline.quota }, (_, i) => `off${i}`));
        const delay = got[0].getChild('delay', 'urn:xmpp:delay');
        assert.ok(delay && !Number.isNaN(Date.parse(delay.attrs.stamp!)), 'XEP-0203 delay stamp');
        assert.equal(got[0].attrs.from?.startsWith(`${jid(a)}/`), true);
      } finally {
        await bob.stop();
      }
      // delivered once: the next login gets nothing more
      const again = await online(b, 0);
      try {
        await sleep(500);
        assert.ok(!again.received.some(isMessageWithBody('while away 0')), 'deleted after delivery');
      } finally {
        await again.stop();
      }
    } finally {
      await alice.stop();
    }
  });

  test('offline messages flushed to a client that closed at once are stored again, not lost', async () => {
    const [a, b] = await users('offra', 'offrb');
    const alice = await online(a, 0);
    try {
      for (let i = 0; i < 3; i++) await alice.send(xml('message', { to: jid(b), type: 'chat', id: `gone${i}` }, xml('body', {}, `kept ${i}`)));
      await sleep(300);
      // Initial presence and the end of the stream in one write: the flush reaches the node after the session is gone.
      const raw = await rawLogin(port(1), b, 'quick');
      raw.socket.end(`<presence/></stream:stream>`);
      await sleep(1000);
      const bob = await online(b, 0);
      try {
        await bob.waitFor(isMessageWithBody('kept 2'), 5000);
        const got = bob.received.filter((s) => s.is('message') && s.getChildText('body')?.startsWith('kept '));
        const raws = raw.output.match(/<body>kept \d<\/body>/g) ?? [];
        // Whatever the quick session did not take is here, once, in order.
        assert.deepEqual(got.map((s) => s.attrs.id), Array.from({ length: 3 }, (_, i) => `gone${i}`).slice(3 - got.length));
        assert.ok(raws.length + got.length >= 3, `${raws.length} written before the close, ${got.length} after`);
        for (const m of got) assert.equal(m.getChildren('delay', 'urn:xmpp:delay').length, 1, 'one delay stamp, the first');
      } finally {
        await bob.stop();
      }
    } finally {
      await alice.stop();
    }
  });

  test('a client that vanishes without closing its stream is detected and its contacts see it unavailable (3.2.4, 3.2.5)', async () => {
    const [a, b] = await users('vana', 'vanb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await befriend(alice, a, bob, b);
    } finally {
      await alice.stop();
    }
    try {
      // alice again, on a client that will go silent: no FIN, no answer to pings (a pulled cable)
      const raw = await rawLogin(port(0), a, 'cable');
      raw.send('<presence><status>here</status></presence>');
      await bob.waitFor((s) => presenceFrom(jid(a))(s) && s.getChildText('status') === 'here');
      raw.socket.pause();
      const gone = await bob.waitFor((s) => presenceFrom(jid(a), 'unavailable')(s) && s.attrs.from === `${jid(a)}/cable`, 8000);
      assert.ok(gone);
      raw.close();
    } finally {
      await bob.stop();
    }
  });


  test('the presence of a contact who is out of contact can be fetched: it is unavailable (3.2.1)', async () => {
    const [a, b] = await users('fetcha', 'fetchb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await befriend(alice, a, bob, b);
    } finally {
      await bob.stop();
    }
    await alice.stop();
    // alice logs in again while bob is away: her server fetches bob's presence for her
    const again = await online(a, 0);
    try {
      const p = await again.waitFor(presenceFrom(jid(b), 'unavailable'));
      assert.equal(p.attrs.from, jid(b));
    } finally {
      await again.stop();
    }
  });

  test('a subscription is private to its two parties (5.1.2): nobody reads another account\'s roster', async () => {
    const [a, e] = await users('private', 'snoop');
    const alice = await online(a, 0);
    const eve = await online(e, 1);
    try {
      const err = await eve.xmpp.iqCaller.request(xml('iq', { type: 'get', to: jid(a) }, xml('query', NS_ROSTER))).then(
        () => 'answered', (x: { condition?: string }) => x.condition);
      assert.equal(err, 'forbidden');
    } finally {
      await alice.stop();
      await eve.stop();
    }
  });

  test('messages flow without presence, and presence without messages (2.1.1, 2.1.2)', async () => {
    const [a, b] = await users('nopres', 'nopresb');
    const alice = await connect(port(0), a, { resource: 'quiet' }); // never sends presence
    const bob = await online(b, 1, { priority: -1 }); // presence only: negative priority
    try {
      await alice.send(xml('message', { to: `${jid(b)}/${bob.jid.split('/')[1]}`, type: 'chat' }, xml('body', {}, 'no presence needed')));
      await bob.waitFor(isMessageWithBody('no presence needed'));
      await bob.send(xml('message', { to: `${jid(a)}/quiet`, type: 'chat' }, xml('body', {}, 'reply to a full jid')));
      await alice.waitFor(isMessageWithBody('reply to a full jid'));
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('no stanza another entity receives carries a client\'s IP address (5.1.17, 5.1.18, 5.2.5, 5.2.6, 5.4.5)', async () => {
    const [a, b] = await users('ipa', 'ipb');
    const alice = await online(a, 0);
    const bob = await online(b, 1);
    try {
      await befriend(alice, a, bob, b);
      await alice.send(xml('message', { to: jid(b), type: 'chat' }, xml('body', {}, 'where am I?')));
      await bob.waitFor(isMessageWithBody('where am I?'));
      await alice.send(xml('presence', { to: `${jid(b)}/${bob.jid.split('/')[1]}` }));
      await alice.stop();
      await bob.waitFor(presenceFrom(jid(a), 'unavailable'));
      const everything = bob.received.map((s) => s.toString()).join('\n');
      assert.doesNotMatch(everything, /127\.0\.0\.\d+|::1|::ffff:/);
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });


  test('initial presence and updates come back to every available resource, the sender included (RFC 6121 §4.2.2)', async () => {
    const [a] = await users('echo');
    const one = await online(a, 0, { resource: 'one' });
    const two = await online(a, 1, { resource: 'two' });
    try {
      await one.waitFor((s) => s.is('presence') && s.attrs.from === `${jid(a)}/one` && s.attrs.type === undefined);
      await two.waitFor((s) => s.is('presence') && s.attrs.from === `${jid(a)}/one`, 5000);
      await one.waitFor((s) => s.is('presence') && s.attrs.from === `${jid(a)}/two`, 5000);
    } finally {
      await one.stop();
      await two.stop();
    }
  });

}
