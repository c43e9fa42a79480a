import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StanzaError } from '../errors/index.ts';
import { bareOf, jid, parseJid, tryParseJid } from './index.ts';

const malformed = (s: string) =>
  assert.throws(() => parseJid(s), (e: unknown) => e instanceof StanzaError && e.condition === 'jid-malformed', JSON.stringify(s));

test('splits into parts and builds bare/full', () => {
  assert.deepEqual({ ...parseJid('juliet@example.com/balcony') }, {
    local: 'juliet', domain: 'example.com', resource: 'balcony',
    bare: 'juliet@example.com', full: 'juliet@example.com/balcony',
  });
  assert.deepEqual({ ...parseJid('example.com') }, { local: '', domain: 'example.com', resource: '', bare: 'example.com', full: 'example.com' });
  assert.equal(parseJid('example.com/r').full, 'example.com/r');
  assert.equal(parseJid('example.com/r').bare, 'example.com');
  // RFC 7622 §3.1: resource begins at the first '/', and may hold '@' and '/'.
  const j = parseJid('a@b/c@d/e');
  assert.equal(j.local, 'a');
  assert.equal(j.domain, 'b');
  assert.equal(j.resource, 'c@d/e');
  assert.equal(parseJid('b/c@d').local, '');
});

test('normalization', () => {
  const cases: [string, string][] = [
    ['Juliet@Example.COM/Balcony', 'juliet@example.com/Balcony'], // resource keeps case
    ['ＪＵＬＩＥＴ@example.com', 'juliet@example.com'], // full-width mapped
    ['CAFE\u0301@example.com', 'caf\u00e9@example.com'], // NFC after case folding
    ['example.com.', 'example.com'], // trailing dot
    ['u@example.com./r', 'u@example.com/r'],
    ['Bücher.example', 'bücher.example'],
    ['xn--bcher-kva.example', 'bücher.example'], // A-label → U-label
    ['XN--BCHER-KVA.EXAMPLE', 'bücher.example'],
    ['u@faß.de', 'u@faß.de'], // IDNA2008: ß is kept
    ['u@d/a\u00a0b\u3000c', 'u@d/a b c'], // non-ASCII spaces → U+0020
    ['u@d/e\u0301', 'u@d/\u00e9'],
    ['u@d/ x ', 'u@d/ x '], // OpaqueString keeps spaces
    ['a\\20b@d', 'a\\20b@d'], // XEP-0106 escapes are ordinary characters
    ['u@[2001:DB8::1]/r', 'u@[2001:db8::1]/r'],
    ['u@192.0.2.1', 'u@192.0.2.1'],
    ['localhost', 'localhost'],
    ['#!$%()*+,-.;=?[]^_`{|}~@d', '#!$%()*+,-.;=?[]^_`{|}~@d'],
    ['Σ@d', 'σ@d'],
    ['用户@例子.测试/资源', '用户@例子.测试/资源'],
  ];
  for (const [input, full] of cases) assert.equal(parseJid(input).full, full, input);
});

test('rejections', () => {
  for (const s of [
    '', '@', '/', '@d', 'd/', '@d/r', 'u@', 'u@/r', 'u@d/', '.', 'u@.',
    // localpart forbidden characters, whitespace, controls
    'a"b@d', 'a&b@d', "a'b@d", 'a:b@d', 'a<b@d', 'a>b@d', 'a@b@d', 'a b@d', 'a\tb@d', 'a\u00a0b@d',
    'a\u0000b@d', 'a\u007fb@d', 'a\u200bb@d', 'a\u00adb@d', 'a\ud800b@d', 'a\ue000b@d',
    '\u00aab@d', // compatibility character (ª)
    // domainpart
    'a..b', '.a', 'a b', 'a_b.com', 'a%41.com', '-a.com', 'a-.com', 'a@b@c', 'ex:5222', 'a\u0000.com',
    `${'x'.repeat(64)}.com`, 'xn--zz.example', '[::1', '[::1]x', '[1.2.3.4]', '[fe80::1%eth0]', '[not-ip]',
    '１２７.0.0.1', // full-width digits must not turn into an IPv4 literal
    // resourcepart
    'u@d/a\u0000b', 'u@d/a\nb', 'u@d/a\u007fb', 'u@d/\ud800',
  ]) malformed(s);
});

test('length limits are 1023 bytes of UTF-8 per part', () => {
  assert.equal(parseJid(`${'a'.repeat(1023)}@d`).local.length, 1023);
  malformed(`${'a'.repeat(1024)}@d`);
  assert.equal(parseJid(`u@d/${'r'.repeat(1023)}`).resource.length, 1023);
  malformed(`u@d/${'r'.repeat(1024)}`);
  assert.equal(parseJid(`u@d/${'é'.repeat(511)}`).resource.length, 511); // 1022 bytes
  malformed(`u@d/${'é'.repeat(512)}`); // 1024 bytes
  malformed(`${'ü'.repeat(512)}@d`);
  malformed(`u@d/${'€'.repeat(342)}`); // 1026 bytes
  const label = 'a'.repeat(63);
  const domain = Array(16).fill(label).join('.'); // 1023 chars
  assert.equal(parseJid(domain).domain, domain);
  malformed(`${domain}a`);
});

test('tryParseJid', () => {
  assert.equal(tryParseJid('@d'), undefined);
  assert.equal(tryParseJid('U@D')?.bare, 'u@d');
});

test('jid() builds from parts with the same rules', () => {
  assert.equal(jid('Juliet', 'Example.com', 'balcony').full, 'juliet@example.com/balcony');
  assert.equal(jid('', 'example.com').full, 'example.com');
  assert.equal(jid('u', 'd', '').full, 'u@d');
  assert.throws(() => jid('a@b', 'd'), StanzaError);
  assert.throws(() => jid('u', ''), StanzaError);
  assert.throws(() => jid('u', 'd', 'a\u0000'), StanzaError);
});

test('round trips: parse(full) is a fixed point', () => {
  for (const s of ['Juliet@Example.com/Balcony', 'Bücher.example/x', 'ＵＳＥＲ@xn--bcher-kva.example/ a b ', 'u@[::1]/r/s']) {
    const a = parseJid(s);
    const b = parseJid(a.full);
    assert.deepEqual({ ...b }, { ...a });
    assert.equal(parseJid(a.bare).full, a.bare);
    assert.equal(jid(a.local, a.domain, a.resource).full, a.full);
  }
});

test('bareOf strips the resource without validation', () => {
  assert.equal(bareOf('u@d/r/x'), 'u@d');
  assert.equal(bareOf('u@d'), 'u@d');
  assert.equal(bareOf('d/r@x'), 'd');
});

test('results are immutable and cached results are identical', () => {
  const a = parseJid('cache@example.com/r');
  assert.equal(parseJid('cache@example.com/r'), a);
  assert.throws(() => { (a as { local: string }).local = 'x'; }, TypeError);
  // Flooding the cache with distinct JIDs neither fails nor changes answers.
  for (let i = 0; i < 5000; i++) parseJid(`u${i}@example.com`);
  assert.deepEqual({ ...parseJid('cache@example.com/r') }, { ...a });
});
