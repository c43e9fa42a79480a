// TLS before authentication on every transport, loopback included: a server
// with its own defaults offers no SASL mechanism in the clear on TCP,
// WebSocket or BOSH and answers <auth/> with <encryption-required/>. A
// listener counts a connection as TLS when a proxy in front ended it there:
// every connection (`http.considerSecure`), a trusted proxy's
// `X-Forwarded-Proto: https` (the same header from anyone else counts for
// nothing), or the PROXY protocol's TLS field on TCP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { loadConfig } from '../../libs/config/index.ts';
import { startServer, type RunningServer } from '../../services/server.ts';
import { DOMAIN, PASSWORD, startEmbedded, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN } from '../support/raw.ts';
import { tempDir } from '../support/servers.ts';
import { rawWs } from '../support/ws-raw.ts';

const WS_OPEN = `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="${DOMAIN}" version="1.0"/>`;
const BOSH_NS = `xmlns="http://jabber.org/protocol/httpbind" xmlns:xmpp="urn:xmpp:xbosh"`;
const ENCRYPTION_REQUIRED = /<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><encryption-required\/><text xml:lang="en">TLS is required before authentication/;

async function bosh(url: string, body: string, headers: Record<string, string> = {}): Promise<string> {
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/xml; charset=utf-8', ...headers } });
  return r.text();
}

/** A BOSH session's first answer (the stream features), then the answer to a PLAIN <auth/>. */
async function boshAuth(url: string, user: string, headers: Record<string, string> = {}): Promise<{ features: string; auth: string }> {
  const rid = 5000 + Math.floor(Math.random() * 1e6);
  const features = await bosh(url, `<body ${BOSH_NS} rid="${rid}" to="${DOMAIN}" hold="1" wait="2" ver="1.11" xmpp:version="1.0"/>`, headers);
  const sid = /\ssid="([^"]+)"/.exec(features)?.[1] ?? '';
  const auth = await bosh(url, `<body ${BOSH_NS} rid="${rid + 1}" sid="${sid}">${plainAuth(user, PASSWORD)}</body>`, headers);
  return { features, auth };
}

/** A WebSocket stream's features, then the answer to a PLAIN <auth/>. */
async function wsAuth(url: string, user: string, headers: Record<string, string> = {}): Promise<{ features: string; auth: string }> {
  const ws = await rawWs(url, { headers });
  try {
    ws.sendText(WS_OPEN);
    const features = await ws.waitFor(/^<stream:features/);
    ws.sendText(plainAuth(user, PASSWORD));
    const auth = await ws.waitFor(/^<(failure|success)/);
    return { features, auth };
  } finally {
    ws.destroy();
  }
}

