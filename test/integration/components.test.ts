// External components (XEP-0114) with @xmpp/component, a client library
// nobody here wrote, and on the raw wire where the exact stream error counts:
// a user and a component talk both ways; a wrong secret, an unknown domain and
// a `from` outside the component's domain are refused; the newest connection
// of a domain replaces the older; disco#items of the served domain lists the
// component. The same scenarios run embedded and across a cluster, where the
// component also moves from one connection manager to another.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { component, xml, type Component } from '@xmpp/component';
import { connect, type Stanza, type TestClient } from '../support/clients.ts';
import { startCluster, startEmbedded, type Cluster, type Deployment } from '../support/parley.ts';
import { rawConnect, type RawClient } from '../support/raw.ts';
import { freePort } from '../support/servers.ts';
import { loadConfig } from '../../libs/config/index.ts';
import { requestDrain } from '../../services/c2s/drain.ts';

const SECRET = 'component-secret-1';
const COMPONENTS = [
  { domain: 'echo.localhost', secret: SECRET, name: 'Echo' },
  // Not a subdomain of a served domain: routed, but listed in no disco#items.
  { domain: 'bots.example.net', secret: 'component-secret-2' },
];

/** An @xmpp/component connected to `port` as `domain`, echoing each message body back as 'echo: …'. */
async function echoComponent(port: number, domain = 'echo.localhost', secret = SECRET): Promise<{ xmpp: Component; received: Stanza[]; stop(): Promise<void> }> {
  const xmpp = component({ service: `xmpp://127.0.0.1:${port}`, domain, password: secret });
  xmpp.reconnect.stop();
  xmpp.on('error', () => {});
  const received: Stanza[] = [];
  xmpp.on('stanza', (s: Stanza) => {
    received.push(s);
    const body = s.getChildText('body');
    if (s.is('message') && s.attrs.type !== 'error' && body) {
      void xmpp.send(xml('message', { from: s.attrs.to, to: s.attrs.from, type: 'chat' }, xml('body', {}, `echo: ${body}`)));
    }
  });
  await xmpp.start();
  return { xmpp, received, stop: async () => { await xmpp.stop().catch(() => {}); } };
}

/** A raw component stream up to the server's header; its stream id. */
async function rawComponent(port: number, domain: string): Promise<{ raw: RawClient; id: string }> {
  const raw = await rawConnect(port);
  raw.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}'>`);
  const out = await raw.waitFor(/<stream:stream[^>]*>/);
  return { raw, id: /\sid=['"]([^'"]+)['"]/.exec(out)?.[1] ?? '' };
}

const digest = (id: string, secret: string) => createHash('sha1').update(id + secret).digest('hex');

const body = (s: Stanza) => s.getChildText('body');

