// Mobile and multi-device scenarios (stream management XEP-0198, carbons
// XEP-0280, archive XEP-0313, push XEP-0357) that hold in every mode: each is
// run against the embedded server and against a cluster. Cluster-only ones
// (SIGKILL of a c2s node, the soak) live in test/cluster/cluster-mobile*.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inbox, isMessageWithBody, testClient, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { DOMAIN, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { befriend, jid, presenceFrom, rosterGet } from '../support/im.ts';

/**
 * What a deployment for these scenarios needs beyond the defaults: the archive test sends 2,000 messages in seconds
 * between users who are not contacts, far past the default limit on messages to strangers (spam.strangerRate).
 */
export const MOBILE_CONFIG = { spam: { strangerRate: { perAccount: 10_000 } } };

export const NS_SM = 'urn:xmpp:sm:3';
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The parts of @xmpp/client's stream management and connection the tests drive (the package has no types). */
export interface SmInternals {
  enabled: boolean;
  id: string;
  inbound: number;
  outbound: number;
  outbound_q: unknown[];
  preferredMaximum: number | null;
  on(event: 'resumed' | 'fail' | 'ack', cb: (...a: unknown[]) => void): void;
}
interface ClientInternals {
  streamManagement: SmInternals;
  socket?: { socket?: { destroy(): void } };
  options: { service: string };
  status: string;
  connect(service: string): Promise<void>;
  open(o: { domain: string }): Promise<void>;
  on(event: string, cb: (...a: unknown[]) => void): void;
  removeListener(event: string, cb: (...a: unknown[]) => void): void;
}

/** A phone: a real client with stream management whose connection we can cut and resume elsewhere. */
export interface Mobile extends TestClient {
  sm: SmInternals;
  /** Cut the TCP connection without a word (a phone losing its network). */
  drop(): Promise<void>;
  /** Reconnect to a c2s port and resume the session; rejects when the server refuses the resumption. */
  resume(port: number): Promise<void>;
}

export async function mobile(port: number, local: string, opts: { resource?: string; max?: number } = {}): Promise<Mobile> {
  const xmpp = testClient({ service: `xmpp://127.0.0.1:${port}`, domain: DOMAIN, username: local, password: PASSWORD, resource: opts.resource });
  const inner = xmpp as unknown as ClientInternals;
  const sm = inner.streamManagement;
  if (opts.max !== undefined) sm.preferredMaximum = opts.max;
  // @xmpp/client 0.14 counts incoming stanzas in a middleware that runs after
  // the iq caller's, which swallows the results of the client's own requests:
  // its `h` misses them, and a resumption would get them again. Count them.
  const pending = (xmpp.iqCaller as unknown as { handlers: Map<string, unknown> }).handlers;
  const get = pending.get.bind(pending);
  pending.get = (id: string) => {
    const d = get(id);
    if (d !== undefined && sm.enabled) sm.inbound++;
    return d;
  };
  const box = inbox(xmpp, local);
  const address = await xmpp.start();
  const m: Mobile = {
    xmpp,
    jid: address.toString(),
    received: box.received,
    sm,
    waitFor: (pred, timeoutMs) => box.waitFor(pred, timeoutMs),
    send: (s) => xmpp.send(s),
    stop: async () => { await xmpp.stop().catch(() => {}); },
    async drop() {
      if (inner.status === 'disconnect') return;
      const gone = new Promise<void>((r) => {
        const f = (status: unknown) => { if (status === 'disconnect') { inner.removeListener('status', f); r(); } };
        inner.on('status', f);
      });
      inner.socket?.socket?.destroy();
      await gone;
    },
    async resume(p: number) {
      inner.options.service = `xmpp://127.0.0.1:${p}`;
      const outcome = new Promise<void>((resolve, reject) => {
        sm.on('resumed', () => resolve());
        inner.on('online', () => reject(new Error('the server refused the resumption: a new session was bound')));
      });
      await inner.connect(inner.options.service);
      await inner.open({ domain: DOMAIN });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([outcome, new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('no answer to <resume/>')), 10_000); })])
        .finally(() => clearTimeout(timer));
    },
  };
  return m;
}

