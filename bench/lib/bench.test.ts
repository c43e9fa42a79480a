// Unit tests of the generator's pure parts (no server needed): token scanning
// and stanza counting (XEP-0198) across arbitrary chunk splits, element scanning during login, the SCRAM
// client against RFC 7677's test vector, histogram buckets and SVG output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attr, findElement, scanTokens, StanzaCounter } from './client.ts';
import { saslClient } from './scram.ts';
import { buckets, newHist, record, mergeHists, encodeHist, summarize } from './stats.ts';
import { barChart, lineChart } from './svg.ts';

test('tokens are found exactly once whatever the chunk boundaries', () => {
  const stream = [1, 2, 3].map((i) => `<message from='user${i}@localhost/b' type='chat'><body>bnch~0.${i}.17000${i}~</body></message>`).join('') + '<presence/>';
  for (let cut1 = 0; cut1 <= stream.length; cut1++) {
    for (const cut2 of [cut1, Math.min(stream.length, cut1 + 7), stream.length]) {
      const seen: string[] = [];
      let carry = '';
      for (const chunk of [stream.slice(0, cut1), stream.slice(cut1, cut2), stream.slice(cut2)]) carry = scanTokens(carry + chunk, (t) => seen.push(t));
      assert.deepEqual(seen, ['0.1.170001', '0.2.170002', '0.3.170003'], `cuts at ${cut1}/${cut2}`);
    }
  }
});

test('stanzas are counted once at the top level whatever the chunk boundaries', () => {
  // 6 stanzas: a message carrying a forwarded <message/> (a carbon) and a '>' in its text, a self-closing iq, a
  // presence with children, an iq whose child is named like a stanza, and two more after stream management's own elements.
  const stanzas = [
    `<message from='a@localhost/x' to='b@localhost/y' type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message from='b@localhost' type='chat'><body>1 &gt; 0 > -1</body></message></forwarded></sent></message>`,
    `<iq type="result" id="p"/>`,
    `<presence from='c@localhost/z'><show>chat</show><status>bnch~0.1.2~</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>`,
    `<iq type='get' id='q'><query xmlns='jabber:iq:private'><message/><presence/></query></iq>`,
  ];
  const stream = stanzas.join('') + `<r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='7'/>` + `<message to='b'><body/></message>` + `<r xmlns='urn:xmpp:sm:3'/>` + `<messages/><iq\ttype='set' id='x'/>`;
  for (let cut1 = 0; cut1 <= stream.length; cut1++) {
    for (const cut2 of [cut1, Math.min(stream.length, cut1 + 5), Math.min(stream.length, cut1 + 40)]) {
      const events: string[] = [];
      const c: StanzaCounter = new StanzaCounter((name, tag) => events.push(name === 'r' ? `r@${c.count}` : `a=${attr(tag, 'h')}`));
      for (const chunk of [stream.slice(0, cut1), stream.slice(cut1, cut2), stream.slice(cut2)]) c.feed(chunk);
      assert.deepEqual(events, ['r@4', 'a=7', 'r@5'], `cuts at ${cut1}/${cut2}`);
      assert.equal(c.count, 6, `cuts at ${cut1}/${cut2}`);
    }
  }
});

test('findElement waits for a complete element and handles both quote styles', () => {
  const features = `<stream:features><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>PLAIN</mechanism></mechanisms></stream:features>`;
  const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' id="x">`;
  for (let cut = 0; cut < features.length; cut++) assert.equal(findElement(header + features.slice(0, cut), ['stream:features', 'features']), null);
  const f = findElement(header + features + '<iq', ['stream:features', 'features']);
  assert.equal(f?.text, features);
  assert.equal(findElement(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`, ['challenge', 'success'])?.name, 'success');
  assert.equal(findElement(`<iqx/><iq type="result" id="b"/>`, ['iq'])?.start, 6);
  assert.equal(attr(`<iq type="result" id='b'>`, 'id'), 'b');
  assert.equal(attr(`<iq type="result" id='b'>`, 'type'), 'result');
});

test('SCRAM-SHA-256 client matches RFC 7677', async () => {
  const c = saslClient('SCRAM-SHA-256', 'user', 'pencil', 'rOprNGfwEbeRWgbNEkqO');
  assert.equal(Buffer.from(c.initial(), 'base64').toString(), 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
  const final = await c.challenge(Buffer.from('r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'));
  assert.equal(Buffer.from(final, 'base64').toString(), 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=');
  assert.ok(c.verify(Buffer.from('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')));
  assert.ok(!c.verify(Buffer.from('v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')));
});

test('histograms merge across workers and bucket every value', () => {
  const a = newHist();
  const b = newHist();
  for (let i = 1; i <= 1000; i++) record(i % 2 ? a : b, i * 100);
  const m = mergeHists([encodeHist(a), encodeHist(b)]);
  assert.equal(m.totalCount, 1000);
  assert.ok(Math.abs(summarize(m).p50Ms - 50) < 0.1);
  assert.equal(buckets(m).reduce((n, [, c]) => n + c, 0), 1000);
});

test('SVG charts are well-formed enough to open', () => {
  const line = lineChart({ title: 'a <b>', xLabel: 'x', yLabel: 'y', logX: true, logY: true }, [{ name: 'p99', points: [[1000, 1.5], [2000, 3], [4000, 120]] }]);
  assert.match(line, /^<svg [^>]*>[\s\S]*<\/svg>\n$/);
  assert.ok(line.includes('a &lt;b&gt;') && !line.includes('NaN'));
  const bars = barChart({ title: 't', xLabel: 'ms', yLabel: 'n', logX: true }, [[1, 3], [2, 5], [4, 1]], 'logins');
  assert.equal((bars.match(/<title>≤/g) ?? []).length, 3);
});
