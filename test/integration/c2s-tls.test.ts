// Direct TLS (XEP-0368) on its own port: ALPN 'xmpp-client', the certificate
// chosen by SNI (per-domain certificates with a fallback), and a session over
// it that counts as TLS. STARTTLS on the plain port picks by SNI too.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN } from '../support/raw.ts';
import { tempDir } from '../support/servers.ts';
import type { RunningServer } from '../../services/server.ts';

type Embedded = Deployment & { server: RunningServer };

interface TlsClient {
  socket: TLSSocket;
  send(s: string): void;
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
}

function tlsClient(port: number, opts: { servername?: string; alpn?: string[] } = {}): Promise<TlsClient> {
  return new Promise((resolve, reject) => {
    let out = '';
    const waiters: (() => void)[] = [];
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: opts.servername ?? 'localhost', ALPNProtocols: opts.alpn ?? ['xmpp-client'], rejectUnauthorized: false });
    socket.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of [...waiters]) w();
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => resolve({
      socket,
      send: (s) => { socket.write(s); },
      waitFor: (re, ms = 5000) => new Promise((res, rej) => {
        const check = () => {
          if (!re.test(out)) return;
          clearTimeout(t);
          waiters.splice(waiters.indexOf(check), 1);
          res(out);
        };
        const t = setTimeout(() => { waiters.splice(waiters.indexOf(check), 1); rej(new Error(`no ${re} within ${ms} ms; got: ${out}`)); }, ms);
        waiters.push(check);
        check();
      }),
    }));
  });
}

describe('direct TLS', () => {
  let d: Embedded;
  let port: number;
  let tcpPort: number;
  before(async () => {
    const dir = tempDir('parley-certs');
    const pems = await generate([{ name: 'commonName', value: 'other.example' }], {
      keyType: 'ec', curve: 'P-256', algorithm: 'sha256',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2 as const, value: 'other.example' }] }],
    });
    writeFileSync(join(dir, 'other.crt'), pems.cert);
    writeFileSync(join(dir, 'other.key'), pems.private);
    d = await startEmbedded({
      domains: ['localhost', 'other.example'],
      c2s: {
        tcp: { allowPlainOnLoopback: false },
        directTls: { enabled: true, port: 0 },
        certificates: { 'other.example': { cert: join(dir, 'other.crt'), key: join(dir, 'other.key') } },
      },
    });
    port = d.server.c2s!.directTlsPort();
    tcpPort = d.ports[0];
    await d.addUser('tlsuser');
  });
  after(async () => { await d.stop(); });

  test('ALPN xmpp-client is negotiated, and the stream is TLS from the first byte', async () => {
    const c = await tlsClient(port);
    assert.equal(c.socket.alpnProtocol, 'xmpp-client');
    c.send(STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>/);
    assert.doesNotMatch(out, /starttls/, 'no STARTTLS inside TLS');
    // TLS is in effect, so PLAIN is offered even with the loopback exemption off.
    assert.match(out, /<mechanism>PLAIN<\/mechanism>/);
    c.socket.destroy();
  });

  test('a client offering only another ALPN protocol is refused', async () => {
    await assert.rejects(tlsClient(port, { alpn: ['h2'] }));
  });

  test('SNI picks the domain certificate, with the default one as fallback', async () => {
    const other = await tlsClient(port, { servername: 'other.example' });
    assert.equal(other.socket.getPeerCertificate().subject.CN, 'other.example');
    other.socket.destroy();
    const local = await tlsClient(port, { servername: 'localhost' });
    assert.equal(local.socket.getPeerCertificate().subject.CN, 'localhost');
    local.socket.destroy();
    const unknown = await tlsClient(port, { servername: 'nobody.example' });
    assert.equal(unknown.socket.getPeerCertificate().subject.CN, 'localhost');
    unknown.socket.destroy();
  });

  test('STARTTLS on the plain port picks by SNI too', async () => {
    const c = await rawConnect(tcpPort);
    c.send(STREAM_OPEN('other.example'));
    await c.waitFor(/<\/stream:features>/);
    c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await c.waitFor(/<proceed/);
    const tls = tlsConnect({ socket: c.socket, servername: 'other.example', rejectUnauthorized: false });
    await new Promise((resolve, reject) => { tls.once('secureConnect', resolve); tls.once('error', reject); });
    assert.equal(tls.getPeerCertificate().subject.CN, 'other.example');
    tls.destroy();
  });

  test('a session over direct TLS: PLAIN, bind, counted as tls', async () => {
    const c = await tlsClient(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth('tlsuser', PASSWORD));
    await c.waitFor(/<success/);
    c.send(STREAM_OPEN());
    await c.waitFor(/xmpp-bind/);
    c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    await c.waitFor(/<jid>tlsuser@localhost\/[^<]+<\/jid>/);
    assert.equal(d.server.c2s!.connectionsByTransport().tls, 1);
    c.send(`<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await c.waitFor(/<iq type="result" id="p"|<iq [^>]*id="p"[^>]*type="result"/);
    c.socket.destroy();
  });

  test('a client that never completes the handshake is dropped', async () => {
    const s = await rawConnect(port);
    s.send('not a TLS record at all\r\n');
    await s.closed;
  });
});
