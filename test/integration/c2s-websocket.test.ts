// XMPP over WebSocket (RFC 7395) on the HTTP listener: two client libraries,
// the framing rules on the wire, discovery, keepalive and backpressure.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket as NodeWebSocket } from 'stanza/platform/index.js';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { connect, isMessageWithBody, xml } from '../support/clients.ts';
import { connectStanza } from '../support/stanza-client.ts';
import { rawWs, UpgradeRefused, type RawWs } from '../support/ws-raw.ts';
import type { RunningServer } from '../../services/server.ts';

// @xmpp/websocket uses the WHATWG WebSocket global, which Node 20 has only behind a flag.
const g = globalThis as Record<string, unknown>;
g.WebSocket ??= NodeWebSocket;

const OPEN = `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`;
const streamError = (cond: string) => new RegExp(`^<stream:error xmlns:stream="http://etherx.jabber.org/streams"><${cond} xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>`);
const plain = (user: string) => `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${PASSWORD}`).toString('base64')}</auth>`;

type Embedded = Deployment & { server: RunningServer };

/** A raw session, bound; `jid` is its full JID. Messages go to full JIDs: no presence subscription needed. */
async function login(url: string, user: string): Promise<RawWs & { jid: string }> {
  const ws = await rawWs(url);
  ws.sendText(OPEN);
  await ws.waitFor(/<mechanism>PLAIN<\/mechanism>/);
  ws.sendText(plain(user));
  await ws.waitFor(/<success/);
  ws.sendText(OPEN);
  await ws.waitFor(/urn:ietf:params:xml:ns:xmpp-bind/);
  ws.sendText(`<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
  const bound = await ws.waitFor(/<jid>/);
  ws.sendText(`<presence xmlns='jabber:client'/>`);
  return Object.assign(ws, { jid: /<jid>([^<]+)<\/jid>/.exec(bound)![1] });
}

