// Two Parley deployments (two embedded servers, two domains, one process)
// federate: dialback between self-signed servers, SASL EXTERNAL with a test
// CA, one bidirectional stream (XEP-0288) or one per direction, rooms with
// occupants from the other server, what a remote entity may ask a server and
// its accounts, the rules a remote server must follow (invalid-from; a stanza
// astray is that stanza's error), and the bounces a sender gets when a remote
// domain cannot be reached.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import {
  chatBothWays, createInstantRoom, errorCondition, freePortOn, goOnline, login, messageWithBody, NS_MUC_USER, presenceFrom, startParley, subscribeBothWays, testCa,
  visitRoom, waitUntil, xml, type Parley, type Pki, type User,
} from './support.ts';

const HOST = '127.0.0.1';

describe('two Parley deployments, dialback between self-signed servers', () => {
  let a: Parley;
  let b: Parley;
  let silent: Server;
  const held: Socket[] = [];
  let alice: User;
  let bob: User;

  before(async () => {
    const [pa, pb] = await Promise.all([freePortOn(HOST), freePortOn(HOST)]);
    // A server that accepts connections and never says a word: the timeout case.
    silent = createServer((s) => { held.push(s); s.on('error', () => {}); });
    await new Promise<void>((r) => silent.listen(0, HOST, () => r()));
    const silentPort = (silent.address() as { port: number }).port;
    const closedPort = await freePortOn(HOST);
    a = await startParley('a.parley.test', {
      listen: { host: HOST, port: pa },
      routes: { 'b.parley.test': `${HOST}:${pb}`, 'silent.test': `${HOST}:${silentPort}`, 'closed.test': `${HOST}:${closedPort}` },
      setupTimeoutSeconds: 3, maxQueue: 3,
    }, { version: { enabled: true }, c2s: { http: { enabled: true, host: HOST, port: 0 } } });
    // The room service of each domain is reached like the domain itself (an SRV record or a route for it).
    b = await startParley('b.parley.test', { listen: { host: HOST, port: pb }, routes: { 'a.parley.test': `${HOST}:${pa}`, 'conference.a.parley.test': `${HOST}:${pa}`, 'upload.a.parley.test': `${HOST}:${pa}` } });
    await a.addUser('alice');
    await a.addUser('carl');
    await b.addUser('bob');
    alice = await login(HOST, a.port, 'alice@a.parley.test');
    bob = await login(HOST, b.port, 'bob@b.parley.test');
    await Promise.all([goOnline(alice), goOnline(bob)]);
  });

  after(async () => {
    await Promise.all([alice?.stop(), bob?.stop()]);
    await Promise.all([a?.stop(), b?.stop()]);
    for (const s of held) s.destroy();
    silent?.close();
  });

  test('users subscribe to each other, see presence and chat both ways', async () => {
    await subscribeBothWays(alice, 'alice@a.parley.test', bob, 'bob@b.parley.test');
    await chatBothWays(alice, 'alice@a.parley.test', bob, 'bob@b.parley.test', 'dialback');
    // a wrote first and opened the stream, authenticated by dialback (the certificates are self-signed); b offered
    // XEP-0288, a asked for it, and b's stanzas went back over that one stream: b opened none of its own.
    const out = a.streams().find((s) => s.direction === 'out' && s.state === 'established');
    assert.deepEqual([out?.auth, out?.tls, out?.bidi], ['dialback', true, true], JSON.stringify(a.streams()));
    const inbound = b.streams().find((s) => s.direction === 'in' && s.auth !== 'none');
    assert.deepEqual([inbound?.auth, inbound?.bidi], ['dialback', true], JSON.stringify(b.streams()));
    assert.deepEqual(b.streams().filter((s) => s.direction === 'out'), [], JSON.stringify(b.streams()));
  });

  test('a room invites a user of the other server, who enters, talks and leaves; the room writes from conference.<domain>', async () => {
    const room = 'lobby@conference.a.parley.test';
    await createInstantRoom(alice, room, 'Alice');
    // XEP-0045 §7.8.2: the room itself sends the invitation, so it opens a stream from its own domain, which b verifies by dialback.
    await alice.send(xml('message', { to: room }, xml('x', { xmlns: NS_MUC_USER }, xml('invite', { to: 'bob@b.parley.test' }, xml('reason', {}, 'come in')))));
    const invite = await bob.waitFor((s) => s.is('message') && s.attrs.from === room && s.getChild('x', NS_MUC_USER)?.getChild('invite') !== undefined);
    assert.equal(invite.getChild('x', NS_MUC_USER)?.getChild('invite')?.attrs.from, 'alice@a.parley.test');
    const out = a.streams().find((s) => s.direction === 'out' && s.local === 'conference.a.parley.test');
    assert.deepEqual([out?.auth, out?.remote, out?.state], ['dialback', ['b.parley.test'], 'established'], JSON.stringify(a.streams()));
    await visitRoom(alice, 'Alice', bob, 'Bob', room, 'parley-room');
  });

  test('the metrics count the links, the stanzas, the rooms and their occupants, and a dialback key that did not verify', async () => {
    const scrape = async () => (await fetch(`http://127.0.0.1:${a.server.metricsPort()}/metrics`)).text();
    const value = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    let text = await scrape();
    assert.ok(value(text, 'parley_s2s_links{direction="out"}') >= 1, text);
    assert.ok(value(text, 'parley_s2s_stanzas_total{direction="out",kind="presence"}') > 0);
    assert.ok(value(text, 'parley_s2s_stanzas_total{direction="in",kind="message"}') > 0);
    assert.equal(value(text, 'parley_s2s_queued'), 0);
    assert.equal(value(text, 'parley_muc_rooms'), 1); // the lobby, where alice still is
    assert.equal(value(text, 'parley_muc_occupants'), 1);
    // Someone claims to be b.parley.test with a key b never issued: b says so when a asks, and a counts it.
    const before = value(text, 'parley_s2s_dialback_failures_total{side="in"}');
    const forger = await rawPeer(a.server.s2s!.port(), 'b.parley.test', 'a.parley.test');
    try {
      forger.send(`<db:result from='b.parley.test' to='a.parley.test'>${'0'.repeat(64)}</db:result>`);
      await forger.waitFor(/<db:result[^>]*type=["']invalid["']/);
    } finally {
      forger.close();
    }
    text = await scrape();
    assert.equal(value(text, 'parley_s2s_dialback_failures_total{side="in"}'), before + 1);
  });

  test('a remote user asks the server what the modules answer: disco#info and #items, version, time, last', async () => {
    const ask = (to: string, payload: ReturnType<typeof xml>) => bob.xmpp.iqCaller.request(xml('iq', { type: 'get', to }, payload), 10_000);
    const info = (await ask('a.parley.test', xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }))).getChild('query')!;
    assert.deepEqual(info.getChildren('identity').map((i) => `${i.attrs.category}/${i.attrs.type}`), ['server/im']);
    const features = info.getChildren('feature').map((f) => f.attrs.var);
    for (const f of ['http://jabber.org/protocol/disco#items', 'jabber:iq:version', 'urn:xmpp:time', 'jabber:iq:last', 'urn:xmpp:ping']) assert.ok(features.includes(f), f);
    const items = (await ask('a.parley.test', xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' }))).getChild('query')!;
    assert.ok(items.getChildren('item').some((i) => i.attrs.jid === 'conference.a.parley.test'));
    const service = (await ask('conference.a.parley.test', xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }))).getChild('query')!;
    assert.ok(service.getChildren('identity').some((i) => i.attrs.category === 'conference' && i.attrs.type === 'text'));
    const version = (await ask('a.parley.test', xml('query', { xmlns: 'jabber:iq:version' }))).getChild('query')!;
    assert.equal(version.getChildText('name'), 'Parley');
    const time = (await ask('a.parley.test', xml('time', { xmlns: 'urn:xmpp:time' }))).getChild('time')!;
    assert.ok(Math.abs(Date.parse(time.getChildText('utc') ?? '') - Date.now()) < 60_000);
    const last = (await ask('a.parley.test', xml('query', { xmlns: 'jabber:iq:last' }))).getChild('query')!;
    assert.ok(Number(last.attrs.seconds) >= 0);
    // What the server does not answer is a stanza error, not silence; an owner's request from another server is refused.
    const refused = await ask('a.parley.test', xml('query', { xmlns: 'jabber:iq:register' })).then(() => 'answered', (e: { condition?: string }) => e.condition);
    assert.ok(refused === 'forbidden' || refused === 'service-unavailable', String(refused));
  });

  test('a remote user sees the upload service but gets no slot: not-allowed, answered over federation', async () => {
    const ask = (payload: ReturnType<typeof xml>) => bob.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'upload.a.parley.test' }, payload), 10_000);
    const info = (await ask(xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }))).getChild('query')!;
    assert.ok(info.getChildren('identity').some((i) => i.attrs.category === 'store' && i.attrs.type === 'file'));
    const refused = await ask(xml('request', { xmlns: 'urn:xmpp:http:upload:0', filename: 'a.txt', size: '3', 'content-type': 'text/plain' }))
      .then((r) => `answered ${r.toString()}`, (e: { condition?: string }) => e.condition);
    assert.equal(refused, 'not-allowed');
  });

  test('an account answers a remote user as RFC 6121 and XEP-0012 say: last activity only to those who see its presence', async () => {
    const ask = (to: string, payload: ReturnType<typeof xml>) => bob.xmpp.iqCaller.request(xml('iq', { type: 'get', to }, payload), 10_000)
      .then((r) => r, (e: { condition?: string }) => e.condition ?? 'failed');
    const subscribed = await ask('alice@a.parley.test', xml('query', { xmlns: 'jabber:iq:last' }));
    assert.equal(typeof subscribed === 'string' ? subscribed : subscribed.getChild('query')?.attrs.seconds, '0');
    assert.equal(await ask('carl@a.parley.test', xml('query', { xmlns: 'jabber:iq:last' })), 'forbidden');
    // Only the account itself changes its data.
    const set = await bob.xmpp.iqCaller.request(xml('iq', { type: 'set', to: 'carl@a.parley.test' }, xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'not carl'))), 10_000)
      .then(() => 'answered', (e: { condition?: string }) => e.condition);
    assert.equal(set, 'forbidden');
  });

  test('presence changes and going offline reach the other server', async () => {
    await bob.send(xml('presence', {}, xml('show', {}, 'away')));
    await alice.waitFor((s) => presenceFrom('bob@b.parley.test')(s) && s.getChildText('show') === 'away');
    await bob.send(xml('presence', { type: 'unavailable' }));
    await alice.waitFor(presenceFrom('bob@b.parley.test', 'unavailable'));
    // Offline storage applies to a remote sender exactly as to a local one.
    await alice.send(xml('message', { to: 'bob@b.parley.test', type: 'chat' }, xml('body', {}, 'while you were away')));
    await new Promise((r) => setTimeout(r, 300));
    // Coming back: bob's server probes alice's server, which answers with her presence.
    const mark = bob.received.length;
    await bob.send(xml('presence'));
    await bob.waitFor(messageWithBody('while you were away'));
    await bob.waitFor(presenceFrom('alice@a.parley.test'), 10_000, mark);
    await alice.waitFor((s) => presenceFrom('bob@b.parley.test')(s) && !s.getChild('show'));
  });

  test('an iq crosses to the remote user and its answer comes back', async () => {
    const reply = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'bob@b.parley.test' }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 10_000);
    assert.equal(reply.attrs.type, 'result');
    const info = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'b.parley.test' }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })), 10_000);
    assert.ok(info.getChild('query')?.getChildren('feature').some((f) => f.attrs.var === 'urn:xmpp:ping'));
  });

  test('a stanza to a domain that does not resolve bounces remote-server-not-found', async () => {
    await alice.send(xml('message', { to: 'nobody@unreachable.invalid', type: 'chat', id: 'nx1' }, xml('body', {}, 'anyone?')));
    const err = await alice.waitFor((s) => s.is('message') && s.attrs.id === 'nx1' && s.attrs.type === 'error');
    assert.equal(errorCondition(err), 'remote-server-not-found');
    assert.equal(err.attrs.from, 'nobody@unreachable.invalid');
  });

  test('a stanza to a server that refuses connections bounces remote-server-not-found', async () => {
    await alice.send(xml('message', { to: 'nobody@closed.test', type: 'chat', id: 'cl1' }, xml('body', {}, 'anyone?')));
    const err = await alice.waitFor((s) => s.is('message') && s.attrs.id === 'cl1' && s.attrs.type === 'error');
    assert.equal(errorCondition(err), 'remote-server-not-found');
  });

  test('stanzas for a server that hangs bounce remote-server-timeout; beyond the queue bound they bounce at once', async () => {
    const t0 = Date.now();
    for (let i = 1; i <= 5; i++) await alice.send(xml('message', { to: 'nobody@silent.test', type: 'chat', id: `q${i}` }, xml('body', {}, `waiting ${i}`)));
    const errors = await Promise.all([1, 2, 3, 4, 5].map((i) => alice.waitFor((s) => s.is('message') && s.attrs.id === `q${i}` && s.attrs.type === 'error', 10_000)));
    // maxQueue is 3: the 4th and 5th never wait.
    assert.deepEqual(errors.map(errorCondition), ['remote-server-timeout', 'remote-server-timeout', 'remote-server-timeout', 'resource-constraint', 'resource-constraint']);
    assert.ok(Date.now() - t0 >= 2500, 'the queued ones waited for the setup timeout');
    await waitUntil('the failed route is gone', () => !a.streams().some((s) => s.remote.includes('silent.test')));
    // Within s2s.retryAfterSeconds the next stanza bounces at once, without dialling again.
    const attempts = held.length;
    const t1 = Date.now();
    await alice.send(xml('message', { to: 'nobody@silent.test', type: 'chat', id: 'q6' }, xml('body', {}, 'again')));
    const again = await alice.waitFor((s) => s.is('message') && s.attrs.id === 'q6' && s.attrs.type === 'error', 2000);
    assert.equal(errorCondition(again), 'remote-server-timeout');
    assert.ok(Date.now() - t1 < 1000);
    assert.equal(held.length, attempts);
  });
});

