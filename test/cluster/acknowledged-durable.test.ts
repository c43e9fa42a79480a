// What the server acknowledged (XEP-0198 <a h/>) survives SIGKILL of the
// session process that holds the recipient's account, or the sender's: every
// acknowledged message reaches the recipient once, in the order sent.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';
import { connect, type TestClient } from '../support/clients.ts';
import { managedSender } from '../support/managed-sender.ts';
import { DOMAIN, startCluster, type Cluster } from '../support/parley.ts';

const SHARDS = 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A user whose account lives on `owner` while session1 and session2 are up. */
function userOn(prefix: string, owner: string): string {
  for (let i = 0; ; i++) if (ownerOf(shardOf(`${prefix}${i}@${DOMAIN}`, SHARDS), ['session1', 'session2']) === owner) return `${prefix}${i}`;
}

/** Bodies of the chat messages a client got, in order. */
function bodies(c: TestClient, prefix: string): number[] {
  return c.received.filter((s) => s.is('message')).map((s) => s.getChildText('body') ?? '').filter((b) => b.startsWith(prefix)).map((b) => Number(b.slice(prefix.length)));
}

describe('acknowledged messages survive a session process killed mid-chat', () => {
  const clusters: Cluster[] = [];
  after(async () => { for (const c of clusters) await c.stop(); });

  for (const side of ['recipient', 'sender'] as const) {
    test(`SIGKILL of the process holding the ${side}'s account: every acknowledged message arrives once, in order`, async () => {
      const c = await startCluster({ c2s: 2, session: 2 });
      clusters.push(c);
      const alice = side === 'sender' ? userOn('alice', 'session1') : userOn('alice', 'session2');
      const bob = side === 'recipient' ? userOn('bob', 'session1') : userOn('bob', 'session2');
      await c.addUser(alice);
      await c.addUser(bob);
      const sender = await managedSender(c.ports[0], alice);
      const victim = c.processes.find((p) => p.nodeId === 'session1')!;

      // Bob is offline: each message goes to his offline storage, which is what must survive.
      let sent = 0;
      const send = () => {
        sent++;
        sender.send(`<message to='${bob}@${DOMAIN}' type='chat' id='m${sent}'><body>m${sent}</body></message><r xmlns='urn:xmpp:sm:3'/>`);
      };
      for (let i = 0; i < 40; i++) { send(); await sleep(15); }
      await c.kill(victim, 'SIGKILL');
      const killedAfter = sent;
      for (let i = 0; i < 160; i++) { send(); await sleep(15); }
      // Everything sent is acknowledged in the end: the surviving process took over and the lost ones came again.
      const deadline = Date.now() + 30_000;
      while (sender.acked() < sent && Date.now() < deadline) {
        sender.send("<r xmlns='urn:xmpp:sm:3'/>");
        await sleep(250);
      }
      const acked = sender.acked();
      assert.equal(acked, sent, `acknowledged ${acked} of ${sent} (the process died after ${killedAfter})`);

      const b = await connect(c.ports[1], bob, { resource: 'b' });
      try {
        await b.send((await import('../support/clients.ts')).xml('presence'));
        const want = Array.from({ length: acked }, (_, i) => i + 1);
        const until = Date.now() + 20_000;
        while (bodies(b, 'm').length < acked && Date.now() < until) await sleep(100);
        await sleep(300);
        const got = bodies(b, 'm');
        const dup = got.filter((n, i) => got.indexOf(n) !== i);
        assert.deepEqual(dup, [], 'no message twice');
        assert.deepEqual(got.filter((n) => !want.includes(n)), [], 'nothing that was not sent');
        assert.deepEqual(want.filter((n) => !got.includes(n)), [], 'every acknowledged message arrived');
        assert.deepEqual(got, [...got].sort((x, y) => x - y), 'in the order sent');
      } finally {
        await b.stop();
        sender.close();
      }
    });
  }
});
