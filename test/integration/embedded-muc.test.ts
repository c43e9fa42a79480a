// Multi-user chat in the embedded mode: the scenario suite, and a persistent
// room that remembers its configuration, members, registered nicknames,
// subject, history with its moderated messages, and occupant ids across a
// restart of the server (the lmdb store).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../libs/config/index.ts';
import { startServer } from '../../services/server.ts';
import { connect, xml } from '../support/clients.ts';
import { DOMAIN, startEmbedded, type Deployment } from '../support/parley.ts';
import { tempDir } from '../support/servers.ts';
import { codes, configure, createRoom, enter, groupchat, item, mucScenarios, MUC_CONFIG, NS_MUC_ADMIN, SERVICE } from '../scenarios/muc.ts';

describe('multi-user chat, embedded mode', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(MUC_CONFIG); });
  after(async () => { await d.stop(); });
  mucScenarios(() => d);
});

describe('multi-user chat, embedded mode, across a restart', () => {
  test('a persistent room keeps its configuration, members, registered nicks, subject, history (tombstones too) and occupant ids', async () => {
    const dataDir = tempDir('parley-muc-restart');
    const config = loadConfig(undefined, {}, { dataDir, domains: [DOMAIN], log: { level: 'warn' }, metrics: { enabled: false }, c2s: { tcp: { host: '127.0.0.1', port: 0, allowPlainOnLoopback: true } } });
    const room = `keep@${SERVICE}`;
    let server = await startServer(config);
    for (const u of ['keepa', 'keepb']) await server.accounts.add(`${u}@${DOMAIN}`, 'secret');
    let alice = await connect(server.c2s!.tcpPort(), 'keepa');
    const created = await createRoom(alice, room, 'Alice', { 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_membersonly': '1', 'muc#roomconfig_roomname': 'Kept' });
    const aliceId = created.getChild('occupant-id', 'urn:xmpp:occupant-id:0')?.attrs.id;
    assert.ok(aliceId);
    await alice.xmpp.iqCaller.request(xml('iq', { type: 'set', to: room }, xml('query', NS_MUC_ADMIN, xml('item', { affiliation: 'member', jid: `keepb@${DOMAIN}`, nick: 'Bob' }))));
    await alice.send(xml('message', { to: room, type: 'groupchat' }, xml('subject', {}, 'Still here')));
    for (let i = 0; i < 3; i++) await alice.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, `before restart ${i}`)));
    await alice.waitFor(groupchat('before restart 2'));
    const doomed = alice.received.find(groupchat('before restart 1'))!.getChild('stanza-id', 'urn:xmpp:sid:0')!.attrs.id!;
    await alice.xmpp.iqCaller.request(xml('iq', { type: 'set', to: room }, xml('moderate', { xmlns: 'urn:xmpp:message-moderate:1', id: doomed }, xml('retract', 'urn:xmpp:message-retract:1'))));
    await alice.stop();
    await server.stop(true);

    server = await startServer(config);
    try {
      const bob = await connect(server.c2s!.tcpPort(), 'keepb');
      const self = await enter(bob, room, 'Bob', { history: { maxstanzas: '10' } });
      assert.equal(self.attrs.type, undefined, 'the member list survived (members-only room)');
      assert.equal(item(self)?.attrs.affiliation, 'member');
      assert.ok(!codes(self).includes(201), 'the room was not created again');
      const subject = await bob.waitFor((s) => s.is('message') && s.getChild('subject') !== undefined);
      assert.equal(subject.getChildText('subject'), 'Still here');
      const history = bob.received.filter((s) => s.is('message') && s.getChild('delay', 'urn:xmpp:delay'));
      assert.deepEqual(history.map((s) => s.getChildText('body')), ['before restart 0', null, 'before restart 2', null], 'the moderated message is a tombstone, then the announcement');
      assert.ok(history[1].getChild('retracted', 'urn:xmpp:message-retract:1'));
      assert.equal(history[3].getChild('retract', 'urn:xmpp:message-retract:1')?.attrs.id, doomed);
      const nick = await bob.xmpp.iqCaller.request(xml('iq', { type: 'get', to: room }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info', node: 'x-roomuser-item' })));
      assert.equal(nick.getChild('query')!.getChild('identity')?.attrs.name, 'Bob', 'the registered nick is kept');
      alice = await connect(server.c2s!.tcpPort(), 'keepa');
      const form = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: room }, xml('query', 'http://jabber.org/protocol/muc#owner')));
      const name = form.getChild('query')!.getChild('x', 'jabber:x:data')!.getChildren('field').find((f) => f.attrs.var === 'muc#roomconfig_roomname');
      assert.equal(name?.getChildText('value'), 'Kept', 'the owner is still the owner, the configuration is kept');
      const again = await enter(alice, room, 'Alice');
      assert.equal(again.getChild('occupant-id', 'urn:xmpp:occupant-id:0')?.attrs.id, aliceId, 'the occupant id outlives the restart');
      await configure(alice, room, { 'muc#roomconfig_persistentroom': '0' });
      await bob.stop();
      await alice.stop();
    } finally {
      await server.stop(true);
    }
  });
});
