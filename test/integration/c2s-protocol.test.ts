// The connection manager on the wire: stream negotiation, security policy,
// limits and errors, seen by a raw client exactly as a user's client sees them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN } from '../support/raw.ts';
import type { RunningServer } from '../../services/server.ts';
import { rawLogin as login } from '../support/im.ts';

const streamError = (cond: string) => new RegExp(`<stream:error><${cond} xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>(<text[^>]*>[^<]+</text>)?</stream:error></stream:stream>`);

describe('c2s protocol, embedded', () => {
  let d: Deployment & { server: RunningServer };
  let port: number;
  before(async () => {
    d = await startEmbedded({ limits: { maxStanzaBytes: 4096, maxDepth: 8, maxAttributes: 8 } });
    port = d.ports[0];
    await d.addUser('rawuser');
    await d.addUser('rawpeer');
  });
  after(async () => { await d.stop(); });

  test('features before auth offer STARTTLS and the SASL mechanisms; after auth, bind', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>/);
    assert.match(out, /<stream:stream [^>]*from="localhost"/);
    assert.match(out, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"\/>/);
    assert.match(out, /<mechanism>SCRAM-SHA-256<\/mechanism><mechanism>SCRAM-SHA-1<\/mechanism><mechanism>PLAIN<\/mechanism>/);
    c.close();
  });

  test('a stream to a domain this server does not serve gets host-unknown', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN('elsewhere.example'));
    await c.waitFor(streamError('host-unknown'));
    await c.closed;
  });

  test('a wrong stream namespace gets invalid-namespace', async () => {
    const c = await rawConnect(port);
    c.send(`<stream:stream to='localhost' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`);
    await c.waitFor(streamError('invalid-namespace'));
    await c.closed;
  });

  test('restricted XML (a comment, a DOCTYPE, a processing instruction) gets restricted-xml', async () => {
    for (const bad of ['<!-- hi -->', '<?pi data?>']) {
      const c = await rawConnect(port);
      c.send(STREAM_OPEN());
      await c.waitFor(/<\/stream:features>/);
      c.send(bad);
      await c.waitFor(streamError('restricted-xml'));
      await c.closed;
    }
    const c = await rawConnect(port);
    c.send(`<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY x 'y'>]>`);
    await c.waitFor(streamError('restricted-xml'));
    await c.closed;
  });

  test('malformed XML gets not-well-formed', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send('<message><body>x</bod></message>');
    await c.waitFor(streamError('not-well-formed'));
    await c.closed;
  });

  test('a stanza above the size limit gets policy-violation, the node keeps serving', async () => {
    const c = await login(port, 'rawuser', 'big');
    c.send(`<message to='rawpeer@localhost'><body>${'x'.repeat(5000)}</body></message>`);
    await c.waitFor(streamError('policy-violation'));
    await c.closed;
    assert.match(c.output, /too large/);
    const again = await login(port, 'rawuser', 'after');
    again.close();
  });

  test('nesting beyond the depth limit and too many attributes get policy-violation', async () => {
    const deep = await login(port, 'rawuser', 'deep');
    deep.send(`<message>${'<a>'.repeat(10)}${'</a>'.repeat(10)}</message>`);
    await deep.waitFor(streamError('policy-violation'));
    const attrs = await login(port, 'rawuser', 'attrs');
    attrs.send(`<message ${Array.from({ length: 10 }, (_, i) => `a${i}='v'`).join(' ')}/>`);
    await attrs.waitFor(streamError('policy-violation'));
  });

  test('a stanza before authentication gets not-authorized', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(`<message to='rawpeer@localhost'><body>hi</body></message>`);
    await c.waitFor(streamError('not-authorized'));
    await c.closed;
  });

  test('a wrong password gets a SASL failure; repeated failures close the stream', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    for (let i = 0; i < 3; i++) {
      c.send(plainAuth('rawuser', 'wrong'));
      await c.waitFor(new RegExp(`(<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><not-authorized/></failure>[^]*){${i + 1}}`));
    }
    await c.waitFor(streamError('policy-violation'));
    await c.closed;
  });

  test('a forged from gets invalid-from; the server stamps from otherwise', async () => {
    const peer = await login(port, 'rawpeer', 'p');
    const c = await login(port, 'rawuser', 'forger');
    c.send(`<message from='rawuser@localhost/forger' to='rawpeer@localhost/p' type='chat'><body>ok</body></message>`);
    await peer.waitFor(/<body>ok<\/body>/);
    assert.match(peer.output, /from="rawuser@localhost\/forger"/);
    c.send(`<message from='rawpeer@localhost/p' to='rawpeer@localhost/p'><body>forged</body></message>`);
    await c.waitFor(streamError('invalid-from'));
    await c.closed;
    assert.doesNotMatch(peer.output, /forged/);
    peer.close();
  });

  test('a malformed to gets a jid-malformed stanza error', async () => {
    const c = await login(port, 'rawuser', 'jm');
    c.send(`<message to='a@b@c' id='bad1' type='chat'><body>x</body></message>`);
    await c.waitFor(/<message[^>]*type="error"[^>]*>.*<jid-malformed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
    c.close();
  });

  test('an unknown top-level element gets unsupported-stanza-type', async () => {
    const c = await login(port, 'rawuser', 'u');
    c.send(`<foo/>`);
    await c.waitFor(streamError('unsupported-stanza-type'));
  });

  test('STARTTLS upgrades the connection and authentication follows over TLS', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await c.waitFor(/<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'\/>/);
    await c.startTls();
    c.send(STREAM_OPEN());
    const features = await c.waitFor(/<\/stream:features>/);
    assert.doesNotMatch(features, /starttls/, 'no second STARTTLS once secure');
    c.send(plainAuth('rawuser', PASSWORD));
    await c.waitFor(/<success/);
    c.close();
  });
});

