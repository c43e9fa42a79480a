// Federation with a real ejabberd (Debian's 23.01): users on both servers
// subscribe to each other, see each other's presence and chat both ways over
// dialback between self-signed servers; then over SASL EXTERNAL with
// certificates from a test CA and no dialback anywhere. Over dialback, an
// ejabberd user enters a Parley room and a Parley user an ejabberd room
// (mod_muc): each enters, talks and leaves.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEjabberd, type PeerServer } from './peers.ts';
import {
  addHosts, chatBothWays, createInstantRoom, goOnline, login, presenceFrom, selfSigned, startParley, subscribeBothWays, testCa, testNetwork, visitRoom, xml,
  type Parley, type User,
} from './support.ts';
import { tempDir } from '../support/servers.ts';

describe('ejabberd, dialback with self-signed certificates', () => {
  const net = testNetwork();
  const PARLEY = { domain: net.domain('parley'), host: net.ip(1) };
  const EJABBERD = { domain: net.domain('ejabberd'), host: net.ip(2) };
  let parley: Parley;
  let ejabberd: PeerServer;
  let removeHosts: () => Promise<void>;
  let alice: User;
  let bob: User;
  const aliceJid = `alice@${PARLEY.domain}`;
  const bobJid = `bob@${EJABBERD.domain}`;

  before(async () => {
    removeHosts = await addHosts('ejabberd-dialback', {
      [PARLEY.domain]: PARLEY.host, [`conference.${PARLEY.domain}`]: PARLEY.host, [EJABBERD.domain]: EJABBERD.host, [`conference.${EJABBERD.domain}`]: EJABBERD.host,
    });
    const cert = selfSigned(tempDir('parley-fed-certs'), EJABBERD.domain);
    ejabberd = await startEjabberd({ ...EJABBERD, users: ['bob'], ...cert });
    parley = await startParley(PARLEY.domain, {
      listen: { host: PARLEY.host, port: 5269 }, routes: { [EJABBERD.domain]: `${EJABBERD.host}:5269`, [`conference.${EJABBERD.domain}`]: `${EJABBERD.host}:5269` },
    });
    await parley.addUser('alice');
    alice = await login('127.0.0.1', parley.port, aliceJid);
    bob = await login(EJABBERD.host, 5222, bobJid);
    await Promise.all([goOnline(alice), goOnline(bob)]);
  });

  after(async () => {
    await Promise.all([alice?.stop(), bob?.stop()]);
    await parley?.stop();
    await ejabberd?.stop();
    await removeHosts?.();
  });

  test('both subscribe, see presence and chat both ways', async (t) => {
    try {
      await subscribeBothWays(alice, aliceJid, bob, bobJid);
      await chatBothWays(bob, bobJid, alice, aliceJid, 'ejabberd-dialback');
    } catch (e) {
      t.diagnostic(ejabberd.logTail());
      throw e;
    }
    const streams = parley.streams();
    const out = streams.find((s) => s.direction === 'out' && s.remote.includes(EJABBERD.domain));
    assert.equal(out?.auth, 'dialback', JSON.stringify(streams));
    assert.equal(out?.tls, true);
    const inbound = streams.find((s) => s.direction === 'in' && s.remote.includes(EJABBERD.domain));
    assert.equal(inbound?.auth, 'dialback', JSON.stringify(streams));
    assert.equal(inbound?.tls, true);
  });

  test('presence changes and unavailable cross both ways', async () => {
    await bob.send(xml('presence', {}, xml('show', {}, 'xa')));
    await alice.waitFor((s) => presenceFrom(bobJid)(s) && s.getChildText('show') === 'xa');
    await alice.send(xml('presence', { type: 'unavailable' }));
    await bob.waitFor(presenceFrom(aliceJid, 'unavailable'));
  });

  test('coming back online, each side probes the other and learns its presence', async () => {
    let mark = alice.received.length;
    await alice.send(xml('presence'));
    await alice.waitFor((s) => presenceFrom(bobJid)(s) && s.getChildText('show') === 'xa', 10_000, mark); // ejabberd answered our probe
    await bob.waitFor((s) => presenceFrom(aliceJid)(s) && !s.getChild('show'));
    await bob.send(xml('presence', { type: 'unavailable' }));
    await alice.waitFor(presenceFrom(bobJid, 'unavailable'));
    mark = bob.received.length;
    await bob.send(xml('presence'));
    await bob.waitFor(presenceFrom(aliceJid), 10_000, mark); // we answered ejabberd's probe
  });

  test('the ejabberd user enters a Parley room, talks in it and leaves', async (t) => {
    const room = `federated@conference.${PARLEY.domain}`;
    try {
      await createInstantRoom(alice, room, 'Alice');
      await visitRoom(alice, 'Alice', bob, 'Bob', room, 'ejabberd-in-parley');
    } catch (e) {
      t.diagnostic(ejabberd.logTail());
      throw e;
    }
    // ejabberd opened a stream to the room service's own domain and proved itself by dialback.
    const streams = parley.streams();
    assert.ok(streams.some((s) => s.direction === 'in' && s.local === `conference.${PARLEY.domain}` && s.auth === 'dialback'), JSON.stringify(streams));
  });

  test('the Parley user enters an ejabberd room, talks in it and leaves', async (t) => {
    const room = `visited@conference.${EJABBERD.domain}`;
    try {
      await createInstantRoom(bob, room, 'Bob');
      await visitRoom(bob, 'Bob', alice, 'Alice', room, 'parley-in-ejabberd');
    } catch (e) {
      t.diagnostic(ejabberd.logTail());
      throw e;
    }
    const streams = parley.streams();
    assert.ok(streams.some((s) => s.direction === 'in' && s.remote.includes(`conference.${EJABBERD.domain}`) && s.auth === 'dialback'), JSON.stringify(streams));
  });
});