describe('a server with its default settings: TLS before authentication on every transport', () => {
  let server: RunningServer;
  before(async () => {
    // Nothing about TLS is configured here: these are the defaults a deployment gets.
    const config = loadConfig(undefined, {}, {
      dataDir: tempDir('parley-tls-default'), domains: [DOMAIN], log: { level: 'warn' }, metrics: { enabled: false },
      c2s: { tcp: { host: '127.0.0.1', port: 0 }, http: { enabled: true, port: 0 } },
    });
    assert.equal(config.c2s.tcp.allowPlainOnLoopback, false);
    assert.equal(config.c2s.http.allowPlainOnLoopback, false);
    server = await startServer(config);
    await server.accounts.add(`alice@${DOMAIN}`, PASSWORD);
  });
  after(async () => { await server.stop(false); });

  test('TCP on loopback: STARTTLS required, no mechanism, <auth/> refused with encryption-required; after STARTTLS PLAIN works', async () => {
    const c = await rawConnect(server.c2s!.tcpPort());
    try {
      c.send(STREAM_OPEN());
      const features = await c.waitFor(/<\/stream:features>/);
      assert.match(features, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required\/><\/starttls>/);
      assert.doesNotMatch(features, /<mechanisms/);
      assert.doesNotMatch(features, /iq-register/);
      c.send(plainAuth('alice', PASSWORD));
      await c.waitFor(ENCRYPTION_REQUIRED);
      assert.doesNotMatch(c.output, /<success/);
      // The stream stays open: the client may still do what it should have.
      c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
      await c.waitFor(/<proceed/);
      await c.startTls();
      c.send(STREAM_OPEN());
      const secured = await c.waitFor(/<\/stream:features>/);
      assert.match(secured, /<mechanism>PLAIN<\/mechanism>/);
      c.send(plainAuth('alice', PASSWORD));
      await c.waitFor(/<success/);
    } finally {
      c.close();
    }
  });

  test('WebSocket on loopback (ws://): no mechanism, <auth/> refused with encryption-required', async () => {
    const r = await wsAuth(`ws://127.0.0.1:${server.c2s!.httpPort()}/xmpp-websocket`, 'alice');
    assert.doesNotMatch(r.features, /<mechanisms/);
    assert.match(r.auth, ENCRYPTION_REQUIRED);
  });

  test('BOSH on loopback (http://): no mechanism, <auth/> refused with encryption-required', async () => {
    const r = await boshAuth(`http://127.0.0.1:${server.c2s!.httpPort()}/http-bind`, 'alice');
    assert.match(r.features, /<stream:features/);
    assert.doesNotMatch(r.features, /<mechanisms/);
    assert.match(r.auth, ENCRYPTION_REQUIRED);
  });
});

describe('an HTTP listener behind a TLS-terminating proxy', () => {
  let always: Deployment & { server: RunningServer };
  let forwarded: Deployment & { server: RunningServer };
  let untrusted: Deployment & { server: RunningServer };
  before(async () => {
    const http = (extra: Record<string, unknown>) => ({ c2s: { tcp: { allowPlainOnLoopback: false }, http: { enabled: true, port: 0, allowPlainOnLoopback: false, ...extra } } });
    always = await startEmbedded(http({ considerSecure: true }));
    forwarded = await startEmbedded(http({ trustedProxies: ['127.0.0.1/32', '::1/128'] }));
    untrusted = await startEmbedded(http({ trustedProxies: ['10.0.0.0/8'] }));
    for (const d of [always, forwarded, untrusted]) await d.addUser('bob');
  });
  after(async () => { await Promise.all([always.stop(), forwarded.stop(), untrusted.stop()]); });

  test('considerSecure: WebSocket and BOSH offer the mechanisms and PLAIN succeeds', async () => {
    const port = always.server.c2s!.httpPort();
    const ws = await wsAuth(`ws://127.0.0.1:${port}/xmpp-websocket`, 'bob');
    assert.match(ws.features, /<mechanism>PLAIN<\/mechanism>/);
    assert.match(ws.auth, /^<success/);
    const b = await boshAuth(`http://127.0.0.1:${port}/http-bind`, 'bob');
    assert.match(b.features, /<mechanism>SCRAM-SHA-256<\/mechanism>/);
    assert.match(b.auth, /<success/);
  });

  test('X-Forwarded-Proto: https from a trusted proxy counts as TLS; without the header it does not', async () => {
    const port = forwarded.server.c2s!.httpPort();
    const https = { 'X-Forwarded-Proto': 'https' };
    const ws = await wsAuth(`ws://127.0.0.1:${port}/xmpp-websocket`, 'bob', https);
    assert.match(ws.features, /<mechanism>PLAIN<\/mechanism>/);
    assert.match(ws.auth, /^<success/);
    const b = await boshAuth(`http://127.0.0.1:${port}/http-bind`, 'bob', https);
    assert.match(b.auth, /<success/);
    const plainWs = await wsAuth(`ws://127.0.0.1:${port}/xmpp-websocket`, 'bob', { 'X-Forwarded-Proto': 'http' });
    assert.doesNotMatch(plainWs.features, /<mechanisms/);
    assert.match(plainWs.auth, ENCRYPTION_REQUIRED);
  });

  test('the same header from an address that is not a trusted proxy is ignored', async () => {
    const port = untrusted.server.c2s!.httpPort();
    const https = { 'X-Forwarded-Proto': 'https' };
    const ws = await wsAuth(`ws://127.0.0.1:${port}/xmpp-websocket`, 'bob', https);
    assert.doesNotMatch(ws.features, /<mechanisms/);
    assert.match(ws.auth, ENCRYPTION_REQUIRED);
    const b = await boshAuth(`http://127.0.0.1:${port}/http-bind`, 'bob', https);
    assert.doesNotMatch(b.features, /<mechanisms/);
    assert.match(b.auth, ENCRYPTION_REQUIRED);
  });
});

