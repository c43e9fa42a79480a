// Unit tests of the room's pure parts: archive ids, history selection, the
// configuration form, permissions, the fan-out batch format (both halves),
// registration, moderation requests and tombstones, occupant ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StanzaError } from '../../../libs/errors/index.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { el } from '../../../libs/xml/element.ts';
import { encodeEnvelope, type Envelope } from '../../../libs/bus/envelope.ts';
import { configSchema } from '../../../libs/config/schema.ts';
import { expandRoomFanout } from '../../c2s/room-fanout.ts';
import { queryRange } from './archive.ts';
import { RoomFanout, withTo, OP_ROOM_FANOUT, OP_ROOM_UNDELIVERED, MAX_TARGETS, readBatch, type RoomFanoutData } from './fanout.ts';
import { nextArchiveId, selectHistory, withDelay, type ArchivedMessage } from './history.ts';
import { checkAffiliationChange, checkRoleChange, roleAfterAffiliation } from './roles.ts';
import { applyConfigForm, defaultRoomConfig } from './room-config.ts';
import { parseModeration, tombstone } from './moderation.ts';
import { newOccupantSalt, occupantId } from './occupant-id.ts';
import { parseRegistration, registrationOutcome } from './registration.ts';
import { decodeAffiliation, encodeAffiliation } from './state.ts';

const muc = configSchema.parse({}).muc;
const condition = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof StanzaError) return e.condition;
    throw e;
  }
};

test('archive ids increase, within a millisecond and when the clock steps back', () => {
  const t = Date.UTC(2026, 0, 1);
  const a = nextArchiveId('', t);
  const b = nextArchiveId(a, t);
  const c = nextArchiveId(b, t + 1);
  const d = nextArchiveId(c, t - 5000);
  assert.ok(a < b && b < c && c < d, [a, b, c, d].join(' '));
  const ids = Array.from({ length: 10 }, (_, i) => nextArchiveId('', t + i * 1000));
  assert.deepEqual(queryRange(ids, { queryId: '', max: 5, start: t + 2000, end: t + 5000 }), { lo: 2, hi: 6 });
  assert.deepEqual(queryRange(ids, { queryId: '', max: 5, after: ids[7] }), { lo: 8, hi: 10 });
  assert.equal(condition(() => queryRange(ids, { queryId: '', max: 5, before: 'nope' })), 'item-not-found');
});

test('history: newest first within every limit, delivered oldest first with a delay from the room', () => {
  const now = Date.UTC(2026, 0, 1, 12);
  const kept: ArchivedMessage[] = Array.from({ length: 10 }, (_, i) => ({
    id: String(i), stamp: now - (10 - i) * 60_000, nick: 'a', sender: 'a@x', xml: `<message from="r@c/a" type="groupchat"><body>m${i}</body></message>`,
  }));
  const bodies = (xs: string[]) => xs.map((x) => /<body>(.*)<\/body>/.exec(x)![1]);
  assert.deepEqual(bodies(selectHistory(kept, undefined, 3, 'r@c', now)), ['m7', 'm8', 'm9']);
  assert.deepEqual(bodies(selectHistory(kept, { maxstanzas: 2 }, 20, 'r@c', now)), ['m8', 'm9']);
  assert.deepEqual(selectHistory(kept, { maxchars: 0 }, 20, 'r@c', now), []);
  assert.deepEqual(bodies(selectHistory(kept, { seconds: 150 }, 20, 'r@c', now)), ['m8', 'm9']);
  assert.deepEqual(bodies(selectHistory(kept, { since: now - 3 * 60_000 }, 20, 'r@c', now)), ['m7', 'm8', 'm9']);
  const one = selectHistory(kept, { maxstanzas: 1 }, 20, 'r@c', now)[0];
  const parsed = parseFragment(one);
  assert.equal(parsed.children.length, 2);
  assert.deepEqual((parsed.children[1] as { attrs: Record<string, string> }).attrs.from, 'r@c');
  assert.equal(withDelay('<message><body>x</body></message>', 'r&q@c', 0), '<message><body>x</body><delay xmlns="urn:xmpp:delay" from="r&amp;q@c" stamp="1970-01-01T00:00:00.000Z"/></message>');
});

