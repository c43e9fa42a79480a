// PROXY protocol v1/v2 on the TCP and direct-TLS listeners: a trusted proxy's
// header gives the real client address (which then decides the loopback
// exemption); a header from anyone else gets the connection refused.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { rawConnect, STREAM_OPEN } from '../support/raw.ts';
import type { RunningServer } from '../../services/server.ts';
import type { ClientTransport } from '../../services/c2s/transport.ts';

type Embedded = Deployment & { server: RunningServer };

const v1 = (src: string, fam = 'TCP4', dst = '127.0.0.1') => `PROXY ${fam} ${src} ${dst} 40000 5222\r\n`;

function v2(src: number[], cmd: 'PROXY' | 'LOCAL' = 'PROXY'): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const six = src.length === 16;
  const addr = Buffer.alloc(six ? 36 : 12);
  Buffer.from(src).copy(addr, 0);
  Buffer.from(six ? [...Array(15).fill(0), 1] : [127, 0, 0, 1]).copy(addr, six ? 16 : 4);
  addr.writeUInt16BE(40000, six ? 32 : 8);
  addr.writeUInt16BE(5222, six ? 34 : 10);
  const tlv = Buffer.from([0x04, 0x00, 0x01, 0x00]); // PP2_TYPE_NOOP, skipped
  const body = Buffer.concat([addr, tlv]);
  const head = Buffer.from([cmd === 'PROXY' ? 0x21 : 0x20, six ? 0x21 : 0x11, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([sig, head, body]);
}

describe('PROXY protocol', () => {
  let d: Embedded;
  let port: number;
  let tlsPort: number;
  const accepted: ClientTransport[] = [];
  before(async () => {
    d = await startEmbedded({
      c2s: { directTls: { enabled: true, port: 0 }, proxyProtocol: { enabled: true, trustedSources: ['127.0.0.1/32'], headerTimeoutMs: 1000 } },
    });
    port = d.ports[0];
    tlsPort = d.server.c2s!.directTlsPort();
    const c2s = d.server.c2s!;
    const accept = c2s.accept.bind(c2s);
    c2s.accept = (t) => { accepted.push(t); accept(t); };
  });
  after(async () => { await d.stop(); });

  const last = () => accepted[accepted.length - 1];

  test('v1 from a trusted proxy: the header names the client, and it is not on loopback', async () => {
    const c = await rawConnect(port);
    c.send(v1('203.0.113.7') + STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>/);
    assert.equal(last().remoteAddress, '203.0.113.7');
    assert.equal(last().loopback, false);
    // Not loopback any more: TLS is required before authentication.
    assert.match(out, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required\/><\/starttls>/);
    assert.doesNotMatch(out, /<mechanism>/);
    c.close();
  });

  test('v1 in pieces, and a v1 header naming a loopback client keeps the exemption', async () => {
    const c = await rawConnect(port);
    const h = v1('127.0.0.5');
    c.send(h.slice(0, 3));
    await new Promise((r) => setTimeout(r, 30));
    c.send(h.slice(3));
    c.send(STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>/);
    assert.equal(last().remoteAddress, '127.0.0.5');
    assert.match(out, /<mechanism>PLAIN<\/mechanism>/);
    c.close();
  });

  test('v2 with an IPv6 client, and v2 LOCAL (the proxy itself)', async () => {
    const c = await rawConnect(port);
    c.socket.write(v2([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    assert.equal(last().remoteAddress, '2001:db8::1');
    c.close();
    const l = await rawConnect(port);
    l.socket.write(Buffer.concat([v2([198, 51, 100, 1], 'LOCAL'), Buffer.from(STREAM_OPEN())]));
    await l.waitFor(/<\/stream:features>/);
    assert.equal(last().remoteAddress, '127.0.0.1');
    l.close();
  });

  test('a trusted source may also connect without a header', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<mechanism>PLAIN<\/mechanism>/);
    assert.equal(last().remoteAddress, '127.0.0.1');
    c.close();
  });

  test('a PROXY header from an untrusted source gets the connection refused', async () => {
    const before = accepted.length;
    for (const header of [Buffer.from(v1('203.0.113.9')), v2([203, 0, 113, 9])]) {
      const c = await rawConnect(port, '127.0.0.1', '127.0.0.2');
      c.socket.write(Buffer.concat([header, Buffer.from(STREAM_OPEN())]));
      await c.closed;
      assert.equal(c.output, '', 'not a byte of XMPP');
    }
    assert.equal(accepted.length, before);
    // Without a header the same source is an ordinary client.
    const ok = await rawConnect(port, '127.0.0.1', '127.0.0.2');
    ok.send(STREAM_OPEN());
    await ok.waitFor(/<\/stream:features>/);
    assert.equal(last().remoteAddress, '127.0.0.2');
    ok.close();
  });

  test('a malformed header from a trusted source is refused', async () => {
    const c = await rawConnect(port);
    c.send('PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n');
    await c.closed;
    assert.equal(c.output, '');
  });

  test('direct TLS: the header comes first in clear, in the same packet as the ClientHello', async () => {
    const raw = tcpConnect({ host: '127.0.0.1', port: tlsPort });
    await new Promise((r) => raw.once('connect', r));
    let first = true;
    // Put the header in front of the first TLS record, in one write.
    const carrier = new Duplex({
      write(chunk: Buffer, _enc, cb) {
        raw.write(first ? Buffer.concat([v2([192, 0, 2, 44]), chunk]) : chunk, cb);
        first = false;
      },
      read() {},
      final(cb) { raw.end(); cb(); },
    });
    raw.on('data', (b) => carrier.push(b));
    raw.on('end', () => carrier.push(null));
    raw.on('error', () => {});
    const tls = tlsConnect({ socket: carrier, servername: 'localhost', ALPNProtocols: ['xmpp-client'], rejectUnauthorized: false });
    await new Promise((resolve, reject) => { tls.once('secureConnect', resolve); tls.once('error', reject); });
    assert.equal(tls.alpnProtocol, 'xmpp-client');
    let out = '';
    tls.on('data', (b: Buffer) => { out += b.toString(); });
    tls.write(STREAM_OPEN());
    for (let i = 0; i < 100 && !out.includes('</stream:features>'); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(out, /<mechanism>PLAIN<\/mechanism>/, 'TLS is in effect');
    assert.equal(last().remoteAddress, '192.0.2.44');
    assert.equal(last().kind, 'tls');
    tls.destroy();
    raw.destroy();
  });

  test('direct TLS from an untrusted source with a header is refused', async () => {
    const c = await rawConnect(tlsPort, '127.0.0.1', '127.0.0.2');
    c.socket.write(v1('203.0.113.9'));
    await c.closed;
  });
});

describe('PROXY protocol off (the default)', () => {
  test('a header is just bad XML', async () => {
    const d = await startEmbedded();
    try {
      const c = await rawConnect(d.ports[0]);
      c.send(v1('203.0.113.7') + STREAM_OPEN());
      await c.waitFor(/<not-well-formed/);
      await c.closed;
    } finally {
      await d.stop();
    }
  });
});
