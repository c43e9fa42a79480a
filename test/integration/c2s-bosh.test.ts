// BOSH (XEP-0124 / XEP-0206) on the HTTP listener: a client library end to
// end, and the binding's rules on the wire (rid order and window, resends,
// hold/wait, polling, inactivity, terminate, restart, CORS).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { connectStanza } from '../support/stanza-client.ts';
import type { RunningServer } from '../../services/server.ts';

const NS = `xmlns="http://jabber.org/protocol/httpbind"`;
const XBOSH = `xmlns:xmpp="urn:xmpp:xbosh"`;
const plain = (user: string) => `<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">${Buffer.from(`\0${user}\0${PASSWORD}`).toString('base64')}</auth>`;

type Embedded = Deployment & { server: RunningServer };

interface Reply { status: number; text: string; headers: Headers; ms: number }

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Reply> {
  const t0 = Date.now();
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/xml; charset=utf-8', ...headers } });
  return { status: r.status, text: await r.text(), headers: r.headers, ms: Date.now() - t0 };
}

const attr = (xml: string, name: string) => new RegExp(`\\s${name}="([^"]*)"`).exec(xml)?.[1];

/** A raw BOSH session: the next rid is tracked here. */
class Session {
  rid: number;
  sid = '';
  jid = '';
  constructor(readonly url: string, rid = 1000 + Math.floor(Math.random() * 1e6)) {
    this.rid = rid;
  }

  async create(o: { hold?: number; wait?: number; to?: string } = {}): Promise<Reply> {
    const r = await post(this.url, `<body ${NS} ${XBOSH} rid="${this.rid++}" to="${o.to ?? 'localhost'}" hold="${o.hold ?? 1}" wait="${o.wait ?? 5}" ver="1.11" xml:lang="en" xmpp:version="1.0"/>`);
    this.sid = attr(r.text, 'sid') ?? '';
    return r;
  }

  send(inner = '', extra = '', rid = this.rid++): Promise<Reply> {
    return post(this.url, `<body ${NS} ${XBOSH} rid="${rid}" sid="${this.sid}" ${extra}>${inner}</body>`);
  }

  /** SASL PLAIN, restart, bind: returns the bound JID. */
  async login(user: string): Promise<void> {
    const created = await this.create();
    assert.match(created.text, /<mechanism>PLAIN<\/mechanism>/);
    assert.match((await this.send(plain(user))).text, /<success/);
    assert.match((await this.send('', 'xmpp:restart="true"')).text, /<bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/);
    const bound = await this.send(`<iq xmlns="jabber:client" type="set" id="bind"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></iq>`);
    this.jid = /<jid>([^<]+)<\/jid>/.exec(bound.text)![1];
  }
}

