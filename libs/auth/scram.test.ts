import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import {
  createSaslSession, deriveCredentials, deriveScramCredential, saslprep, verifyPassword,
  type CredentialLookup, type SaslOptions, type SaslSession, type SaslStep, type StoredCredentials,
} from './index.ts';

const b = (s: string) => Buffer.from(s);
const text = (step: SaslStep) => {
  assert.ok(step.kind !== 'failure', `unexpected failure ${JSON.stringify(step)}`);
  return step.data?.toString() ?? '';
};

// Accounts: 'user' with RFC salts, so the RFC exchanges replay byte for byte.
const rfcCreds = async (): Promise<StoredCredentials> => ({
  'SCRAM-SHA-1': await deriveScramCredential('SCRAM-SHA-1', 'pencil', Buffer.from('QSXCR+Q6sek8bf92', 'base64'), 4096),
  'SCRAM-SHA-256': await deriveScramCredential('SCRAM-SHA-256', 'pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096),
});
const accounts = new Map<string, StoredCredentials>();
const ready = (async () => {
  accounts.set('user', await rfcCreds());
  accounts.set('juliet', await deriveCredentials('r0m30myr0m30', 4096));
})();
const lookup: CredentialLookup = async (u) => { await ready; return accounts.get(u); };

function start(mech: string, opts?: SaslOptions, lk = lookup): SaslSession {
  const s = createSaslSession(mech, lk, opts);
  assert.ok(s);
  return s;
}

/** A minimal SCRAM client, to drive sessions with arbitrary inputs. */
function client(mech: 'SCRAM-SHA-1' | 'SCRAM-SHA-256', user: string, password: string, cnonce = randomBytes(12).toString('base64'), gs2 = 'n,,', cbData = Buffer.alloc(0)) {
  const digest = mech === 'SCRAM-SHA-1' ? 'sha1' : 'sha256';
  const first = `n=${user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${cnonce}`;
  return {
    first: b(gs2 + first),
    final(serverFirst: string, opt: { tamper?: boolean } = {}) {
      const attrs = Object.fromEntries(serverFirst.split(',').map((a) => [a[0], a.slice(2)]));
      const salted = pbkdf2Sync(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), digest === 'sha1' ? 20 : 32, digest);
      const clientKey = createHmac(digest, salted).update('Client Key').digest();
      const storedKey = createHash(digest).update(clientKey).digest();
      const noProof = `c=${Buffer.concat([b(gs2), cbData]).toString('base64')},r=${attrs.r}`;
      const sig = createHmac(digest, storedKey).update(`${first},${serverFirst},${noProof}`).digest();
      const proof = clientKey.map((x, i) => x ^ sig[i]);
      if (opt.tamper) proof[0] ^= 1;
      return b(`${noProof},p=${Buffer.from(proof).toString('base64')}`);
    },
  };
}