/** A PROXY v2 header from 203.0.113.7, with PP2_TYPE_SSL saying whether the client used TLS to reach the proxy. */
function proxyV2(clientTls: boolean): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = Buffer.from([203, 0, 113, 7, 127, 0, 0, 1, 0x9c, 0x40, 0x14, 0x66]);
  // PP2_TYPE_SSL: client bits (PP2_CLIENT_SSL = 1), verify (4 bytes), a PP2_SUBTYPE_SSL_VERSION sub-TLV.
  const version = Buffer.from('TLSv1.3');
  const ssl = Buffer.concat([Buffer.from([clientTls ? 0x01 : 0x00, 0, 0, 0, 0, 0x21, 0, version.length]), version]);
  const tlv = Buffer.concat([Buffer.from([0x20, ssl.length >> 8, ssl.length & 0xff]), ssl]);
  const body = Buffer.concat([addr, tlv]);
  return Buffer.concat([sig, Buffer.from([0x21, 0x11, body.length >> 8, body.length & 0xff]), body]);
}

describe('a TCP listener behind a TLS-terminating proxy speaking the PROXY protocol', () => {
  let d: Deployment & { server: RunningServer };
  before(async () => {
    d = await startEmbedded({ c2s: { tcp: { allowPlainOnLoopback: false }, proxyProtocol: { enabled: true, trustedSources: ['127.0.0.1/32'] } } });
    await d.addUser('carol');
  });
  after(async () => { await d.stop(); });

  async function features(clientTls: boolean): Promise<{ out: string; send: (s: string) => void; wait: (re: RegExp) => Promise<string>; close: () => void }> {
    const s = tcpConnect({ host: '127.0.0.1', port: d.ports[0] });
    let out = '';
    const waiters: (() => void)[] = [];
    s.on('data', (b) => { out += b.toString(); for (const w of [...waiters]) w(); });
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    s.write(proxyV2(clientTls));
    s.write(STREAM_OPEN());
    const wait = (re: RegExp) => new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${re}; got ${out}`)), 5000);
      const check = () => { if (re.test(out)) { clearTimeout(t); resolve(out); } };
      waiters.push(check);
      check();
    });
    await wait(/<\/stream:features>/);
    return { out, send: (x) => s.write(x), wait, close: () => s.destroy() };
  }

  test('the TLS field set: mechanisms offered at once (no STARTTLS), PLAIN succeeds', async () => {
    const c = await features(true);
    try {
      assert.match(c.out, /<mechanism>PLAIN<\/mechanism>/);
      assert.doesNotMatch(c.out, /starttls/);
      c.send(plainAuth('carol', PASSWORD));
      await c.wait(/<success/);
    } finally {
      c.close();
    }
  });

  test('the TLS field clear: STARTTLS required and no mechanism', async () => {
    const c = await features(false);
    try {
      assert.match(c.out, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required\/><\/starttls>/);
      assert.doesNotMatch(c.out, /<mechanisms/);
    } finally {
      c.close();
    }
  });
});
