// A throw while a connection's input is handled (a bus publish that throws, a
// bug) costs that connection only: it is closed with internal-server-error and
// the process, with its other connections, goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { setLogLevel } from '../../libs/log/index.ts';
import { TcpTransport } from './tcp.ts';

setLogLevel('error');

test('a throw while handling one client\'s stanza closes that stream with internal-server-error; another client is served', async () => {
  const opened: TcpTransport[] = [];
  const server = createServer((socket: Socket) => {
    const t = new TcpTransport(socket, { maxStanzaBytes: 65536, maxDepth: 16, maxAttributes: 32 }, undefined);
    opened.push(t);
    t.attach({
      open: () => t.openStream({ xmlns: 'jabber:client', 'xmlns:stream': 'http://etherx.jabber.org/streams', version: '1.0', id: 'x' }),
      stanza: (e) => {
        if (e.attrs.id === 'boom') throw new Error('injected bus failure (publish)');
        t.send(`<message id="${e.attrs.id ?? ''}-echo"/>`);
      },
      close: () => t.closeStream(),
      error: (err) => t.closeStream(err),
      activity: () => 0,
      disconnected: () => {},
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const client = async () => {
    const c = connect(port, '127.0.0.1');
    await once(c, 'connect');
    let got = '';
    c.on('data', (d) => { got += d.toString(); });
    c.write("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>");
    return { c, text: () => got };
  };
  const until = async (f: () => boolean, what: string) => {
    const deadline = Date.now() + 5000;
    while (!f()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    const bad = await client();
    const good = await client();
    bad.c.write('<message id="boom"/>');
    await until(() => bad.text().includes('</stream:stream>'), 'the stream error');
    assert.match(bad.text(), /<stream:error><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text [^>]*>[^<]+<\/text><\/stream:error><\/stream:stream>/);
    good.c.write('<message id="ok"/>');
    await until(() => good.text().includes('ok-echo'), 'the other client\'s answer');
    bad.c.destroy();
    good.c.destroy();
  } finally {
    server.close();
    for (const t of opened) t.closeStream();
  }
});
