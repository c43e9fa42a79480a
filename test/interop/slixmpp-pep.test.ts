// A client nobody here wrote: python3-slixmpp (Debian) uses the personal
// eventing service through its own plugins (xep_0163, xep_0172 nickname,
// xep_0084 avatar, xep_0060 for an OMEMO device list and bundle, xep_0115
// caps carrying +notify), embedded and across a cluster (alice on one
// connection manager, bob and carol on another).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, startEmbedded, type Deployment } from '../support/parley.ts';

const run = promisify(execFile);

const AVATAR = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
const NICK = 'http://jabber.org/protocol/nick';
const DEVICELIST = 'eu.siacs.conversations.axolotl.devicelist';

async function pep(d: Deployment, tag: string): Promise<Record<string, unknown>> {
  const [a, b, c] = ['a', 'b', 'c'].map((x) => `slixpep${tag}${x}`);
  for (const u of [a, b, c]) await d.addUser(u);
  const ports = d.ports;
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_pep.py', '127.0.0.1', String(ports[0]), String(ports[ports.length - 1]),
    `${a}@localhost`, `${b}@localhost`, `${c}@localhost`, 'secret'], { timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

function check(r: Record<string, unknown>, tag: string): void {
  const alice = `slixpep${tag}a@localhost`;
  const avatarId = createHash('sha1').update(Buffer.from(AVATAR, 'base64')).digest('hex');
  assert.deepEqual(r.bob_notify, [`${DEVICELIST}+notify`, `${NICK}+notify`, 'urn:xmpp:avatar:metadata+notify']);
  assert.deepEqual(r.subscriptions, ['both', 'both']);
  assert.deepEqual(r.bob_nick, { from: alice, id: 'current', nick: 'Alice in Slixmpp' });
  assert.equal(r.avatar_id, avatarId);
  assert.deepEqual(r.bob_metadata, [{ from: alice, id: avatarId, info: [{ id: avatarId, bytes: 70, type: 'image/png', width: 1, height: 1 }] }]);
  assert.deepEqual(r.bob_devicelists, [{ from: alice, id: 'current', devices: ['12345'] }]);
  const own = r.alice_own_events as Record<string, number>;
  assert.ok(own.nick >= 1 && own.metadata === 1 && own.devicelist === 0, 'alice hears her own nodes she asks +notify for, and no others');
  assert.deepEqual(r.bob_avatar, { ids: [avatarId], bytes: AVATAR, sha1: avatarId, matches: true });
  // The bundle comes back as published: key material, the unknown attribute and child, escaped text.
  const published = r.bundle_published as string;
  for (const part of ['x-extra="kept &amp; &quot;quoted&quot;"', '<future xmlns="urn:example:future" level="2">&lt;not markup&gt; å</future>', 'BQ2+/key==']) {
    assert.ok(published.includes(part), part);
  }
  assert.deepEqual(r.bob_bundle, { ids: ['current'], xml: [published] });
  assert.deepEqual(r.carol_bundle, { ids: ['current'], xml: [published] }, 'open: a stranger may fetch it');
  // XEP-0060 §6.5.9.2: a presence node refuses a stranger with not-authorized + presence-subscription-required.
  assert.deepEqual(r.carol_nick, { condition: 'not-authorized', type: 'auth', app: ['presence-subscription-required'] });
  assert.deepEqual(r.carol_events, { nick: 0, metadata: 0, devicelist: 0 }, 'no notifications for a stranger');
}

describe('slixmpp xep_0163 (PEP), embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(); });
  after(async () => { await d.stop(); });
  test('+notify through caps, nickname, avatar, OMEMO device list and bundle, access models', async () => check(await pep(d, 'e'), 'e'));
});

describe('slixmpp xep_0163 (PEP), cluster', () => {
  let d: Deployment;
  before(async () => { d = await startCluster({ c2s: 2, session: 2 }); });
  after(async () => { await d.stop(); });
  test('+notify through caps, nickname, avatar, OMEMO device list and bundle, access models', async () => check(await pep(d, 'c'), 'c'));
});
