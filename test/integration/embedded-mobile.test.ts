// Mobile and multi-device scenarios on the embedded server (one process, lmdb),
// plus what only one process shows: a restart ends every session, and what a
// waiting session had not acknowledged is in offline storage afterwards.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../libs/config/index.ts';
import { startServer } from '../../services/server.ts';
import { isMessageWithBody, xml } from '../support/clients.ts';
import { befriend, jid, presenceFrom, rosterGet } from '../support/im.ts';
import { DOMAIN, PASSWORD, startEmbedded, type Deployment } from '../support/parley.ts';
import { tempDir } from '../support/servers.ts';
import { MOBILE_CONFIG, mobile, multiDeviceScenarios, sleep, streamManagementScenarios } from '../scenarios/mobile.ts';

describe('mobile, embedded mode', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(MOBILE_CONFIG); });
  after(async () => { await d.stop(); });
  streamManagementScenarios(() => d);
  multiDeviceScenarios(() => d);
});

describe('mobile, embedded mode: restarts and options', () => {
  test('the process stops while a session waits: after the restart its unacknowledged messages are in offline storage, once', async () => {
    const dataDir = tempDir('parley-sm-restart');
    const config = () => loadConfig(undefined, {}, { dataDir, domains: [DOMAIN], log: { level: 'warn' }, metrics: { port: 0 }, c2s: { tcp: { host: '127.0.0.1', port: 0, allowPlainOnLoopback: true } } });
    let server = await startServer(config());
    await server.accounts.add(`rsa@${DOMAIN}`, PASSWORD);
    await server.accounts.add(`rsb@${DOMAIN}`, PASSWORD);
    const alice = await mobile(server.c2s!.tcpPort(), 'rsa', { resource: 'phone' });
    const bob = await mobile(server.c2s!.tcpPort(), 'rsb', { resource: 'desk' });
    await alice.send(xml('presence'));
    await alice.drop();
    for (let i = 0; i < 3; i++) await bob.send(xml('message', { to: `${jid('rsa')}/phone`, type: 'chat' }, xml('body', {}, `kept ${i}`)));
    await sleep(300);
    await bob.stop();
    await server.stop(false);
    server = await startServer(config());
    try {
      const again = await mobile(server.c2s!.tcpPort(), 'rsa', { resource: 'phone' });
      await again.send(xml('presence'));
      await again.waitFor(isMessageWithBody('kept 2'));
      await sleep(300);
      assert.deepEqual(again.received.filter((s) => s.getChildText('body')?.startsWith('kept ')).map((s) => s.getChildText('body')), ['kept 0', 'kept 1', 'kept 2']);
      await again.stop();
    } finally {
      await server.stop(false);
    }
  });

  test('presenceWhileWaiting: unavailable — contacts see the waiting session go, and come back when it resumes', async () => {
    const d = await startEmbedded({ streamManagement: { presenceWhileWaiting: 'unavailable' } });
    try {
      await d.addUser('pwa');
      await d.addUser('pwb');
      const alice = await mobile(d.ports[0], 'pwa', { resource: 'phone' });
      const bob = await mobile(d.ports[0], 'pwb', { resource: 'desk' });
      for (const x of [alice, bob]) {
        await rosterGet(x);
        await x.send(xml('presence', {}, xml('status', {}, 'here')));
      }
      await befriend(alice, 'pwa', bob, 'pwb');
      await bob.waitFor((s) => presenceFrom(jid('pwa'))(s) && s.getChildText('status') === 'here');
      const mark = bob.received.length;
      await alice.drop();
      await bob.waitFor((s) => bob.received.indexOf(s) >= mark && presenceFrom(jid('pwa'), 'unavailable')(s));
      await alice.resume(d.ports[0]);
      const back = await bob.waitFor((s) => bob.received.indexOf(s) >= mark && presenceFrom(jid('pwa'))(s));
      assert.equal(back.getChildText('status'), 'here', 'the presence it had');
      for (const x of [alice, bob]) await x.stop();
    } finally {
      await d.stop();
    }
  });
});