describe('two Parley deployments, direct TLS (XEP-0368) and idle streams', () => {
  let e: Parley;
  let f: Parley;
  let erin: User;
  let frank: User;

  before(async () => {
    const [pe, pet, pf] = await Promise.all([freePortOn(HOST), freePortOn(HOST), freePortOn(HOST)]);
    // e accepts direct TLS; f reaches it that way (a 'tls://' route, as an _xmpps-server SRV record would).
    // e offers no XEP-0288: f's stream carries f's stanzas only.
    e = await startParley('e.parley.test', { listen: { host: HOST, port: pe }, directTls: { enabled: true, host: HOST, port: pet }, routes: { 'f.parley.test': `${HOST}:${pf}` }, idleSeconds: 1, bidi: false });
    f = await startParley('f.parley.test', { listen: { host: HOST, port: pf }, routes: { 'e.parley.test': `tls://${HOST}:${pet}` }, idleSeconds: 1 });
    await e.addUser('erin');
    await f.addUser('frank');
    erin = await login(HOST, e.port, 'erin@e.parley.test');
    frank = await login(HOST, f.port, 'frank@f.parley.test');
    await Promise.all([goOnline(erin), goOnline(frank)]);
  });

  after(async () => {
    await Promise.all([erin?.stop(), frank?.stop()]);
    await Promise.all([e?.stop(), f?.stop()]);
  });

  test('a stream over direct TLS carries stanzas; idle streams close and come back on the next stanza', async () => {
    await frank.send(xml('message', { to: 'erin@e.parley.test', type: 'chat' }, xml('body', {}, 'over direct TLS')));
    await erin.waitFor(messageWithBody('over direct TLS'));
    const out = f.streams().find((s) => s.direction === 'out');
    assert.deepEqual([out?.state, out?.tls, out?.auth, out?.bidi], ['established', true, 'dialback', false]);
    // An answer goes over e's own stream.
    await erin.send(xml('message', { to: 'frank@f.parley.test', type: 'chat' }, xml('body', {}, 'over a stream of my own')));
    await frank.waitFor(messageWithBody('over a stream of my own'));
    assert.equal(e.streams().find((s) => s.direction === 'out')?.bidi, false);
    // idleSeconds is 1: the sweeper (every half of it) closes both ends' streams.
    await waitUntil('idle streams are closed', () => f.streams().length === 0 && e.streams().length === 0, 5000);
    await frank.send(xml('message', { to: 'erin@e.parley.test', type: 'chat' }, xml('body', {}, 'after the idle close')));
    await erin.waitFor(messageWithBody('after the idle close'));
  });
});

