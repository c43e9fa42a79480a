// Rooms and stream management: managed occupants' deliveries go through their accounts' actors (to be numbered
// and kept for resumption), batched per session process and per connection manager, not one bus message each.
import { test } from 'node:test';
import { unpack } from 'msgpackr';
import assert from 'node:assert/strict';
import { rawLogin } from '../support/im.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { PASSWORD, type Cluster } from '../support/parley.ts';
import { NS_MUC, NS_MUC_OWNER, SERVICE } from '../scenarios/muc.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NS_DATA = 'jabber:x:data';

export function managedFanoutScenario(cluster: () => Cluster, sessionProcesses: number): void {
  test('fan-out to occupants with stream management: batched per process, numbered, in the room\'s order', async () => {
    const c = cluster();
    const size = 24;
    const room = `smfan${Date.now()}@${SERVICE}`;
    const names = Array.from({ length: size }, (_, i) => `smfan${i}x${Date.now() % 100000}`);
    for (const u of names) await c.addUser(u);
    const raws: RawClient[] = [];
    const busNow = async (): Promise<number> => c.busPublished().catch(async () => { await sleep(300); return c.busPublished(); });
    try {
      for (const [i, u] of names.entries()) {
        const r = await rawLogin(c.ports[i % c.ports.length], u, 'r');
        r.send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`);
        await r.waitFor(/<enabled /);
        raws.push(r);
      }
      const join = async (r: RawClient, nick: string) => {
        r.send(`<presence to="${room}/${nick}"><x xmlns="${NS_MUC}"/></presence>`);
        await r.waitFor(new RegExp(`from="${room}/${nick}"[^]*code="110"[^]*<subject`), 10_000);
      };
      await join(raws[0], 'n0');
      raws[0].send(`<iq type="set" id="cfg" to="${room}"><query xmlns="${NS_MUC_OWNER}"><x xmlns="${NS_DATA}" type="submit"/></query></iq>`);
      await raws[0].waitFor(/id="cfg"/);
      for (let i = 1; i < size; i++) await join(raws[i], `n${i}`);
      await raws[0].waitFor(new RegExp(`from="${room}/n${size - 1}"`));
      await sleep(500);
      const nodes = c.ports.length;
      const count = 20;
      const bus0 = await busNow();
      // One at a time: the bus frames what one turn sends to one subject, and a burst would hide the per-message cost.
      for (let i = 0; i < count; i++) {
        raws[i % size].send(`<message to="${room}" type="groupchat"><body>g${i}</body></message>`);
        for (const r of raws) await r.waitFor(new RegExp(`<body>g${i}</body>`), 10_000);
      }
      const seen = (r: RawClient) => [...r.output.matchAll(/<body>(g\d+)<\/body>/g)].map((m) => m[1]);
      const perMessage = ((await busNow()) - bus0) / count;
      const order = seen(raws[0]);
      assert.deepEqual([...order].sort(), Array.from({ length: count }, (_, i) => `g${i}`).sort(), 'every message once');
      for (const r of raws) assert.deepEqual(seen(r), order, 'every occupant sees the room\'s one order');
      // c2s → sender's actor → room, one per connection manager, then per connection manager and session process
      // one batch of relays to be numbered and one batch of numbered stanzas back.
      const bound = 2 + nodes + 2 * nodes * sessionProcesses + 2; // + a batch split across two turns
      console.log(`# ${perMessage} bus messages per room message, ${size} managed occupants, ${nodes} c2s, ${sessionProcesses} session processes (bound ${bound})`);
      assert.ok(perMessage <= bound, `${perMessage} bus messages per room message with ${size} managed occupants`);

      // They were numbered and kept by the account: an occupant whose connection dies resumes on the other
      // connection manager and gets again what it had not acknowledged, room messages included; what the
      // room sends next reaches the new connection.
      const victim = raws[1];
      const previd = /<enabled [^>]*id=['"]([^'"]+)['"]/.exec(victim.output)![1];
      victim.socket.destroy();
      await sleep(300);
      const back = await rawConnect(c.ports[0]);
      raws.push(back);
      back.send(STREAM_OPEN());
      await back.waitFor(/<\/stream:features>/);
      back.send(plainAuth(names[1], PASSWORD));
      await back.waitFor(/<success/);
      back.send(STREAM_OPEN());
      await back.waitFor(/urn:xmpp:sm:3/);
      back.send(`<resume xmlns='urn:xmpp:sm:3' previd='${previd}' h='0'/>`);
      await back.waitFor(/<resumed /);
      await back.waitFor(new RegExp(`(<body>g\\d+</body>[^]*){${count}}`), 10_000);
      assert.deepEqual(seen(back), order, 'the unacknowledged room messages again, in order');
      raws[2].send(`<message to="${room}" type="groupchat"><body>after</body></message>`);
      await back.waitFor(/<body>after<\/body>/, 10_000);
      // The room learnt where the resumed session is from the account it went through, without waiting for the
      // occupant to speak: its record names a session again, and what follows goes there directly.
      const where = async () => (unpack(Buffer.from((await c.store.hget(room, 'occupants', 'n1'))!)) as string[]).slice(1, 3);
      const deadline = Date.now() + 5000;
      while ((await where()).includes('') && Date.now() < deadline) await sleep(100);
      const [node, sid] = await where();
      assert.ok(node !== '' && sid !== '', `the room knows the resumed session (${node}, ${sid})`);
      raws[3].send(`<message to="${room}" type="groupchat"><body>direct</body></message>`);
      await back.waitFor(/<body>direct<\/body>/, 10_000);
    } finally {
      for (const r of raws) r.close();
    }
  });
}
