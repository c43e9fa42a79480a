import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NOT_UTF8, StreamParser, type StreamParserLimits } from './parser.ts';
import { parseFragment } from './fragment.ts';
import { serialize } from './serialize.ts';
import type { Element } from './element.ts';
import type { StreamError } from '../errors/index.ts';

const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>`;

const CORPUS = [
  `<iq type='get' id='r1' from='juliet@example.com/balcony'><query xmlns='jabber:iq:roster'/></iq>`,
  `<iq type='result' id='r1' to='juliet@example.com/balcony'><query xmlns='jabber:iq:roster' ver='v2'>` +
    `<item jid='romeo@example.net' name='Romeo' subscription='both'><group>Friends</group></item>` +
    `<item jid='nurse@example.com' name='Nurse &amp; co' subscription='to'><group>Servants</group><group>Capulet</group></item></query></iq>`,
  `<message from='juliet@example.com/balcony' to='romeo@example.net' type='chat' id='m1' xml:lang='en'>` +
    `<body>Wherefore art thou, Romeo? &lt;3 — héllo 😀 中文</body><thread parent='p1'>e0ffe42b28561960c6b12b944a092794b9683a38</thread>` +
    `<active xmlns='http://jabber.org/protocol/chatstates'/><x:foo xmlns:x='urn:example:x' x:bar="q'uote">a<x:b/>c</x:foo></message>`,
  `<presence xml:lang='fr'><show>away</show><status>Parti  dîner\n  à  20h</status><priority>5</priority>` +
    `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://example.org' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>`,
  `<presence type='unavailable'/>`,
  `<presence to='room@muc.example.com/nick'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='20'/></x></presence>`,
  `<message to='room@muc.example.com' type='groupchat'><body><![CDATA[if (a < b && c > d) {}]]> and &quot;more&quot;</body></message>`,
  `<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>balcony&#x20;2</resource></bind></iq>`,
  `<r xmlns='urn:xmpp:sm:3'/>`,
  `<iq type='get' id='p1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>`,
  `<message id='e1'><body>   </body><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>Hi <b>there</b>!</p></body></html></message>`,
];

interface Log {
  events: string[];
  opens: { name: string; attrs: Record<string, string> }[];
  stanzas: Element[];
  sizes: number[];
  errors: StreamError[];
  closed: number;
}

function collect(limits?: Partial<StreamParserLimits>, onStanza?: (el: Element, p: StreamParser) => void): { p: StreamParser; log: Log } {
  const log: Log = { events: [], opens: [], stanzas: [], sizes: [], errors: [], closed: 0 };
  const p: StreamParser = new StreamParser({
    streamOpen(name, attrs) { log.events.push('open'); log.opens.push({ name, attrs }); },
    stanza(el, bytes) { log.events.push('stanza'); log.stanzas.push(el); log.sizes.push(bytes); onStanza?.(el, p); },
    streamClose() { log.events.push('close'); log.closed++; },
    error(err) { log.events.push('error'); log.errors.push(err); },
  }, limits);
  return { p, log };
}

function parseAll(chunks: (string | Buffer)[], limits?: Partial<StreamParserLimits>): Log {
  const { p, log } = collect(limits);
  for (const c of chunks) p.write(c);
  return log;
}

function errorOf(xml: string): StreamError | undefined {
  return parseAll([xml]).errors[0];
}

// mulberry32: small seeded PRNG so failures are reproducible.
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('stream open attributes, prefixes kept, xml declaration accepted', () => {
  const log = parseAll([HEADER]);
  assert.deepEqual(log.errors, []);
  assert.deepEqual(log.opens, [{
    name: 'stream:stream',
    attrs: { xmlns: 'jabber:client', 'xmlns:stream': 'http://etherx.jabber.org/streams', to: 'example.com', version: '1.0', 'xml:lang': 'en' },
  }]);
});

test('several stanzas in one chunk, then stream close', () => {
  const log = parseAll([HEADER + CORPUS.join('') + '</stream:stream>']);
  assert.deepEqual(log.errors, []);
  assert.equal(log.stanzas.length, CORPUS.length);
  assert.deepEqual(log.events.at(-1), 'close');
  const msg = log.stanzas[2];
  assert.equal(msg.name, 'message');
  assert.equal(msg.attrs['xml:lang'], 'en');
  assert.deepEqual(msg.children[0], { name: 'body', attrs: {}, children: ['Wherefore art thou, Romeo? <3 — héllo 😀 中文'] });
  const foo = msg.children[3] as Element;
  assert.equal(foo.name, 'x:foo');
  assert.deepEqual(foo.attrs, { 'xmlns:x': 'urn:example:x', 'x:bar': "q'uote" });
  assert.deepEqual(foo.children, ['a', { name: 'x:b', attrs: {}, children: [] }, 'c']);
  // CDATA and text merge into one string child.
  assert.deepEqual(log.stanzas[6].children[0], { name: 'body', attrs: {}, children: ['if (a < b && c > d) {} and "more"'] });
  // Whitespace-only text inside a stanza is content, not a keepalive.
  assert.deepEqual((log.stanzas[10].children[0] as Element).children, ['   ']);
});

