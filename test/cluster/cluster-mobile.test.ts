// Mobile and multi-device scenarios on a cluster (NATS, Redis, 3 c2s + 2
// session processes), plus what only a cluster can show: a session resumed on
// another c2s node after the one that carried it was killed.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { tempDir } from '../support/servers.ts';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';
import { isMessageWithBody, xml } from '../support/clients.ts';
import { jid, presenceFrom, rosterGet, befriend } from '../support/im.ts';
import { startCluster, type Cluster } from '../support/parley.ts';
import { mobile, multiDeviceScenarios, sleep, streamManagementScenarios, MOBILE_CONFIG } from '../scenarios/mobile.ts';

describe('mobile, cluster (3 c2s + 2 session on NATS and Redis)', () => {
  let c: Cluster;
  before(async () => { c = await startCluster({ c2s: 3, session: 2, config: MOBILE_CONFIG }); });
  after(async () => { await c?.stop(); });
  streamManagementScenarios(() => c);
  multiDeviceScenarios(() => c);

  test('a c2s node is killed (SIGKILL): the phone resumes on another node with nothing lost, duplicated or reordered', async () => {
    await c.addUser('killa');
    await c.addUser('killb');
    const victim = c.processes.filter((p) => p.role === 'c2s')[0];
    const [other, third] = c.ports.filter((p) => p !== victim.port);
    const alice = await mobile(victim.port, 'killa', { resource: 'phone' });
    const bob = await mobile(third, 'killb', { resource: 'desk' });
    try {
      for (const x of [alice, bob]) {
        await rosterGet(x);
        await x.send(xml('presence'));
      }
      await befriend(alice, 'killa', bob, 'killb');
      for (let i = 0; i < 20; i++) await bob.send(xml('message', { to: `${jid('killa')}/phone`, type: 'chat' }, xml('body', {}, `k ${i}`)));
      await alice.waitFor(isMessageWithBody('k 19'));
      await c.kill(victim, 'SIGKILL');
      // The phone has not noticed yet; bob keeps writing to it.
      for (let i = 20; i < 40; i++) await bob.send(xml('message', { to: `${jid('killa')}/phone`, type: 'chat' }, xml('body', {}, `k ${i}`)));
      await alice.drop();
      await sleep(200);
      const t0 = Date.now();
      await alice.resume(other);
      const resumeMs = Date.now() - t0;
      await alice.waitFor(isMessageWithBody('k 39'));
      await sleep(300);
      const got = alice.received.filter((s) => s.is('message') && s.getChildText('body')?.startsWith('k ')).map((s) => Number(s.getChildText('body')!.slice(2)));
      assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => i), 'every message once, in order, across the kill');
      assert.equal(bob.received.filter(presenceFrom(jid('killa'), 'unavailable')).length, 0, 'bob never saw alice go away');
      // Long after the dead node's membership expired, the session is still there and works.
      await sleep(2500);
      await bob.send(xml('message', { to: `${jid('killa')}/phone`, type: 'chat' }, xml('body', {}, 'still')));
      await alice.waitFor(isMessageWithBody('still'));
      assert.equal(bob.received.filter(presenceFrom(jid('killa'), 'unavailable')).length, 0);
      console.log(`# resumed on another c2s node in ${resumeMs} ms`);
    } finally {
      for (const x of [alice, bob]) await x.stop();
    }
  });

  test('parley c2s drain: a rolling restart of a c2s node loses no session and no message', async () => {
    await c.addUser('draina');
    await c.addUser('drainb');
    const nodes = c.processes.filter((p) => p.role === 'c2s' && p.child.exitCode === null && p.child.signalCode === null);
    const [drained, stays] = nodes;
    const alice = await mobile(drained.port, 'draina', { resource: 'phone' });
    const bob = await mobile(stays.port, 'drainb', { resource: 'desk' });
    try {
      for (const x of [alice, bob]) await x.send(xml('presence'));
      let sending = true;
      let sent = 0;
      const writer = (async () => {
        while (sending) {
          await bob.send(xml('message', { to: `${jid('draina')}/phone`, type: 'chat' }, xml('body', {}, `d ${sent++}`)));
          await sleep(10);
        }
      })();
      await sleep(300);
      const file = join(tempDir('parley-drain'), 'admin.yaml');
      writeFileSync(file, stringify({ bus: { kind: 'nats', url: c.nats.url }, store: { kind: 'redis', url: c.redis.url }, domains: ['localhost'] }));
      const { stdout } = await promisify(execFile)(process.execPath, ['bin/parley.mjs', 'c2s', 'drain', drained.nodeId, '--config', file]);
      assert.match(stdout, /1 sessions wait to be resumed elsewhere/);
      await alice.drop();
      await alice.resume(stays.port);
      await c.kill(drained, 'SIGTERM');
      await sleep(300);
      sending = false;
      await writer;
      await alice.waitFor(isMessageWithBody(`d ${sent - 1}`));
      const got = alice.received.filter((s) => s.getChildText('body')?.startsWith('d ')).map((s) => Number(s.getChildText('body')!.slice(2)));
      assert.deepEqual(got, Array.from({ length: sent }, (_, i) => i), 'every message once, in order, across the drain');
      assert.equal(bob.received.filter(presenceFrom(jid('draina'), 'unavailable')).length, 0);
    } finally {
      for (const x of [alice, bob]) await x.stop();
    }
  });

  test('the session process serving a waiting session is killed: the new owner still closes its window, and nothing is lost', async () => {
    // An account whose shard session1 serves (the test kills session1).
    let n = 0;
    while (ownerOf(shardOf(`waitk${n}@localhost`, 1024), ['session1', 'session2']) !== 'session1') n++;
    const a = `waitk${n}`;
    while (c.ports.length < 2) await c.add('c2s');
    await c.addUser(a);
    await c.addUser('waitkb');
    const alice = await mobile(c.ports[0], a, { resource: 'phone', max: 4 });
    const bob = await mobile(c.ports[1], 'waitkb', { resource: 'desk' });
    try {
      for (const x of [alice, bob]) {
        await rosterGet(x);
        await x.send(xml('presence'));
      }
      await befriend(alice, a, bob, 'waitkb');
      await alice.drop();
      await sleep(300);
      await c.kill(c.processes.find((p) => p.nodeId === 'session1')!, 'SIGKILL');
      // Until session2 takes the shard over these may bounce (nothing serves the shard); afterwards they queue.
      await sleep(2500);
      for (let i = 0; i < 3; i++) await bob.send(xml('message', { to: `${jid(a)}/phone`, type: 'chat' }, xml('body', {}, `w ${i}`)));
      const gone = await bob.waitFor(presenceFrom(jid(a), 'unavailable'), 10_000);
      assert.equal(gone.attrs.from, `${jid(a)}/phone`, 'the window closed on the new owner');
      const again = await mobile(c.ports[0], a, { resource: 'tablet' });
      await again.send(xml('presence'));
      await again.waitFor(isMessageWithBody('w 2'));
      assert.deepEqual(again.received.filter((x) => x.getChildText('body')?.startsWith('w ')).map((x) => x.getChildText('body')), ['w 0', 'w 1', 'w 2']);
      await again.stop();
    } finally {
      for (const x of [alice, bob]) await x.stop();
    }
  });
});