describe('two Parley deployments, SASL EXTERNAL with a test CA', () => {
  let pki: Pki;
  let c: Parley;
  let d: Parley;
  let portD = 0;
  let carol: User;
  let dave: User;

  before(async () => {
    pki = testCa();
    const [pc, pd, pb] = await Promise.all([freePortOn(HOST), freePortOn(HOST), freePortOn(HOST)]);
    portD = pd;
    const strict = { caFile: pki.caCert, dialback: 'refuse' };
    c = await startParley('c.parley.test', {
      ...strict, listen: { host: HOST, port: pc }, certificates: { 'c.parley.test': pki.issue('c.parley.test') },
      routes: { 'd.parley.test': `${HOST}:${pd}`, 'self-signed.test': `${HOST}:${pb}`, 'added.parley.test': `${HOST}:${pd}` },
    });
    d = await startParley('d.parley.test', {
      ...strict, listen: { host: HOST, port: pd }, certificates: { 'd.parley.test': pki.issue('d.parley.test') },
      routes: { 'c.parley.test': `${HOST}:${pc}` }, certificateDir: pki.dir,
    });
    await c.addUser('carol');
    await d.addUser('dave');
    carol = await login(HOST, c.port, 'carol@c.parley.test');
    dave = await login(HOST, d.port, 'dave@d.parley.test');
    await Promise.all([goOnline(carol), goOnline(dave)]);
  });

  after(async () => {
    await Promise.all([carol?.stop(), dave?.stop()]);
    await Promise.all([c?.stop(), d?.stop()]);
  });

  test('users subscribe, see presence and chat over streams authenticated by certificate', async () => {
    await subscribeBothWays(carol, 'carol@c.parley.test', dave, 'dave@d.parley.test');
    await chatBothWays(carol, 'carol@c.parley.test', dave, 'dave@d.parley.test', 'external');
    // One stream, opened by c, both ways (XEP-0288), authenticated by SASL EXTERNAL.
    const out = c.streams().find((s) => s.direction === 'out' && s.state === 'established');
    assert.deepEqual([out?.auth, out?.bidi], ['external', true], JSON.stringify(c.streams()));
    const inbound = d.streams().find((s) => s.direction === 'in' && s.auth !== 'none');
    assert.deepEqual([inbound?.auth, inbound?.bidi], ['external', true], JSON.stringify(d.streams()));
  });

  test('a domain added at run time federates with its own certificate, found on first use and chosen by SNI', async () => {
    // `parley domain add`, and a certificate dropped into s2s.certificateDir (<domain>.crt/.key).
    pki.issue('added.parley.test');
    await d.server.domains.add('added.parley.test');
    await d.server.s2s!.hosts.refresh();
    await d.server.accounts.add('zoe@added.parley.test', 'secret');
    const zoe = await login(HOST, d.port, 'zoe@added.parley.test');
    try {
      await goOnline(zoe);
      await carol.send(xml('message', { to: 'zoe@added.parley.test', type: 'chat' }, xml('body', {}, 'welcome, new domain')));
      await zoe.waitFor(messageWithBody('welcome, new domain'));
      // c verified the new domain's certificate (dialback is refused on both sides).
      assert.equal(c.streams().find((s) => s.direction === 'out' && s.remote.includes('added.parley.test'))?.auth, 'external');
    } finally {
      await zoe.stop();
    }
  });

  test('with dialback refused, a peer whose certificate cannot be verified is unreachable', async () => {
    const b = await startParley('self-signed.test', { listen: { host: HOST, port: Number(c.server.config.s2s.routes['self-signed.test'].split(':')[1]) } });
    try {
      await carol.send(xml('message', { to: 'x@self-signed.test', type: 'chat', id: 'ss1' }, xml('body', {}, 'hi')));
      const err = await carol.waitFor((s) => s.is('message') && s.attrs.id === 'ss1' && s.attrs.type === 'error');
      assert.equal(errorCondition(err), 'remote-server-not-found');
    } finally {
      await b.stop();
    }
  });

  test('a remote server may only send from the domain it authenticated (invalid-from)', async () => {
    // A hand-driven peer with a CA-signed certificate for evil.test.
    const evil = pki.issue('evil.test');
    const peer = await rawPeer(portD, 'evil.test', 'd.parley.test', { cert: readFileSync(evil.cert, 'utf8'), key: readFileSync(evil.key, 'utf8'), ca: readFileSync(pki.caCert, 'utf8') });
    try {
      // From its own domain, a stanza is accepted and delivered.
      peer.send(`<message from='mallory@evil.test/x' to='dave@d.parley.test' type='chat'><body>from evil.test itself</body></message>`);
      await dave.waitFor(messageWithBody('from evil.test itself'));
      // From any other domain, the stream ends.
      peer.send(`<message from='carol@c.parley.test/x' to='dave@d.parley.test' type='chat'><body>forged</body></message>`);
      await peer.waitFor(/<stream:error><invalid-from/);
      await peer.closed;
      assert.ok(!dave.received.some(messageWithBody('forged')));
    } finally {
      peer.close();
    }
  });

  test('a stanza to a domain not served here is answered with a stanza error; the stream goes on', async () => {
    // The peer asks for a bidirectional stream, so the error comes back on it.
    const evil = pki.issue('evil.test');
    const peer = await rawPeer(portD, 'evil.test', 'd.parley.test', { cert: readFileSync(evil.cert, 'utf8'), key: readFileSync(evil.key, 'utf8'), ca: readFileSync(pki.caCert, 'utf8') }, true);
    try {
      peer.send(`<message from='mallory@evil.test/x' to='someone@elsewhere.test' type='chat' id='astray'><body>astray</body></message>`);
      const got = await peer.waitFor(/<message[^>]*type=["']error["'][^>]*>.*?<\/message>/s);
      const error = /<message[^>]*id=["']astray["'][^>]*>.*?<\/message>/s.exec(got)?.[0] ?? '';
      assert.match(error, /from=["']d\.parley\.test["']/);
      assert.match(error, /<remote-server-not-found/);
      assert.doesNotMatch(got, /<stream:error/);
      peer.send(`<message from='mallory@evil.test/x' to='dave@d.parley.test' type='chat'><body>still here</body></message>`);
      await dave.waitFor(messageWithBody('still here'));
    } finally {
      peer.close();
    }
  });

  test('a room stanza from a server that is not the sender\'s domain ends the stream (invalid-from)', async () => {
    const evil = pki.issue('evil.test');
    pki.issue('conference.d.parley.test'); // the room service's own certificate, found in s2s.certificateDir
    const peer = await rawPeer(portD, 'evil.test', 'conference.d.parley.test', { cert: readFileSync(evil.cert, 'utf8'), key: readFileSync(evil.key, 'utf8'), ca: readFileSync(pki.caCert, 'utf8') });
    const room = 'hall@conference.d.parley.test';
    try {
      const owner = dave;
      await createInstantRoom(owner, room, 'Dave');
      // Its own user enters the room over the stream.
      peer.send(`<presence from='mallory@evil.test/x' to='${room}/Mallory'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
      await owner.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/Mallory` && s.attrs.type === undefined);
      // A user of another server, claimed by this one: refused with the stream.
      peer.send(`<presence from='carol@c.parley.test/x' to='${room}/Carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
      await peer.waitFor(/<stream:error><invalid-from/);
      await peer.closed;
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(!owner.received.some((s) => s.attrs.from === `${room}/Carol`));
    } finally {
      peer.close();
    }
  });
});

interface RawPeer {
  send(s: string): void;
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  closed: Promise<void>;
  close(): void;
}

/** A server-to-server stream driven by hand: STARTTLS with a client certificate, then SASL EXTERNAL (without `tls`: STARTTLS only, nothing proven). */
async function rawPeer(port: number, from: string, to: string, tls?: { cert: string; key: string; ca: string }, bidi = false): Promise<RawPeer> {
  let out = '';
  let socket: Socket | TLSSocket = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ port, host: HOST }, () => resolve(s));
    s.once('error', reject);
  });
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => { out += d.toString(); for (const l of [...listeners]) l(); };
  socket.on('data', onData);
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => (closedResolve = r));
  const waitFor = (re: RegExp, timeoutMs = 10_000) => new Promise<string>((resolve, reject) => {
    const check = () => {
      if (!re.test(out)) return;
      listeners.delete(check);
      clearTimeout(t);
      resolve(out);
    };
    const t = setTimeout(() => { listeners.delete(check); reject(new Error(`no ${re} within ${timeoutMs} ms; got: ${out}`)); }, timeoutMs);
    listeners.add(check);
    check();
  });
  const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='${from}' to='${to}' version='1.0'>`;
  socket.write(header);
  await waitFor(/<starttls/);
  socket.write(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
  await waitFor(/<proceed/);
  socket.removeListener('data', onData);
  out = '';
  const secure = tlsConnect({ socket: socket as Socket, servername: to, ...(tls ? { cert: tls.cert, key: tls.key, ca: tls.ca } : { rejectUnauthorized: false }) });
  await new Promise<void>((resolve, reject) => { secure.once('secureConnect', resolve); secure.once('error', reject); });
  socket = secure;
  socket.on('data', onData);
  socket.on('close', () => closedResolve());
  socket.on('error', () => {});
  socket.write(header);
  if (!tls) {
    await waitFor(/<\/stream:features>|<stream:features\/>/);
    return { send: (s) => socket.write(s), waitFor, closed, close: () => socket.destroy() };
  }
  await waitFor(/<mechanism>EXTERNAL<\/mechanism>/);
  if (bidi) {
    assert.match(out, /<bidi xmlns=["']urn:xmpp:features:bidi["']\/>/);
    socket.write(`<bidi xmlns='urn:xmpp:bidi'/>`);
  }
  socket.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>${Buffer.from(from).toString('base64')}</auth>`);
  await waitFor(/<success/);
  out = '';
  socket.write(header);
  await waitFor(/<\/stream:features>|<stream:features\/>/);
  return { send: (s) => socket.write(s), waitFor, closed, close: () => socket.destroy() };
}