describe('WebSocket, embedded', () => {
  let d: Embedded;
  let url: string;
  let port: number;
  before(async () => {
    d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 } } });
    port = d.server.c2s!.httpPort();
    url = `ws://127.0.0.1:${port}/xmpp-websocket`;
    for (const u of ['wsalice', 'wsbob', 'wscarol', 'wsdave', 'wsraw', 'wspeer']) await d.addUser(u);
  });
  after(async () => { await d.stop(); });

  test('@xmpp/client: two clients log in over WebSocket and chat', async () => {
    const a = await connect(0, 'wsalice', { service: url });
    const b = await connect(0, 'wsbob', { service: url });
    try {
      await a.send(xml('message', { to: b.jid, type: 'chat' }, xml('body', {}, 'hello over websocket')));
      const m = await b.waitFor(isMessageWithBody('hello over websocket'));
      assert.equal(m.attrs.from, a.jid);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('stanza (npm): logs in over WebSocket and chats with an @xmpp/client user', async () => {
    const s = await connectStanza('wscarol', { websocket: url });
    const x = await connect(0, 'wsdave', { service: url });
    try {
      s.agent.sendMessage({ to: x.jid, body: 'from stanza', type: 'chat' });
      await x.waitFor(isMessageWithBody('from stanza'));
      await x.send(xml('message', { to: s.jid, type: 'chat' }, xml('body', {}, 'back to stanza')));
      await s.waitForBody('back to stanza');
    } finally {
      await s.stop();
      await x.stop();
    }
  });

  test('the upgrade is refused without the xmpp subprotocol', async () => {
    await assert.rejects(rawWs(url, { protocols: [] }), (e: unknown) => e instanceof UpgradeRefused && e.status === 400);
    await assert.rejects(rawWs(url, { protocols: ['chat'] }), (e: unknown) => e instanceof UpgradeRefused && e.status === 400);
    const ws = await rawWs(url, { protocols: ['chat', 'xmpp'] });
    assert.equal(ws.protocol, 'xmpp');
    ws.destroy();
  });

  test('<open/> gets <open/> back, then features that declare their stream prefix', async () => {
    const ws = await rawWs(url);
    ws.sendText(OPEN);
    const open = await ws.waitFor(/^<open /);
    assert.match(open, /^<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" id="[0-9a-f]+" from="localhost" version="1.0" xml:lang="en"\/>$/);
    const features = await ws.waitFor(/^<stream:features/);
    assert.match(features, /^<stream:features xmlns:stream="http:\/\/etherx.jabber.org\/streams">/);
    // Plain ws on loopback falls under the loopback exemption, as TCP does: PLAIN is offered.
    assert.match(features, /<mechanism>PLAIN<\/mechanism>/);
    assert.doesNotMatch(features, /starttls/);
    ws.destroy();
  });

  test('a full session on the raw wire: SASL, restart, bind, a message, then <close/> answered with <close/>', async () => {
    const a = await login(url, 'wsraw');
    const b = await login(url, 'wspeer');
    a.sendText(`<message xmlns='jabber:client' to='${b.jid}' type='chat'><body>raw frame</body></message>`);
    const got = await b.waitFor(/raw frame/);
    // Each stanza stands alone: it declares its namespace.
    assert.match(got, /^<message xmlns="jabber:client"/);
    a.sendText(`<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`);
    await a.waitFor(/^<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"\/>$/);
    assert.equal(await a.closed, 1000);
    b.destroy();
  });

  test('a first message that is not <open/> gets invalid-namespace', async () => {
    const ws = await rawWs(url);
    ws.sendText(`<message xmlns='jabber:client' to='x@localhost'><body>hi</body></message>`);
    await ws.waitFor(streamError('invalid-namespace'));
    await ws.waitFor(/^<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"\/>$/);
    assert.equal(await ws.closed, 1000);
  });

  test('an <open/> outside the framing namespace gets invalid-namespace', async () => {
    const ws = await rawWs(url);
    ws.sendText(`<open xmlns='jabber:client' to='localhost' version='1.0'/>`);
    await ws.waitFor(streamError('invalid-namespace'));
    await ws.closed;
  });

  test('two elements in one message get not-well-formed', async () => {
    const ws = await rawWs(url);
    ws.sendText(OPEN);
    await ws.waitFor(/^<stream:features/);
    ws.sendText(`<iq xmlns='jabber:client' type='get' id='1'/><iq xmlns='jabber:client' type='get' id='2'/>`);
    await ws.waitFor(streamError('not-well-formed'));
    await ws.closed;
  });

  test('half an element in a message gets not-well-formed', async () => {
    const ws = await rawWs(url);
    ws.sendText(OPEN);
    await ws.waitFor(/^<stream:features/);
    ws.sendText(`<message xmlns='jabber:client'><body>`);
    await ws.waitFor(streamError('not-well-formed'));
    await ws.closed;
  });

  test('a binary message gets unsupported-encoding', async () => {
    const ws = await rawWs(url);
    ws.sendText(OPEN);
    await ws.waitFor(/^<stream:features/);
    ws.sendBinary(Buffer.from(`<presence xmlns='jabber:client'/>`));
    await ws.waitFor(streamError('unsupported-encoding'));
    await ws.closed;
  });

  test('a comment in a message gets restricted-xml', async () => {
    const ws = await rawWs(url);
    ws.sendText(OPEN);
    await ws.waitFor(/^<stream:features/);
    ws.sendText(`<iq xmlns='jabber:client' type='get' id='1'><!-- hi --></iq>`);
    await ws.waitFor(streamError('restricted-xml'));
    await ws.closed;
  });

  test('host-meta (XRD) and host-meta.json list the WebSocket and BOSH endpoints', async () => {
    const base = `http://127.0.0.1:${port}`;
    const x = await fetch(`${base}/.well-known/host-meta`);
    assert.equal(x.status, 200);
    assert.equal(x.headers.get('access-control-allow-origin'), '*');
    const xrd = await x.text();
    assert.match(xrd, /<XRD xmlns="http:\/\/docs.oasis-open.org\/ns\/xri\/xrd-1.0">/);
    assert.match(xrd, new RegExp(`<Link rel="urn:xmpp:alt-connections:websocket" href="ws://127.0.0.1:${port}/xmpp-websocket"/>`));
    assert.match(xrd, new RegExp(`<Link rel="urn:xmpp:alt-connections:xbosh" href="http://127.0.0.1:${port}/http-bind"/>`));
    const j = (await (await fetch(`${base}/.well-known/host-meta.json`)).json()) as { links: { rel: string; href: string }[] };
    assert.deepEqual(j.links, [
      { rel: 'urn:xmpp:alt-connections:websocket', href: `ws://127.0.0.1:${port}/xmpp-websocket` },
      { rel: 'urn:xmpp:alt-connections:xbosh', href: `http://127.0.0.1:${port}/http-bind` },
    ]);
    // The web client is off by default.
    assert.equal((await fetch(`${base}/`)).status, 404);
  });

  test('connections are counted per transport', async () => {
    const ws = await login(url, 'wsraw');
    assert.ok(d.server.c2s!.connectionsByTransport().websocket >= 1);
    const metrics = await (await fetch(`http://127.0.0.1:${d.server.metricsPort()}/metrics`)).text();
    assert.match(metrics, /parley_c2s_connections\{transport="ws",tls="no"\} [1-9]/);
    ws.destroy();
  });
});

describe('WebSocket policies', () => {
  test('a client that stops reading is closed with policy-violation, not buffered for', async () => {
    const d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 } }, limits: { maxOutboundBufferBytes: 256 * 1024, bytesPerSecond: 1_000_000_000 } });
    try {
      await d.addUser('slow');
      await d.addUser('fast');
      const url = `ws://127.0.0.1:${d.server.c2s!.httpPort()}/xmpp-websocket`;
      const slow = await login(url, 'slow');
      const fast = await login(url, 'fast');
      slow.pause();
      const body = 'x'.repeat(60_000);
      let closedEarly = false;
      void slow.closed.then(() => { closedEarly = true; });
      // Far more than the kernel's socket buffers and the limit together.
      for (let i = 0; i < 400 && !closedEarly; i++) {
        fast.sendText(`<message xmlns='jabber:client' to='${slow.jid}' type='chat'><body>${body}</body></message>`);
        if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      slow.resume();
      await slow.waitFor(streamError('policy-violation'), 10_000);
      await slow.closed;
      fast.destroy();
    } finally {
      await d.stop();
    }
  });

  test('on shutdown, <close/> carries see-other-uri when one is configured', async () => {
    const d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 }, websocket: { seeOtherUri: 'wss://elsewhere.example/xmpp-websocket' } } });
    const ws = await rawWs(`ws://127.0.0.1:${d.server.c2s!.httpPort()}/xmpp-websocket`);
    ws.sendText(OPEN);
    await ws.waitFor(/^<stream:features/);
    await d.stop();
    await ws.waitFor(/^<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" see-other-uri="wss:\/\/elsewhere.example\/xmpp-websocket"\/>$/);
    assert.ok(!ws.messages.some((m) => m.includes('stream:error')));
    await ws.closed;
  });

  test('wss counts as TLS; plain ws off loopback-exemption does not', async () => {
    const d = await startEmbedded({ c2s: { http: { enabled: true, port: 0, tls: true, allowPlainOnLoopback: false } } });
    try {
      const port = d.server.c2s!.httpPort();
      const wss = await rawWs(`wss://127.0.0.1:${port}/xmpp-websocket`);
      wss.sendText(OPEN);
      const f = await wss.waitFor(/^<stream:features/);
      assert.match(f, /<mechanism>PLAIN<\/mechanism>/);
      wss.destroy();
    } finally {
      await d.stop();
    }
    const p = await startEmbedded({ c2s: { http: { enabled: true, port: 0, allowPlainOnLoopback: false } } });
    try {
      const ws = await rawWs(`ws://127.0.0.1:${p.server.c2s!.httpPort()}/xmpp-websocket`);
      ws.sendText(OPEN);
      const f = await ws.waitFor(/^<stream:features/);
      assert.doesNotMatch(f, /<mechanism>/);
      ws.destroy();
    } finally {
      await p.stop();
    }
  });
});

