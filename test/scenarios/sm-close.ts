// A client that closes its stream (</stream:stream>) with stanzas it has not
// acknowledged (XEP-0198): the server asks once (<r/>) and waits
// streamManagement.closeAckWaitMs. What the client acknowledges then is done
// with; what it does not is stored offline once, with its first delay stamp
// and its stanza id — unless the client reads the account's archive (it
// queried it in that session), which is where it finds the message. Across
// the reconnections each message reaches the account exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rawLogin } from '../support/im.ts';
import { DOMAIN, type Deployment } from '../support/parley.ts';
import type { RawClient } from '../support/raw.ts';

const NS_SM = 'urn:xmpp:sm:3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let seq = 0;
const names = (p: string): [string, string] => { seq++; return [`${p}a${seq}`, `${p}b${seq}`]; };

/** Logged in, bound to `resource`, available; with stream management enabled when `sm`. */
async function login(port: number, user: string, resource: string, sm: boolean): Promise<RawClient> {
  const c = await rawLogin(port, user, resource);
  if (sm) {
    c.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    await c.waitFor(/<enabled /);
  }
  c.send(`<presence/>`);
  await c.waitFor(new RegExp(`<presence[^>]*from="${user}@${DOMAIN}/${resource}"`));
  return c;
}

/** Stanzas the server numbered for this client: every message, presence and iq after <enabled/>. */
function handled(c: RawClient): number {
  const after = c.output.slice(c.output.indexOf('<enabled '));
  return (after.match(/<(message|presence|iq)[\s>]/g) ?? []).length;
}

const copies = (c: RawClient, id: string): number => (c.output.match(new RegExp(`<message[^>]* id="${id}"`, 'g')) ?? []).length;

/** The messages `from` sends to `to` (full JID), once `to` has them all; their ids. */
async function deliver(from: RawClient, to: RawClient, toJid: string, tag: string, n: number): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
  for (const id of ids) from.send(`<message to='${toJid}' type='chat' id='${id}'><body>${id}</body></message>`);
  for (const id of ids) await to.waitFor(new RegExp(`<message[^>]* id="${id}"[^]*?</message>`));
  return ids;
}

/** The `<stanza-id by=account>` and `<delay>` stamp a delivered copy of message `id` carries. */
function marks(xml: string, id: string, bare: string): { stanzaId?: string; delay?: string } {
  const m = new RegExp(`<message[^>]* id="${id}"[^]*?</message>`).exec(xml)?.[0] ?? '';
  return {
    stanzaId: new RegExp(`<stanza-id xmlns="urn:xmpp:sid:0" by="${bare}" id="([^"]+)"`).exec(m)?.[1],
    delay: /<delay xmlns="urn:xmpp:delay"[^>]* stamp="([^"]+)"/.exec(m)?.[1],
  };
}

/** The client closes its stream; the server asks for an ack first. `answer`: the client sends its <a/>. Resolves once the server closed. */
async function closeStream(c: RawClient, answer: boolean): Promise<number> {
  const t0 = Date.now();
  const before = c.output.length;
  c.send('</stream:stream>');
  await c.waitFor(new RegExp(`<r xmlns=["']${NS_SM}["']/>`));
  assert.ok(c.output.indexOf('<r ', before) >= 0, 'the <r/> came after the client closed');
  if (answer) c.send(`<a xmlns='${NS_SM}' h='${handled(c)}'/>`);
  await c.waitFor(/<\/stream:stream>\s*$/);
  await c.closed;
  return Date.now() - t0;
}

async function offline(d: Deployment, bare: string): Promise<number> {
  return d.store.llen(bare, 'offline');
}