async function waitUntil(pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function scenarios(name: string, setup: () => Promise<{ d: Deployment; componentPorts: number[] }>): void {
  describe(`external components, ${name}`, () => {
    let d: Deployment;
    let ports: number[];
    let alice: TestClient;
    before(async () => {
      ({ d, componentPorts: ports } = await setup());
      await d.addUser('alice');
      alice = await connect(d.ports[d.ports.length - 1], 'alice');
      await alice.send(xml('presence'));
    });
    after(async () => {
      await alice?.stop();
      await d?.stop();
    });

    test('a user writes to the component and gets its answer; the component writes to the user', async () => {
      const echo = await echoComponent(ports[0]);
      try {
        await alice.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'hello component')));
        const answer = await alice.waitFor((s) => s.is('message') && body(s) === 'echo: hello component');
        assert.equal(answer.attrs.from, 'bot@echo.localhost');
        const seen = echo.received.find((s) => body(s) === 'hello component')!;
        assert.match(seen.attrs.from ?? '', /^alice@localhost\//);
        assert.equal(seen.attrs.to, 'bot@echo.localhost');

        await echo.xmpp.send(xml('message', { from: 'news@echo.localhost', to: 'alice@localhost', type: 'chat' }, xml('body', {}, 'unprompted')));
        const news = await alice.waitFor((s) => s.is('message') && body(s) === 'unprompted');
        assert.equal(news.attrs.from, 'news@echo.localhost');

        // The component asks the served domain itself: answered by the same modules that answer its users.
        await echo.xmpp.send(xml('iq', { type: 'get', from: 'echo.localhost', to: 'localhost', id: 'ask-server' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })));
        await waitUntil(() => echo.received.some((s) => s.is('iq') && s.attrs.id === 'ask-server'));
        const info = echo.received.find((s) => s.is('iq') && s.attrs.id === 'ask-server')!;
        assert.equal(info.attrs.type, 'result', info.toString());
        assert.equal(info.getChild('query')?.getChild('identity')?.attrs.category, 'server');

        // An iq to the component's domain itself, answered by the component through @xmpp/component's iq callee.
        echo.xmpp.iqCallee.get('urn:xmpp:ping', 'ping', () => ({}));
        const id = 'ping-component';
        await alice.send(xml('iq', { type: 'get', to: 'echo.localhost', id }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
        const result = await alice.waitFor((s) => s.is('iq') && s.attrs.id === id);
        assert.equal(result.attrs.type, 'result');
        assert.equal(result.attrs.from, 'echo.localhost');
      } finally {
        await echo.stop();
      }
    });

    test('a user subscribes to a JID of the component: the component gets the request, its answer reaches the roster', async () => {
      // Roster pushes go to a resource that asked for the roster (RFC 6121 §2.1.6).
      await alice.send(xml('iq', { type: 'get', id: 'roster' }, xml('query', { xmlns: 'jabber:iq:roster' })));
      await alice.waitFor((s) => s.is('iq') && s.attrs.id === 'roster');
      const echo = await echoComponent(ports[0]);
      try {
        await alice.send(xml('presence', { to: 'gateway@echo.localhost', type: 'subscribe' }));
        await waitUntil(() => echo.received.some((s) => s.is('presence') && s.attrs.type === 'subscribe' && s.attrs.from === 'alice@localhost'));
        await echo.xmpp.send(xml('presence', { from: 'gateway@echo.localhost', to: 'alice@localhost', type: 'subscribed' }));
        const push = await alice.waitFor((s) => s.is('iq') && s.attrs.type === 'set'
          && s.getChild('query')?.getChildren('item').some((i) => i.attrs.jid === 'gateway@echo.localhost' && i.attrs.subscription === 'to') === true);
        assert.ok(push);
        await echo.xmpp.send(xml('presence', { from: 'gateway@echo.localhost/gw', to: 'alice@localhost' }));
        await alice.waitFor((s) => s.is('presence') && s.attrs.from === 'gateway@echo.localhost/gw' && s.attrs.type === undefined);
      } finally {
        await echo.stop();
      }
    });

    test('a component enters a room of the served domain and hears its messages', async () => {
      const room = `components-${name}@conference.localhost`;
      await alice.send(xml('presence', { to: `${room}/alice` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
      await alice.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/alice`);
      await alice.xmpp.iqCaller.request(xml('iq', { type: 'set', to: room },
        xml('query', { xmlns: 'http://jabber.org/protocol/muc#owner' }, xml('x', { xmlns: 'jabber:x:data', type: 'submit' }))), 10_000);
      const echo = await echoComponent(ports[0]);
      try {
        await echo.xmpp.send(xml('presence', { from: 'bot@echo.localhost/r', to: `${room}/bot` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
        await waitUntil(() => echo.received.some((s) => s.is('presence') && s.attrs.from === `${room}/bot`
          && s.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChildren('status').some((c) => c.attrs.code === '110') === true));
        await alice.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/bot`);
        await alice.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, 'hello room')));
        await waitUntil(() => echo.received.some((s) => s.is('message') && s.attrs.type === 'groupchat' && body(s) === 'hello room' && s.attrs.from === `${room}/alice`));
      } finally {
        await echo.stop();
      }
    });

    test('to a component that is not connected: service-unavailable', async () => {
      await alice.send(xml('message', { to: 'bot@bots.example.net', id: 'nobody-there' }, xml('body', {}, 'anyone?')));
      const err = await alice.waitFor((s) => s.is('message') && s.attrs.id === 'nobody-there');
      assert.equal(err.attrs.type, 'error');
      assert.ok(err.getChild('error')?.getChild('service-unavailable'), err.toString());
    });

    test('a wrong secret is refused with not-authorized', async () => {
      const { raw, id } = await rawComponent(ports[0], 'echo.localhost');
      raw.send(`<handshake>${digest(id, 'not-the-secret')}</handshake>`);
      const out = await raw.waitFor(/<\/stream:stream>/);
      assert.match(out, /<stream:error><not-authorized xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]\/><text[^>]*>the handshake does not match[^<]*<\/text><\/stream:error>/);
      assert.doesNotMatch(out, /<handshake\/>/);
      await raw.closed;
    });

    test('an unknown domain is refused with host-unknown', async () => {
      const { raw } = await rawComponent(ports[0], 'nobody.localhost');
      const out = await raw.waitFor(/<\/stream:stream>/);
      assert.match(out, /<host-unknown xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]\/><text[^>]*>no component 'nobody.localhost' is configured here<\/text>/);
      await raw.closed;
    });

    test('a from outside the component\'s domain ends the stream with invalid-from, and nothing reaches the user', async () => {
      const { raw, id } = await rawComponent(ports[0], 'echo.localhost');
      raw.send(`<handshake>${digest(id, SECRET)}</handshake>`);
      await raw.waitFor(/<handshake\/>/);
      raw.send("<message from='mallory@localhost' to='alice@localhost' type='chat'><body>forged</body></message>");
      const out = await raw.waitFor(/<\/stream:stream>/);
      assert.match(out, /<invalid-from xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]\/><text[^>]*>'mallory@localhost' is not on this component's domain echo.localhost<\/text>/);
      await raw.closed;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(alice.received.find((s) => body(s) === 'forged'), undefined);
    });

    test('a second connection for the domain replaces the first, which gets conflict', async () => {
      const first = await rawComponent(ports[0], 'echo.localhost');
      first.raw.send(`<handshake>${digest(first.id, SECRET)}</handshake>`);
      await first.raw.waitFor(/<handshake\/>/);
      const second = await echoComponent(ports[ports.length - 1]);
      try {
        const out = await first.raw.waitFor(/<\/stream:stream>/);
        assert.match(out, /<conflict xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]\/><text[^>]*>a newer connection authenticated for echo.localhost; this one is replaced<\/text>/);
        await alice.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'after the takeover')));
        await alice.waitFor((s) => s.is('message') && body(s) === 'echo: after the takeover');
        assert.ok(second.received.some((s) => body(s) === 'after the takeover'));
      } finally {
        await second.stop();
      }
    });

    test('disco#items of the served domain lists its subdomain components, not the others', async () => {
      await alice.send(xml('iq', { type: 'get', to: 'localhost', id: 'items' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' })));
      const r = await alice.waitFor((s) => s.is('iq') && s.attrs.id === 'items');
      const items = r.getChild('query')!.getChildren('item').map((i) => i.attrs.jid as string);
      assert.ok(items.includes('echo.localhost'), items.join(' '));
      assert.ok(!items.includes('bots.example.net'), items.join(' '));
      assert.equal(r.getChild('query')!.getChildren('item').find((i) => i.attrs.jid === 'echo.localhost')?.attrs.name, 'Echo');
    });
  });
}

