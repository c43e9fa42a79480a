// XEP-0215 external services against Debian's coturn: the credentials Parley
// hands out over XMPP let turnutils_uclient allocate a relay; expired or
// forged ones are refused by coturn itself. Only the domain's own users learn
// the services.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../libs/config/index.ts';
import { StanzaError } from '../../libs/errors/index.ts';
import { el } from '../../libs/xml/element.ts';
import { ModuleRegistry, type AccountContext, type ServerContext } from '../../services/session/module.ts';
import { modules } from '../../services/session/modules/index.ts';
import externalServices, { NS_EXTDISCO, turnCredentials } from '../../services/session/modules/external-services.ts';
import { connect, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { allocateRelay, startCoturn, type Coturn } from '../support/coturn.ts';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { rawConnect, STREAM_OPEN } from '../support/raw.ts';

const SECRET = 'turn-shared-secret-for-tests';

function services(s: Stanza): Stanza[] {
  return (s.getChild('services', NS_EXTDISCO) ?? s.getChild('credentials', NS_EXTDISCO))?.getChildren('service') ?? [];
}

describe('external services (XEP-0215) with coturn, embedded mode', () => {
  let turn: Coturn;
  let d: Deployment;
  let alice: TestClient;

  before(async () => {
    turn = await startCoturn({ secret: SECRET, realm: 'localhost' });
    d = await startEmbedded({
      domains: ['localhost', 'other.test'],
      externalServices: [
        { host: '127.0.0.1', port: turn.port, type: 'stun', transport: 'udp', name: 'STUN' },
        { host: '127.0.0.1', port: turn.port, type: 'turn', transport: 'udp', secret: SECRET, credentialTtlSeconds: 600 },
        // The same server under another name, with credentials that last a second.
        { host: 'localhost', port: turn.port, type: 'turn', transport: 'udp', secret: SECRET, credentialTtlSeconds: 1 },
      ],
    });
    await d.addUser('turnuser');
    alice = await connect(d.ports[0], 'turnuser');
  });
  after(async () => {
    await alice?.stop();
    await d?.stop();
    await turn?.stop();
  });

  test('the server advertises urn:xmpp:extdisco:2 when services are configured, and not otherwise', async () => {
    const info = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', 'http://jabber.org/protocol/disco#info')));
    const features = info.getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
    assert.ok(features.includes(NS_EXTDISCO), `features: ${features.join(' ')}`);
    const none = new ModuleRegistry(modules, loadConfig(undefined, {}, { domains: ['localhost'] }));
    assert.equal(none.features('host').includes(NS_EXTDISCO), false);
  });

  test('<services/> lists every service; TURN ones with credentials and when they expire; type= selects', async () => {
    const before = Math.floor(Date.now() / 1000);
    const all = services(await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('services', NS_EXTDISCO))));
    assert.deepEqual(all.map((s) => `${s.attrs.type} ${s.attrs.host}:${s.attrs.port}/${s.attrs.transport}`),
      [`stun 127.0.0.1:${turn.port}/udp`, `turn 127.0.0.1:${turn.port}/udp`, `turn localhost:${turn.port}/udp`]);
    assert.equal(all[0].attrs.username, undefined, 'STUN needs no credentials');
    const t = all[1];
    const [expiry, user] = (t.attrs.username ?? '').split(':');
    assert.equal(user, 'turnuser@localhost');
    assert.ok(Number(expiry) >= before + 600 && Number(expiry) <= before + 602, `expiry ${expiry}`);
    assert.equal(Date.parse(t.attrs.expires ?? '') / 1000, Number(expiry), 'expires is the username\'s expiry');
    assert.equal(t.attrs.password, turnCredentials(SECRET, 'turnuser@localhost', Number(expiry)).password);
    assert.equal(t.attrs.restricted, '1');
    const turns = services(await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('services', { xmlns: NS_EXTDISCO, type: 'turn' }))));
    assert.deepEqual(turns.map((s) => s.attrs.host), ['127.0.0.1', 'localhost']);
  });

  test('credentials from <credentials/> let turnutils_uclient allocate a relay on coturn; forged ones are refused', async () => {
    const reply = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' },
      xml('credentials', NS_EXTDISCO, xml('service', { host: '127.0.0.1', type: 'turn' }))));
    const [s] = services(reply);
    const { username, password } = s.attrs;
    assert.ok(username && password && s.attrs.expires, s.toString());
    const good = await allocateRelay(turn.port, username, password);
    assert.ok(good.ok, `allocation with Parley's credentials failed:\n${good.output.slice(-2000)}`);
    const forged = await allocateRelay(turn.port, username, turnCredentials('another secret', 'x', 1).password);
    assert.equal(forged.ok, false, 'a password not made with the shared secret is refused');
  });

  test('expired credentials are refused by coturn: an expiry in the past, and a lifetime that ran out', async () => {
    const past = Math.floor(Date.now() / 1000) - 60;
    const old = turnCredentials(SECRET, 'turnuser@localhost', past);
    const stale = await allocateRelay(turn.port, old.username, old.password);
    assert.equal(stale.ok, false, 'an expiry in the past');
    assert.match(stale.output, /Cannot complete Allocation/);

    const reply = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' },
      xml('credentials', NS_EXTDISCO, xml('service', { host: 'localhost', type: 'turn' }))));
    const [short] = services(reply);
    const expires = Date.parse(short.attrs.expires ?? '');
    assert.ok(expires - Date.now() <= 1000, `a one-second lifetime: ${short.attrs.expires}`);
    await new Promise((r) => setTimeout(r, Math.max(0, expires - Date.now()) + 1500));
    const late = await allocateRelay(turn.port, short.attrs.username ?? '', short.attrs.password ?? '');
    assert.equal(late.ok, false, 'credentials past their lifetime');
  });

  test('credentials for a service that is not configured: item-not-found; without host and type: bad-request', async () => {
    const ask = (service: Record<string, string>) => alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('credentials', NS_EXTDISCO, xml('service', service))))
      .then(() => 'answered', (e: { condition?: string }) => e.condition);
    assert.equal(await ask({ host: 'turn.elsewhere.example', type: 'turn' }), 'item-not-found');
    assert.equal(await ask({ host: '127.0.0.1', type: 'turn', port: '1' }), 'item-not-found');
    assert.equal(await ask({ type: 'turn' }), 'bad-request');
  });

  test('a user of another domain is refused with forbidden, with a text, and learns no service', async () => {
    const err = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'other.test' }, xml('services', NS_EXTDISCO)))
      .then(() => assert.fail('answered'), (e: { condition?: string; text?: string; element?: Stanza }) => e);
    assert.equal(err.condition, 'forbidden');
    assert.match(err.text ?? '', /own users/);
    assert.equal(String(err.element).includes('password'), false);
  });

  test('an entity that has not authenticated gets no service list', async () => {
    const raw = await rawConnect(d.ports[0]);
    try {
      raw.send(STREAM_OPEN());
      await raw.waitFor(/<\/stream:features>/);
      raw.send(`<iq type='get' id='x1' to='localhost'><services xmlns='${NS_EXTDISCO}'/></iq>`);
      await raw.waitFor(/not-authorized|<\/stream:stream>/);
      assert.equal(/<service /.test(raw.output), false, raw.output);
    } finally {
      raw.close();
    }
  });

  test("another server's entity is refused with forbidden", async () => {
    const config = loadConfig(undefined, {}, { domains: ['localhost'], externalServices: [{ host: 'h', type: 'stun' }] });
    const ctx = { config } as unknown as ServerContext;
    const handler = externalServices.iq!['get/host/urn:xmpp:extdisco:2:services'] as unknown as (req: unknown, ctx: ServerContext) => unknown;
    const payload = el('services', { xmlns: NS_EXTDISCO });
    for (const account of [undefined, { bare: 'localhost', sessionId: () => undefined } as unknown as AccountContext]) {
      assert.throws(() => handler({ from: 'mallory@evil.example/x', to: 'localhost', payload, stanza: el('iq', {}, payload), account }, ctx),
        (e: unknown) => e instanceof StanzaError && e.condition === 'forbidden');
    }
  });
});