/** The scenarios; the deployment runs with streamManagement.closeAckWaitMs = `waitMs` and the archive on. */
export function smCloseScenarios(deployment: () => Deployment, waitMs: number): void {
  const port = (i: number) => deployment().ports[i % deployment().ports.length];

  test('a client that closes without acking answers the <r/>: nothing stored offline, each message once across the reconnection', async () => {
    const [a, b] = names('smca');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const bob = await login(port(1), b, 'desk', false);
    const alice = await login(port(0), a, 'phone', true);
    const ids = await deliver(bob, alice, `${a}@${DOMAIN}/phone`, 'answered', 3);
    assert.doesNotMatch(alice.output, /<r xmlns/, 'not asked before closing (fewer than ackRequestStanzas)');
    const took = await closeStream(alice, true);
    assert.ok(took < waitMs, `closed as soon as everything was acknowledged (${took} ms)`);
    await sleep(200);
    assert.equal(await offline(deployment(), `${a}@${DOMAIN}`), 0, 'zero copies in offline storage');
    const again = await login(port(0), a, 'phone', false);
    await sleep(500);
    for (const id of ids) assert.equal(copies(alice, id) + copies(again, id), 1, `${id} reached alice exactly once`);
    for (const c of [again, bob]) c.close();
  });

  test('a client that acknowledges, then closes: no <r/>, closed at once, nothing stored offline', async () => {
    const [a, b] = names('smcq');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const bob = await login(port(1), b, 'desk', false);
    const alice = await login(port(0), a, 'phone', true);
    const ids = await deliver(bob, alice, `${a}@${DOMAIN}/phone`, 'acked', 2);
    const t0 = Date.now();
    const before = alice.output.length;
    alice.send(`<a xmlns='${NS_SM}' h='${handled(alice)}'/></stream:stream>`);
    await alice.waitFor(/<\/stream:stream>\s*$/);
    await alice.closed;
    assert.ok(Date.now() - t0 < waitMs, 'closed without waiting');
    assert.doesNotMatch(alice.output.slice(before), /<r xmlns/, 'nothing left to ask about');
    await sleep(200);
    assert.equal(await offline(deployment(), `${a}@${DOMAIN}`), 0);
    const again = await login(port(0), a, 'phone', false);
    await sleep(500);
    for (const id of ids) assert.equal(copies(again, id), 0, `${id} is not delivered again`);
    for (const c of [again, bob]) c.close();
  });

  test('a client that closes and never answers (libstrophe): each message comes back once, with its first delay stamp and stanza id', async () => {
    const [a, b] = names('smcn');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const bob = await login(port(1), b, 'desk', false);
    const alice = await login(port(0), a, 'phone', true);
    const sentAt = Date.now();
    const ids = await deliver(bob, alice, `${a}@${DOMAIN}/phone`, 'silent', 2);
    const first = ids.map((id) => marks(alice.output, id, `${a}@${DOMAIN}`));
    for (const m of first) assert.ok(m.stanzaId, 'archived on arrival: the live copy carries the stanza id');
    await sleep(300);
    const took = await closeStream(alice, false);
    assert.ok(took >= waitMs - 50, `the server waited for the ack (${took} ms)`);
    await sleep(200);
    assert.equal(await offline(deployment(), `${a}@${DOMAIN}`), 2, 'each unacknowledged message stored once');
    const again = await login(port(0), a, 'phone', false);
    for (const id of ids) await again.waitFor(new RegExp(`<message[^>]* id="${id}"[^]*?</message>`));
    await sleep(500);
    ids.forEach((id, i) => {
      assert.equal(copies(again, id), 1, `${id} comes back once`);
      const m = marks(again.output, id, `${a}@${DOMAIN}`);
      assert.equal(m.stanzaId, first[i].stanzaId, 'the same stanza id');
      const stamp = Date.parse(m.delay ?? '');
      assert.ok(stamp >= sentAt - 1000 && stamp <= sentAt + 1000, `stamped when it reached the server, not when the session ended (${m.delay})`);
    });
    // A third login: nothing more.
    again.close();
    const third = await login(port(0), a, 'phone', false);
    await sleep(500);
    for (const id of ids) assert.equal(copies(third, id), 0, `${id} is not delivered a third time`);
    for (const c of [third, bob]) c.close();
  });

  test('a client that read the archive in that session and never answers: the archived messages are not offered again; the archive has each once', async () => {
    const [a, b] = names('smcm');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const bob = await login(port(1), b, 'desk', false);
    const alice = await login(port(0), a, 'phone', true);
    // What a client that catches up from the archive does at login.
    alice.send(`<iq type='set' id='mam1'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>`);
    await alice.waitFor(/<iq[^>]* id="mam1"[^>]*type="result"|<iq[^>]*type="result"[^>]* id="mam1"/);
    const ids = await deliver(bob, alice, `${a}@${DOMAIN}/phone`, 'archived', 2);
    await closeStream(alice, false);
    await sleep(200);
    assert.equal(await offline(deployment(), `${a}@${DOMAIN}`), 0, 'not stored offline: the client fetches them from the archive');
    const again = await login(port(0), a, 'phone', false);
    await sleep(500);
    for (const id of ids) assert.equal(copies(again, id), 0, `${id} is not pushed again`);
    again.send(`<iq type='set' id='mam2'><query xmlns='urn:xmpp:mam:2' queryid='q2'/></iq>`);
    await again.waitFor(/id="mam2"/);
    for (const id of ids) assert.equal((again.output.match(new RegExp(`<result xmlns="urn:xmpp:mam:2" queryid="q2"[^]*?<message[^>]* id="${id}"`, 'g')) ?? []).length, 1, `${id} once in the archive`);
    for (const c of [again, bob]) c.close();
  });
}