test('RFC 5802 §5 SCRAM-SHA-1 test vector', async () => {
  const s = start('SCRAM-SHA-1', { serverNonce: '3rfcNHYJY1ZVvWVs7j' });
  const first = await s.step(b('n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL'));
  assert.equal(first.kind, 'challenge');
  assert.equal(text(first), 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096');
  const final = await s.step(b('c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts='));
  assert.equal(final.kind, 'success');
  assert.equal(text(final), 'v=rmF9pqV8S7suAoZWja4dJRkFsKQ=');
  assert.equal(final.kind === 'success' && final.username, 'user');
  assert.equal((await s.step(b(''))).kind, 'failure'); // nothing after the outcome
});

test('RFC 7677 §3 SCRAM-SHA-256 test vector', async () => {
  const s = start('SCRAM-SHA-256', { serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' });
  const first = await s.step(b('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
  assert.equal(text(first), 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
  const final = await s.step(b('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='));
  assert.equal(final.kind, 'success');
  assert.equal(text(final), 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
});

test('SCRAM with random nonces, no initial response, y flag, authzid, case-insensitive user', async () => {
  for (const mech of ['SCRAM-SHA-1', 'SCRAM-SHA-256'] as const) {
    const s = start(mech, { domain: 'Example.com' });
    assert.deepEqual(await s.step(b('')), { kind: 'challenge', data: Buffer.alloc(0) });
    const c = client(mech, 'Juliet', 'r0m30myr0m30', undefined, 'y,a=juliet@example.com,');
    const sf = text(await s.step(c.first));
    assert.match(sf, /^r=[^,]+,s=[A-Za-z0-9+/=]+,i=4096$/);
    assert.ok(sf.split(',')[0].length > 20); // server appended its own nonce
    const final = await s.step(c.final(sf));
    assert.deepEqual({ ...final, data: undefined }, { kind: 'success', data: undefined, username: 'juliet', authzid: 'juliet@example.com' });
  }
});

test('SCRAM wrong password and unknown user fail identically', async () => {
  const s1 = start('SCRAM-SHA-256');
  const c1 = client('SCRAM-SHA-256', 'juliet', 'wrong');
  const r1 = await s1.step(c1.final(text(await s1.step(c1.first))));
  assert.deepEqual(r1, { kind: 'failure', condition: 'not-authorized', text: undefined });

  const s2 = start('SCRAM-SHA-256');
  const c2 = client('SCRAM-SHA-256', 'romeo', 'anything');
  const sf2 = text(await s2.step(c2.first));
  assert.match(sf2, /^r=[^,]+,s=[A-Za-z0-9+/]{22}==,i=4096$/); // same shape as a real 16-byte salt
  assert.deepEqual(await s2.step(c2.final(sf2)), r1);

  // The fake salt is stable, so repeated probes cannot tell it from a real one,
  // but differs per user and per mechanism.
  const saltOf = async (mech: string, user: string, opts?: SaslOptions) =>
    text(await start(mech, opts).step(b(`n,,n=${user},r=abc`))).split(',')[1];
  assert.equal(await saltOf('SCRAM-SHA-256', 'romeo'), await saltOf('SCRAM-SHA-256', 'Romeo'));
  assert.notEqual(await saltOf('SCRAM-SHA-256', 'romeo'), await saltOf('SCRAM-SHA-256', 'mercutio'));
  assert.notEqual(await saltOf('SCRAM-SHA-256', 'romeo'), await saltOf('SCRAM-SHA-1', 'romeo'));
  const secret = randomBytes(32);
  assert.equal(await saltOf('SCRAM-SHA-1', 'romeo', { fakeSaltSecret: secret }), await saltOf('SCRAM-SHA-1', 'romeo', { fakeSaltSecret: Buffer.from(secret) }));
  assert.notEqual(await saltOf('SCRAM-SHA-1', 'romeo', { fakeSaltSecret: secret }), await saltOf('SCRAM-SHA-1', 'romeo'));
  assert.match(text(await start('SCRAM-SHA-1', { fakeIterations: 10000 }).step(b('n,,n=romeo,r=abc'))), /,i=10000$/);

  // A tampered proof for a real user is rejected too.
  const s3 = start('SCRAM-SHA-1');
  const c3 = client('SCRAM-SHA-1', 'juliet', 'r0m30myr0m30');
  assert.deepEqual(await s3.step(c3.final(text(await s3.step(c3.first)), { tamper: true })), r1);
});

const failure = async (s: SaslSession, msgs: string[], condition: string) => {
  let last: SaslStep | undefined;
  for (const m of msgs) last = await s.step(b(m));
  assert.equal(last?.kind, 'failure', JSON.stringify(msgs));
  assert.equal(last?.kind === 'failure' && last.condition, condition, JSON.stringify(msgs));
};

test('SCRAM usernames use saslname escaping', async () => {
  const seen: string[] = [];
  const spy: CredentialLookup = async (u) => { seen.push(u); return undefined; };
  await start('SCRAM-SHA-1', {}, spy).step(b('n,,n=A=3Db=2Cc,r=x'));
  assert.deepEqual(seen, ['a=b,c']);
  // Names that cannot be a localpart fail before any lookup.
  await failure(start('SCRAM-SHA-1', {}, spy), ['n,,n=a b,r=x'], 'not-authorized');
  await failure(start('SCRAM-SHA-1', {}, spy), ['n,,n=a@b,r=x'], 'not-authorized');
  assert.deepEqual(seen, ['a=b,c']);
});

test('SCRAM malformed messages', async () => {
  for (const first of [
    'x,,n=user,r=abc', 'n,n=user,r=abc', 'n,,', 'n,,r=abc,n=user', 'n,,n=user', 'n,,n=,r=abc', 'n,,n=user,r=',
    'n,,n=us=er,r=abc', 'n,,n=us=2c,r=abc', 'n,,m=ext,n=user,r=abc', 'n,a=,n=user,r=abc', 'n,a=x=y,n=user,r=abc',
    'n,,n=user,r=a b', 'n,,n=user,r=abc,1=x', 'n,,n=user,r=abc,x=', 'n,,n=user,r=abc,', 'p=tls-exporter,,n=user,r=abc',
  ]) await failure(start('SCRAM-SHA-1'), [first], 'malformed-request');
  await failure(start('SCRAM-SHA-1'), ['', ''], 'malformed-request'); // no client-first after the empty challenge
  assert.deepEqual(await start('SCRAM-SHA-1').step(Buffer.from([0x6e, 0x2c, 0x2c, 0xff])), { kind: 'failure', condition: 'malformed-request', text: 'not UTF-8' });

  const cf = 'n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL';
  const r = 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j';
  const p = 'p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=';
  const opts = { serverNonce: '3rfcNHYJY1ZVvWVs7j' };
  for (const final of [
    '', `c=biws,${r}`, `${r},c=biws,${p}`, `c=biws,${p},${r}`, `c=bi!s,${r},${p}`, `c=biws,${r},p=abc`,
    `c=biws,${r},p=dGVzdA==`, // wrong proof length
    `c=biws,${r},ext,${p}`, `x=biws,${r},${p}`,
  ]) await failure(start('SCRAM-SHA-1', opts), [cf, final], 'malformed-request');
  // Well-formed but wrong: nonce or channel-binding data differs.
  await failure(start('SCRAM-SHA-1', opts), [cf, `c=biws,r=fyko+d2lbbFgONRv9qkxdawL,${p}`], 'not-authorized');
  await failure(start('SCRAM-SHA-1', opts), [cf, `c=eSws,${r},${p}`], 'not-authorized');
  // Extensions are tolerated and covered by the signature, so the RFC proof no longer matches.
  await failure(start('SCRAM-SHA-1', opts), [cf, `c=biws,${r},x=1,${p}`], 'not-authorized');
});

test('SCRAM channel binding', async () => {
  const channelBinding = { type: 'tls-exporter', data: randomBytes(32) };
  assert.equal(createSaslSession('SCRAM-SHA-256-PLUS', lookup), undefined);
  // -PLUS works with matching binding data.
  const s = start('SCRAM-SHA-256-PLUS', { channelBinding });
  const c = client('SCRAM-SHA-256', 'juliet', 'r0m30myr0m30', undefined, 'p=tls-exporter,,', channelBinding.data);
  assert.equal((await s.step(c.final(text(await s.step(c.first))))).kind, 'success');
  // Different binding data (e.g. a MITM's TLS session) fails.
  const s2 = start('SCRAM-SHA-256-PLUS', { channelBinding });
  const c2 = client('SCRAM-SHA-256', 'juliet', 'r0m30myr0m30', undefined, 'p=tls-exporter,,', randomBytes(32));
  assert.equal((await s2.step(c2.final(text(await s2.step(c2.first))))).kind, 'failure');
  await failure(start('SCRAM-SHA-256-PLUS', { channelBinding }), ['p=tls-unique,,n=juliet,r=abc'], 'not-authorized');
  await failure(start('SCRAM-SHA-256-PLUS', { channelBinding }), ['n,,n=juliet,r=abc'], 'malformed-request');
  // 'y' while we offer binding means -PLUS was stripped in transit.
  await failure(start('SCRAM-SHA-256', { channelBinding }), ['y,,n=juliet,r=abc'], 'not-authorized');
  await failure(start('SCRAM-SHA-256', { channelBinding }), ['p=tls-exporter,,n=juliet,r=abc'], 'malformed-request');
  assert.equal((await start('SCRAM-SHA-256', { channelBinding }).step(b('n,,n=juliet,r=abc'))).kind, 'challenge');
});

test('authzid must be the user\'s own bare JID', async () => {
  const run = async (authzid: string, opts: SaslOptions) => {
    const s = start('SCRAM-SHA-256', opts);
    const c = client('SCRAM-SHA-256', 'juliet', 'r0m30myr0m30', undefined, `n,a=${authzid},`);
    return s.step(c.final(text(await s.step(c.first))));
  };
  assert.equal((await run('Juliet@EXAMPLE.com', { domain: 'example.com' })).kind, 'success');
  for (const [authzid, opts] of [
    ['romeo@example.com', { domain: 'example.com' }], ['juliet@example.org', { domain: 'example.com' }],
    ['juliet@example.com/balcony', { domain: 'example.com' }], ['juliet@example.com', {}], ['@@', { domain: 'example.com' }],
  ] as const) await failure({ step: async () => run(authzid, opts) }, [''], 'invalid-authzid');
});

test('PLAIN', async () => {
  const ok = await start('PLAIN', { domain: 'example.com' }).step(b('\0juliet\0r0m30myr0m30'));
  assert.deepEqual(ok, { kind: 'success', data: undefined, username: 'juliet' });
  const withAuthz = await start('PLAIN', { domain: 'example.com' }).step(b('juliet@example.com\0JULIET\0r0m30myr0m30'));
  assert.deepEqual(withAuthz, { kind: 'success', data: undefined, username: 'juliet', authzid: 'juliet@example.com' });
  // Without an initial response: empty challenge, then the message.
  const s = start('PLAIN');
  assert.deepEqual(await s.step(b('')), { kind: 'challenge', data: Buffer.alloc(0) });
  assert.equal((await s.step(b('\0user\0pencil'))).kind, 'success');

  const wrong = await start('PLAIN').step(b('\0juliet\0wrong'));
  assert.deepEqual(wrong, { kind: 'failure', condition: 'not-authorized', text: undefined });
  assert.deepEqual(await start('PLAIN').step(b('\0romeo\0r0m30myr0m30')), wrong); // unknown user: same answer
  await failure(start('PLAIN', { domain: 'example.com' }), ['romeo@example.com\0juliet\0r0m30myr0m30'], 'invalid-authzid');
  for (const m of ['juliet', 'juliet\0pw', '\0\0pw', '\0juliet\0', '\0juliet\0pw\0']) await failure(start('PLAIN'), [m], 'malformed-request');
  await failure(start('PLAIN'), ['', ''], 'malformed-request');
  await failure(start('PLAIN'), ['\0jul iet\0pw'], 'not-authorized');
  await failure(start('PLAIN', {}, async () => { throw new Error('db down'); }), ['\0juliet\0pw'], 'temporary-auth-failure');
});

test('unknown mechanisms', () => {
  for (const m of ['DIGEST-MD5', 'plain', 'SCRAM-SHA-512', 'EXTERNAL', '']) assert.equal(createSaslSession(m, lookup), undefined);
});

test('credentials', async () => {
  const creds = await deriveCredentials('pässwörd', 4096);
  for (const mech of ['SCRAM-SHA-1', 'SCRAM-SHA-256'] as const) {
    assert.equal(Buffer.from(creds[mech].salt, 'base64').length, 16);
    assert.equal(creds[mech].iterations, 4096);
    assert.equal(Buffer.from(creds[mech].storedKey, 'base64').length, mech === 'SCRAM-SHA-1' ? 20 : 32);
  }
  assert.notEqual(creds['SCRAM-SHA-1'].salt, creds['SCRAM-SHA-256'].salt);
  assert.ok(!JSON.stringify(creds).includes('pässwörd'));
  assert.equal(await verifyPassword(creds, 'pässwörd'), true);
  assert.equal(await verifyPassword(creds, 'pa\u0308sswo\u0308rd'), true); // NFKC
  assert.equal(await verifyPassword(creds, 'Pässwörd'), false);
  assert.equal(await verifyPassword(creds, ''), false);
  assert.equal(await verifyPassword(creds, 'pässwörd\u0007'), false);
  // Salts are random per derivation.
  assert.notEqual((await deriveCredentials('x', 1))['SCRAM-SHA-256'].salt, (await deriveCredentials('x', 1))['SCRAM-SHA-256'].salt);
  await assert.rejects(deriveCredentials(''), RangeError);
  await assert.rejects(deriveCredentials('a\u0000b'), RangeError);
  await assert.rejects(deriveCredentials('x', 0), RangeError);
  // RFC 5802 vector: the derived keys reproduce the RFC exchange above.
  assert.deepEqual(await verifyPassword(await rfcCreds(), 'pencil'), true);
  // Non-ASCII spaces map to space, so both spellings verify.
  assert.equal(await verifyPassword(await deriveCredentials('a b', 1), 'a\u00a0b'), true);
});

test('SASLprep (RFC 4013 §3 examples and tables)', () => {
  assert.equal(saslprep('I\u00adX'), 'IX'); // soft hyphen mapped to nothing
  assert.equal(saslprep('user'), 'user');
  assert.equal(saslprep('USER'), 'USER'); // case preserved
  assert.equal(saslprep('\u00aa'), 'a'); // NFKC
  assert.equal(saslprep('\u2168'), 'IX'); // NFKC
  assert.equal(saslprep('a\u2003b\u3000c'), 'a b c'); // non-ASCII spaces
  assert.equal(saslprep('a\u200bb'), 'a b');
  assert.equal(saslprep('a\ufe0fb\u200dc'), 'abc');
  assert.throws(() => saslprep('\u0007'), RangeError); // prohibited
  assert.throws(() => saslprep('a\u0085'), RangeError); // C.2.2
  assert.throws(() => saslprep('a\ue000'), RangeError); // private use
  assert.throws(() => saslprep('a\ufdd0'), RangeError); // non-character
  assert.throws(() => saslprep('a\ud800'), RangeError); // lone surrogate
  assert.throws(() => saslprep('a\u200e'), RangeError); // C.8
  assert.throws(() => saslprep('a\u{e0041}'), RangeError); // tagging
  assert.throws(() => saslprep('\u0627\u0031'), RangeError); // RandALCat must also end the string
  assert.throws(() => saslprep('\u05d0a\u05d0'), RangeError); // RandALCat mixed with LCat
  assert.equal(saslprep('\u0627\u0031\u0628'), '\u0627\u0031\u0628');
  assert.equal(saslprep('a\u0378b'), 'a\u0378b'); // unassigned: fine in queries…
  assert.throws(() => saslprep('a\u0378b', true), RangeError); // …not in stored strings
});