test('stanza sizes are reported in bytes (exact for ASCII, interpolated within a chunk otherwise)', () => {
  const log = parseAll([HEADER, Buffer.from(CORPUS[2] + CORPUS[0])]);
  assert.ok(Math.abs(log.sizes[0] - Buffer.byteLength(CORPUS[2])) <= 8, `${log.sizes[0]}`);
  assert.equal(log.sizes[0] + log.sizes[1], Buffer.byteLength(CORPUS[2] + CORPUS[0]));
  const alone = parseAll([HEADER, Buffer.from(CORPUS[2])]);
  assert.equal(alone.sizes[0], Buffer.byteLength(CORPUS[2]));
  const log2 = parseAll([HEADER, CORPUS[4], ' ', CORPUS[9]]);
  assert.deepEqual(log2.sizes, [CORPUS[4].length, CORPUS[9].length]);
});

test('a stanza split at every byte offset parses identically (multi-byte UTF-8)', () => {
  const whole = Buffer.from(CORPUS[2]);
  const expected = parseAll([HEADER, whole]).stanzas;
  assert.equal(expected.length, 1);
  assert.deepEqual(expected[0], parseFragment(CORPUS[2]));
  for (let i = 1; i < whole.length; i++) {
    const log = parseAll([HEADER, whole.subarray(0, i), whole.subarray(i)]);
    assert.deepEqual(log.errors, [], `split at ${i}`);
    assert.deepEqual(log.stanzas, expected, `split at ${i}`);
  }
  // Byte-by-byte, header included.
  const bytes = Buffer.from(HEADER + CORPUS[2] + CORPUS[3]);
  const log = parseAll(Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1)));
  assert.deepEqual(log.errors, []);
  assert.equal(log.opens.length, 1);
  assert.deepEqual(log.stanzas, [expected[0], parseFragment(CORPUS[3])]);
});

test('CR LF split across chunks is normalized the same way', () => {
  const xml = `<message><body>a\r\nb</body></message>`;
  const cut = xml.indexOf('\r') + 1;
  const a = parseAll([HEADER, xml]).stanzas;
  const b = parseAll([HEADER, xml.slice(0, cut), xml.slice(cut)]).stanzas;
  assert.deepEqual(a, b);
  assert.deepEqual((a[0].children[0] as Element).children, ['a\nb']);
});

test('restricted XML is rejected with restricted-xml', () => {
  const cases: [string, string][] = [
    ['doctype before header', `<!DOCTYPE stream><stream:stream>`],
    ['doctype with entity declaration', `<!DOCTYPE x [<!ENTITY boom "lol">]><stream:stream>`],
    ['doctype inside stream', `${HEADER}<!DOCTYPE x>`],
    ['comment', `${HEADER}<message><!-- hi --></message>`],
    ['comment at stream level', `${HEADER}<!-- hi -->`],
    ['processing instruction', `${HEADER}<message><?php echo 1 ?></message>`],
    ['processing instruction before header', `<?foo bar?><stream:stream>`],
    ['late xml declaration', `${HEADER}<?xml version='1.0'?>`],
    ['unknown entity', `${HEADER}<message><body>&nbsp;</body></message>`],
    ['unknown entity in attribute', `${HEADER}<message to='&boom;'/>`],
  ];
  for (const [what, xml] of cases) {
    const err = errorOf(xml);
    assert.equal(err?.condition, 'restricted-xml', what);
    assert.ok(err?.text, what);
  }
});

