// Bytes that are not UTF-8 end the stream with not-well-formed (RFC 6120
// §11.6) on every transport, seen on the wire; a character split across two
// reads is still one character.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { rawWs } from '../support/ws-raw.ts';
import type { RunningServer } from '../../services/server.ts';
import { rawLogin as login } from '../support/im.ts';

const TEXT = 'the bytes received are not UTF-8';
const NOT_WELL_FORMED = new RegExp(`<stream:error><not-well-formed xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>` +
  `<text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">${TEXT}</text></stream:error></stream:stream>$`);
const BAD = [Buffer.from([0xc3, 0x28]), Buffer.from([0xff])];
/** A message whose body has `bytes` in the middle. */
const message = (to: string, bytes: Buffer, xmlns = '') =>
  Buffer.concat([Buffer.from(`<message${xmlns} to='${to}' type='chat'><body>a`), bytes, Buffer.from('b</body></message>')]);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !pred(); await pause(10)) if (Date.now() > end) throw new Error(`no ${what} within ${ms} ms`);
}

describe('bytes that are not UTF-8', () => {
  let d: Deployment & { server: RunningServer };
  let port: number;
  let peer: RawClient;
  const PEER = 'u8peer@localhost/peer';
  /** The peer received a message with this body (a marker sent after the bad bytes shows they were not delivered). */
  const delivered = (body: string) => peer.waitFor(new RegExp(`<body>${body}</body>`));

  before(async () => {
    d = await startEmbedded({
      c2s: { directTls: { enabled: true, port: 0 }, http: { enabled: true, port: 0 } },
      s2s: { enabled: true, listen: { host: '127.0.0.1', port: 0 } },
    });
    port = d.ports[0];
    for (const u of ['u8user', 'u8peer']) await d.addUser(u);
    peer = await login(port, 'u8peer', 'peer');
  });
  after(async () => {
    peer?.close();
    await d.stop();
  });

  test('TCP: invalid bytes in a message body end the stream with not-well-formed; nothing is delivered', async () => {
    for (const [i, bad] of BAD.entries()) {
      const c = await login(port, 'u8user', `tcp${i}`);
      c.socket.write(message(PEER, bad));
      await c.waitFor(NOT_WELL_FORMED);
      await c.closed;
    }
    const c = await login(port, 'u8user', 'marker');
    c.send(`<message to='${PEER}' type='chat'><body>tcp marker</body></message>`);
    await delivered('tcp marker');
    assert.doesNotMatch(peer.output, /<body>a.?b<\/body>/);
    c.close();
  });

  test('TCP: invalid bytes before authentication, in the first read after the header', async () => {
    const c = await rawConnect(port);
    c.socket.write(Buffer.concat([Buffer.from(STREAM_OPEN()), Buffer.from([0xff])]));
    await c.waitFor(NOT_WELL_FORMED);
    await c.closed;
  });

  test('TCP: an é split across two writes arrives whole', async () => {
    const c = await login(port, 'u8user', 'split');
    const m = Buffer.from(`<message to='${PEER}' type='chat'><body>café split</body></message>`);
    const cut = m.indexOf(0xc3) + 1; // between the two bytes of é
    c.socket.write(m.subarray(0, cut));
    await pause(100); // two reads on the server, not one
    c.socket.write(m.subarray(cut));
    await delivered('café split');
    c.close();
  });

  test('STARTTLS: invalid bytes after the upgrade end the stream the same way', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await c.waitFor(/<proceed/);
    await c.startTls();
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.socket.write(message(PEER, BAD[0]));
    await c.waitFor(NOT_WELL_FORMED);
    await c.closed;
  });

  test('direct TLS: invalid bytes end the stream the same way', async () => {
    const socket = tlsConnect({ host: '127.0.0.1', port: d.server.c2s!.directTlsPort(), servername: 'localhost', ALPNProtocols: ['xmpp-client'], rejectUnauthorized: false });
    let out = '';
    const closed = new Promise((r) => socket.on('close', r));
    socket.on('error', () => {});
    socket.on('data', (b: Buffer) => { out += b.toString(); });
    await new Promise((r) => socket.once('secureConnect', r));
    socket.write(STREAM_OPEN());
    await until('stream features', () => out.includes('</stream:features>'));
    socket.write(message(PEER, BAD[1]));
    await closed;
    assert.match(out, NOT_WELL_FORMED);
  });

  test('WebSocket: a text message that is not UTF-8 fails the connection (RFC 6455 §8.1); nothing is delivered', async () => {
    const url = `ws://127.0.0.1:${d.server.c2s!.httpPort()}/xmpp-websocket`;
    const ws = await rawWs(url);
    ws.sendText(`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`);
    await ws.waitFor(/<mechanism>PLAIN<\/mechanism>/);
    ws.sendText(plainAuth('u8user', PASSWORD));
    await ws.waitFor(/<success/);
    ws.sendText(`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`);
    await ws.waitFor(/xmpp-bind/);
    ws.sendText(`<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    await ws.waitFor(/<jid>/);
    ws.sendText(message(PEER, BAD[0], ` xmlns='jabber:client'`));
    // The WebSocket layer checks text messages before XMPP sees them, and drops
    // the connection: there is no stream left to carry an XMPP error.
    await ws.closed;
    const c = await login(port, 'u8user', 'wsmarker');
    c.send(`<message to='${PEER}' type='chat'><body>ws marker</body></message>`);
    await delivered('ws marker');
    assert.doesNotMatch(peer.output, /<body>a.?b<\/body>/);
    c.close();
  });

  test('BOSH: a request that is not UTF-8 is refused with bad-request and the stream error; its session ends', async () => {
    const url = `http://127.0.0.1:${d.server.c2s!.httpPort()}/http-bind`;
    const NS = `xmlns="http://jabber.org/protocol/httpbind" xmlns:xmpp="urn:xmpp:xbosh"`;
    const post = async (body: string | Buffer) => (await fetch(url, { method: 'POST', body: new Uint8Array(Buffer.from(body)), headers: { 'content-type': 'text/xml; charset=utf-8' } })).text();
    const error = `<stream:error><not-well-formed xmlns="urn:ietf:params:xml:ns:xmpp-streams"/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">${TEXT}</text></stream:error>`;
    const refused = new RegExp(`^<body type="terminate" condition="bad-request" [^>]*>${error}</body>$`);

    // No session yet.
    assert.match(await post(Buffer.concat([Buffer.from(`<body ${NS} rid="1" to="localhost" `), BAD[1], Buffer.from('/>')])), refused);

    // A session: logged in, then a message that is not UTF-8.
    let rid = 5000;
    const created = await post(`<body ${NS} rid="${rid++}" to="localhost" wait="5" hold="1" ver="1.11" xmpp:version="1.0"/>`);
    const sid = / sid="([^"]+)"/.exec(created)![1];
    const send = (inner: string | Buffer, extra = '') => post(Buffer.concat([Buffer.from(`<body ${NS} rid="${rid++}" sid="${sid}"${extra}>`), Buffer.from(inner), Buffer.from('</body>')]));
    assert.match(await send(plainAuth('u8user', PASSWORD)), /<success/);
    assert.match(await send('', ' xmpp:restart="true"'), /xmpp-bind/);
    assert.match(await send(`<iq xmlns="jabber:client" type="set" id="b"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></iq>`), /<jid>/);
    assert.match(await send(message(PEER, BAD[0], ` xmlns='jabber:client'`)), refused);
    // The session is over: a later request hears the same.
    assert.match(await send(`<message xmlns="jabber:client" to="${PEER}" type="chat"><body>after the end</body></message>`), refused);

    const c = await login(port, 'u8user', 'boshmarker');
    c.send(`<message to='${PEER}' type='chat'><body>bosh marker</body></message>`);
    await delivered('bosh marker');
    assert.doesNotMatch(peer.output, /<body>a.?b<\/body>|after the end/);
    c.close();
  });

  test('s2s: invalid bytes from a server end its stream the same way', async () => {
    const socket = tcpConnect({ host: '127.0.0.1', port: d.server.s2s!.port() });
    let out = '';
    const closed = new Promise((r) => socket.on('close', r));
    socket.on('error', () => {});
    socket.on('data', (b: Buffer) => { out += b.toString(); });
    socket.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' ` +
      `xmlns:db='jabber:server:dialback' from='remote.example' to='localhost' version='1.0'>`);
    await until('stream features', () => out.includes('</stream:features>'));
    socket.write(Buffer.concat([Buffer.from(`<db:result from='remote.example' to='localhost'>`), BAD[0], Buffer.from('</db:result>')]));
    await closed;
    assert.match(out, NOT_WELL_FORMED);
  });
});
