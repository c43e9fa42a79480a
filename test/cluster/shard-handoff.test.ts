// Shards move while two users chat: a session process joins, another leaves
// gracefully, then one is killed. Users are on different c2s nodes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, isMessageWithBody, xml, type TestClient } from '../support/clients.ts';
import { startCluster, FAST_CLUSTER, type Cluster } from '../support/parley.ts';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';

const SHARDS = 1024;
type Step = 'join' | 'leave';
/**
 * A user whose shard moves at the given step of the first test: at 'join'
 * from session1 to the joining process; at 'leave' from session1 (kept at
 * the join) to whoever takes it when session1 leaves. So both handoffs are
 * exercised for sure, not by luck.
 */
function movingUser(prefix: string, step: Step): string {
  for (let i = 0; ; i++) {
    const s = shardOf(`${prefix}${i}@localhost`, SHARDS);
    const before = ownerOf(s, ['session1', 'session2']);
    const joined = ownerOf(s, ['session-joined', 'session1', 'session2']);
    if (before === 'session1' && (step === 'join' ? joined === 'session-joined' : joined === 'session1')) return `${prefix}${i}`;
  }
}
const A = movingUser('alice', 'join');
const B = movingUser('bob', 'join');
const C = movingUser('carol', 'leave');
const D = movingUser('dave', 'leave');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Messages `tag 0…n-1` that bob received, in arrival order. */
function received(bob: TestClient, tag: string): number[] {
  return bob.received
    .filter((s) => s.is('message') && s.getChildText('body')?.startsWith(`${tag} `))
    .map((s) => Number(s.getChildText('body')!.slice(tag.length + 1)));
}

async function online(alice: TestClient, bob: TestClient, to: string): Promise<void> {
  await bob.send(xml('presence'));
  const deadline = Date.now() + 8000;
  for (let i = 0; Date.now() < deadline; i++) {
    await alice.send(xml('message', { to, type: 'chat' }, xml('body', {}, `ready ${i}`)));
    if (await bob.waitFor(isMessageWithBody(`ready ${i}`), 400).then(() => true, () => false)) return;
  }
  throw new Error('bob never became reachable');
}

describe('shard handoff in a cluster', () => {
  let c: Cluster;
  let alice: TestClient;
  let bob: TestClient;
  let carol: TestClient;
  let dave: TestClient;

  before(async () => {
    // The handoff test sends hundreds of messages a minute between users who are not contacts, past the default
    // limit on messages to strangers (spam.strangerRate), which is not what it tests.
    c = await startCluster({ c2s: 2, session: 2, config: { spam: { strangerRate: { enabled: false } } } });
    await c.addUser(A);
    await c.addUser(B);
    alice = await connect(c.ports[0], A, { resource: 'a' });
    bob = await connect(c.ports[1], B, { resource: 'b' });
    await online(alice, bob, `${B}@localhost`);
    for (const u of [C, D]) await c.addUser(u);
    carol = await connect(c.ports[1], C, { resource: 'c' });
    dave = await connect(c.ports[0], D, { resource: 'd' });
    await online(carol, dave, `${D}@localhost`);
  });

  after(async () => {
    for (const x of [alice, bob, carol, dave]) await x?.stop();
    await c?.stop();
  });

  test('a session process joins and another leaves during a chat: nothing lost, duplicated or reordered', async () => {
    const total = 600;
    const chat = async (from: TestClient, to: string) => {
      for (let i = 0; i < total; i++) {
        await from.send(xml('message', { to, type: 'chat' }, xml('body', {}, `move ${i}`)));
        await sleep(5);
      }
    };
    const senders = Promise.all([chat(alice, `${B}@localhost/b`), chat(carol, `${D}@localhost`)]);
    await sleep(400);
    const joined = await c.add('session', 'session-joined');
    await sleep(FAST_CLUSTER.memberTtlMs);
    const leaving = c.processes.find((p) => p.nodeId === 'session1')!;
    const t0 = Date.now();
    await c.kill(leaving, 'SIGTERM');
    const leaveMs = Date.now() - t0;
    await senders;
    for (const r of [bob, dave]) {
      await r.waitFor(isMessageWithBody(`move ${total - 1}`), 15_000);
    }
    await sleep(300);
    assert.deepEqual(received(bob, 'move'), Array.from({ length: total }, (_, i) => i), 'across the join: every message exactly once, in order');
    assert.deepEqual(received(dave, 'move'), Array.from({ length: total }, (_, i) => i), 'across the leave: every message exactly once, in order');
    for (const s of [alice, carol]) assert.equal(s.received.filter((x) => x.attrs.type === 'error').length, 0, 'no bounces');
    assert.ok(joined.log.some((l) => l.includes('started')));
    assert.ok(leaveMs < FAST_CLUSTER.handoffTimeoutMs, `the leaving process handed its shards over (${leaveMs} ms), it did not wait out the timeout`);
    assert.ok(!leaving.log.some((l) => l.includes('left with shards unclaimed')));
  });

  test('a session process is killed (SIGKILL): its shards move and the chat goes on', async () => {
    const victim = c.processes.find((p) => p.role === 'session' && p.child.exitCode === null && p.child.signalCode === null)!;
    await c.kill(victim, 'SIGKILL');
    // After the membership TTL the survivors own every shard; then chat must flow again.
    await sleep(FAST_CLUSTER.memberTtlMs + 500);
    for (let i = 0; i < 100; i++) await alice.send(xml('message', { to: `${B}@localhost`, type: 'chat' }, xml('body', {}, `after ${i}`)));
    await bob.waitFor(isMessageWithBody('after 99'), 15_000);
    assert.deepEqual(received(bob, 'after'), Array.from({ length: 100 }, (_, i) => i));
    await bob.send(xml('message', { to: `${A}@localhost/a`, type: 'chat' }, xml('body', {}, 'still here')));
    await alice.waitFor(isMessageWithBody('still here'));
  });
});