describe('ejabberd, SASL EXTERNAL with a test CA (no dialback on either side)', () => {
  const net = testNetwork();
  const PARLEY = { domain: net.domain('parley'), host: net.ip(1) };
  const EJABBERD = { domain: net.domain('ejabberd'), host: net.ip(2) };
  let parley: Parley;
  let ejabberd: PeerServer;
  let removeHosts: () => Promise<void>;
  let alice: User;
  let bob: User;
  const aliceJid = `alice@${PARLEY.domain}`;
  const bobJid = `bob@${EJABBERD.domain}`;

  before(async () => {
    removeHosts = await addHosts('ejabberd-external', { [PARLEY.domain]: PARLEY.host, [EJABBERD.domain]: EJABBERD.host });
    const pki = testCa();
    ejabberd = await startEjabberd({ ...EJABBERD, users: ['bob'], ...pki.issue(EJABBERD.domain), ca: pki.caCert, secureAuth: true });
    parley = await startParley(PARLEY.domain, {
      listen: { host: PARLEY.host, port: 5269 }, routes: { [EJABBERD.domain]: `${EJABBERD.host}:5269` },
      certificates: { [PARLEY.domain]: pki.issue(PARLEY.domain) }, caFile: pki.caCert, dialback: 'refuse',
    });
    await parley.addUser('alice');
    alice = await login('127.0.0.1', parley.port, aliceJid);
    bob = await login(EJABBERD.host, 5222, bobJid);
    await Promise.all([goOnline(alice), goOnline(bob)]);
  });

  after(async () => {
    await Promise.all([alice?.stop(), bob?.stop()]);
    await parley?.stop();
    await ejabberd?.stop();
    await removeHosts?.();
  });

  test('the ejabberd user asks first; both subscribe, see presence and chat both ways', async (t) => {
    try {
      await subscribeBothWays(bob, bobJid, alice, aliceJid);
      await chatBothWays(alice, aliceJid, bob, bobJid, 'ejabberd-external');
    } catch (e) {
      t.diagnostic(ejabberd.logTail());
      throw e;
    }
    const streams = parley.streams();
    assert.equal(streams.find((s) => s.direction === 'out' && s.remote.includes(EJABBERD.domain))?.auth, 'external', JSON.stringify(streams));
    assert.equal(streams.find((s) => s.direction === 'in' && s.remote.includes(EJABBERD.domain))?.auth, 'external', JSON.stringify(streams));
  });
});