describe('BOSH, embedded', () => {
  let d: Embedded;
  let url: string;
  before(async () => {
    d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 }, bosh: { corsOrigins: ['https://app.example'], maxWaitSeconds: 10 } } });
    url = `http://127.0.0.1:${d.server.c2s!.httpPort()}/http-bind`;
    for (const u of ['bshalice', 'bshbob', 'bshraw', 'bshpeer']) await d.addUser(u);
  });
  after(async () => { await d.stop(); });

  test('stanza (npm) over BOSH chats with stanza over WebSocket', async () => {
    const ws = `ws://127.0.0.1:${d.server.c2s!.httpPort()}/xmpp-websocket`;
    const a = await connectStanza('bshalice', { bosh: url });
    const b = await connectStanza('bshbob', { websocket: ws });
    try {
      a.agent.sendMessage({ to: b.jid, body: 'over bosh', type: 'chat' });
      await b.waitForBody('over bosh');
      b.agent.sendMessage({ to: a.jid, body: 'back over a long poll', type: 'chat' });
      await a.waitForBody('back over a long poll');
      assert.equal(d.server.c2s!.connectionsByTransport().bosh, 1);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('the session creation response carries the session attributes and the stream features', async () => {
    const s = new Session(url);
    const r = await s.create({ wait: 300, hold: 7 });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/xml/);
    assert.match(s.sid, /^[A-Za-z0-9_-]{16,}\.embedded$/);
    assert.equal(attr(r.text, 'wait'), '10', 'wait is capped');
    assert.equal(attr(r.text, 'hold'), '2', 'hold is capped');
    assert.equal(attr(r.text, 'requests'), '3');
    assert.equal(attr(r.text, 'from'), 'localhost');
    assert.equal(attr(r.text, 'xmpp:version'), '1.0');
    assert.equal(attr(r.text, 'xmpp:restartlogic'), 'true');
    assert.match(attr(r.text, 'authid') ?? '', /^[0-9a-f]+$/);
    assert.match(r.text, /<stream:features[^>]*><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl">/);
    assert.match(r.text, /xmlns:stream="http:\/\/etherx.jabber.org\/streams"/);
    await s.send('', 'type="terminate"');
  });

  test('a session to a domain we do not serve ends with host-unknown', async () => {
    const r = await new Session(url).create({ to: 'elsewhere.example' });
    assert.match(r.text, /^<body type="terminate" condition="host-unknown"/);
  });

  test('raw: log in, restart, bind, receive on a held request, terminate', async () => {
    const a = new Session(url);
    const b = new Session(url);
    await a.login('bshraw');
    await b.login('bshpeer');
    // b's next request waits (hold=1) until something arrives for it.
    const poll = b.send();
    await new Promise((r) => setTimeout(r, 100));
    // (a's own request is held in turn until a has something to receive, or terminates)
    const sent = a.send(`<message xmlns="jabber:client" to="${b.jid}" type="chat"><body>long poll</body></message>`);
    const got = await poll;
    assert.ok(got.ms < 4000, `answered when the message came, not after wait (${got.ms} ms)`);
    assert.match(got.text, /<message xmlns="jabber:client" to="[^"]+" type="chat" from="bshraw@localhost\/[^"]+"><body>long poll<\/body>(<stanza-id [^>]*\/>)?<\/message>/);
    const end = await b.send(`<presence xmlns="jabber:client" type="unavailable"/>`, 'type="terminate"');
    assert.match(end.text, /^<body type="terminate"/);
    // The session is gone: its sid no longer works.
    assert.match((await b.send()).text, /type="terminate"/);
    await a.send('', 'type="terminate"');
    assert.equal((await sent).status, 200);
  });

  test('requests are processed in rid order; a request ahead of a gap waits for it', async () => {
    const s = new Session(url);
    await s.login('bshraw');
    const first = s.rid;
    // rid+1 arrives before rid: nothing happens until rid comes.
    const second = s.send(`<iq xmlns="jabber:client" type="get" id="second" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, '', first + 1);
    await new Promise((r) => setTimeout(r, 100));
    const one = s.send(`<iq xmlns="jabber:client" type="get" id="first" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, '', first);
    s.rid = first + 2;
    // The answers come on whichever requests are held when they are ready; in the order processed.
    let all = (await one).text + (await second).text;
    while (!all.includes('id="second"')) all += (await s.send()).text;
    assert.ok(all.indexOf('id="first"') !== -1 && all.indexOf('id="first"') < all.indexOf('id="second"'), all);
    await s.send('', 'type="terminate"');
  });

  test('a resent rid gets the same answer again', async () => {
    const s = new Session(url);
    await s.login('bshraw');
    const rid = s.rid;
    const r1 = await s.send(`<iq xmlns="jabber:client" type="get" id="once" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`);
    assert.match(r1.text, /id="once"/);
    const r2 = await s.send(`<iq xmlns="jabber:client" type="get" id="once" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, '', rid);
    assert.equal(r2.text, r1.text);
    await s.send('', 'type="terminate"');
  });

  test('a rid beyond the window ends the session with item-not-found', async () => {
    const s = new Session(url);
    await s.login('bshraw');
    const r = await s.send('', '', s.rid + 5);
    assert.match(r.text, /^<body type="terminate" condition="item-not-found"/);
    assert.match((await s.send()).text, /condition="item-not-found"/);
  });

  test('an unknown sid and a malformed body are refused', async () => {
    assert.match((await post(url, `<body ${NS} rid="1" sid="nope.embedded"/>`)).text, /condition="item-not-found"/);
    assert.match((await post(url, `<body ${NS} rid="1" sid="AAAAAAAAAAAAAAAAAAAAAAAA.embedded"/>`)).text, /condition="item-not-found"/);
    assert.match((await post(url, `<body ${NS} rid="1"`)).text, /condition="bad-request"/);
    assert.match((await post(url, `<notbody ${NS} rid="1"/>`)).text, /condition="bad-request"/);
  });

  test('with nothing to send, a held request is answered after wait', async () => {
    const s = new Session(url);
    await s.create({ wait: 1 });
    const r = await s.send();
    assert.equal(r.text, `<body xmlns="http://jabber.org/protocol/httpbind" xmlns:stream="http://etherx.jabber.org/streams"></body>`);
    assert.ok(r.ms >= 900 && r.ms < 3000, `${r.ms} ms`);
    await s.send('', 'type="terminate"');
  });

  test('hold: a new request releases the oldest held one', async () => {
    const s = new Session(url);
    await s.create();
    const held = s.send();
    await new Promise((r) => setTimeout(r, 100));
    const next = s.send();
    const r = await held;
    assert.ok(r.ms < 1000, 'released by the next request');
    s.send('', 'type="terminate"').catch(() => {});
    await next;
  });

  test('a polling session (hold=0) that polls too often is ended with policy-violation', async () => {
    const s = new Session(url);
    await s.create({ hold: 0 });
    assert.equal((await s.send()).status, 200);
    const r = await s.send();
    assert.match(r.text, /^<body type="terminate" condition="policy-violation"/);
  });

  test('CORS: configured origins are allowed, others are not', async () => {
    const pre = await fetch(url, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.match(pre.headers.get('access-control-allow-methods') ?? '', /POST/);
    assert.match(pre.headers.get('access-control-allow-headers') ?? '', /content-type/);
    const other = await fetch(url, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    const s = new Session(url);
    const r = await post(url, `<body ${NS} ${XBOSH} rid="${s.rid}" to="localhost" wait="5" hold="1" xmpp:version="1.0"/>`, { origin: 'https://app.example' });
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://app.example');
  });
});

describe('BOSH inactivity', () => {
  test('a session with no request for `inactivity` seconds is gone', async () => {
    const d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 }, bosh: { inactivitySeconds: 1 } } });
    try {
      const s = new Session(`http://127.0.0.1:${d.server.c2s!.httpPort()}/http-bind`);
      const r = await s.create();
      assert.equal(attr(r.text, 'inactivity'), '1');
      assert.equal(d.server.c2s!.connectionsByTransport().bosh, 1);
      await new Promise((res) => setTimeout(res, 1600));
      assert.equal(d.server.c2s!.connectionsByTransport().bosh, 0);
      assert.match((await s.send()).text, /condition="item-not-found"/);
    } finally {
      await d.stop();
    }
  });
});
