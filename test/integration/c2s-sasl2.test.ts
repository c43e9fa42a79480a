// One-round-trip logins on the wire: XEP-0388 SASL2 with XEP-0386 Bind2
// (carbons, CSI and stream management enabled inline), XEP-0198 resumption
// inline, XEP-0484 FAST tokens (issue, use, rotation, invalidation), and SCRAM
// -PLUS with channel binding (RFC 9266, RFC 5929, XEP-0440) — and each refusal
// with the condition its specification names, leaving nothing changed.
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import {
  elementText, htInitial, htResponder, NS_BIND2, NS_FAST, NS_SASL2, sasl2Scram, scramClient, tlsExporter, tlsServerEndPoint, userAgent,
} from '../support/sasl2.ts';
import type { RunningServer } from '../../services/server.ts';

const FAILURE = /<failure xmlns=['"]urn:xmpp:sasl:2['"]>[^]*?<\/failure>/;

async function open(port: number, tls = false): Promise<RawClient> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  if (tls) {
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await c.waitFor(/<proceed/);
    await c.startTls();
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
  }
  return c;
}

/** What came after `at`, once `re` matched there. */
async function next(c: RawClient, at: number, re: RegExp, timeoutMs = 5000): Promise<string> {
  const out = await c.waitFor(new RegExp(`[^]{${at}}[^]*${re.source}`), timeoutMs);
  return out.slice(at);
}