describe('c2s security policy without the loopback exemption', () => {
  let d: Deployment;
  before(async () => {
    d = await startEmbedded({ c2s: { tcp: { allowPlainOnLoopback: false } } });
    await d.addUser('tlsuser');
  });
  after(async () => { await d.stop(); });

  test('before TLS no mechanism is offered, STARTTLS is required, and auth is refused', async () => {
    const c = await rawConnect(d.ports[0]);
    c.send(STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>/);
    assert.match(out, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required\/><\/starttls>/);
    assert.doesNotMatch(out, /<mechanisms/);
    c.send(plainAuth('tlsuser', PASSWORD));
    await c.waitFor(/<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><encryption-required\/>/);
    assert.match(c.output, /TLS is required/);
    assert.doesNotMatch(c.output, /<success/);
  });
});

describe('STARTTLS injection', () => {
  let d: Deployment;
  before(async () => {
    d = await startEmbedded();
    await d.addUser('inj');
  });
  after(async () => { await d.stop(); });

  test('plaintext sent after <starttls/> in the same packet is discarded', async () => {
    const c = await rawConnect(d.ports[0]);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>${plainAuth('inj', PASSWORD)}`);
    await c.waitFor(/<proceed/);
    await c.startTls();
    c.send(STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>/);
    assert.doesNotMatch(out, /<success/, 'the injected auth was not processed');
    assert.match(out, /<mechanisms/, 'authentication is still to be done, over TLS');
    c.close();
  });
});

describe('inbound rate limit', () => {
  let d: Deployment;
  before(async () => {
    d = await startEmbedded({ limits: { bytesPerSecond: 10_000 } });
    for (const u of ['flooder', 'sink', 'bystander', 'sink2']) await d.addUser(u);
  });
  after(async () => { await d.stop(); });

  test('a client sending faster than bytesPerSecond is read more slowly; others are not slowed', async () => {
    const sink = await login(d.ports[0], 'sink', 's');
    const sink2 = await login(d.ports[0], 'sink2', 's');
    const flooder = await login(d.ports[0], 'flooder', 'f');
    const bystander = await login(d.ports[0], 'bystander', 'b');
    const t0 = Date.now();
    const body = 'x'.repeat(1000);
    let burst = '';
    for (let i = 0; i < 100; i++) burst += `<message to='sink@localhost/s' type='chat'><body>${i} ${body}</body></message>`;
    flooder.send(burst);
    bystander.send(`<message to='sink2@localhost/s' type='chat'><body>unaffected</body></message>`);
    await sink2.waitFor(/unaffected/, 2000);
    const bystanderMs = Date.now() - t0;
    await sink.waitFor(/<body>99 x/, 15_000);
    const floodMs = Date.now() - t0;
    // ~106 KB at 10 KB/s with a 40 KB burst: the first socket read (64 KB) passes, the rest waits ~2.5 s
    assert.ok(floodMs >= 2000, `flood took ${floodMs} ms`);
    assert.ok(bystanderMs < 1000, `the other client was served in ${bystanderMs} ms`);
    for (const c of [sink, sink2, flooder, bystander]) c.close();
  });
});
