// Every way in, in a cluster (c2s role processes on NATS and Redis): one BOSH
// session whose HTTP requests a round-robin load balancer spreads over two
// c2s processes, WebSocket and direct TLS on their own nodes, all reaching
// each other.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket as NodeWebSocket } from 'stanza/platform/index.js';
import { startCluster, PASSWORD, type Cluster, type ClusterProcess } from '../support/parley.ts';
import { connect, isMessageWithBody, xml } from '../support/clients.ts';
import { connectStanza } from '../support/stanza-client.ts';
import { plainAuth, STREAM_OPEN } from '../support/raw.ts';

const g = globalThis as Record<string, unknown>;
g.WebSocket ??= NodeWebSocket;

/** A listener's port, from the process's start-up log line. */
function portOf(p: ClusterProcess, what: 'http' | 'directTls'): number {
  const line = p.log.find((l) => l.includes('server: started')) ?? '';
  const m = new RegExp(` ${what}=[^ ]*:(\\d+)`).exec(line);
  assert.ok(m, `no ${what} port in: ${line}`);
  return Number(m[1]);
}

/** A round-robin HTTP load balancer without sticky sessions; it counts what each backend got. */
async function roundRobin(backends: number[]): Promise<{ url: string; hits: number[]; close(): void }> {
  const hits = backends.map(() => 0);
  let next = 0;
  const server: Server = createServer((req, res) => {
    const i = next++ % backends.length;
    hits[i]++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      fetch(`http://127.0.0.1:${backends[i]}${req.url}`, { method: req.method, body: req.method === 'POST' ? Buffer.concat(chunks) : undefined, headers: { 'content-type': req.headers['content-type'] ?? 'text/xml' } })
        .then(async (r) => {
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/xml' });
          res.end(Buffer.from(await r.arrayBuffer()));
        }, () => { res.writeHead(502); res.end(); });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return { url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, hits, close: () => { server.closeAllConnections(); server.close(); } };
}

describe('transports in a cluster (2 c2s + 1 session)', () => {
  let c: Cluster;
  let c2s: ClusterProcess[];
  before(async () => {
    c = await startCluster({ c2s: 2, session: 1, config: { c2s: { http: { enabled: true, port: 0 }, directTls: { enabled: true, port: 0 } } } });
    c2s = c.processes.filter((p) => p.role === 'c2s');
    for (const u of ['lbbosh', 'lbpeer', 'lbws', 'lbtls']) await c.addUser(u);
  });
  after(async () => { await c?.stop(); });

  test('one BOSH session, its requests alternating between two c2s processes', async () => {
    const lb = await roundRobin(c2s.map((p) => portOf(p, 'http')));
    const peer = await connect(c2s[1].port, 'lbpeer');
    const bosh = await connectStanza('lbbosh', { bosh: `${lb.url}/http-bind` });
    try {
      bosh.agent.sendMessage({ to: peer.jid, body: 'through the balancer', type: 'chat' });
      await peer.waitFor(isMessageWithBody('through the balancer'));
      for (let i = 0; i < 5; i++) await peer.send(xml('message', { to: bosh.jid, type: 'chat' }, xml('body', {}, `reply ${i}`)));
      for (let i = 0; i < 5; i++) await bosh.waitForBody(`reply ${i}`);
      assert.deepEqual(bosh.received.filter((r) => r.body.startsWith('reply ')).map((r) => r.body), [0, 1, 2, 3, 4].map((i) => `reply ${i}`));
      assert.ok(lb.hits[0] >= 3 && lb.hits[1] >= 3, `both nodes served requests of the session: ${lb.hits}`);
    } finally {
      await bosh.stop();
      await peer.stop();
      lb.close();
    }
  });

  test('WebSocket on one node and direct TLS on the other chat across the cluster', async () => {
    const ws = await connect(0, 'lbws', { service: `ws://127.0.0.1:${portOf(c2s[0], 'http')}/xmpp-websocket` });
    const tls = tlsConnect({ host: '127.0.0.1', port: portOf(c2s[1], 'directTls'), servername: 'localhost', ALPNProtocols: ['xmpp-client'], rejectUnauthorized: false });
    let out = '';
    tls.on('data', (b: Buffer) => { out += b.toString(); });
    const until = async (re: RegExp) => {
      for (let i = 0; i < 250 && !re.test(out); i++) await new Promise((r) => setTimeout(r, 20));
      assert.match(out, re);
    };
    try {
      await new Promise((resolve, reject) => { tls.once('secureConnect', resolve); tls.once('error', reject); });
      assert.equal(tls.alpnProtocol, 'xmpp-client');
      tls.write(STREAM_OPEN());
      await until(/<\/stream:features>/);
      tls.write(plainAuth('lbtls', PASSWORD));
      await until(/<success/);
      tls.write(STREAM_OPEN());
      await until(/xmpp-bind/);
      tls.write(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>tls</resource></bind></iq>`);
      await until(/<jid>lbtls@localhost\/tls<\/jid>/);
      await ws.send(xml('message', { to: 'lbtls@localhost/tls', type: 'chat' }, xml('body', {}, 'ws to tls')));
      await until(/ws to tls/);
      tls.write(`<message to='${ws.jid}' type='chat'><body>tls to ws</body></message>`);
      await ws.waitFor(isMessageWithBody('tls to ws'));
    } finally {
      tls.destroy();
      await ws.stop();
    }
  });
});
