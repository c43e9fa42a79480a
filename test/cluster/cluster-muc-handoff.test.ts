// Rooms move with their shards: while occupants on both connection managers
// chat, a session process joins (one room's shard moves to it), another
// leaves gracefully (a second room's shard moves), then one is killed. Every
// occupant must see every message once, each sender's messages in order, and
// all occupants the same order — the room's.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, xml, type TestClient } from '../support/clients.ts';
import { FAST_CLUSTER, startCluster, type Cluster } from '../support/parley.ts';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';
import { createRoom, enter, fromRoom, groupchat, SERVICE } from '../scenarios/muc.ts';

const SHARDS = 1024;

/** A room on session1 whose shard moves to the joining process ('join'), or stays at the join and moves when session1 leaves ('leave'). */
function movingRoom(prefix: string, step: 'join' | 'leave'): string {
  for (let i = 0; ; i++) {
    const jid = `${prefix}${i}@${SERVICE}`;
    const s = shardOf(jid, SHARDS);
    const first = ownerOf(s, ['session1', 'session2']);
    const joined = ownerOf(s, ['session-joined', 'session1', 'session2']);
    if (first === 'session1' && (step === 'join' ? joined === 'session-joined' : joined === 'session1')) return jid;
  }
}

const ROOM_JOIN = movingRoom('moving', 'join');
const ROOM_LEAVE = movingRoom('leaving', 'leave');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Bodies of the room's messages with this tag that an occupant received, in arrival order. */
function seen(c: TestClient, room: string, tag: string): string[] {
  return c.received
    .filter((s) => s.is('message') && s.attrs.type === 'groupchat' && s.attrs.from?.startsWith(`${room}/`) && s.getChildText('body')?.startsWith(tag))
    .map((s) => s.getChildText('body')!);
}

function checkRoom(occupants: TestClient[], room: string, tag: string, senders: string[], count: number): void {
  const expected = senders.flatMap((s) => Array.from({ length: count }, (_, i) => `${tag}${s}-${i}`));
  const order = seen(occupants[0], room, tag);
  assert.deepEqual([...order].sort(), [...expected].sort(), `${room}: every message exactly once`);
  for (const s of senders) {
    const mine = order.filter((b) => b.startsWith(`${tag}${s}-`));
    assert.deepEqual(mine, Array.from({ length: count }, (_, i) => `${tag}${s}-${i}`), `${room}: ${s}'s messages in the order sent`);
  }
  for (const c of occupants) assert.deepEqual(seen(c, room, tag), order, `${room}: every occupant sees the same order`);
}

describe('rooms across shard handoff', () => {
  let c: Cluster;
  const occupants: TestClient[] = [];

  before(async () => {
    c = await startCluster({ c2s: 2, session: 2 });
    for (let i = 0; i < 4; i++) {
      await c.addUser(`mover${i}`);
      const cl = await connect(c.ports[i % 2], `mover${i}`, { resource: 'r' });
      await cl.send(xml('presence'));
      occupants.push(cl);
    }
    for (const room of [ROOM_JOIN, ROOM_LEAVE]) {
      await createRoom(occupants[0], room, 'm0');
      for (let i = 1; i < 4; i++) await enter(occupants[i], room, `m${i}`);
      for (const o of occupants) await o.waitFor(fromRoom(room, 'm3'));
    }
  });

  after(async () => {
    for (const o of occupants) await o.stop();
    await c?.stop();
  });

  test('a session process joins and another leaves while two rooms chat: nothing lost, duplicated or reordered', async () => {
    const count = 250;
    // Two senders per room, on different connection managers.
    const chat = async (sender: number, room: string) => {
      for (let i = 0; i < count; i++) {
        await occupants[sender].send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, `mv${sender}-${i}`)));
        await sleep(8);
      }
    };
    const traffic = Promise.all([chat(0, ROOM_JOIN), chat(1, ROOM_JOIN), chat(2, ROOM_LEAVE), chat(3, ROOM_LEAVE)]);
    await sleep(300);
    await c.add('session', 'session-joined');
    await sleep(FAST_CLUSTER.memberTtlMs);
    const leaving = c.processes.find((p) => p.nodeId === 'session1')!;
    const t0 = Date.now();
    await c.kill(leaving, 'SIGTERM');
    const leaveMs = Date.now() - t0;
    await traffic;
    for (const o of occupants) {
      await o.waitFor(groupchat(`mv1-${count - 1}`), 15_000);
      await o.waitFor(groupchat(`mv3-${count - 1}`), 15_000);
    }
    await sleep(300);
    checkRoom(occupants, ROOM_JOIN, 'mv', ['0', '1'], count);
    checkRoom(occupants, ROOM_LEAVE, 'mv', ['2', '3'], count);
    for (const o of occupants) assert.equal(o.received.filter((s) => s.attrs.type === 'error').length, 0, 'no bounces');
    assert.ok(leaveMs < FAST_CLUSTER.handoffTimeoutMs, `the leaving process handed its shards over (${leaveMs} ms)`);
    assert.ok(!leaving.log.some((l) => l.includes('left with shards unclaimed')), 'every shard was claimed before the process left');
  });

  test('a session process is killed: the rooms come back from the store with their occupants, and the chat goes on', async () => {
    const victim = c.processes.find((p) => p.role === 'session' && p.child.exitCode === null && p.child.signalCode === null)!;
    await c.kill(victim, 'SIGKILL');
    await sleep(FAST_CLUSTER.memberTtlMs + 500);
    for (let i = 0; i < 50; i++) {
      await occupants[1].send(xml('message', { to: ROOM_JOIN, type: 'groupchat' }, xml('body', {}, `after1-${i}`)));
      await occupants[3].send(xml('message', { to: ROOM_LEAVE, type: 'groupchat' }, xml('body', {}, `after3-${i}`)));
    }
    for (const o of occupants) {
      await o.waitFor(groupchat('after1-49'), 15_000);
      await o.waitFor(groupchat('after3-49'), 15_000);
    }
    checkRoom(occupants, ROOM_JOIN, 'after', ['1'], 50);
    checkRoom(occupants, ROOM_LEAVE, 'after', ['3'], 50);
    // The history came through the moves too: a newcomer gets the last messages.
    await c.addUser('mover-late');
    const late = await connect(c.ports[1], 'mover-late');
    try {
      await late.send(xml('presence'));
      await enter(late, ROOM_JOIN, 'late', { history: { maxstanzas: '3' } });
      await late.waitFor((s) => s.is('message') && s.getChild('subject') !== undefined);
      const history = late.received.filter((s) => s.is('message') && s.getChild('delay', 'urn:xmpp:delay')).map((s) => s.getChildText('body'));
      assert.deepEqual(history, ['after1-47', 'after1-48', 'after1-49']);
      for (const o of occupants) await o.waitFor(fromRoom(ROOM_JOIN, 'late'));
    } finally {
      await late.stop();
    }
  });
});