test('configuration form: good values apply, any bad one refuses the whole form', () => {
  const base = defaultRoomConfig(muc);
  const form = (fields: Record<string, string | string[]>, type = 'submit') => el('x', { xmlns: 'jabber:x:data', type },
    ...Object.entries(fields).map(([k, v]) => el('field', { var: k }, ...(Array.isArray(v) ? v : [v]).map((x) => el('value', {}, x)))));
  const next = applyConfigForm(base, form({ FORM_TYPE: 'http://jabber.org/protocol/muc#roomconfig', 'muc#roomconfig_persistentroom': 'true', 'muc#roomconfig_maxusers': '50', 'muc#roomconfig_presencebroadcast': ['moderator'], 'x-unknown': 'ignored' }), muc);
  assert.equal(next.persistent, true);
  assert.equal(next.maxUsers, 50);
  assert.deepEqual(next.presenceBroadcast, ['moderator']);
  assert.equal(base.persistent, false, 'the current configuration is not changed in place');
  assert.equal(condition(() => applyConfigForm(base, form({ 'muc#roomconfig_maxusers': '-1' }), muc)), 'bad-request');
  assert.equal(condition(() => applyConfigForm(base, form({ 'muc#roomconfig_maxusers': String(muc.maxOccupantsLimit + 1) }), muc)), 'not-acceptable');
  assert.equal(condition(() => applyConfigForm(base, form({ 'muc#roomconfig_whois': ['anyone', 'moderators'] }), muc)), 'bad-request');
  assert.equal(condition(() => applyConfigForm(base, form({ 'muc#roomconfig_passwordprotectedroom': '1' }), muc)), 'not-acceptable', 'a password-protected room needs a password');
  assert.equal(condition(() => applyConfigForm(base, form({}, 'form'), muc)), 'bad-request');
  assert.equal(condition(() => applyConfigForm(base, el('x', { xmlns: 'jabber:x:data', type: 'submit' }, el('field', {}, el('value', {}, '1'))), muc)), 'bad-request');
});

test('permissions: who may change whose role and affiliation', () => {
  const owner = { role: 'moderator' as const, affiliation: 'owner' as const };
  const mod = { role: 'moderator' as const, affiliation: 'none' as const };
  const participant = { role: 'participant' as const, affiliation: 'none' as const };
  assert.equal(condition(() => checkRoleChange(participant, participant, 'none')), 'forbidden');
  assert.equal(condition(() => checkRoleChange(mod, participant, 'none')), undefined);
  assert.equal(condition(() => checkRoleChange(mod, owner, 'none')), 'not-allowed');
  assert.equal(condition(() => checkRoleChange(mod, participant, 'moderator')), 'forbidden');
  assert.equal(condition(() => checkRoleChange(owner, participant, 'moderator')), undefined);
  assert.equal(condition(() => checkAffiliationChange('admin', 'none', 'outcast', 1)), undefined);
  assert.equal(condition(() => checkAffiliationChange('admin', 'admin', 'outcast', 1)), 'not-allowed');
  assert.equal(condition(() => checkAffiliationChange('admin', 'none', 'owner', 1)), 'forbidden');
  assert.equal(condition(() => checkAffiliationChange('member', 'none', 'outcast', 1)), 'forbidden');
  assert.equal(condition(() => checkAffiliationChange('owner', 'owner', 'none', 1)), 'conflict');
  assert.equal(roleAfterAffiliation('participant', 'none', false, true), 'none', 'removed from a members-only room');
  assert.equal(roleAfterAffiliation('moderator', 'member', true, false), 'participant');
  assert.equal(roleAfterAffiliation('visitor', 'member', true, false), 'participant');
});