/** A FAST login: one <authenticate/>, answered by <success/> or <failure/>. */
async function fastLogin(c: RawClient, user: string, token: string, ua: string, inline = '', mech = 'HT-SHA-256-NONE', cb: Buffer = Buffer.alloc(0)): Promise<string> {
  const at = c.output.length;
  c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='${mech}'><initial-response>${htInitial(user, token, cb)}</initial-response>`
    + `${userAgent(ua)}<fast xmlns='${NS_FAST}'/>${inline}</authenticate>`);
  return next(c, at, /(<\/success>|<\/failure>)/);
}

const tokenOf = (success: string) => /<token xmlns="urn:xmpp:fast:0" expiry="([^"]+)" token="([^"]+)"\/>/.exec(success);

describe('SASL2, Bind2 and FAST on the wire (embedded)', () => {
  let d: Deployment & { server: RunningServer };
  let port: number;
  const open1 = () => open(port);
  before(async () => {
    // Many refusals from one address: the login throttle is tested elsewhere.
    d = await startEmbedded({ c2s: { authThrottle: { enabled: false }, maxAuthFailures: 10 } });
    port = d.ports[0];
    for (const u of ['s2a', 's2b', 's2c', 'fasta', 'fastb', 'fastc', 'resumer', 'tlsuser']) await d.addUser(u);
  });
  after(async () => { await d.stop(); });

  test('the features offer SASL2 with Bind2 (carbons, CSI, stream management), inline resumption and FAST', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>/);
    assert.match(out, /<authentication xmlns="urn:xmpp:sasl:2"><mechanism>SCRAM-SHA-256<\/mechanism><mechanism>SCRAM-SHA-1<\/mechanism><mechanism>PLAIN<\/mechanism><inline>/);
    assert.match(out, /<bind xmlns="urn:xmpp:bind:0"><inline><feature var="urn:xmpp:carbons:2"\/><feature var="urn:xmpp:csi:0"\/><feature var="urn:xmpp:sm:3"\/><\/inline><\/bind>/);
    assert.match(out, /<sm xmlns="urn:xmpp:sm:3"\/><fast xmlns="urn:xmpp:fast:0"><mechanism>HT-SHA-256-NONE<\/mechanism><\/fast><\/inline><\/authentication>/);
    // No TLS here: no -PLUS mechanism and no channel binding to advertise.
    assert.doesNotMatch(out, /-PLUS|sasl-channel-binding/);
    c.close();
  });

  test('SCRAM + Bind2: bound with the tag and a server suffix, carbons, CSI and stream management on, in one <success/>', async () => {
    const c = await open1();
    const ua = randomUUID();
    const success = await sasl2Scram(c, 's2a', PASSWORD, userAgent(ua)
      + `<bind xmlns='${NS_BIND2}'><tag>Phone</tag><enable xmlns='urn:xmpp:carbons:2'/><enable xmlns='urn:xmpp:sm:3' resume='true'/><inactive xmlns='urn:xmpp:csi:0'/></bind>`);
    const jid = elementText(success, 'authorization-identifier');
    assert.match(jid ?? '', /^s2a@localhost\/Phone\/[0-9a-f]{8}$/);
    assert.match(success, /<bound xmlns="urn:xmpp:bind:0"><enabled xmlns="urn:xmpp:sm:3" id="[^"]+" resume="true"( max="\d+")?\/><\/bound>/);
    // No restart and no features after a bound <success/>: the session is established.
    await new Promise((r) => setTimeout(r, 100));
    assert.doesNotMatch(c.output.slice(c.output.indexOf('</success>')), /<stream:features/);

    // Carbons are on: a message from another resource comes back as <sent/>.
    const other = await rawConnect(port);
    other.send(STREAM_OPEN());
    await other.waitFor(/<\/stream:features>/);
    other.send(plainAuth('s2a', PASSWORD));
    await other.waitFor(/<success/);
    other.send(STREAM_OPEN());
    await other.waitFor(/<\/stream:features>[^]*<\/stream:features>/);
    other.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    await other.waitFor(/<jid>/);
    other.send(`<message to='s2b@localhost' type='chat' id='m1'><body>hello</body></message>`);
    await c.waitFor(/<sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message[^>]*id="m1"/);

    // Stream management is on, counting from the inline <enable/>: nothing handled yet.
    const at = c.output.length;
    c.send(`<r xmlns='urn:xmpp:sm:3'/>`);
    assert.match(await next(c, at, /<a [^>]*\/>/), /<a xmlns='urn:xmpp:sm:3' h='0'\/>/);
    // The carbon copy was numbered: the server asks for an ack or counts it (<r/> from the server is allowed).
    c.close();
    other.close();
  });

  test('Bind2: the same client binding again gets the same resource and replaces its earlier session; another client does not', async () => {
    const ua = randomUUID();
    const bind = `<bind xmlns='${NS_BIND2}'><tag>Same</tag></bind>`;
    const c1 = await open1();
    const jid1 = elementText(await sasl2Scram(c1, 's2b', PASSWORD, userAgent(ua) + bind), 'authorization-identifier');
    const c2 = await open1();
    const jid2 = elementText(await sasl2Scram(c2, 's2b', PASSWORD, userAgent(ua) + bind), 'authorization-identifier');
    assert.equal(jid2, jid1);
    assert.match(await c1.waitFor(/<\/stream:stream>/), /<stream:error><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    const c3 = await open1();
    const jid3 = elementText(await sasl2Scram(c3, 's2b', PASSWORD, userAgent(randomUUID()) + bind), 'authorization-identifier');
    assert.notEqual(jid3, jid1);
    assert.doesNotMatch(jid3 ?? '', new RegExp(ua.slice(0, 8)), 'the user-agent id is not shown');
    c2.close();
    c3.close();
  });

  test('SASL2 without Bind2: the bare JID, then the features of the authenticated stream, without a restart; legacy bind works', async () => {
    const c = await open1();
    const success = await sasl2Scram(c, 's2b', PASSWORD);
    assert.equal(elementText(success, 'authorization-identifier'), 's2b@localhost');
    const out = await c.waitFor(/<\/success><stream:features>[^]*?<\/stream:features>/);
    assert.match(out, /<\/success><stream:features><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"\/>/);
    c.send(`<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>legacy</resource></bind></iq>`);
    assert.match(await c.waitFor(/<jid>[^<]+<\/jid>/), /<jid>s2b@localhost\/legacy<\/jid>/);
    c.close();
  });

  test('refusals: an unknown mechanism, a wrong password, a bad user-agent id, FAST without a user agent; the stream stays usable', async () => {
    const c = await open1();
    let at = c.output.length;
    c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='X-UNKNOWN'><initial-response>AA==</initial-response></authenticate>`);
    let out = await next(c, at, /<\/failure>/);
    assert.match(out, /<failure xmlns="urn:xmpp:sasl:2"><invalid-mechanism xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text>mechanism 'X-UNKNOWN' is not offered<\/text><\/failure>/);

    // A wrong password with a Bind2 request: not-authorized, and nothing is bound.
    await assert.rejects(sasl2Scram(c, 's2c', 'wrong', `<bind xmlns='${NS_BIND2}'><tag>Nope</tag></bind>`), /no success/);
    assert.match(c.output, /<failure xmlns="urn:xmpp:sasl:2"><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/>/);
    assert.equal((await d.store.hgetall('s2c@localhost', 'sessions')).size, 0);

    at = c.output.length;
    c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='SCRAM-SHA-256'><initial-response>biwsbj1zMmMscj1hYmM=</initial-response><user-agent id='not-a-uuid'/></authenticate>`);
    out = await next(c, at, /<\/failure>/);
    assert.match(out, /<malformed-request xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text>&lt;user-agent\/&gt; needs an 'id' that is a UUID<\/text>/);

    at = c.output.length;
    c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${htInitial('s2c', 'x')}</initial-response><fast xmlns='${NS_FAST}'/></authenticate>`);
    out = await next(c, at, /<\/failure>/);
    assert.match(out, /<malformed-request xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text>FAST tokens need &lt;user-agent id=…\/&gt;/);

    // After all that, the same stream still logs in.
    const success = await sasl2Scram(c, 's2c', PASSWORD, `<bind xmlns='${NS_BIND2}'/>`);
    assert.match(elementText(success, 'authorization-identifier') ?? '', /^s2c@localhost\/[0-9a-f]{8}$/);
    c.close();
  });

  test('a Bind2 request before authentication is refused with not-authorized', async () => {
    const c = await open1();
    c.send(`<bind xmlns='${NS_BIND2}'><tag>Early</tag></bind>`);
    const out = await c.waitFor(/<\/stream:stream>/);
    assert.match(out, /<stream:error><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text [^>]*>authenticate first: a Bind2 request goes inside &lt;authenticate\/&gt;<\/text><\/stream:error>/);
    await c.closed;
  });

  test('FAST: a token issued on request, used in one round trip, rotated on request, the older one refused once the newer was used', async () => {
    const ua = randomUUID();
    const c1 = await open1();
    const s1 = await sasl2Scram(c1, 'fasta', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/><bind xmlns='${NS_BIND2}'><tag>A</tag></bind>`);
    const t1 = tokenOf(s1);
    assert.ok(t1, s1);
    const lifetime = Date.parse(t1[1]) - Date.now();
    assert.ok(lifetime > 13.9 * 86400_000 && lifetime <= 14 * 86400_000, `the default lifetime is 14 days (${t1[1]})`);
    const tokenA = t1[2];
    c1.close();

    // One round trip: <authenticate/> → <success/> with the server's proof, bound.
    const c2 = await open1();
    const s2 = await fastLogin(c2, 'fasta', tokenA, ua, `<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/><bind xmlns='${NS_BIND2}'><tag>A</tag></bind>`);
    assert.match(s2, /<success xmlns='urn:xmpp:sasl:2'>/);
    assert.equal(elementText(s2, 'additional-data'), htResponder(tokenA));
    assert.match(elementText(s2, 'authorization-identifier') ?? '', /^fasta@localhost\/A\/[0-9a-f]{8}$/);
    const tokenB = tokenOf(s2)?.[2];
    assert.ok(tokenB && tokenB !== tokenA);
    c2.close();

    // A is still good until B is used (XEP-0484 §3.5: the client may not have received B).
    const c3 = await open1();
    assert.match(await fastLogin(c3, 'fasta', tokenA, ua), /<success /);
    c3.close();
    const c4 = await open1();
    assert.match(await fastLogin(c4, 'fasta', tokenB, ua), /<success /);
    c4.close();
    // B was used: A is replaced for good.
    const c5 = await open1();
    const replay = await fastLogin(c5, 'fasta', tokenA, ua, `<bind xmlns='${NS_BIND2}'/>`);
    assert.match(replay, /<failure xmlns="urn:xmpp:sasl:2"><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text>the token is not valid for this account and client<\/text><\/failure>/);
    // Refused, nothing changed: B still works.
    assert.match(await fastLogin(c5, 'fasta', tokenB, ua), /<success /);
    c5.close();
  });

  test('FAST: stanzas written right behind <authenticate/> are handled after <success/>, in order; <abort/> ends an exchange', async () => {
    const ua = randomUUID();
    const c1 = await open1();
    const token = tokenOf(await sasl2Scram(c1, 'fasta', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`))![2];
    c1.close();
    const c = await open1();
    let at = c.output.length;
    c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='SCRAM-SHA-256'><initial-response>${scramClient('SCRAM-SHA-256', 'fasta', PASSWORD).first}</initial-response></authenticate>`);
    await next(c, at, /<\/challenge>/);
    at = c.output.length;
    c.send(`<abort xmlns='${NS_SASL2}'/>`);
    assert.match(await next(c, at, /<\/failure>/), /<failure xmlns="urn:xmpp:sasl:2"><aborted xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><\/failure>/);
    at = c.output.length;
    c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${htInitial('fasta', token)}</initial-response>`
      + `${userAgent(ua)}<fast xmlns='${NS_FAST}'/><bind xmlns='${NS_BIND2}'><tag>Pipe</tag></bind></authenticate>`
      + `<iq type='get' id='pp1'><ping xmlns='urn:xmpp:ping'/></iq><iq type='get' id='pp2'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const out = await next(c, at, /id="pp2"/);
    const success = out.indexOf('</success>');
    assert.ok(success > 0 && success < out.indexOf('id="pp1"') && out.indexOf('id="pp1"') < out.indexOf('id="pp2"'), out);
    c.close();
  });

  test('FAST: a token is refused for another account, for another user agent, and for another mechanism; nothing changes', async () => {
    const ua = randomUUID();
    const c1 = await open1();
    const token = tokenOf(await sasl2Scram(c1, 'fastb', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`))![2];
    c1.close();
    const before = await d.store.hgetall('fastb@localhost', 'fast');
    const c = await open1();
    assert.match(await fastLogin(c, 'fastc', token, ua), /<not-authorized /);
    assert.match(await fastLogin(c, 'fastb', token, randomUUID()), /<not-authorized /);
    assert.match(await fastLogin(c, 'fastb', `${token}x`, ua), /<not-authorized /);
    // HT-SHA-256-EXPR is not offered without TLS: invalid-mechanism.
    assert.match(await fastLogin(c, 'fastb', token, ua, '', 'HT-SHA-256-EXPR'), /<invalid-mechanism /);
    assert.deepEqual(await d.store.hgetall('fastb@localhost', 'fast'), before);
    assert.match(await fastLogin(c, 'fastb', token, ua), /<success /);
    c.close();
  });

  test('FAST: <fast invalidate/> ends the token, with no new one; it is refused after', async () => {
    const ua = randomUUID();
    const c1 = await open1();
    const token = tokenOf(await sasl2Scram(c1, 'fastc', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`))![2];
    c1.close();
    const c2 = await open1();
    const at = c2.output.length;
    c2.send(`<authenticate xmlns='${NS_SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${htInitial('fastc', token)}</initial-response>`
      + `${userAgent(ua)}<fast xmlns='${NS_FAST}' invalidate='true'/></authenticate>`);
    const s = await next(c2, at, /<\/success>/);
    assert.equal(tokenOf(s), null);
    c2.close();
    const c3 = await open1();
    assert.match(await fastLogin(c3, 'fastc', token, ua), /<not-authorized /);
    c3.close();
  });

  test('FAST: a new password drops the account\'s tokens', async () => {
    const ua = randomUUID();
    const c1 = await open1();
    const token = tokenOf(await sasl2Scram(c1, 'fastc', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`))![2];
    c1.close();
    await d.server.accounts.setPassword('fastc@localhost', PASSWORD);
    const c2 = await open1();
    assert.match(await fastLogin(c2, 'fastc', token, ua), /<not-authorized /);
    c2.close();
  });

  test('stream management resumed inline; a failed resumption falls back to Bind2 in the same <success/>', async () => {
    const c1 = await open1();
    const s1 = await sasl2Scram(c1, 'resumer', PASSWORD, `<bind xmlns='${NS_BIND2}'><tag>R</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/></bind>`);
    const jid = elementText(s1, 'authorization-identifier')!;
    const previd = /<enabled xmlns="urn:xmpp:sm:3" id="([^"]+)"/.exec(s1)![1];
    // One stanza the server keeps (a message to an account that is offline), acknowledged: h is 1.
    c1.send(`<message to='s2c@localhost' type='chat'><body>kept</body></message><r xmlns='urn:xmpp:sm:3'/>`);
    await c1.waitFor(/<a xmlns='urn:xmpp:sm:3' h='1'\/>/);
    c1.close(); // the connection is lost; the session waits to be resumed

    const c2 = await open1();
    const s2 = await sasl2Scram(c2, 'resumer', PASSWORD, `<resume xmlns='urn:xmpp:sm:3' previd='${previd}' h='0'/><bind xmlns='${NS_BIND2}'><tag>R</tag></bind>`);
    assert.equal(elementText(s2, 'authorization-identifier'), jid, s2);
    assert.match(s2, /<resumed xmlns="urn:xmpp:sm:3" previd="[^"]+" h="1"\/>/);
    assert.doesNotMatch(s2, /<bound/); // resumed: nothing is bound anew
    const at = c2.output.length;
    c2.send(`<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>`);
    assert.match(await next(c2, at, /id="p2"/), /type="result"/);
    c2.close();

    const c3 = await open1();
    const s3 = await sasl2Scram(c3, 'resumer', PASSWORD, `<resume xmlns='urn:xmpp:sm:3' previd='bogus' h='0'/><bind xmlns='${NS_BIND2}'><tag>R2</tag></bind>`);
    assert.match(s3, /<failed xmlns="urn:xmpp:sm:3"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
    assert.match(s3, /<bound xmlns="urn:xmpp:bind:0"><\/bound>/);
    assert.match(elementText(s3, 'authorization-identifier') ?? '', /^resumer@localhost\/R2\//);
    c3.close();
  });

  describe('over TLS: SCRAM -PLUS and FAST with channel binding', () => {
    test('the SASL2 features add the -PLUS mechanisms, the channel binding types (XEP-0440) and the bound FAST mechanisms; legacy SASL keeps its list', async () => {
      const c = await open(port, true);
      const out = c.output;
      assert.match(out, /<mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>SCRAM-SHA-256<\/mechanism><mechanism>SCRAM-SHA-1<\/mechanism><mechanism>PLAIN<\/mechanism><\/mechanisms>/);
      assert.match(out, /<authentication xmlns="urn:xmpp:sasl:2"><mechanism>SCRAM-SHA-256-PLUS<\/mechanism><mechanism>SCRAM-SHA-1-PLUS<\/mechanism><mechanism>SCRAM-SHA-256<\/mechanism>/);
      assert.match(out, /<sasl-channel-binding xmlns="urn:xmpp:sasl-cb:0"><channel-binding type="tls-exporter"\/><channel-binding type="tls-server-end-point"\/><\/sasl-channel-binding>/);
      assert.match(out, /<fast xmlns="urn:xmpp:fast:0"><mechanism>HT-SHA-256-EXPR<\/mechanism><mechanism>HT-SHA-256-ENDP<\/mechanism><mechanism>HT-SHA-256-NONE<\/mechanism><\/fast>/);
      c.close();
    });

    test('SCRAM-SHA-256-PLUS with tls-exporter and with tls-server-end-point over SASL2; legacy SASL as before (no -PLUS, a y flag accepted)', async () => {
      const c = await open(port, true);
      await sasl2Scram(c, 'tlsuser', PASSWORD, '', { mech: 'SCRAM-SHA-256-PLUS', gs2: 'p=tls-exporter,,', cbData: tlsExporter(c) });
      c.close();
      const c2 = await open(port, true);
      await sasl2Scram(c2, 'tlsuser', PASSWORD, '', { mech: 'SCRAM-SHA-256-PLUS', gs2: 'p=tls-server-end-point,,', cbData: tlsServerEndPoint(c2) });
      c2.close();
      // RFC 6120 SASL offers no -PLUS (its clients bind with tls-unique, which TLS 1.3 lacks), so a client that could
      // bind says 'y' there, as slixmpp does, and is not taken for a downgrade.
      const c3 = await open(port, true);
      let at = c3.output.length;
      c3.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>${scramClient('SCRAM-SHA-256', 'tlsuser', PASSWORD, 'p=tls-exporter,,', tlsExporter(c3)).first}</auth>`);
      assert.match(await next(c3, at, /<\/failure>/), /<invalid-mechanism\/><text xml:lang="en">mechanism 'SCRAM-SHA-256-PLUS' is not offered<\/text>/);
      const scram = scramClient('SCRAM-SHA-256', 'tlsuser', PASSWORD, 'y,,');
      at = c3.output.length;
      c3.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>${scram.first}</auth>`);
      const challenge = elementText(await next(c3, at, /<\/challenge>/), 'challenge')!;
      at = c3.output.length;
      c3.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${scram.final(challenge)}</response>`);
      const success = await next(c3, at, /<\/success>/);
      assert.ok(scram.verify(elementText(success, 'success')!), success);
      c3.close();
    });

    test('refused: a channel binding that does not match, an unknown type, and a downgrade (y flag)', async () => {
      const c = await open(port, true);
      await assert.rejects(sasl2Scram(c, 'tlsuser', PASSWORD, '', { mech: 'SCRAM-SHA-256-PLUS', gs2: 'p=tls-exporter,,', cbData: randomBytes(32) }), /no success/);
      assert.match(c.output, /<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text>channel binding mismatch<\/text>/);
      await assert.rejects(sasl2Scram(c, 'tlsuser', PASSWORD, '', { mech: 'SCRAM-SHA-256-PLUS', gs2: 'p=tls-unique,,' }), /no challenge/);
      assert.match(c.output, /<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text>unsupported channel binding type; use tls-exporter or tls-server-end-point<\/text>/);
      // RFC 5802 §6: 'y' says the client could bind but thinks we cannot, yet we offered -PLUS: a downgrade.
      await assert.rejects(sasl2Scram(c, 'tlsuser', PASSWORD, '', { gs2: 'y,,' }), /no challenge/);
      assert.match(c.output, /<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text>channel binding downgrade detected<\/text>/);
      // The stream is unchanged: it still logs in.
      await sasl2Scram(c, 'tlsuser', PASSWORD, '', { mech: 'SCRAM-SHA-256-PLUS', gs2: 'p=tls-exporter,,', cbData: tlsExporter(c) });
      c.close();
    });

    test('FAST HT-SHA-256-EXPR: the token works only on a connection whose exporter it is bound to, and only with its mechanism', async () => {
      const ua = randomUUID();
      const c1 = await open(port, true);
      const s1 = await sasl2Scram(c1, 'tlsuser', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-EXPR'/>`,
        { mech: 'SCRAM-SHA-256-PLUS', gs2: 'p=tls-exporter,,', cbData: tlsExporter(c1) });
      const token = tokenOf(s1)![2];
      c1.close();
      const c2 = await open(port, true);
      // Another connection's binding data: refused.
      assert.match(await fastLogin(c2, 'tlsuser', token, ua, '', 'HT-SHA-256-EXPR', randomBytes(32)), /<not-authorized /);
      // The token of HT-SHA-256-EXPR is not one of HT-SHA-256-NONE (XEP-0484 §3.4).
      assert.match(await fastLogin(c2, 'tlsuser', token, ua, '', 'HT-SHA-256-NONE'), /<not-authorized /);
      const s2 = await fastLogin(c2, 'tlsuser', token, ua, `<bind xmlns='${NS_BIND2}'/>`, 'HT-SHA-256-EXPR', tlsExporter(c2));
      assert.equal(elementText(s2, 'additional-data'), htResponder(token, tlsExporter(c2)));
      c2.close();
    });
  });
});