let n = 0;
const names = (tag: string, k = 2): string[] => { n++; return Array.from({ length: k }, (_, i) => `${tag}${String.fromCharCode(97 + i)}${n}`); };
const bodies = (c: TestClient, tag: string): number[] =>
  c.received.filter((s) => s.is('message') && s.getChildText('body')?.startsWith(`${tag} `) === true).map((s) => Number(s.getChildText('body')!.split(' ')[1]));
const chat = (to: string, body: string, extra?: Stanza) => xml('message', { to, type: 'chat' }, xml('body', {}, body), extra);

/** Two users who see each other's presence, both online. */
async function pair(d: Deployment, a: string, b: string, pa: number, pb: number, opts: { max?: number } = {}): Promise<[Mobile, Mobile]> {
  await d.addUser(a);
  await d.addUser(b);
  const alice = await mobile(pa, a, { resource: 'phone', max: opts.max });
  const bob = await mobile(pb, b, { resource: 'desk' });
  for (const x of [alice, bob]) {
    await rosterGet(x);
    await x.send(xml('presence'));
  }
  await befriend(alice, a, bob, b);
  await bob.waitFor(presenceFrom(jid(a)));
  return [alice, bob];
}

/** Raw login up to resource binding, for the protocol cases. */
async function rawBound(port: number, user: string, resource: string): Promise<RawClient> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  c.send(plainAuth(user, PASSWORD));
  await c.waitFor(/<success/);
  c.send(STREAM_OPEN());
  await c.waitFor(/urn:xmpp:sm:3/);
  c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
  await c.waitFor(/<jid>/);
  return c;
}

async function rawAuthed(port: number, user: string): Promise<RawClient> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  c.send(plainAuth(user, PASSWORD));
  await c.waitFor(/<success/);
  c.send(STREAM_OPEN());
  await c.waitFor(/urn:xmpp:sm:3/);
  return c;
}

