// slixmpp's own privacy-list (XEP-0016), vCard (XEP-0054) and blocking
// (XEP-0191) plugins against Parley: embedded, and a cluster with the two
// users on different connection managers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, startEmbedded, type Deployment } from '../support/parley.ts';

const run = promisify(execFile);

interface Seen {
  privacy: {
    edit: string; activate: string; decline: string; lists: string[]; active: string;
    items: { type: string; value: string; action: string; order: string; message: boolean }[];
    bounced: { id: string; condition: string }[]; alice_got_denied: boolean; alice_got_allowed: boolean; missing: string;
  };
  vcard: { FN: string; NICKNAME: string[] };
  blocked: string[];
}

async function scenario(d: Deployment, a: string, b: string): Promise<void> {
  await d.addUser(a);
  await d.addUser(b);
  const [pa, pb] = [d.ports[0], d.ports[d.ports.length - 1]];
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp-account.py', '127.0.0.1', String(pa), String(pb), `${a}@localhost`, `${b}@localhost`, 'secret'], { timeout: 60_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as Seen;
  assert.equal(r.privacy.edit, 'result');
  assert.equal(r.privacy.activate, 'result');
  assert.deepEqual(r.privacy.lists, ['no-bob']);
  assert.equal(r.privacy.active, 'no-bob');
  assert.deepEqual(r.privacy.items, [{ type: 'jid', value: `${b}@localhost`, action: 'deny', order: '1', message: true }]);
  assert.equal(r.privacy.bounced[0]?.condition, 'service-unavailable');
  assert.equal(r.privacy.alice_got_denied, false);
  assert.equal(r.privacy.decline, 'result');
  assert.equal(r.privacy.alice_got_allowed, true);
  assert.equal(r.privacy.missing, 'item-not-found');
  assert.deepEqual(r.vcard, { FN: 'Alice Slixmpp', NICKNAME: ['slixa'] });
  assert.deepEqual(r.blocked, ['spam@example.org']);
}

describe('slixmpp privacy lists, vCard, blocking: embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(); });
  after(async () => { await d.stop(); });
  test('XEP-0016, XEP-0054, XEP-0191 through slixmpp', () => scenario(d, 'slixpa', 'slixpb'));
});

describe('slixmpp privacy lists, vCard, blocking: cluster, users on different c2s nodes', () => {
  let d: Deployment;
  before(async () => { d = await startCluster({ c2s: 2, session: 2 }); });
  after(async () => { await d.stop(); });
  test('XEP-0016, XEP-0054, XEP-0191 through slixmpp', () => scenario(d, 'slixpc', 'slixpd'));
});