test('fan-out: one envelope per node and per MAX_TARGETS sessions; the c2s writes each stanza with its own `to`', () => {
  const published: { node: string; env: Envelope }[] = [];
  const routed: string[] = [];
  const f = new RoomFanout('r@c', (node, env) => published.push({ node, env }), (to, _k, xml) => routed.push(xml));
  const targets = [
    ...Array.from({ length: MAX_TARGETS + 1 }, (_, i) => ({ node: 'c2s-1', sid: `s${i}`, jid: `u${i}@x/r` })),
    { node: 'c2s-2', sid: 'z', jid: 'z@x/r' },
    { node: '', sid: '', jid: 'far@remote.example/r' },
  ];
  f.toMany('<message from="r@c/a" type="groupchat"><body>hi</body></message>', targets);
  const sidCount = (e: Envelope) => Buffer.from(e.xml as Uint8Array).toString('latin1', 0, (e.data as { targets: number }).targets).split(' ').length;
  assert.deepEqual(published.map((p) => [p.node, sidCount(p.env)]), [['c2s-1', MAX_TARGETS], ['c2s-1', 1], ['c2s-2', 1]]);
  let header = 0;
  for (const p of published) header = Math.max(header, encodeEnvelope(p.env)[1] * 256 + encodeEnvelope(p.env)[2]);
  assert.ok(header < 256, 'session ids travel in the payload: the envelope header stays small whatever the room size');
  assert.ok(published.every((p) => p.env.op === OP_ROOM_FANOUT && p.env.kind === 'ctl'), 'room batches are c2s control envelopes');
  assert.deepEqual(routed, ['<message to="far@remote.example/r" from="r@c/a" type="groupchat"><body>hi</body></message>'], 'a remote occupant is routed with `to` in place');

  published.length = 0;
  f.toOne({ node: 'c2s-2', sid: 'z', jid: 'z@x/r' }, ['<presence from="r@c/é"/>', '<message from="r@c" type="groupchat"><subject/></message>']);
  assert.equal(published.length, 1, 'a batch to one session is one envelope');
  const written: { kind: string; to: string; xml: string }[] = [];
  const streams = new Map([['z', { jid: 'z@x/"q"', deliver: (e: Envelope) => written.push({ kind: e.kind, to: e.to, xml: Buffer.from(e.xml as Uint8Array).toString() }) }]]);
  expandRoomFanout(published[0].env, (sid) => streams.get(sid));
  assert.deepEqual(written, [
    { kind: 'presence', to: 'z@x/"q"', xml: '<presence to="z@x/&quot;q&quot;" from="r@c/é"/>' },
    { kind: 'message', to: 'z@x/"q"', xml: '<message to="z@x/&quot;q&quot;" from="r@c" type="groupchat"><subject/></message>' },
  ]);
  assert.equal(withTo('<iq/>', 'a@b'), '<iq to="a@b"/>');
  const back: { room: string; env: Envelope }[] = [];
  assert.equal(expandRoomFanout(published[0].env, () => undefined, (room, env) => back.push({ room, env })), 0, 'sessions gone from the node get nothing');
  assert.equal(back.length, 1, 'they are handed back to the room in one envelope');
  assert.equal(back[0].room, 'r@c');
  assert.equal(back[0].env.op, OP_ROOM_UNDELIVERED);
  assert.deepEqual(readBatch(back[0].env.data as RoomFanoutData, back[0].env.xml), {
    sids: ['z'], stanzas: ['<presence from="r@c/é"/>', '<message from="r@c" type="groupchat"><subject/></message>'],
  });
});

test('registration: the form is read strictly; who registering makes what', () => {
  const q = (fields: Record<string, string>, type = 'submit') => el('query', { xmlns: 'jabber:iq:register' }, el('x', { xmlns: 'jabber:x:data', type },
    ...Object.entries(fields).map(([k, v]) => el('field', { var: k }, el('value', {}, v)))));
  const FT = 'http://jabber.org/protocol/muc#register';
  assert.equal(parseRegistration(q({ FORM_TYPE: FT, 'muc#register_roomnick': 'thirdwitch' }), 20), 'thirdwitch');
  assert.equal(condition(() => parseRegistration(q({ FORM_TYPE: FT }), 20)), 'not-acceptable', 'the nickname is required');
  assert.equal(condition(() => parseRegistration(q({ FORM_TYPE: FT, 'muc#register_roomnick': 'x'.repeat(21) }), 20)), 'not-acceptable');
  assert.equal(condition(() => parseRegistration(q({ 'muc#register_roomnick': 'a' }), 20)), 'bad-request', 'FORM_TYPE is required');
  assert.equal(condition(() => parseRegistration(q({ FORM_TYPE: FT, 'muc#register_roomnick': 'a' }, 'form'), 20)), 'bad-request');
  assert.equal(condition(() => parseRegistration(el('query', { xmlns: 'jabber:iq:register' }), 20)), 'bad-request');
  assert.equal(registrationOutcome('none', false), 'join');
  assert.equal(registrationOutcome('none', true), 'request', 'members-only: only the owners let someone in');
  assert.equal(registrationOutcome('member', true), 'reserve');
  assert.equal(registrationOutcome('owner', false), 'reserve');
  assert.equal(condition(() => registrationOutcome('outcast', false)), 'forbidden');
  assert.deepEqual(decodeAffiliation(encodeAffiliation({ affiliation: 'member', reason: '', nick: 'n' })), { affiliation: 'member', reason: '', nick: 'n' });
  assert.deepEqual(decodeAffiliation(encodeAffiliation({ affiliation: 'admin', reason: 'r' })), { affiliation: 'admin', reason: 'r', nick: undefined });
});

