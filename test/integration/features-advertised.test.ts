// Everything the server implements is advertised: the stream features before
// and after authentication, disco#info of the server, of an account, of the
// MUC service and of a room, each checked on the wire against what the code
// itself registers — the enabled modules' disco declarations and the
// namespaces of their iq handlers, the core table (services/features.ts), the
// SASL mechanisms and registration the configuration turns on, the MUC
// service's iq table and a room's configuration features. A handler added
// without its disco feature, or a table entry not offered, fails here.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InBandRegistration } from '../../libs/accounts/registration.ts';
import { Accounts } from '../../libs/accounts/index.ts';
import { loadConfig } from '../../libs/config/index.ts';
import type { Config } from '../../libs/config/schema.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { coreDiscoFeatures, postAuthStreamFeatures } from '../../services/features.ts';
import { ModuleRegistry } from '../../services/session/module.ts';
import { modules } from '../../services/session/modules/index.ts';
import { configFeatures, defaultRoomConfig } from '../../services/session/muc/room-config.ts';
import { MUC_SERVICE_IQ_NAMESPACES } from '../../services/session/muc/service-actor.ts';
import { NS_MUC } from '../../services/session/muc/stanzas.ts';
import { DOMAIN, PASSWORD, startEmbedded, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import type { RunningServer } from '../../services/server.ts';

const OVERRIDES = { registration: { open: true } };

/** The namespace of an iq handler key (`get/host/urn:xmpp:ping:ping` → `urn:xmpp:ping`). */
function handlerNamespace(key: string): { target: 'host' | 'account'; ns: string } {
  const m = /^(?:get|set)\/(host|account)\/(.*):[^:]+$/.exec(key);
  assert.ok(m, `a handler key of the documented shape: ${key}`);
  return { target: m[1] as 'host' | 'account', ns: m[2] };
}

/**
 * A namespace is announced when the feature is, or (XEP-0060's `#owner`, `#event`: sub-namespaces, not features)
 * when the protocol its fragment belongs to is.
 */
function announced(ns: string, features: ReadonlySet<string>): boolean {
  return features.has(ns) || (ns.includes('#') && features.has(ns.slice(0, ns.indexOf('#'))));
}

const featuresOf = (xml: string): Set<string> => new Set([...xml.matchAll(/<feature var="([^"]+)"\/>/g)].map((m) => m[1]));

let seq = 0;
async function discoInfo(c: RawClient, to: string): Promise<Set<string>> {
  const id = `d${++seq}`;
  c.send(`<iq type='get' id='${id}' to='${to}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`);
  const re = new RegExp(`<iq[^>]*id="${id}"[^]*?</iq>`);
  const reply = re.exec(await c.waitFor(re))![0];
  assert.match(reply, /type="result"/, reply);
  return featuresOf(reply);
}

function assertAll(have: ReadonlySet<string>, expected: Iterable<string>, where: string): void {
  const missing = [...expected].filter((f) => !have.has(f));
  assert.deepEqual(missing, [], `${where} lacks what the code implements`);
}

describe('every implemented feature is advertised', () => {
  let d: Deployment & { server: RunningServer };
  let config: Config;
  let registry: ModuleRegistry;
  let c: RawClient;
  let beforeTls = '';
  let preAuth = '';
  let postAuth = '';
  before(async () => {
    d = await startEmbedded(OVERRIDES);
    config = loadConfig(undefined, {}, { domains: [DOMAIN], ...OVERRIDES });
    registry = new ModuleRegistry(modules, config);
    await d.addUser('feat');
    c = await rawConnect(d.ports[0]);
    c.send(STREAM_OPEN());
    beforeTls = /<stream:features>[^]*?<\/stream:features>/.exec(await c.waitFor(/<\/stream:features>/))![0];
    // As a client does: what is offered is read once TLS is on (channel-binding mechanisms need it).
    c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await c.waitFor(/<proceed/);
    await c.startTls();
    c.send(STREAM_OPEN());
    preAuth = /<stream:features>[^]*?<\/stream:features>/.exec(await c.waitFor(/<\/stream:features>/))![0];
    c.send(plainAuth('feat', PASSWORD));
    await c.waitFor(/<success/);
    c.send(STREAM_OPEN());
    postAuth = [...(await c.waitFor(/<\/stream:features>[^]*<\/stream:features>/)).matchAll(/<stream:features>[^]*?<\/stream:features>/g)][1][0];
    c.send(`<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    await c.waitFor(/<jid>/);
  });
  after(async () => {
    c?.close();
    await d.stop();
  });

  test('stream features before authentication: STARTTLS, every configured mechanism, registration with tokens', () => {
    assert.match(beforeTls, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"/);
    for (const m of config.c2s.saslMechanisms) assert.ok(preAuth.includes(`<mechanism>${m}</mechanism>`), `mechanism ${m} offered`);
    const registration = new InBandRegistration(new Accounts(d.store), config);
    assert.equal(registration.open, true);
    for (const f of registration.features()) assert.ok(preAuth.includes(serialize(f)), `${serialize(f)} offered`);
  });

  test('stream features after authentication: every entry of the core table', () => {
    const expected = postAuthStreamFeatures(config, true);
    assert.ok(expected.length >= 6);
    for (const f of expected) assert.ok(postAuth.includes(serialize(f)), `${serialize(f)} offered after authentication`);
  });

  test("the server's disco#info: every module's declaration, every host handler's namespace, the core table's", async () => {
    const have = await discoInfo(c, DOMAIN);
    const declared = [...registry.enabled.flatMap((m) => m.disco?.host ?? []), ...coreDiscoFeatures(config, 'host')];
    assert.ok(declared.includes('msgoffline'));
    assertAll(have, declared, 'disco#info of the server');
    for (const m of registry.enabled) {
      for (const key of Object.keys(m.iq ?? {})) {
        const h = handlerNamespace(key);
        if (h.target === 'host') assert.ok(announced(h.ns, have), `module ${m.name} answers ${key}: ${h.ns} is announced by the server`);
      }
    }
  });

  test("an account's disco#info: every module's declaration; each account handler's namespace there or on its server", async () => {
    const account = await discoInfo(c, `feat@${DOMAIN}`);
    const server = await discoInfo(c, DOMAIN);
    assertAll(account, [...registry.enabled.flatMap((m) => m.disco?.account ?? []), ...coreDiscoFeatures(config, 'account')], 'disco#info of an account');
    for (const m of registry.enabled) {
      for (const key of Object.keys(m.iq ?? {})) {
        const h = handlerNamespace(key);
        // Services of one's own account (privacy lists, blocking, carbons, private storage) are announced by the server.
        if (h.target === 'account') assert.ok(announced(h.ns, account) || announced(h.ns, server), `module ${m.name} answers ${key}: ${h.ns} is announced`);
      }
    }
  });

  test("the MUC service's disco#info: every namespace it answers, and MUC", async () => {
    const service = `${config.muc.subdomain}.${DOMAIN}`;
    const have = await discoInfo(c, service);
    assertAll(have, [...MUC_SERVICE_IQ_NAMESPACES, NS_MUC], `disco#info of ${service}`);
    assert.ok(have.has('http://jabber.org/protocol/rsm'), 'the room list pages with RSM');
  });

  test("a room's disco#info: MUC and the features of its configuration", async () => {
    const room = `featroom@${config.muc.subdomain}.${DOMAIN}`;
    c.send(`<presence to='${room}/feat'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
    await c.waitFor(new RegExp(`<presence[^>]*from="${room}/feat"`));
    // The instant room of §10.1.2: the default configuration accepted.
    c.send(`<iq type='set' id='own' to='${room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`);
    await c.waitFor(/<iq[^>]*id="own"/);
    const have = await discoInfo(c, room);
    assertAll(have, [NS_MUC, 'http://jabber.org/protocol/disco#info', ...configFeatures(defaultRoomConfig(config.muc))], `disco#info of ${room}`);
  });
});
