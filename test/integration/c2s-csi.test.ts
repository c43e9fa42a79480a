// Client State Indication (XEP-0352): an inactive client gets presence held
// and collapsed, messages at once; turning active flushes what was held.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { connect, isMessageWithBody, xml } from '../support/clients.ts';
import { befriend, jid, presenceFrom, rosterGet } from '../support/im.ts';

let d: Deployment;
before(async () => {
  d = await startEmbedded();
  for (const u of ['phone', 'friend1', 'friend2']) await d.addUser(u);
});
after(async () => { await d.stop(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('presence waits while inactive (newest per contact), chat messages do not, active flushes in order', async () => {
  const phone = await connect(d.ports[0], 'phone', { resource: 'p' });
  const f1 = await connect(d.ports[0], 'friend1', { resource: 'a' });
  const f2 = await connect(d.ports[0], 'friend2', { resource: 'b' });
  try {
    for (const c of [phone, f1, f2]) {
      await rosterGet(c);
      await c.send(xml('presence'));
    }
    await befriend(phone, 'phone', f1, 'friend1');
    await befriend(phone, 'phone', f2, 'friend2');
    await phone.waitFor(presenceFrom(jid('friend2')));
    await phone.send(xml('inactive', { xmlns: 'urn:xmpp:csi:0' }));
    await sleep(200);
    phone.received.length = 0;
    for (const s of ['away', 'xa', 'dnd']) await f1.send(xml('presence', {}, xml('show', {}, s)));
    await f2.send(xml('presence', {}, xml('status', {}, 'only once')));
    await sleep(500);
    assert.equal(phone.received.filter((s) => s.is('presence')).length, 0, 'no presence while inactive');
    await f2.send(xml('message', { to: jid('phone'), type: 'chat' }, xml('body', {}, 'urgent')));
    await phone.waitFor(isMessageWithBody('urgent'));
    // the urgent message flushed what was held first: newest presence per contact only
    const presences = phone.received.filter((s) => s.is('presence'));
    assert.deepEqual(presences.map((p) => [p.attrs.from?.split('/')[0], p.getChildText('show') ?? p.getChildText('status')]),
      [[jid('friend1'), 'dnd'], [jid('friend2'), 'only once']]);
    const mi = phone.received.findIndex(isMessageWithBody('urgent'));
    assert.ok(phone.received.findIndex((s) => s.is('presence')) < mi, 'held presence goes out before the urgent message');

    phone.received.length = 0;
    await f1.send(xml('presence', {}, xml('show', {}, 'chat')));
    await sleep(300);
    assert.equal(phone.received.filter((s) => s.is('presence')).length, 0);
    await phone.send(xml('active', { xmlns: 'urn:xmpp:csi:0' }));
    const p = await phone.waitFor((s) => s.is('presence') && s.getChildText('show') === 'chat');
    assert.ok(p);
  } finally {
    for (const c of [phone, f1, f2]) await c.stop();
  }
});
