// Admission control across connection managers: a new stream past one process's bucket is sent with
// <see-other-host/> to a peer that announced room (its c2s.publicAddress), where the client logs in; once that
// peer is gone, the same refusal is <resource-constraint/> with a text.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, type Cluster, type ClusterProcess } from '../support/parley.ts';
import { rawLogin } from '../support/im.ts';
import { rawConnect, STREAM_OPEN } from '../support/raw.ts';
import { freePort } from '../support/servers.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let c: Cluster;
let full: ClusterProcess;
let roomy: ClusterProcess;
before(async () => {
  c = await startCluster({ c2s: 0, session: 1 });
  const port = await freePort();
  roomy = await c.add('c2s', 'c2s-roomy', { c2s: { tcp: { port }, publicAddress: `127.0.0.1:${port}` } });
  // One new stream at once, then one every 100 s.
  full = await c.add('c2s', 'c2s-full', { c2s: { admission: { streams: { burst: 1, ratePerSecond: 0.01 } } } });
  await c.addUser('roamer');
});
after(() => c?.stop());

async function refusal(port: number): Promise<string> {
  const x = await rawConnect(port);
  x.send(STREAM_OPEN());
  await x.closed;
  return x.output;
}

test('past its bucket a connection manager sends new streams to a peer with room, and says retry once none is left', async () => {
  const first = await rawLogin(full.port, 'roamer', 'one');
  // The peer's announcements come every heartbeat (250 ms here).
  await sleep(800);
  const out = await refusal(full.port);
  assert.match(out, new RegExp(`<stream:error><see-other-host xmlns="urn:ietf:params:xml:ns:xmpp-streams">127\\.0\\.0\\.1:${roomy.port}</see-other-host></stream:error>`));
  const there = await rawLogin(roomy.port, 'roamer', 'two');
  assert.match(there.output, /<jid>roamer@localhost\/two<\/jid>/);
  there.close();

  await c.kill(roomy);
  await sleep(1000); // three heartbeats: its last announcement no longer counts
  const alone = await refusal(full.port);
  assert.match(alone, /<stream:error><resource-constraint xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text [^>]*>this server is busy[^<]*retry in a few seconds<\/text><\/stream:error>/);
  first.close();
});