test('malformed XML is rejected with not-well-formed and nothing is emitted after', () => {
  const cases: [string, string][] = [
    ['mismatched close', `${HEADER}<message><body></message>`],
    ['bad char ref', `${HEADER}<message>&#0;</message>`],
    ['unquoted attribute', `${HEADER}<message to=x/>`],
    ['duplicate attribute', `${HEADER}<message to='a' to='b'/>`],
    ['text before header', `hello<stream:stream>`],
    ['element before header', `<message/><stream:stream>`],
    ['control character', `${HEADER}<message>\u0001</message>`],
    ['lt in attribute', `${HEADER}<message to='<'/>`],
  ];
  for (const [what, xml] of cases) {
    const log = parseAll([xml, CORPUS[0], '</stream:stream>']);
    assert.equal(log.errors.length, 1, what);
    assert.equal(log.errors[0].condition, 'not-well-formed', what);
    assert.equal(log.events.at(-1), 'error', what);
    assert.equal(log.stanzas.length, 0, what);
  }
});

test('non-whitespace text between stanzas is rejected', () => {
  const log = parseAll([HEADER, CORPUS[0], 'junk', CORPUS[0]]);
  assert.equal(log.stanzas.length, 1);
  assert.equal(log.errors[0]?.condition, 'bad-format');
});

test('a stanza completed before an error in the same chunk is still delivered', () => {
  const log = parseAll([HEADER + CORPUS[0] + '<message><!--x--></message>']);
  assert.deepEqual(log.events, ['open', 'stanza', 'error']);
});

test('size limit triggers while the stanza is still arriving', () => {
  const max = 256 * 1024;
  const { p, log } = collect({ maxStanzaBytes: max });
  p.write(HEADER);
  p.write(`<message to='a@b'><body>`);
  const kb = Buffer.alloc(1024, 'a');
  let fedAtError = -1;
  for (let i = 0; i < 1024; i++) {
    p.write(kb);
    if (log.errors.length && fedAtError < 0) fedAtError = (i + 1) * 1024;
  }
  p.write(`</body></message>`);
  assert.equal(log.errors.length, 1);
  assert.equal(log.errors[0].condition, 'policy-violation');
  assert.match(log.errors[0].text ?? '', /stanza too large \(max 262144 bytes\)/);
  assert.ok(fedAtError > max - 1024 && fedAtError <= max + 2048, `error after ${fedAtError} bytes`);
  assert.equal(log.stanzas.length, 0);
});

test('size limit also applies to a complete stanza within one chunk, counting bytes not chars', () => {
  const body = '中'.repeat(400); // 400 chars, 1200 bytes
  const log = parseAll([HEADER + `<message><body>${body}</body></message>`], { maxStanzaBytes: 1000 });
  assert.equal(log.errors[0]?.condition, 'policy-violation');
  const ok = parseAll([HEADER + `<message><body>${body}</body></message>`], { maxStanzaBytes: 1300 });
  assert.deepEqual(ok.errors, []);
  assert.equal(ok.stanzas.length, 1);
});

test('text flooding between stanzas is bounded', () => {
  const { p, log } = collect({ maxStanzaBytes: 64 * 1024 });
  p.write(HEADER);
  p.write(CORPUS[0]);
  for (let i = 0; i < 200 && !log.errors.length; i++) p.write('x'.repeat(1024));
  assert.equal(log.errors[0]?.condition, 'policy-violation');
  const { p: p2, log: log2 } = collect({ maxStanzaBytes: 64 * 1024 });
  for (let i = 0; i < 200 && !log2.errors.length; i++) p2.write(' '.repeat(1024)); // before the header
  assert.equal(log2.errors[0]?.condition, 'policy-violation');
});

test('depth limit', () => {
  const nest = (n: number) => '<a>'.repeat(n) + '</a>'.repeat(n);
  const ok = parseAll([HEADER + nest(32)], { maxDepth: 32 });
  assert.deepEqual(ok.errors, []);
  assert.equal(ok.stanzas.length, 1);
  const bad = parseAll([HEADER + nest(33)], { maxDepth: 32 });
  assert.equal(bad.errors[0]?.condition, 'policy-violation');
  assert.match(bad.errors[0].text ?? '', /nested too deep/);
  assert.equal(bad.stanzas.length, 0);
  // Unbounded nesting is caught as it arrives, long before the close tags.
  const { p, log } = collect();
  p.write(HEADER);
  for (let i = 0; i < 40; i++) p.write('<a>');
  assert.equal(log.errors.length, 1);
});

