// Real clients nobody here wrote: python3-slixmpp (Debian) subscribes, sees
// presence and chats, against the embedded server and across a cluster.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, startEmbedded, type Deployment } from '../support/parley.ts';

const run = promisify(execFile);

interface Seen { available: string[]; messages: { from: string; body: string }[]; roster: Record<string, string> }

async function pair(d: Deployment, a: string, b: string): Promise<{ alice: Seen; bob: Seen; features: string[]; ping: boolean }> {
  await d.addUser(a);
  await d.addUser(b);
  const port = d.ports[0];
  // Both on the first c2s in the embedded mode; in a cluster the script connects both to one port,
  // so run a second pass the other way round below.
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_pair.py', '127.0.0.1', String(port), `${a}@localhost`, `${b}@localhost`, 'secret'], { timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as { alice: Seen; bob: Seen; features: string[]; ping: boolean };
}

function check(r: Awaited<ReturnType<typeof pair>>, a: string, b: string): void {
  assert.deepEqual(r.alice.available, [`${b}@localhost`]);
  assert.deepEqual(r.bob.available, [`${a}@localhost`]);
  assert.equal(r.alice.roster[`${b}@localhost`], 'both');
  assert.equal(r.bob.roster[`${a}@localhost`], 'both');
  assert.equal(r.bob.messages[0]?.body, 'hello from slixmpp');
  assert.match(r.bob.messages[0]?.from ?? '', new RegExp(`^${a}@localhost/`));
  assert.equal(r.alice.messages[0]?.body, 'hello back');
  assert.ok(r.features.includes('urn:xmpp:ping'));
  assert.equal(r.ping, true);
}

describe('slixmpp, embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(); });
  after(async () => { await d.stop(); });
  test('subscribe, presence, chat, disco and ping', async () => check(await pair(d, 'slixa', 'slixb'), 'slixa', 'slixb'));
});

describe('slixmpp, cluster', () => {
  let d: Deployment;
  before(async () => { d = await startCluster({ c2s: 1, session: 2 }); });
  after(async () => { await d.stop(); });
  test('subscribe, presence, chat, disco and ping', async () => check(await pair(d, 'slixc', 'slixd'), 'slixc', 'slixd'));
});