test('moderation: both request forms; a tombstone keeps the ids and drops every word', () => {
  const v1 = el('moderate', { xmlns: 'urn:xmpp:message-moderate:1', id: 'abc' }, el('retract', { xmlns: 'urn:xmpp:message-retract:1' }), el('reason', {}, 'spam'));
  assert.deepEqual(parseModeration(v1, 100), { id: 'abc', reason: 'spam' });
  const v0 = el('apply-to', { xmlns: 'urn:xmpp:fasten:0', id: 'def' }, el('moderate', { xmlns: 'urn:xmpp:message-moderate:0' }, el('retract', { xmlns: 'urn:xmpp:message-retract:0' })));
  assert.deepEqual(parseModeration(v0, 100), { id: 'def', reason: '' });
  assert.equal(parseModeration(el('apply-to', { xmlns: 'urn:xmpp:fasten:0', id: 'x' }), 100), undefined, 'an apply-to without moderate is something else');
  assert.equal(parseModeration(el('query', { xmlns: 'jabber:iq:version' }), 100), undefined);
  assert.equal(condition(() => parseModeration(el('moderate', { xmlns: 'urn:xmpp:message-moderate:1' }, el('retract', { xmlns: 'urn:xmpp:message-retract:1' })), 100)), 'bad-request', 'no id');
  assert.equal(condition(() => parseModeration(el('moderate', { xmlns: 'urn:xmpp:message-moderate:1', id: 'a' }), 100)), 'bad-request', 'no retract');
  assert.equal(condition(() => parseModeration(el('moderate', { xmlns: 'urn:xmpp:message-moderate:1', id: 'a' }, el('retract', { xmlns: 'urn:xmpp:message-retract:1' }), el('reason', {}, 'x'.repeat(101))), 100)), 'not-acceptable');
  const kept = '<message from="r@c/bob" type="groupchat" id="m1"><body>secret words</body><html xmlns="http://jabber.org/protocol/xhtml-im"><body>secret words</body></html>'
    + '<occupant-id xmlns="urn:xmpp:occupant-id:0" id="o1"/><stanza-id xmlns="urn:xmpp:sid:0" id="abc" by="r@c"/></message>';
  const stone = parseFragment(tombstone(kept, { by: 'r@c/mod', byOccupantId: 'o2', reason: 'spam', stamp: Date.UTC(2026, 0, 1) }));
  assert.ok(!tombstone(kept, { by: 'r@c/mod', byOccupantId: 'o2', reason: '', stamp: 0 }).includes('secret'), 'no word survives');
  assert.deepEqual(stone.attrs, { from: 'r@c/bob', type: 'groupchat', id: 'm1' });
  const names = stone.children.map((c) => (typeof c === 'string' ? c : `${c.name} ${c.attrs.xmlns}`));
  assert.deepEqual(names, ['retracted urn:xmpp:message-retract:1', 'moderated urn:xmpp:message-moderate:0', 'occupant-id urn:xmpp:occupant-id:0', 'stanza-id urn:xmpp:sid:0']);
  const retracted = stone.children[0] as { attrs: Record<string, string> };
  assert.deepEqual({ by: retracted.attrs.by, stamp: retracted.attrs.stamp }, { by: 'r@c/mod', stamp: '2026-01-01T00:00:00.000Z' });
});

test('occupant ids: stable for one salt and JID, different across JIDs and rooms', () => {
  const a = newOccupantSalt();
  const b = newOccupantSalt();
  assert.equal(occupantId(a, 'u@x'), occupantId(a, 'u@x'));
  assert.notEqual(occupantId(a, 'u@x'), occupantId(a, 'v@x'));
  assert.notEqual(occupantId(a, 'u@x'), occupantId(b, 'u@x'));
  assert.match(occupantId(a, 'u@x'), /^[A-Za-z0-9_-]{22}$/);
});