scenarios('embedded', async () => {
  const port = await freePort();
  const d = await startEmbedded({ components: { listen: { host: '127.0.0.1', port }, services: COMPONENTS } });
  return { d, componentPorts: [port] };
});

/** Two connection managers, each with its own component listener; the user on the second. */
async function componentCluster(): Promise<{ d: Cluster; componentPorts: number[] }> {
  const d = await startCluster({ c2s: 0, session: 2, config: { components: { services: COMPONENTS } } });
  const componentPorts: number[] = [];
  for (const nodeId of ['c2s-a', 'c2s-b']) {
    const port = await freePort();
    componentPorts.push(port);
    await d.add('c2s', nodeId, { components: { listen: { host: '127.0.0.1', port }, services: COMPONENTS } });
  }
  return { d, componentPorts };
}

scenarios('cluster', componentCluster);

describe('external components, cluster: a component that moves to another connection manager', () => {
  let d: Cluster;
  let ports: number[];
  before(async () => { ({ d, componentPorts: ports } = await componentCluster()); });
  after(async () => { await d?.stop(); });

  test('reachable after reconnecting elsewhere, after its first node is killed, and after its node is drained', async () => {
    await d.addUser('bob');
    const bob = await connect(d.ports[1], 'bob');
    try {
      const one = await echoComponent(ports[0]);
      await bob.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'via a')));
      await bob.waitFor((s) => s.is('message') && body(s) === 'echo: via a');
      await one.stop();

      const two = await echoComponent(ports[1]);
      await bob.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'via b')));
      await bob.waitFor((s) => s.is('message') && body(s) === 'echo: via b');
      assert.ok(two.received.some((s) => body(s) === 'via b'));
      assert.ok(!one.received.some((s) => body(s) === 'via b'));
      await two.stop();

      // Back on the first node, which then dies without a word: the component comes back on the second.
      const three = await echoComponent(ports[0]);
      await bob.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'via a again')));
      await bob.waitFor((s) => s.is('message') && body(s) === 'echo: via a again');
      await d.kill(d.processes.find((p) => p.nodeId === 'c2s-a')!);
      await three.stop();
      const four = await echoComponent(ports[1]);
      try {
        await bob.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'after the kill')));
        await bob.waitFor((s) => s.is('message') && body(s) === 'echo: after the kill');
      } finally {
        await four.stop();
      }

      // A third node, drained (`parley c2s drain`): its component is told to go, and comes back on the second.
      const port = await freePort();
      await d.add('c2s', 'c2s-c', { components: { listen: { host: '127.0.0.1', port }, services: COMPONENTS } });
      const five = await rawComponent(port, 'echo.localhost');
      five.raw.send(`<handshake>${digest(five.id, SECRET)}</handshake>`);
      await five.raw.waitFor(/<handshake\/>/);
      await requestDrain(loadConfig(undefined, {}, { bus: { kind: 'nats', url: d.nats.url }, store: { kind: 'redis', url: d.redis.url } }), 'c2s-c');
      const out = await five.raw.waitFor(/<\/stream:stream>/);
      assert.match(out, /<system-shutdown xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]\/><text[^>]*>this node is being drained: reconnect elsewhere<\/text>/);
      const six = await echoComponent(ports[1]);
      try {
        await bob.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'after the drain')));
        await bob.waitFor((s) => s.is('message') && body(s) === 'echo: after the drain');
      } finally {
        await six.stop();
      }
    } finally {
      await bob.stop();
    }
  });
});