describe('FAST token rotation when due (embedded)', () => {
  let d: Deployment & { server: RunningServer };
  before(async () => {
    d = await startEmbedded({ c2s: { fast: { tokenLifetimeSeconds: 3, rotateBeforeExpirySeconds: 2 } } });
    await d.addUser('rot');
  });
  after(async () => { await d.stop(); });

  test('a token used with less than rotateBeforeExpirySeconds left comes back with a new one; an expired one is refused', async () => {
    const ua = randomUUID();
    const c1 = await open(d.ports[0]);
    const token = tokenOf(await sasl2Scram(c1, 'rot', PASSWORD, `${userAgent(ua)}<request-token xmlns='${NS_FAST}' mechanism='HT-SHA-256-NONE'/>`))![2];
    c1.close();
    const c2 = await open(d.ports[0]);
    assert.equal(tokenOf(await fastLogin(c2, 'rot', token, ua)), null, 'not due yet: no new token');
    c2.close();
    await new Promise((r) => setTimeout(r, 1100));
    const c2b = await open(d.ports[0]);
    const rotated = tokenOf(await fastLogin(c2b, 'rot', token, ua));
    assert.ok(rotated && rotated[2] !== token, 'due: a new token in the same <success/>');
    c2b.close();
    await new Promise((r) => setTimeout(r, 2000));
    const c3 = await open(d.ports[0]);
    assert.match(await fastLogin(c3, 'rot', token, ua), /<not-authorized /);
    c3.close();
  });
});
