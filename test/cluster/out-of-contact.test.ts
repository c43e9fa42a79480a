// A whole connection manager dies (SIGKILL): the cluster notices within the
// membership TTL, removes its sessions from the directory and tells contacts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, xml, type TestClient } from '../support/clients.ts';
import { befriend, jid, presenceFrom, rosterGet } from '../support/im.ts';
import { FAST_CLUSTER, startCluster, type Cluster } from '../support/parley.ts';
import { createRedisStore } from '../../libs/store/redis-store.ts';

describe('out of contact: a c2s process dies', () => {
  let c: Cluster;
  let bob: TestClient;
  before(async () => {
    // The client resumes sessions (XEP-0198): one waits a resumption window after its node dies
    // (test/cluster/cluster-mobile.test.ts); a short one here, then contacts must see it go.
    c = await startCluster({ c2s: 2, session: 2, config: { streamManagement: { resumeTimeoutSeconds: 1 } } });
    await c.addUser('doomed');
    await c.addUser('watcher');
  });
  after(async () => {
    await bob?.stop();
    await c?.stop();
  });

  test('contacts of every session it held receive unavailable, and the directory forgets them', async () => {
    const [doomedPort, safePort] = c.ports;
    const alice = await connect(doomedPort, 'doomed', { resource: 'phone' });
    bob = await connect(safePort, 'watcher', { resource: 'desk' });
    for (const x of [alice, bob]) {
      await rosterGet(x);
      await x.send(xml('presence'));
    }
    await befriend(alice, 'doomed', bob, 'watcher');
    await bob.waitFor(presenceFrom(jid('doomed')));
    const victim = c.processes.find((p) => p.port === doomedPort)!;
    const t0 = Date.now();
    await c.kill(victim, 'SIGKILL');
    const gone = await bob.waitFor((s) => presenceFrom(jid('doomed'), 'unavailable')(s) && s.attrs.from === `${jid('doomed')}/phone`, 15_000);
    const ms = Date.now() - t0;
    assert.ok(gone);
    assert.ok(ms < FAST_CLUSTER.memberTtlMs * 4, `detected in ${ms} ms`);
    const store = createRedisStore({ url: c.redis.url });
    try {
      const sessions = await store.hgetall(jid('doomed'), 'sessions');
      assert.equal(sessions.size, 0, 'the session directory no longer lists it');
      assert.equal((await store.hgetall(`$node:${victim.nodeId}`, 'sessions')).size, 0);
    } finally {
      await store.close();
    }
    (alice.xmpp as unknown as { socket?: { socket?: { destroy(): void } } }).socket?.socket?.destroy();
  });
});