describe('WebSocket inbound rate limit', () => {
  test('a fast sender is held back to the configured rate; a flood past what is held is cut off', async () => {
    const d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 } }, limits: { bytesPerSecond: 10_000, maxStanzaBytes: 4096 } });
    try {
      await d.addUser('rate');
      const url = `ws://127.0.0.1:${d.server.c2s!.httpPort()}/xmpp-websocket`;
      const ws = await login(url, 'rate');
      const pad = 'p'.repeat(900);
      const t0 = Date.now();
      // About 52 KB: the burst (4 × 10 000 bytes) passes at once, the rest is held to 10 000 bytes/s.
      for (let i = 0; i < 50; i++) ws.sendText(`<message xmlns='jabber:client' to='${ws.jid}' id='r${i}'><body>${pad}</body></message>`);
      await ws.waitFor(/id="r49"/, 5000);
      assert.ok(Date.now() - t0 >= 500, `held back (${Date.now() - t0} ms)`);
      assert.ok(!ws.messages.some((m) => m.includes('stream:error')));
      // Now far more than the 4 × maxStanzaBytes we keep unprocessed.
      for (let i = 0; i < 60; i++) ws.sendText(`<message xmlns='jabber:client' to='${ws.jid}' id='f${i}'><body>${pad}</body></message>`);
      await ws.waitFor(streamError('policy-violation'));
      await ws.closed;
    } finally {
      await d.stop();
    }
  });
});
