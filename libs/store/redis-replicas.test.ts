// A message is confirmed to its sender only once its writes are on a replica
// (WAIT on the primary that holds the account's slot), so a failover cannot
// take it; a replica that lags past the timeout is logged, never waited on forever.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { openStore, type Store } from './index.ts';
import { ReplicaWaiter, slotOf } from './redis-replicas.ts';
import type { RedisClient } from './redis-store.ts';
import { redisCommand, startRedisCluster, type RedisClusterHandle, type Spawned } from '../../test/support/servers.ts';

describe('waiting for replicas', () => {
  it('computes Redis Cluster slots as Redis does, hash tags included', () => {
    // The values of the CLUSTER KEYSLOT documentation.
    assert.equal(slotOf('somekey'), 11058);
    assert.equal(slotOf('foo{hash_tag}'), 2515);
    assert.equal(slotOf('parley:{alice@example.com}:roster'), slotOf('alice@example.com'));
    assert.equal(slotOf('a{}b'), slotOf('a{}b'), 'an empty tag hashes the whole key');
  });

  it('says a write is in doubt (false) when WAIT itself fails: the primary dropped the connection under it', async () => {
    let short = 0;
    const failing = { status: 'ready', wait: () => Promise.reject(new Error('Connection is closed.')) } as unknown as RedisClient;
    assert.equal(await new ReplicaWaiter(failing, 1, 100, () => short++).wait('k'), false);
    assert.equal(short, 0, 'not counted as a lagging replica: the next write asks again');
    const lagging = { status: 'ready', wait: () => Promise.resolve(0) } as { status: string; wait(): Promise<number> };
    const w = new ReplicaWaiter(lagging as unknown as RedisClient, 1, 100, () => short++);
    assert.equal(await w.wait('k'), true, 'a lagging replica is a bounded degradation: go ahead');
    assert.equal(short, 1);
    assert.equal(await w.wait('k'), true, 'not asked again for a while');
    lagging.status = 'reconnecting';
    assert.equal(await w.wait('k'), false, 'a primary out of reach vouches for nothing, lagging replicas or not');
  });

  describe('on a Redis Cluster', () => {
    let rc: RedisClusterHandle;
    let store: Store;
    before(async () => {
      rc = await startRedisCluster();
      // A generous timeout: on a loaded machine replication can take a while, and a short WAIT would count as lacking.
      store = await openStore({ kind: 'redis', cluster: rc.seeds, waitTimeoutMs: 1500 });
    });
    after(async () => {
      await store?.close();
      await rc?.stop();
    });

    it('agrees with the cluster about slots', async () => {
      for (const k of ['parley:{bob@localhost}:seen', 'x', 'user:{1000}:a']) assert.equal(slotOf(k), await rc.slotOf(k));
    });

    it('resolves once the replica of the scope\'s primary has the write, and after the timeout when it cannot', async () => {
      assert.equal(typeof store.replicated, 'function', "store.cluster waits for one replica by default ('auto')");
      const scope = 'carol@localhost';
      const key = `parley:{${scope}}:roster`;
      const primary = await rc.masterOf(key);
      const replica = await replicaOf(primary);
      await store.hset(scope, 'roster', 'dave', Buffer.from('x'));
      assert.equal(await store.replicated!(scope), true, 'safe');
      assert.equal(onReplica(replica, 'HEXISTS', key, 'dave'), '1', 'the replica has it once replicated() resolved');

      replica.pause();
      try {
        await store.hset(scope, 'roster', 'erin', Buffer.from('y'));
        const t0 = Date.now();
        assert.equal(await store.replicated!(scope), true, 'a lagging replica is a bounded degradation: go ahead');
        const waited = Date.now() - t0;
        assert.ok(waited >= 1400 && waited < 5000, `waited ${waited} ms for a stopped replica (timeout 1500 ms)`);
        // That primary lacks its replica: it is not asked again for a while (WAIT would hold its connection each time).
        const t1 = Date.now();
        assert.equal(await store.replicated!(scope), true);
        assert.ok(Date.now() - t1 < 200, `asked again after ${Date.now() - t1} ms`);
      } finally {
        replica.resume();
      }
    });

    /** A read on the replica itself (READONLY: a replica otherwise redirects to its primary). */
    function onReplica(replica: Spawned, ...args: string[]): string {
      const out = execFileSync('redis-cli', ['-p', String(replica.port)], { input: `READONLY\n${args.join(' ')}\n` }).toString().trim().split('\n');
      return out[out.length - 1];
    }

    async function replicaOf(primary: Spawned): Promise<Spawned> {
      for (const n of rc.nodes) {
        if (n === primary) continue;
        const info = String(await redisCommand(n.port, 'INFO', 'replication'));
        if (info.includes('role:slave') && info.includes(`master_port:${primary.port}`)) return n;
      }
      throw new Error(`no replica of ${primary.port}`);
    }
  });
});
