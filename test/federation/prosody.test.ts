// Federation with a real Prosody (Debian's 0.12): users on both servers
// subscribe to each other, see each other's presence and chat both ways —
// once over dialback between self-signed servers (with XEP-0288 bidi on our
// outgoing stream), once over SASL EXTERNAL with certificates from a test CA
// and dialback refused on both sides. Over dialback, a Prosody user enters a
// Parley room and a Parley user a Prosody room (mod_muc): each enters, talks
// and leaves, the rooms' streams running from and to conference.<domain>.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startProsody, type PeerServer } from './peers.ts';
import {
  addHosts, chatBothWays, createInstantRoom, goOnline, login, presenceFrom, selfSigned, startParley, subscribeBothWays, testCa, testNetwork, visitRoom, xml,
  type Parley, type User,
} from './support.ts';
import { tempDir } from '../support/servers.ts';

describe('Prosody, dialback with self-signed certificates', () => {
  const net = testNetwork();
  const PARLEY = { domain: net.domain('parley'), host: net.ip(1) };
  const PROSODY = { domain: net.domain('prosody'), host: net.ip(2) };
  let parley: Parley;
  let prosody: PeerServer;
  let removeHosts: () => Promise<void>;
  let alice: User;
  let bob: User;
  const aliceJid = `alice@${PARLEY.domain}`;
  const bobJid = `bob@${PROSODY.domain}`;

  before(async () => {
    removeHosts = await addHosts('prosody-dialback', {
      [PARLEY.domain]: PARLEY.host, [`conference.${PARLEY.domain}`]: PARLEY.host, [PROSODY.domain]: PROSODY.host, [`conference.${PROSODY.domain}`]: PROSODY.host,
    });
    const cert = selfSigned(tempDir('parley-fed-certs'), PROSODY.domain);
    prosody = await startProsody({ ...PROSODY, users: ['bob'], ...cert, bidi: true });
    parley = await startParley(PARLEY.domain, {
      listen: { host: PARLEY.host, port: 5269 }, routes: { [PROSODY.domain]: `${PROSODY.host}:5269`, [`conference.${PROSODY.domain}`]: `${PROSODY.host}:5269` },
    });
    await parley.addUser('alice');
    alice = await login('127.0.0.1', parley.port, aliceJid);
    bob = await login(PROSODY.host, 5222, bobJid);
    await Promise.all([goOnline(alice), goOnline(bob)]);
  });

  after(async () => {
    await Promise.all([alice?.stop(), bob?.stop()]);
    await parley?.stop();
    await prosody?.stop();
    await removeHosts?.();
  });

  test('the Prosody user asks first; both subscribe, see presence and chat both ways', async (t) => {
    try {
      await subscribeBothWays(bob, bobJid, alice, aliceJid);
      await chatBothWays(alice, aliceJid, bob, bobJid, 'prosody-dialback');
    } catch (e) {
      t.diagnostic(prosody.logTail());
      throw e;
    }
    // Prosody connected to us (dialback, verified by calling Prosody back), asked for the XEP-0288 stream we offer,
    // and our stanzas went back over it: we opened no stream of our own.
    const streams = parley.streams();
    const inbound = streams.find((s) => s.direction === 'in' && s.remote.includes(PROSODY.domain));
    assert.deepEqual([inbound?.auth, inbound?.tls, inbound?.bidi], ['dialback', true, true], JSON.stringify(streams));
    assert.deepEqual(streams.filter((s) => s.direction === 'out' && s.remote.includes(PROSODY.domain)), [], JSON.stringify(streams));
  });

  test('presence changes and unavailable cross both ways', async () => {
    await bob.send(xml('presence', {}, xml('show', {}, 'dnd'), xml('status', {}, 'busy')));
    await alice.waitFor((s) => presenceFrom(bobJid)(s) && s.getChildText('show') === 'dnd');
    await alice.send(xml('presence', {}, xml('show', {}, 'away')));
    await bob.waitFor((s) => presenceFrom(aliceJid)(s) && s.getChildText('show') === 'away');
    await alice.send(xml('presence', { type: 'unavailable' }));
    await bob.waitFor(presenceFrom(aliceJid, 'unavailable'));
  });

  test('coming back online, each side probes the other and learns its presence', async () => {
    let mark = alice.received.length;
    await alice.send(xml('presence'));
    await alice.waitFor((s) => presenceFrom(bobJid)(s) && s.getChildText('show') === 'dnd', 10_000, mark); // Prosody answered our probe
    await bob.waitFor((s) => presenceFrom(aliceJid)(s) && !s.getChild('show'));
    await bob.send(xml('presence', { type: 'unavailable' }));
    await alice.waitFor(presenceFrom(bobJid, 'unavailable'));
    mark = bob.received.length;
    await bob.send(xml('presence'));
    await bob.waitFor(presenceFrom(aliceJid), 10_000, mark); // we answered Prosody's probe
  });

  test('the Prosody user enters a Parley room, talks in it and leaves', async (t) => {
    const room = `federated@conference.${PARLEY.domain}`;
    try {
      await createInstantRoom(alice, room, 'Alice');
      await visitRoom(alice, 'Alice', bob, 'Bob', room, 'prosody-in-parley');
    } catch (e) {
      t.diagnostic(prosody.logTail());
      throw e;
    }
    // Prosody reached the room service's own domain, which it authenticated by dialback.
    const streams = parley.streams();
    assert.ok(streams.some((s) => s.local === `conference.${PARLEY.domain}` && s.remote.includes(PROSODY.domain) && s.auth === 'dialback'), JSON.stringify(streams));
  });

  test('the Parley user enters a Prosody room, talks in it and leaves', async (t) => {
    const room = `visited@conference.${PROSODY.domain}`;
    try {
      await createInstantRoom(bob, room, 'Bob');
      await visitRoom(bob, 'Bob', alice, 'Alice', room, 'parley-in-prosody');
    } catch (e) {
      t.diagnostic(prosody.logTail());
      throw e;
    }
    // We opened the stream to Prosody's room service: dialback, and Prosody's XEP-0288 offer taken.
    const streams = parley.streams();
    const out = streams.find((s) => s.direction === 'out' && s.remote.includes(`conference.${PROSODY.domain}`));
    assert.deepEqual([out?.auth, out?.tls, out?.bidi], ['dialback', true, true], JSON.stringify(streams));
  });

  test('the Prosody user discovers the room service and asks the server its time and last activity', async () => {
    const ask = (to: string, payload: ReturnType<typeof xml>) => bob.xmpp.iqCaller.request(xml('iq', { type: 'get', to }, payload), 10_000);
    const items = (await ask(PARLEY.domain, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' }))).getChild('query')!;
    assert.ok(items.getChildren('item').some((i) => i.attrs.jid === `conference.${PARLEY.domain}`), items.toString());
    const info = (await ask(`conference.${PARLEY.domain}`, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' }))).getChild('query')!;
    assert.ok(info.getChildren('feature').some((f) => f.attrs.var === 'http://jabber.org/protocol/muc'), info.toString());
    assert.ok((await ask(PARLEY.domain, xml('time', { xmlns: 'urn:xmpp:time' }))).getChild('time')?.getChildText('utc'));
    assert.ok(Number((await ask(PARLEY.domain, xml('query', { xmlns: 'jabber:iq:last' }))).getChild('query')?.attrs.seconds) >= 0);
  });
});

describe('Prosody, SASL EXTERNAL with a test CA (dialback refused on both sides)', () => {
  const net = testNetwork();
  const PARLEY = { domain: net.domain('parley'), host: net.ip(1) };
  const PROSODY = { domain: net.domain('prosody'), host: net.ip(2) };
  let parley: Parley;
  let prosody: PeerServer;
  let removeHosts: () => Promise<void>;
  let alice: User;
  let bob: User;
  const aliceJid = `alice@${PARLEY.domain}`;
  const bobJid = `bob@${PROSODY.domain}`;

  before(async () => {
    removeHosts = await addHosts('prosody-external', { [PARLEY.domain]: PARLEY.host, [PROSODY.domain]: PROSODY.host });
    const pki = testCa();
    prosody = await startProsody({ ...PROSODY, users: ['bob'], ...pki.issue(PROSODY.domain), ca: pki.caCert, secureAuth: true });
    parley = await startParley(PARLEY.domain, {
      listen: { host: PARLEY.host, port: 5269 }, routes: { [PROSODY.domain]: `${PROSODY.host}:5269` },
      certificates: { [PARLEY.domain]: pki.issue(PARLEY.domain) }, caFile: pki.caCert, dialback: 'refuse',
    });
    await parley.addUser('alice');
    alice = await login('127.0.0.1', parley.port, aliceJid);
    bob = await login(PROSODY.host, 5222, bobJid);
    await Promise.all([goOnline(alice), goOnline(bob)]);
  });

  after(async () => {
    await Promise.all([alice?.stop(), bob?.stop()]);
    await parley?.stop();
    await prosody?.stop();
    await removeHosts?.();
  });

  test('both subscribe, see presence and chat both ways over certificate-authenticated streams', async (t) => {
    try {
      await subscribeBothWays(alice, aliceJid, bob, bobJid);
      await chatBothWays(bob, bobJid, alice, aliceJid, 'prosody-external');
    } catch (e) {
      t.diagnostic(prosody.logTail());
      throw e;
    }
    const streams = parley.streams();
    assert.equal(streams.find((s) => s.direction === 'out' && s.remote.includes(PROSODY.domain))?.auth, 'external', JSON.stringify(streams));
    assert.equal(streams.find((s) => s.direction === 'in' && s.remote.includes(PROSODY.domain))?.auth, 'external', JSON.stringify(streams));
  });
});
