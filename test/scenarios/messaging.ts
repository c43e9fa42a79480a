// Messaging scenarios that must hold in every mode: each is run against the
// embedded server and against a cluster (users spread over c2s nodes).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessageWithBody, xml, type Stanza } from '../support/clients.ts';
import type { Deployment } from '../support/parley.ts';

let n = 0;
/** A fresh pair of user names per scenario, so scenarios never see each other's traffic. */
const names = (tag: string) => [`${tag}a${++n}`, `${tag}b${n}`] as const;

const errorCondition = (s: Stanza) => s.getChild('error')?.getChildElements()[0]?.name;

export function messagingScenarios(deployment: () => Deployment): void {
  const port = (i: number) => {
    const ports = deployment().ports;
    return ports[i % ports.length];
  };

  test('two users on different connection managers chat both ways, in order', async () => {
    const [a, b] = names('chat');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const alice = await connect(port(0), a, { resource: 'phone' });
    const bob = await connect(port(1), b, { resource: 'laptop' });
    try {
      await bob.send(xml('presence'));
      await alice.send(xml('presence'));
      // wait until bob's initial presence is processed: a message to his bare JID then reaches him
      const deadline = Date.now() + 5000;
      for (;;) {
        await alice.send(xml('message', { to: `${b}@localhost`, type: 'chat', id: 'probe' }, xml('body', {}, 'probe')));
        const got = await Promise.race([
          bob.waitFor(isMessageWithBody('probe'), 300).then(() => true, () => false),
          alice.waitFor((s) => s.is('message') && s.attrs.type === 'error', 300).then(() => false, () => false),
        ]);
        if (got || Date.now() > deadline) break;
        alice.received.length = 0;
      }
      const count = 50;
      for (let i = 0; i < count; i++) await alice.send(xml('message', { to: `${b}@localhost`, type: 'chat', id: `m${i}` }, xml('body', {}, `hello ${i}`)));
      await bob.waitFor(isMessageWithBody(`hello ${count - 1}`));
      const bodies = bob.received.filter((s) => s.is('message') && s.getChildText('body')?.startsWith('hello ')).map((s) => s.getChildText('body'));
      assert.deepEqual(bodies, Array.from({ length: count }, (_, i) => `hello ${i}`), 'each message once, in order');
      const first = bob.received.find(isMessageWithBody('hello 0'))!;
      assert.equal(first.attrs.from, `${a}@localhost/phone`, 'from is stamped with the sender\'s full JID');
      assert.equal(first.attrs.to, `${b}@localhost`);

      await bob.send(xml('message', { to: first.attrs.from, type: 'chat' }, xml('body', {}, 'hi alice')));
      const reply = await alice.waitFor(isMessageWithBody('hi alice'));
      assert.equal(reply.attrs.from, `${b}@localhost/laptop`);
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('a message to a user who does not exist bounces service-unavailable', async () => {
    const [a] = names('ghost');
    await deployment().addUser(a);
    const alice = await connect(port(0), a);
    try {
      await alice.send(xml('message', { to: 'nobody-here@localhost', type: 'chat', id: 'g1' }, xml('body', {}, 'anyone?')));
      const err = await alice.waitFor((s) => s.is('message') && s.attrs.id === 'g1');
      assert.equal(err.attrs.type, 'error');
      assert.equal(err.attrs.from, 'nobody-here@localhost');
      assert.equal(errorCondition(err), 'service-unavailable');
    } finally {
      await alice.stop();
    }
  });

  test('an iq to the full JID of a user who is not online bounces service-unavailable', async () => {
    const [a, b] = names('offline');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const alice = await connect(port(0), a);
    try {
      const iqErr = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: `${b}@localhost/desk` }, xml('ping', 'urn:xmpp:ping'))).then(
        () => 'answered', (e: { condition?: string }) => e.condition);
      assert.equal(iqErr, 'service-unavailable');
    } finally {
      await alice.stop();
    }
  });

  test('an iq between two online full JIDs reaches the peer and its answer comes back', async () => {
    const [a, b] = names('iq');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const alice = await connect(port(0), a, { resource: 'x' });
    const bob = await connect(port(1), b, { resource: 'y' });
    try {
      bob.xmpp.on('stanza', (s: Stanza) => {
        if (s.is('iq') && s.attrs.type === 'get') void bob.send(xml('iq', { type: 'result', id: s.attrs.id, to: s.attrs.from }, xml('time', 'urn:xmpp:time', xml('utc', {}, '2026-01-01T00:00:00Z'))));
      });
      const res = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: `${b}@localhost/y` }, xml('time', 'urn:xmpp:time')));
      assert.equal(res.getChild('time')?.getChildText('utc'), '2026-01-01T00:00:00Z');
      assert.equal(res.attrs.from, `${b}@localhost/y`);
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('binding a resource already in use replaces the old session with a conflict stream error', async () => {
    const [a] = names('conflict');
    await deployment().addUser(a);
    const first = await connect(port(0), a, { resource: 'same' });
    const closed = new Promise<string>((resolve) => first.xmpp.on('error', (e) => resolve(String((e as { condition?: string }).condition))));
    const second = await connect(port(1), a, { resource: 'same' });
    try {
      assert.equal(second.jid, `${a}@localhost/same`);
      assert.equal(await closed, 'conflict');
    } finally {
      await first.stop();
      await second.stop();
    }
  });

  test('the server answers ping and disco#info', async () => {
    const [a] = names('disco');
    await deployment().addUser(a);
    const alice = await connect(port(0), a);
    try {
      const pong = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', 'urn:xmpp:ping')));
      assert.equal(pong.attrs.type, 'result');
      const info = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', 'http://jabber.org/protocol/disco#info')));
      const features = info.getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
      assert.ok(features.includes('urn:xmpp:ping'));
      const unknown = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', 'urn:example:nothing'))).then(
        () => 'answered', (e: { condition?: string }) => e.condition);
      assert.equal(unknown, 'service-unavailable');
    } finally {
      await alice.stop();
    }
  });
}
