import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serialize, escapeText, escapeAttr, startTag } from './serialize.ts';
import { parseFragment } from './fragment.ts';
import { el, type Element } from './element.ts';
import { StreamError } from '../errors/index.ts';
import { StreamParser } from './parser.ts';

function viaStream(xml: string): Element {
  let out: Element | undefined;
  let err: StreamError | undefined;
  const p = new StreamParser({ streamOpen() {}, stanza(e) { out = e; }, streamClose() {}, error(e) { err = e; } });
  p.write(`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>` + xml);
  if (err) throw err;
  return out!;
}

test('escaping', () => {
  assert.equal(escapeText(`a & b < c > d "e" 'f'`), `a &amp; b &lt; c &gt; d "e" 'f'`);
  assert.equal(escapeAttr(`a & b < c > d "e" 'f'`), 'a &amp; b &lt; c &gt; d &quot;e&quot; &apos;f&apos;');
  assert.equal(escapeAttr('tab\tnl\ncr\r'), 'tab&#9;nl&#10;cr&#13;');
  assert.equal(escapeText('line\r\nnext'), 'line&#13;\nnext');
  const clean = 'nothing to see here 😀';
  assert.equal(escapeText(clean), clean);
  assert.equal(escapeAttr(clean), clean);
  assert.equal(escapeText(''), '');
});

test('serialize shapes', () => {
  assert.equal(serialize(el('x')), '<x/>');
  assert.equal(serialize(el('presence', { type: 'unavailable', id: undefined })), '<presence type="unavailable"/>');
  assert.equal(
    serialize(el('message', { to: 'a@b', 'xml:lang': 'en' }, el('body', {}, 'hi <3'), el('x:y', { 'xmlns:x': 'urn:x' }))),
    '<message to="a@b" xml:lang="en"><body>hi &lt;3</body><x:y xmlns:x="urn:x"/></message>');
  assert.equal(startTag('stream:stream', { xmlns: 'jabber:client', 'xmlns:stream': 'http://etherx.jabber.org/streams', from: 'a&b' }),
    '<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" from="a&amp;b">');
  assert.equal(serialize(new StreamError('policy-violation', 'too <big>').toElement()),
    '<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>' +
    '<text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">too &lt;big&gt;</text></stream:error>');
});

test('tricky values survive serialize → parse', () => {
  const values = [`"double" and 'single'`, 'a<b&c>d', '&amp; literally', 'tab\there\nnewline\r\ncrlf', ']]>', 'héllo 😀 中文', ''];
  for (const v of values) {
    const e = el('message', { to: v, id: 'x' }, el('body', {}, v || 'x'));
    const xml = serialize(e);
    assert.deepEqual(parseFragment(xml), e, v);
    assert.deepEqual(viaStream(xml), e, v);
  }
});

test('serialize(parseFragment(x)) is stable', () => {
  const inputs = [
    `<message to='romeo@example.net' id="a'b"><body>x &lt; y &amp;&amp; z &gt; w &quot;q&quot; &apos;</body></message>`,
    `<iq type='set' id='1'><query xmlns='jabber:iq:roster'><item jid='a@b' name='A &amp; &lt;B&gt; &quot;C&quot;'/></query></iq>`,
    `<presence xml:lang='fr'>\n  <show>away</show>\n  <status>dîner &#x1F600; &#233;</status>\n</presence>`,
    `<message><body><![CDATA[<raw> & ]]]]><![CDATA[>]]></body></message>`,
    `<a b='1&#10;2&#9;3'/>`,
  ];
  for (const x of inputs) {
    const once = serialize(parseFragment(x));
    assert.equal(serialize(parseFragment(once)), once, x);
    assert.deepEqual(parseFragment(once), parseFragment(x), x);
    assert.deepEqual(viaStream(x), parseFragment(x), x); // both parsers agree
  }
});

test('parseFragment details', () => {
  assert.deepEqual(parseFragment(Buffer.from(`  <a x="1"><b/>t&amp;t<c y='&quot;'>z</c></a>\n`)), {
    name: 'a', attrs: { x: '1' }, children: [{ name: 'b', attrs: {}, children: [] }, 't&t', { name: 'c', attrs: { y: '"' }, children: ['z'] }],
  });
  const u8 = new TextEncoder().encode('<x>héllo 😀</x>');
  assert.deepEqual(parseFragment(u8), { name: 'x', attrs: {}, children: ['héllo 😀'] });
  assert.deepEqual(parseFragment(`<a  b = "1"\n/>`), { name: 'a', attrs: { b: '1' }, children: [] });
  assert.deepEqual(parseFragment(`<a b='x\ny'/>`).attrs, { b: 'x y' }); // attribute-value normalization
  assert.equal(Object.getPrototypeOf(parseFragment('<a/>').attrs), Object.prototype);
});

test('parseFragment rejects bad input', () => {
  const notWellFormed = [
    '', 'text', '<a>', '<a></b>', '<a><b></a></b>', '<a x=1/>', `<a x='1/>`, '<a x="1" x="2"/>', '<a x="1"y="2"/>',
    '<a/><b/>', '<a/>junk', '<a>&#0;</a>', '<a>&;</a>', '<a>& b</a>', '<a x="<"/>', '</a>', '<1a/>', '<a / >', '<a>]]></a>',
    '<a><![CDATA[x</a>', '<a></a >x',
  ];
  for (const x of notWellFormed) {
    assert.throws(() => parseFragment(x), (e: unknown) => e instanceof StreamError && e.condition === 'not-well-formed', JSON.stringify(x));
  }
  for (const x of ['<a><!-- c --></a>', '<a><?pi?></a>', '<a>&nbsp;</a>', '<a>&constructor;</a>', '<!DOCTYPE a><a/>']) {
    assert.throws(() => parseFragment(x), (e: unknown) => e instanceof StreamError && (e.condition === 'restricted-xml' || e.condition === 'not-well-formed'), x);
  }
  const deep = '<a>'.repeat(10000) + '</a>'.repeat(10000);
  assert.throws(() => parseFragment(deep), StreamError);
});

test('parseFragment on mutated input returns an element or throws StreamError, nothing else', () => {
  const base = `<message from='juliet@example.com/balcony' to='romeo@example.net' type='chat' id='m1'>` +
    `<body>Wherefore &amp; why &#x1F600; <![CDATA[<raw>]]></body><x:foo xmlns:x='urn:x' x:a="q'q">t</x:foo></message>`;
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const junk = `<>&;'"/=![]?-x #`;
  let ok = 0;
  for (let round = 0; round < 3000; round++) {
    const chars = base.split('');
    for (let k = 0; k < 2; k++) chars[Math.floor(rnd() * chars.length)] = junk[Math.floor(rnd() * junk.length)];
    const x = chars.join('');
    try {
      const e = parseFragment(x);
      assert.deepEqual(parseFragment(serialize(e)), e, x);
      ok++;
    } catch (e) {
      assert.ok(e instanceof StreamError, `${x}: ${String(e)}`);
    }
  }
  assert.ok(ok > 0);
});

test('parseFragment rejects control characters like the stream parser does', () => {
  for (const x of ['<a>\u0001</a>', '<a b="\u001f"/>', '<a><![CDATA[\u0000]]></a>', '<a\u0002/>']) {
    assert.throws(() => parseFragment(x), (e: unknown) => e instanceof StreamError && e.condition === 'not-well-formed', JSON.stringify(x));
  }
  assert.deepEqual(parseFragment('<a>\t\n</a>').children, ['\t\n']);
});