describe('external components: limits and configuration', () => {
  test('a handshake not done within components.handshakeTimeoutSeconds: connection-timeout', async () => {
    const port = await freePort();
    const d = await startEmbedded({ components: { listen: { host: '127.0.0.1', port }, handshakeTimeoutSeconds: 0.3, services: COMPONENTS } });
    try {
      const { raw } = await rawComponent(port, 'echo.localhost');
      const out = await raw.waitFor(/<\/stream:stream>/, 3000);
      assert.match(out, /<connection-timeout xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]\/><text[^>]*>the handshake did not complete in time<\/text>/);
    } finally {
      await d.stop();
    }
  });

  test('past components.maxConnections a connection is closed unanswered', async () => {
    const port = await freePort();
    const d = await startEmbedded({ components: { listen: { host: '127.0.0.1', port }, maxConnections: 1, services: COMPONENTS } });
    try {
      const first = await rawComponent(port, 'echo.localhost');
      const second = await rawConnect(port);
      second.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='echo.localhost'>`);
      await second.closed;
      assert.equal(second.output, '');
      first.raw.close();
    } finally {
      await d.stop();
    }
  });

  test('a short secret, a domain twice, or a served domain as a component\'s are refused at start', async () => {
    assert.throws(() => loadConfig(undefined, {}, { components: { services: [{ domain: 'echo.localhost', secret: 'short' }] } }), /secret/);
    assert.throws(() => loadConfig(undefined, {}, { components: { services: [COMPONENTS[0], COMPONENTS[0]] } }), /configured twice/);
    await assert.rejects(startEmbedded({ components: { services: [{ domain: 'localhost', secret: SECRET }] } }), /localhost is both a served domain/);
  });
});