export function streamManagementScenarios(deployment: () => Deployment): void {
  const port = (i: number) => {
    const ports = deployment().ports;
    return ports[i % ports.length];
  };

  test('stream management: a real client enables it with resumption; acks flow both ways', async () => {
    const [a, b] = names('smon');
    const [alice, bob] = await pair(deployment(), a, b, port(0), port(1));
    try {
      assert.equal(alice.sm.enabled, true);
      assert.ok(alice.sm.id.length > 20, 'a resumption id');
      for (let i = 0; i < 12; i++) await bob.send(chat(`${jid(a)}/phone`, `m ${i}`));
      await alice.waitFor(isMessageWithBody('m 11'));
      for (let i = 0; i < 100 && bob.sm.outbound_q.length > 0; i++) await sleep(100);
      assert.equal(bob.sm.outbound_q.length, 0, "the server acknowledged every one of bob's stanzas");
      assert.ok(alice.sm.inbound >= 12);
    } finally {
      for (const x of [alice, bob]) await x.stop();
    }
  });

  test('resumption on the same node: nothing lost, duplicated or reordered, presence unchanged while waiting', async () => {
    const [a, b] = names('smres');
    const [alice, bob] = await pair(deployment(), a, b, port(0), port(1));
    try {
      for (let i = 0; i < 3; i++) await alice.send(chat(jid(b), `up ${i}`));
      await alice.drop();
      for (let i = 0; i < 10; i++) await bob.send(chat(`${jid(a)}/phone`, `down ${i}`));
      for (let i = 10; i < 15; i++) await bob.send(chat(jid(a), `down ${i}`));
      await sleep(300);
      await alice.resume(port(0));
      await alice.waitFor(isMessageWithBody('down 14'));
      await bob.waitFor(isMessageWithBody('up 2'));
      await sleep(300);
      assert.deepEqual(bodies(alice, 'down'), Array.from({ length: 15 }, (_, i) => i), 'every message once, in order');
      assert.deepEqual(bodies(bob, 'up'), [0, 1, 2], "alice's unacknowledged messages once, in order");
      assert.equal(bob.received.filter(presenceFrom(jid(a), 'unavailable')).length, 0, 'bob never saw alice go away');
      assert.equal(bob.received.filter((s) => s.attrs.type === 'error').length, 0, 'no bounce');
      // the resumed session works both ways
      await bob.send(chat(`${jid(a)}/phone`, 'after 0'));
      await alice.waitFor(isMessageWithBody('after 0'));
      await alice.send(chat(jid(b), 'after 1'));
      await bob.waitFor(isMessageWithBody('after 1'));
    } finally {
      for (const x of [alice, bob]) await x.stop();
    }
  });

  test('the resumption window closes: unacknowledged messages go to offline storage once, never bounced too; then unavailable', async () => {
    const [a, b] = names('smexp');
    const [alice, bob] = await pair(deployment(), a, b, port(0), port(1), { max: 2 });
    try {
      await alice.drop();
      for (let i = 0; i < 5; i++) await bob.send(chat(`${jid(a)}/phone`, `late ${i}`));
      const gone = await bob.waitFor(presenceFrom(jid(a), 'unavailable'), 8000);
      assert.equal(gone.attrs.from, `${jid(a)}/phone`);
      const again = await mobile(port(0), a, { resource: 'phone2' });
      try {
        await again.send(xml('presence'));
        await again.waitFor(isMessageWithBody('late 4'));
        await sleep(300);
        assert.deepEqual(bodies(again, 'late'), [0, 1, 2, 3, 4], 'each message once, from offline storage');
        assert.ok(again.received.find(isMessageWithBody('late 0'))?.getChild('delay', 'urn:xmpp:delay'), 'stamped as delayed');
        assert.equal(bob.received.filter((s) => s.attrs.type === 'error').length, 0, 'nothing bounced as well');
        await assert.rejects(alice.resume(port(0)), 'the old session cannot be resumed any more');
      } finally {
        await again.stop();
      }
    } finally {
      for (const x of [alice, bob]) await x.stop();
    }
  });

  test('bad input gets the answer XEP-0198 names and loses nothing', async () => {
    const [a, b] = names('smbad');
    await deployment().addUser(a);
    await deployment().addUser(b);
    // <enable/> before binding
    const early = await rawAuthed(port(0), a);
    early.send(`<enable xmlns='${NS_SM}'/>`);
    await early.waitFor(/<failed xmlns=["']urn:xmpp:sm:3["']><unexpected-request/);
    early.close();
    // <enable/> twice; <a/> without <r/>; the stream goes on
    const c = await rawBound(port(0), a, 'r1');
    c.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const out = await c.waitFor(/<enabled [^>]*id="([^"]+)"/);
    const previd = /<enabled [^>]*id="([^"]+)"/.exec(out)![1];
    c.send(`<enable xmlns='${NS_SM}'/>`);
    await c.waitFor(/<failed xmlns=["']urn:xmpp:sm:3["']><unexpected-request/);
    c.send(`<a xmlns='${NS_SM}' h='0'/>`);
    c.send(`<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq><r xmlns='${NS_SM}'/>`);
    await c.waitFor(/id=["']p1["']/);
    await c.waitFor(/<a xmlns=["']urn:xmpp:sm:3["'] h=["']1["']\/>/);
    // <resume/> with an unknown id, with another account's id, with a forged one
    const other = await rawAuthed(port(1), b);
    other.send(`<resume xmlns='${NS_SM}' previd='${previd}' h='0'/>`);
    await other.waitFor(/<failed xmlns=["']urn:xmpp:sm:3["']><item-not-found/);
    other.close();
    const forged = await rawAuthed(port(1), a);
    const raw = Buffer.from(previd, 'base64url');
    raw[raw.length - 1] ^= 1;
    forged.send(`<resume xmlns='${NS_SM}' previd='${raw.toString('base64url')}' h='0'/>`);
    await forged.waitFor(/<item-not-found/);
    forged.send(`<resume xmlns='${NS_SM}' previd='bm90aGluZw' h='0'/>`);
    await forged.waitFor(/<item-not-found[^]*<item-not-found/);
    forged.close();
    // an h larger than what was sent: undefined-condition, with the counts
    c.send(`<a xmlns='${NS_SM}' h='7'/>`);
    const err = await c.waitFor(/<\/stream:stream>/);
    assert.match(err, /<undefined-condition xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']\/>/);
    assert.match(err, /<handled-count-too-high xmlns=["']urn:xmpp:sm:3["'] h=["']7["'] send-count=["']\d+["']\/>/);
    c.close();
  });
}

// ---------------------------------------------------------------- carbons, archive, push

const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_MAM = 'urn:xmpp:mam:2';
const NS_RSM = 'http://jabber.org/protocol/rsm';
const NS_PUSH = 'urn:xmpp:push:0';

async function iq(c: TestClient, type: 'get' | 'set', payload: Stanza, to?: string): Promise<Stanza> {
  return c.xmpp.iqCaller.request(xml('iq', { type, to }, payload), 15_000);
}

/** A MAM query: the result messages (in order) and the <fin/>. */
export async function mamQuery(c: TestClient, form: Record<string, string | string[]>, rsm: Record<string, string> = {}): Promise<{ results: Stanza[]; fin: Stanza }> {
  const queryid = `q${Math.random().toString(36).slice(2)}`;
  const start = c.received.length;
  const fields = Object.entries({ FORM_TYPE: NS_MAM, ...form }).map(([k, v]) =>
    xml('field', { var: k, type: k === 'FORM_TYPE' ? 'hidden' : undefined }, ...(Array.isArray(v) ? v : [v]).map((x) => xml('value', {}, x))));
  const set = Object.keys(rsm).length ? xml('set', { xmlns: NS_RSM }, ...Object.entries(rsm).map(([k, v]) => xml(k, {}, v))) : undefined;
  const res = await iq(c, 'set', xml('query', { xmlns: NS_MAM, queryid }, xml('x', { xmlns: 'jabber:x:data', type: 'submit' }, ...fields), set));
  const results = c.received.slice(start).filter((s) => s.is('message') && s.getChild('result', NS_MAM)?.attrs.queryid === queryid);
  return { results, fin: res.getChild('fin', NS_MAM)! };
}

const resultBody = (r: Stanza) => r.getChild('result', NS_MAM)!.getChild('forwarded', 'urn:xmpp:forward:0')!.getChild('message')!.getChildText('body')!;
const resultId = (r: Stanza) => r.getChild('result', NS_MAM)!.attrs.id!;

export function multiDeviceScenarios(deployment: () => Deployment): void {
  const port = (i: number) => {
    const ports = deployment().ports;
    return ports[i % ports.length];
  };

  test('carbons: copies of what is sent and received reach every other enabled resource, wherever it is connected; hints and types respected', async () => {
    const [a, b] = names('carb');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const phone = await mobile(port(0), a, { resource: 'phone' });
    const laptop = await mobile(port(1), a, { resource: 'laptop' });
    const web = await mobile(port(2), a, { resource: 'web' });
    const quiet = await mobile(port(2), a, { resource: 'quiet' });
    const bob = await mobile(port(0), b, { resource: 'desk' });
    try {
      const info = await iq(phone, 'get', xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }), DOMAIN);
      assert.ok(info.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === NS_CARBONS), 'the server advertises carbons');
      for (const [x, prio] of [[phone, '5'], [laptop, '1'], [web, '1'], [quiet, '1']] as const) {
        if (x !== quiet) await iq(x, 'set', xml('enable', { xmlns: NS_CARBONS }));
        await x.send(xml('presence', {}, xml('priority', {}, prio)));
      }
      await bob.send(xml('presence'));
      await sleep(300);
      const carbon = (c: TestClient, how: 'sent' | 'received', body: string) => c.received.find((s) => s.is('message')
        && s.getChild(how, NS_CARBONS)?.getChild('forwarded', 'urn:xmpp:forward:0')?.getChild('message')?.getChildText('body') === body);
      // received, to a full JID and to the bare JID (the highest priority takes it, the others get copies)
      await bob.send(chat(`${jid(a)}/phone`, 'to phone'));
      await bob.send(chat(jid(a), 'to bare'));
      // sent, from the phone
      await phone.send(chat(jid(b), 'from phone'));
      // never copied: private, no-copy, a normal message without body, groupchat-typed noise
      await bob.send(chat(`${jid(a)}/phone`, 'private', xml('private', { xmlns: NS_CARBONS })));
      await phone.send(chat(jid(b), 'no-copy', xml('no-copy', { xmlns: 'urn:xmpp:hints' })));
      await bob.send(xml('message', { to: `${jid(a)}/phone` }, xml('thread', {}, 'no body')));
      await bob.send(chat(`${jid(a)}/phone`, 'marker'));
      for (const c of [laptop, web]) {
        await c.waitFor((s) => carbon(c, 'received', 'marker') === s, 5000);
        assert.ok(carbon(c, 'received', 'to phone'), 'received copy of a message to another resource');
        assert.ok(carbon(c, 'received', 'to bare'), 'received copy of a bare-JID message another resource took');
        assert.ok(carbon(c, 'sent', 'from phone'), 'sent copy');
        assert.equal(carbon(c, 'received', 'private'), undefined, '<private/> is not copied');
        assert.equal(carbon(c, 'sent', 'no-copy'), undefined, '<no-copy/> is not copied');
        assert.equal(c.received.filter((s) => s.getChild('received', NS_CARBONS)?.getChild('forwarded', 'urn:xmpp:forward:0')?.getChild('message')?.getChild('thread')).length, 0, 'a normal message without body is not copied');
        const copy = carbon(c, 'received', 'to phone')!;
        assert.equal(copy.attrs.from, jid(a), 'a copy comes from the account');
        assert.equal(copy.getChild('received', NS_CARBONS)!.getChild('forwarded', 'urn:xmpp:forward:0')!.getChild('message')!.attrs.from, `${jid(b)}/desk`);
      }
      assert.equal(phone.received.filter((s) => s.getChild('received', NS_CARBONS) || s.getChild('sent', NS_CARBONS)).length, 0, 'the resource that got or sent the original gets no copy');
      assert.equal(quiet.received.filter((s) => s.getChild('received', NS_CARBONS) || s.getChild('sent', NS_CARBONS)).length, 0, 'a resource that did not enable carbons gets none');
      // disable
      await iq(laptop, 'set', xml('disable', { xmlns: NS_CARBONS }));
      await bob.send(chat(`${jid(a)}/phone`, 'after disable'));
      await web.waitFor((s) => carbon(web, 'received', 'after disable') === s);
      await sleep(200);
      assert.equal(carbon(laptop, 'received', 'after disable'), undefined);
    } finally {
      for (const x of [phone, laptop, web, quiet, bob]) await x.stop();
    }
  });

  test('archive: thousands of messages paged forwards and backwards, filtered by peer, time and id; stanza ids on delivery', async () => {
    const [a, b, c] = names('mam', 3);
    for (const u of [a, b, c]) await deployment().addUser(u);
    const alice = await mobile(port(0), a, { resource: 'phone' });
    const bob = await mobile(port(1), b, { resource: 'desk' });
    const carol = await mobile(port(1), c, { resource: 'desk' });
    try {
      const info = await iq(alice, 'get', xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }), jid(a));
      for (const f of [NS_MAM, 'urn:xmpp:sid:0']) assert.ok(info.getChild('query')!.getChildren('feature').some((x) => x.attrs.var === f), f);
      const total = 2000;
      const t0 = Date.now();
      for (let i = 0; i < total; i++) {
        const from = i % 10 === 3 ? carol : bob;
        void from.send(chat(`${jid(a)}/phone`, `arch ${i}`));
        if (i % 200 === 199) await from.waitFor(() => true, 1).catch(() => undefined);
      }
      // Both senders' last messages: two senders' messages keep no order between them.
      await alice.waitFor(isMessageWithBody(`arch ${total - 1}`), 30_000);
      await alice.waitFor(isMessageWithBody(`arch ${total - 7}`), 30_000);
      const seeded = Date.now() - t0;
      // Two senders: the archive's order is the order alice's actor took them, which is the order she got them.
      const order = alice.received.filter((s) => s.getChildText('body')?.startsWith('arch ')).map((s) => s.getChildText('body')!);
      assert.equal(new Set(order).size, total);
      const delivered = alice.received.filter((s) => s.getChildText('body')?.startsWith('arch ')).map((s) => s.getChild('stanza-id', 'urn:xmpp:sid:0'));
      assert.ok(delivered.every((s) => s?.attrs.by === jid(a) && s.attrs.id), 'each delivered message carries its archive id');
      // forwards, 250 at a time
      const seen: string[] = [];
      const ids: string[] = [];
      let after: string | undefined;
      let pages = 0;
      const q0 = Date.now();
      for (;;) {
        const { results, fin } = await mamQuery(alice, {}, { max: '250', ...(after ? { after } : {}) });
        pages++;
        seen.push(...results.map(resultBody));
        ids.push(...results.map(resultId));
        after = fin.getChild('set', NS_RSM)!.getChildText('last') ?? undefined;
        if (fin.attrs.complete === 'true') break;
        assert.ok(pages < 20);
      }
      const pagingMs = Date.now() - q0;
      assert.deepEqual(seen, order, 'every message once, in order');
      assert.equal(pages, Math.ceil(total / 250));
      assert.deepEqual(ids, delivered.map((s) => s!.attrs.id), 'archive ids are the stanza ids clients saw');
      // backwards from the end
      const back: string[] = [];
      let before = '';
      for (;;) {
        const { results, fin } = await mamQuery(alice, {}, { max: '300', before });
        back.unshift(...results.map(resultBody));
        before = fin.getChild('set', NS_RSM)!.getChildText('first') ?? '';
        if (fin.attrs.complete === 'true') break;
      }
      assert.deepEqual(back, seen, 'backwards, the same messages');
      const last = await mamQuery(alice, {}, { max: '5', before: '' });
      assert.deepEqual(last.results.map(resultBody), order.slice(-5), 'the last page');
      assert.equal(last.fin.getChild('set', NS_RSM)!.getChildText('count'), String(total));
      // by peer, by id, by time
      const withCarol = await mamQuery(alice, { with: jid(c) }, { max: '250' });
      assert.equal(withCarol.results.length, total / 10);
      assert.ok(withCarol.results.every((r) => Number(resultBody(r).split(' ')[1]) % 10 === 3));
      assert.equal(withCarol.fin.attrs.complete, 'true');
      const between = await mamQuery(alice, { 'after-id': ids[99], 'before-id': ids[110] });
      assert.deepEqual(between.results.map(resultBody), order.slice(100, 110));
      const picked = await mamQuery(alice, { ids: [ids[5], ids[1500], ids[42]] });
      assert.deepEqual(picked.results.map(resultBody), [order[5], order[42], order[1500]]);
      const future = await mamQuery(alice, { start: new Date(Date.now() + 60_000).toISOString() });
      assert.equal(future.results.length, 0);
      assert.equal(future.fin.attrs.complete, 'true');
      const sinceStart = await mamQuery(alice, { start: new Date(t0 - 1000).toISOString(), end: new Date().toISOString() }, { max: '10' });
      assert.equal(sinceStart.results.length, 10);
      await assert.rejects(mamQuery(alice, { 'after-id': 'zzzzzzzzzzz' }), /item-not-found/);
      // the sender's archive has its side
      const bobs = await mamQuery(bob, { with: jid(a) }, { max: '3' });
      assert.deepEqual(bobs.results.map(resultBody), ['arch 0', 'arch 1', 'arch 2']);
      assert.equal(Number((await mamQuery(bob, { with: jid(a) }, { max: '0' })).fin.getChild('set', NS_RSM)!.getChildText('count') ?? -1), -1, 'no count when filtered by peer');
      // preferences: never for carol
      const prefs = await iq(alice, 'set', xml('prefs', { xmlns: NS_MAM, default: 'always' }, xml('always'), xml('never', {}, xml('jid', {}, jid(c)))));
      assert.equal(prefs.getChild('prefs', NS_MAM)!.getChild('never')!.getChildText('jid'), jid(c));
      await carol.send(chat(`${jid(a)}/phone`, 'unkept'));
      await alice.waitFor(isMessageWithBody('unkept'));
      assert.equal(alice.received.find(isMessageWithBody('unkept'))!.getChild('stanza-id', 'urn:xmpp:sid:0'), undefined);
      const lastPage = await mamQuery(alice, {}, { max: '1', before: '' });
      assert.equal(resultBody(lastPage.results[0]), order[total - 1], 'not archived');
      console.log(`# archive: ${total} messages seeded in ${seeded} ms; paged in ${pages} pages of 250 in ${pagingMs} ms`);
    } finally {
      for (const x of [alice, bob, carol]) await x.stop();
    }
  });

  test('archived exactly once: delivered from offline storage, after a resumption, after a resumption window closed', async () => {
    const [a, b] = names('mam1');
    const [alice, bob] = await pair(deployment(), a, b, port(0), port(1), { max: 2 });
    try {
      await alice.drop();
      await bob.send(chat(`${jid(a)}/phone`, 'once 0'));
      await sleep(200);
      await alice.resume(port(0));
      await alice.waitFor(isMessageWithBody('once 0'));
      // The phone says it has it (or the window's close would route it again, rightly: unacknowledged).
      await alice.xmpp.send(xml('a', { xmlns: NS_SM, h: String(alice.sm.inbound) }));
      await sleep(200);
      await alice.drop();
      const sentOnce1 = Date.now();
      await bob.send(chat(`${jid(a)}/phone`, 'once 1'));
      await bob.waitFor(presenceFrom(jid(a), 'unavailable'), 8000);
      await bob.send(chat(jid(a), 'once 2'));
      await sleep(200);
      const again = await mobile(port(0), a, { resource: 'tablet' });
      try {
        await again.send(xml('presence'));
        await again.waitFor(isMessageWithBody('once 2'));
        const all = await mamQuery(again, { with: jid(b) });
        assert.deepEqual(all.results.map(resultBody), ['once 0', 'once 1', 'once 2'], 'each archived once');
        const got = again.received.filter((s) => s.getChildText('body')?.startsWith('once '));
        assert.deepEqual(got.map((s) => s.getChildText('body')), ['once 1', 'once 2'], 'from offline storage, once each');
        assert.deepEqual(got.map((s) => s.getChild('stanza-id', 'urn:xmpp:sid:0')?.attrs.id), all.results.slice(1).map(resultId), 'with the archive ids');
        // Stored when the window closed (2 s later), stamped when it reached the server.
        const stamp = Date.parse(got[0].getChild('delay', 'urn:xmpp:delay')?.attrs.stamp ?? '');
        assert.ok(Math.abs(stamp - sentOnce1) < 1000, `delay stamp ${new Date(stamp).toISOString()}: when 'once 1' reached the server (${new Date(sentOnce1).toISOString()}), not when the session ended`);
      } finally {
        await again.stop();
      }
    } finally {
      for (const x of [alice, bob]) await x.stop();
    }
  });

  test('push: a message for a session waiting to resume, or for an offline account, notifies the app server; nothing of it by default', async () => {
    const [a, b, s] = names('push', 3);
    for (const u of [a, b, s]) await deployment().addUser(u);
    const app = await mobile(port(1), s, { resource: 'app' });
    const alice = await mobile(port(0), a, { resource: 'phone', max: 30 });
    const bob = await mobile(port(1), b, { resource: 'desk' });
    try {
      const appJid = `${jid(s)}/app`;
      const info = await iq(alice, 'get', xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }), jid(a));
      assert.ok(info.getChild('query')!.getChildren('feature').some((x) => x.attrs.var === NS_PUSH));
      await iq(alice, 'set', xml('enable', { xmlns: NS_PUSH, jid: appJid, node: 'dev-1' },
        xml('x', { xmlns: 'jabber:x:data', type: 'submit' }, xml('field', { var: 'FORM_TYPE' }, xml('value', {}, 'http://jabber.org/protocol/pubsub#publish-options')),
          xml('field', { var: 'secret' }, xml('value', {}, 'eruio234vzxc2kla-91')))));
      await alice.send(xml('presence'));
      await bob.send(chat(`${jid(a)}/phone`, 'live'));
      await alice.waitFor(isMessageWithBody('live'));
      const publishes = () => app.received.filter((x) => x.is('iq') && x.getChild('pubsub', 'http://jabber.org/protocol/pubsub')?.getChild('publish')?.attrs.node === 'dev-1');
      await sleep(200);
      assert.equal(publishes().length, 0, 'no notification while the session is live');
      await alice.drop();
      await sleep(300);
      await bob.send(chat(`${jid(a)}/phone`, 'secret words'));
      const note = await app.waitFor((x) => publishes().includes(x), 5000);
      assert.equal(note.attrs.from, jid(a));
      const pubsub = note.getChild('pubsub', 'http://jabber.org/protocol/pubsub')!;
      const form = pubsub.getChild('publish')!.getChild('item')!.getChild('notification', NS_PUSH)!.getChild('x', 'jabber:x:data')!;
      const fields = Object.fromEntries(form.getChildren('field').map((f) => [f.attrs.var, f.getChildText('value')]));
      assert.equal(fields.FORM_TYPE, 'urn:xmpp:push:summary');
      assert.equal(fields['message-count'], '1');
      assert.equal(fields['last-message-body'], undefined, 'no body by default');
      assert.equal(fields['last-message-sender'], undefined, 'no sender by default');
      assert.ok(!note.toString().includes('secret words'));
      assert.equal(pubsub.getChild('publish-options')?.getChild('x')?.getChildren('field').find((f) => f.attrs.var === 'secret')?.getChildText('value'), 'eruio234vzxc2kla-91', 'the publish options go along');
      // the resumed session gets the message itself
      await alice.resume(port(0));
      await alice.waitFor(isMessageWithBody('secret words'));
      // fully offline: stored, and notified
      await alice.stop();
      await sleep(300);
      await bob.send(chat(jid(a), 'while away'));
      await app.waitFor((x) => publishes().length === 2 && x === publishes()[1], 5000);
      // disabled: nothing
      const back = await mobile(port(0), a, { resource: 'phone' });
      await iq(back, 'set', xml('disable', { xmlns: NS_PUSH, jid: appJid }));
      await back.stop();
      await sleep(300);
      await bob.send(chat(jid(a), 'after disable'));
      await sleep(800);
      assert.equal(publishes().length, 2);
    } finally {
      for (const x of [app, alice, bob]) await x.stop();
    }
  });
}
