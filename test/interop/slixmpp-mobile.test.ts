// Stream management with resumption (on another c2s node in the cluster),
// carbons and the archive, driven by slixmpp's own implementations (Debian's
// python3-slixmpp): clients nobody here wrote.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, startEmbedded, type Deployment } from '../support/parley.ts';

const run = promisify(execFile);

interface Seen { sm_enabled: boolean; laptop_carbons: { sent: string[]; received: string[] }; resumed: boolean; phone_bodies: string[]; archive: string[] }

async function mobile(d: Deployment, a: string, b: string): Promise<void> {
  await d.addUser(a);
  await d.addUser(b);
  const [p, l] = [d.ports[0], d.ports[1 % d.ports.length]];
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_mobile.py', '127.0.0.1', String(p), String(l), `${a}@localhost`, `${b}@localhost`, 'secret'], { timeout: 60_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as Seen;
  assert.equal(r.sm_enabled, true);
  assert.deepEqual(r.laptop_carbons, { sent: ['from phone'], received: ['to phone'] });
  assert.equal(r.resumed, true);
  assert.deepEqual(r.phone_bodies, ['to phone', 'away 0', 'away 1', 'away 2'], 'each once, in order, across the resumption');
  // The first two were sent at the same moment by two clients: either order.
  assert.deepEqual([...r.archive.slice(0, 2)].sort(), ['from phone', 'to phone']);
  assert.deepEqual(r.archive.slice(2), ['away 0', 'away 1', 'away 2', 'kept 0', 'kept 1', 'kept 2', 'kept 3', 'kept 4'], 'paged three at a time');
}

describe('slixmpp mobile, embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(); });
  after(async () => { await d.stop(); });
  test('carbons, resumption, archive paging', async () => mobile(d, 'slixma', 'slixmb'));
});

describe('slixmpp mobile, cluster (resumed on the other c2s node)', () => {
  let d: Deployment;
  before(async () => { d = await startCluster({ c2s: 2, session: 2 }); });
  after(async () => { await d.stop(); });
  test('carbons, resumption, archive paging', async () => mobile(d, 'slixmc', 'slixmd'));
});
