// The soak: two phones chat at a steady rate for about 30 s while the c2s
// nodes carrying them are killed (SIGKILL) one by one and replaced. Each
// phone resumes its session on another live node whenever its connection
// dies. Counted at the end: every message the server acknowledged to its
// sender (XEP-0198 <a/>) reached the other phone exactly once, in order.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { xml, type Stanza } from '../support/clients.ts';
import { befriend, jid, rosterGet } from '../support/im.ts';
import { startCluster, type Cluster, type ClusterProcess } from '../support/parley.ts';
import { mobile, sleep, type Mobile } from '../scenarios/mobile.ts';

const SOAK_MS = Number(process.env.PARLEY_SOAK_MS ?? 30_000);
const INTERVAL_MS = 20;
const KILL_EVERY_MS = 5_000;

interface Side {
  name: string;
  phone: Mobile;
  peer: string;
  /** Sequence numbers sent, in order, and those the server acknowledged. */
  sent: number[];
  acked: Set<number>;
  resumes: number[];
  port: number;
}

const seqOf = (s: Stanza): number | undefined => {
  const b = s.getChildText('body');
  return b?.startsWith('soak ') ? Number(b.slice(5)) : undefined;
};

describe('soak: chatting through c2s kills (cluster, 3 c2s + 2 session)', () => {
  let c: Cluster;
  before(async () => { c = await startCluster({ c2s: 3, session: 2 }); });
  after(async () => { await c?.stop(); });

  test(`two phones chat for ${SOAK_MS / 1000} s while their c2s nodes are killed one by one: every acknowledged message arrives once, in order`, { timeout: SOAK_MS + 60_000 }, async () => {
    await c.addUser('soaka');
    await c.addUser('soakb');
    const c2s = () => c.processes.filter((p) => p.role === 'c2s' && p.child.exitCode === null && p.child.signalCode === null);
    const [p0, p1] = c2s();
    const sides: Side[] = [
      { name: 'soaka', phone: await mobile(p0.port, 'soaka', { resource: 'phone' }), peer: `${jid('soakb')}/phone`, sent: [], acked: new Set(), resumes: [], port: p0.port },
      { name: 'soakb', phone: await mobile(p1.port, 'soakb', { resource: 'phone' }), peer: `${jid('soaka')}/phone`, sent: [], acked: new Set(), resumes: [], port: p1.port },
    ];
    for (const s of sides) {
      await rosterGet(s.phone);
      await s.phone.send(xml('presence'));
      s.phone.sm.on('ack', (st) => {
        const n = seqOf(st as Stanza);
        if (n !== undefined) s.acked.add(n);
      });
    }
    await befriend(sides[0].phone, 'soaka', sides[1].phone, 'soakb');

    let running = true;
    const failures: string[] = [];
    // A phone whose connection died resumes on another live node.
    const keepAlive = async (s: Side) => {
      while (running) {
        const status = (s.phone.xmpp as unknown as { status: string }).status;
        if (status === 'disconnect') {
          const target = c2s().find((p) => p.port !== s.port);
          if (!target) { await sleep(50); continue; }
          const t0 = Date.now();
          try {
            await s.phone.resume(target.port);
            s.port = target.port;
            s.resumes.push(Date.now() - t0);
          } catch (e) {
            failures.push(`${s.name}: resumption on ${target.nodeId} failed: ${(e as Error).message}`);
            await sleep(200);
          }
        }
        await sleep(10);
      }
    };
    const chat = async (s: Side) => {
      let n = 0;
      const end = Date.now() + SOAK_MS;
      while (Date.now() < end) {
        const online = (s.phone.xmpp as unknown as { status: string }).status === 'online' && s.phone.sm.enabled;
        if (online) {
          const seq = n++;
          s.sent.push(seq);
          // A send into a connection that just died stays in the client's queue and goes again after the resumption.
          await s.phone.send(xml('message', { to: s.peer, type: 'chat' }, xml('body', {}, `soak ${seq}`))).catch(() => undefined);
        }
        await sleep(INTERVAL_MS);
      }
    };
    const kills: string[] = [];
    const killer = async () => {
      const end = Date.now() + SOAK_MS - 2_000;
      let turn = 0;
      while (Date.now() + KILL_EVERY_MS < end) {
        await sleep(KILL_EVERY_MS);
        const side = sides[turn++ % 2];
        const victim: ClusterProcess | undefined = c2s().find((p) => p.port === side.port);
        if (!victim) continue;
        await c.kill(victim, 'SIGKILL');
        kills.push(`${victim.nodeId} (${side.name})`);
        await c.add('c2s');
      }
    };
    const guards = sides.map(keepAlive);
    await Promise.all([...sides.map(chat), killer()]);
    // Settle: both connected, every queue acknowledged.
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && sides.some((s) => s.phone.sm.outbound_q.length > 0 || (s.phone.xmpp as unknown as { status: string }).status !== 'online')) {
      for (const s of sides) if ((s.phone.xmpp as unknown as { status: string }).status === 'online') await s.phone.xmpp.send(xml('r', { xmlns: 'urn:xmpp:sm:3' })).catch(() => undefined);
      await sleep(300);
    }
    await sleep(1000);
    running = false;
    await Promise.all(guards);

    const lines: string[] = [];
    for (const [i, s] of sides.entries()) {
      const other = sides[1 - i];
      const got = other.phone.received.map(seqOf).filter((n): n is number => n !== undefined);
      const ackedInOrder = s.sent.filter((n) => s.acked.has(n));
      const counts = new Map<number, number>();
      for (const n of got) counts.set(n, (counts.get(n) ?? 0) + 1);
      const duplicates = [...counts.values()].filter((k) => k > 1).length;
      const lost = ackedInOrder.filter((n) => !counts.has(n));
      let reordered = 0;
      for (let k = 1; k < got.length; k++) if (got[k] < got[k - 1]) reordered++;
      lines.push(`${s.name} → ${other.name}: sent ${s.sent.length}, acknowledged ${ackedInOrder.length}, delivered ${got.length}, duplicates ${duplicates}, lost ${lost.length}, out of order ${reordered}; resumptions ${s.resumes.length} (${s.resumes.join(', ')} ms)`);
      assert.equal(lost.length, 0, `${s.name}: acknowledged but never delivered: ${lost.slice(0, 10).join(', ')}`);
      assert.equal(duplicates, 0, `${s.name}: delivered twice`);
      assert.equal(reordered, 0, `${s.name}: out of order`);
      assert.deepEqual(got, ackedInOrder, `${s.name}: exactly the acknowledged messages, in order`);
      // What the issue asks is above (every acknowledged message once, in order). Messages the client library
      // gave up on across a kill are reported, not asserted: that is the client's queue, not the server's promise.
      if (ackedInOrder.length !== s.sent.length) lines.push(`${s.name}: ${s.sent.length - ackedInOrder.length} sent but never acknowledged (the client dropped them across a kill)`);
    }
    lines.push(`c2s nodes killed: ${kills.length} (${kills.join(', ')})`);
    for (const l of lines) console.log(`# soak: ${l}`);
    assert.deepEqual(failures, []);
    assert.ok(kills.length >= 3, 'at least three kills');
    for (const s of sides) await s.phone.stop();
  });
});