test('attribute limit', () => {
  const attrs = (n: number) => Array.from({ length: n }, (_, i) => ` a${i}='${i}'`).join('');
  const ok = parseAll([HEADER + `<message${attrs(64)}/>`]);
  assert.deepEqual(ok.errors, []);
  assert.equal(Object.keys(ok.stanzas[0].attrs).length, 64);
  const bad = parseAll([HEADER + `<message${attrs(65)}/>`]);
  assert.equal(bad.errors[0]?.condition, 'policy-violation');
  assert.match(bad.errors[0].text ?? '', /too many attributes/);
  const child = parseAll([HEADER + `<message><x${attrs(3)}/></message>`], { maxAttributes: 2 });
  assert.equal(child.errors[0]?.condition, 'policy-violation');
});

test('after an error, further writes are ignored', () => {
  const { p, log } = collect();
  p.write(HEADER + '<message><!-- x -->');
  p.write('</message>' + CORPUS[0]);
  p.write('</stream:stream>');
  assert.deepEqual(log.events, ['open', 'error']);
});

test('reset() from a handler starts a fresh stream and drops the rest of the chunk', () => {
  const { p, log } = collect(undefined, (el, parser) => { if (el.name === 'proceed' || el.name === 'success') parser.reset(); });
  p.write(HEADER);
  p.write(`<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message><body>injected</body></message>`);
  p.write(HEADER.replace("to='example.com'", "to='tls.example.com'"));
  p.write(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`);
  p.write(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x'>` + CORPUS[9] + '</stream:stream>');
  assert.deepEqual(log.errors, []);
  assert.deepEqual(log.events, ['open', 'stanza', 'open', 'stanza', 'open', 'stanza', 'close']);
  assert.equal(log.opens[1].attrs.to, 'tls.example.com');
  assert.equal(log.opens[2].attrs.to, 'x');
  assert.ok(!log.stanzas.some((s) => s.name === 'message'));
});

test('reset() outside write, also after an error or a close', () => {
  const { p, log } = collect();
  p.write(HEADER + '<message><!--x--></message>');
  p.reset();
  p.write(HEADER + CORPUS[4] + '</stream:stream>');
  p.reset();
  p.write(HEADER + CORPUS[4]);
  assert.deepEqual(log.events, ['open', 'error', 'open', 'stanza', 'close', 'open', 'stanza']);
});

test('reset() discards a partial UTF-8 sequence and a partial stanza', () => {
  const { p, log } = collect();
  p.write(HEADER);
  p.write(Buffer.from('<message><body>é').subarray(0, 16)); // ends mid-'é'
  p.reset();
  p.write(HEADER + CORPUS[4]);
  assert.deepEqual(log.errors, []);
  assert.deepEqual(log.events, ['open', 'open', 'stanza']);
});

test('bytes that are not UTF-8 end the stream with not-well-formed; what came before them is delivered', () => {
  const bad = [[0xc3, 0x28], [0xff], [0x80], [0xed, 0xa0, 0x80] /* a surrogate */, [0xc0, 0xaf] /* overlong */, [0xf4, 0x90, 0x80, 0x80] /* past U+10FFFF */];
  for (const seq of bad) {
    const chunk = Buffer.concat([Buffer.from(CORPUS[4] + '<message><body>a'), Buffer.from(seq), Buffer.from('b</body></message>' + CORPUS[9])]);
    const at = Buffer.byteLength(CORPUS[4] + '<message><body>a');
    // In one read, and split after the first bad byte.
    for (const chunks of [[chunk], [chunk.subarray(0, at + 1), chunk.subarray(at + 1)]]) {
      const log = parseAll([HEADER, ...chunks]);
      assert.deepEqual(log.events, ['open', 'stanza', 'error'], `${seq}`);
      assert.equal(log.errors[0].condition, 'not-well-formed');
      assert.equal(log.errors[0].text, NOT_UTF8);
    }
  }
  // Bad bytes completing a character split across reads, and a stream header that is not UTF-8.
  const log = parseAll([HEADER, Buffer.from([0x3c, 0x72, 0xe2, 0x82]), Buffer.from([0x41, 0x2f, 0x3e])]);
  assert.deepEqual(log.events, ['open', 'error']);
  assert.deepEqual(parseAll([Buffer.from([0x3c, 0xff])]).errors.map((e) => e.text), [NOT_UTF8]);
});

