// FAST tokens and Bind2 across a cluster: a token issued by one connection
// manager logs in, in one round trip, on another (the tokens live in Redis);
// the older token is refused on either once its successor was used; a session
// bound inline with stream management on one node is resumed inline on the
// other, and carbons enabled inline reach it from a resource on the other node.
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, PASSWORD, type Cluster } from '../support/parley.ts';
import { rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { elementText, htInitial, htResponder, NS_BIND2, NS_FAST, NS_SASL2, sasl2Scram, userAgent } from '../support/sasl2.ts';

async function open(port: number): Promise<RawClient> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  return c;
}

async function fastLogin(c: RawClient, user: string, token: string, ua: string, inline = ''): Promise<string> {
  const at = c.output.length;
  c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${htInitial(user, token)}</initial-response>`
    + `${userAgent(ua)}<fast xmlns='${NS_FAST}'/>${inline}</authenticate>`);
  return (await c.waitFor(new RegExp(`[^]{${at}}[^]*(</success>|</failure>)`))).slice(at);
}

const tokenOf = (s: string) => /<token xmlns="urn:xmpp:fast:0" expiry="[^"]+" token="([^"]+)"\/>/.exec(s)?.[1];

describe('SASL2 and FAST across a cluster (2 c2s, 2 session processes, NATS, Redis)', () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ config: { c2s: { authThrottle: { enabled: false } } } });
    await c.addUser('cfast');
  });
  after(async () => { await c.stop(); });

  test('a FAST token from one connection manager works on the other; after rotation the older one is refused on both', async () => {
    const [p1, p2] = c.ports;
    const ua = randomUUID();
    const a = await open(p1);
    const tokenA = tokenOf(await sasl2Scram(a, 'cfast', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`
      + `<bind xmlns='${NS_BIND2}'><tag>One</tag><enable xmlns='urn:xmpp:carbons:2'/><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>`));
    assert.ok(tokenA);

    // On the other node, in one round trip, asking for the next token.
    const b = await open(p2);
    const sb = await fastLogin(b, 'cfast', tokenA, ua, `<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/><bind xmlns='${NS_BIND2}'><tag>Two</tag></bind>`);
    assert.equal(elementText(sb, 'additional-data'), htResponder(tokenA));
    assert.match(elementText(sb, 'authorization-identifier') ?? '', /^cfast@localhost\/Two\/[0-9a-f]{8}$/);
    const tokenB = tokenOf(sb);
    assert.ok(tokenB && tokenB !== tokenA);

    // Carbons enabled inline on node 1 copy what the resource on node 2 sends.
    b.send(`<message to='nobody@localhost' type='chat' id='cm1'><body>copied</body></message>`);
    await a.waitFor(/<sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message[^>]*id="cm1"/, 10_000);
    b.close();

    // Using B on node 1 retires A everywhere.
    const d = await open(p1);
    assert.match(await fastLogin(d, 'cfast', tokenB, ua), /<success /);
    d.close();
    for (const port of [p1, p2]) {
      const e = await open(port);
      assert.match(await fastLogin(e, 'cfast', tokenA, ua), /<failure xmlns="urn:xmpp:sasl:2"><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/>/);
      e.close();
    }
    a.close();
  });

  test('a session bound inline with stream management on one node is resumed inline, with a FAST token, on the other', async () => {
    const [p1, p2] = c.ports;
    const ua = randomUUID();
    const a = await open(p1);
    const s1 = await sasl2Scram(a, 'cfast', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`
      + `<bind xmlns='${NS_BIND2}'><tag>Mobile</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>`);
    const jid = elementText(s1, 'authorization-identifier');
    const previd = /<enabled xmlns="urn:xmpp:sm:3" id="([^"]+)"/.exec(s1)![1];
    const token = tokenOf(s1)!;
    a.close();
    const b = await open(p2);
    const s2 = await fastLogin(b, 'cfast', token, ua, `<resume xmlns='urn:xmpp:sm:3' previd='${previd}' h='0'/><bind xmlns='${NS_BIND2}'><tag>Mobile</tag></bind>`);
    assert.equal(elementText(s2, 'authorization-identifier'), jid, s2);
    assert.match(s2, /<resumed xmlns="urn:xmpp:sm:3" previd="[^"]+" h="0"\/>/);
    b.close();
  });
});
