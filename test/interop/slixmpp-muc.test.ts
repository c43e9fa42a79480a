// A client nobody here wrote: python3-slixmpp (Debian) and its xep_0045
// plugin create, configure and use a room, and its xep_0425 moderates a
// message (xep_0421 occupant ids and xep_0313 reading the room archive
// alongside), embedded and across a cluster
// (alice and bob on different connection managers).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, startEmbedded, type Deployment } from '../support/parley.ts';

const run = promisify(execFile);

async function room(d: Deployment, tag: string): Promise<Record<string, unknown>> {
  const [a, b, c] = ['a', 'b', 'c'].map((x) => `slixmuc${tag}${x}`);
  for (const u of [a, b, c]) await d.addUser(u);
  const ports = d.ports;
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_muc.py', '127.0.0.1', String(ports[0]), String(ports[ports.length - 1]),
    `${a}@localhost`, `${b}@localhost`, `${c}@localhost`, 'secret', `slix${tag}@conference.localhost`], { timeout: 90_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

function check(r: Record<string, unknown>, tag: string): void {
  const carol = `slixmuc${tag}c@localhost`;
  assert.deepEqual(r.created, [110, 170, 201]);
  assert.ok((r.form_fields as string[]).includes('muc#roomconfig_persistentroom'), 'the configuration form offers persistence');
  assert.ok((r.room_features as string[]).includes('muc_persistent'), 'the submitted configuration applies');
  assert.deepEqual(r.room_name, ['Slixmpp Room']);
  assert.deepEqual(r.bob_joined, { codes: [110, 170], role: 'participant', occupants: ['Alice', 'Bob'] });
  assert.deepEqual(r.alice_roster, ['Alice', 'Bob']);
  assert.equal(r.conflict, 'conflict');
  assert.deepEqual(r.carol, { subject: 'Interop', history: ['hello from slixmpp', 'hi alice'], occupants: ['Alice', 'Bob', 'Carol'] });
  assert.deepEqual(r.visitor_error, ['forbidden']);
  assert.equal(r.banned, 'forbidden');
  assert.deepEqual(r.outcasts, [carol]);
  assert.equal(r.bob_owner_list, 'forbidden');
  assert.deepEqual(r.alice_offline, ['Bob', 'Carol']);
  assert.deepEqual(r.alice_groupchat, ['hello from slixmpp', 'hi alice', 'please delete me']);
  // XEP-0425 through slixmpp's own xep_0425 (the :0 form it speaks).
  const room = `slix${tag}@conference.localhost`;
  const m = r.moderated as { bob: { id: string; by: string; reason: string; from: string }[]; carol: unknown[]; target: string };
  assert.equal(r.carol_moderates, 'forbidden', 'a participant may not moderate');
  for (const seen of [m.bob, m.carol]) assert.deepEqual(seen, [{ id: m.target, by: `${room}/Alice`, reason: 'spam', from: room }]);
  const archive = r.archive as Record<string, { body: string | null; retracted_by: string | null; moderated0_by: string | null }>;
  assert.deepEqual(archive[m.target], { body: null, retracted_by: `${room}/Alice`, moderated0_by: `${room}/Alice` }, 'the archive holds a tombstone');
  assert.deepEqual(Object.values(archive).map((a) => a.body).filter((b) => b !== null), ['hello from slixmpp', 'hi alice'], 'the other messages stay; the moderated words are gone');
  assert.equal(r.message_occupant_id, true, 'messages and presence carry the same occupant id');
}

describe('slixmpp xep_0045, embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(); });
  after(async () => { await d.stop(); });
  test('create, configure, enter, chat, subject, history, voice, kick, ban, leave', async () => check(await room(d, 'e'), 'e'));
});

describe('slixmpp xep_0045, cluster', () => {
  let d: Deployment;
  before(async () => { d = await startCluster({ c2s: 2, session: 2 }); });
  after(async () => { await d.stop(); });
  test('create, configure, enter, chat, subject, history, voice, kick, ban, leave', async () => check(await room(d, 'c'), 'c'));
});