test('a character split across reads, at each of its bytes, is decoded whole', () => {
  for (const ch of ['é', '€', '😀']) {
    const whole = Buffer.from(`<message><body>${ch}</body></message>`);
    const at = whole.indexOf(Buffer.from(ch));
    for (let cut = at + 1; cut < at + Buffer.byteLength(ch); cut++) {
      const log = parseAll([HEADER, whole.subarray(0, cut), whole.subarray(cut)]);
      assert.deepEqual(log.errors, [], `${ch} cut at ${cut}`);
      assert.deepEqual((log.stanzas[0].children[0] as Element).children, [ch]);
    }
    const bytes = parseAll([HEADER, ...Array.from(whole, (b) => Buffer.from([b]))]);
    assert.deepEqual((bytes.stanzas[0].children[0] as Element).children, [ch]);
  }
  // U+FEFF and U+FFFD are characters like any other.
  const log = parseAll([HEADER, Buffer.from('<message><body>\ufeffa\ufffd</body></message>')]);
  assert.deepEqual((log.stanzas[0].children[0] as Element).children, ['\ufeffa\ufffd']);
});

test('whitespace keepalives are ignored and never hit the size limit', () => {
  const { p, log } = collect({ maxStanzaBytes: 4096 });
  p.write(HEADER + '\n');
  p.write(' ');
  p.write(CORPUS[9] + '\n');
  for (let i = 0; i < 10000; i++) p.write(i % 2 ? ' ' : '\n');
  p.write(Buffer.from('\r\n\t '));
  p.write(CORPUS[4]);
  for (let i = 0; i < 100; i++) p.write(' '.repeat(100));
  p.write('</stream:stream>');
  assert.deepEqual(log.errors, []);
  assert.deepEqual(log.events, ['open', 'stanza', 'stanza', 'close']);
});

test('whitespace inside a start tag split across chunks is not mistaken for a keepalive', () => {
  const log = parseAll([HEADER, `<message to='a>`, '  ', `b'/>`]);
  assert.deepEqual(log.errors, []);
  assert.equal(log.stanzas[0].attrs.to, 'a>  b');
});

test('random chunking fuzz over the corpus matches a single-chunk parse', () => {
  const stream = Buffer.from(HEADER + CORPUS.join(' \n') + '</stream:stream>');
  const expected = CORPUS.map((x) => parseFragment(x));
  const reference = parseAll([stream]);
  assert.deepEqual(reference.errors, []);
  assert.deepEqual(reference.stanzas, expected);
  const rnd = prng(0xC0FFEE);
  for (let round = 0; round < 300; round++) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length;) {
      const n = rnd() < 0.3 ? 1 + Math.floor(rnd() * 4) : 1 + Math.floor(rnd() * 200);
      chunks.push(stream.subarray(i, i + n));
      i += n;
    }
    const log = parseAll(chunks);
    assert.deepEqual(log.errors, [], `round ${round}`);
    assert.deepEqual(log.stanzas, expected, `round ${round}`);
    assert.equal(log.closed, 1, `round ${round}`);
  }
});

test('parsed stanzas serialize back to something that parses the same', () => {
  const log = parseAll([HEADER + CORPUS.join('')]);
  for (const s of log.stanzas) assert.deepEqual(parseAll([HEADER + serialize(s)]).stanzas, [s]);
});

test('mutated input never throws out of write() and nothing follows an error', () => {
  const base = Buffer.from(HEADER + CORPUS.join('') + '</stream:stream>');
  const rnd = prng(42);
  const junk = Buffer.from(`<>&;'"/=![]?-x \u00e9`);
  for (let round = 0; round < 500; round++) {
    const buf = Buffer.from(base);
    for (let k = 0; k < 3; k++) buf[Math.floor(rnd() * buf.length)] = junk[Math.floor(rnd() * junk.length)];
    const { p, log } = collect();
    for (let i = 0; i < buf.length;) {
      const n = 1 + Math.floor(rnd() * 64);
      p.write(buf.subarray(i, i + n));
      i += n;
    }
    const e = log.events.indexOf('error');
    if (e !== -1) assert.equal(e, log.events.length - 1, `round ${round}`);
    assert.ok(log.errors.length <= 1);
  }
});

test('saxes handler slots are predeclared (keeps saxes out of V8 dictionary mode)', async () => {
  const { SaxesParser } = await import('saxes');
  const { p } = collect();
  const ours = new Set(Object.keys((p as unknown as { sax: object }).sax));
  for (const ev of ['xmldecl', 'opentagstart', 'attribute', 'opentag', 'closetag', 'text', 'cdata', 'comment', 'processinginstruction', 'doctype', 'error'] as const) {
    const bare = new SaxesParser({ xmlns: false });
    const before = new Set(Object.keys(bare));
    bare.on(ev, () => {});
    const added = Object.keys(bare).filter((k) => !before.has(k));
    for (const k of added) assert.ok(ours.has(k), `saxes stores the ${ev} handler in '${k}', which FastSaxes does not predeclare`);
  }
});
