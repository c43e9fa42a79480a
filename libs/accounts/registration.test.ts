// XEP-0077 before authentication: closed by default, the form, creation,
// conflicts, password rules and the per-address limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../config/index.ts';
import { openStore } from '../store/index.ts';
import { el, type Element } from '../xml/element.ts';
import { tempDir } from '../../test/support/servers.ts';
import { Accounts } from './index.ts';
import { InBandRegistration, NS_REGISTER, RateLimiter } from './registration.ts';

const iq = (type: string, id: string, ...kids: Element[]) => el('iq', { type, id }, el('query', { xmlns: NS_REGISTER }, ...kids));
const set = (id: string, user: string, pw: string) => iq('set', id, el('username', {}, user), el('password', {}, pw));
const condition = (e: Element) => {
  const err = e.children.find((c): c is Element => typeof c !== 'string' && c.name === 'error');
  const first = err?.children.find((c): c is Element => typeof c !== 'string');
  return first?.name;
};

test('the rate limiter allows max requests per window per key and recovers', () => {
  let now = 0;
  const r = new RateLimiter(2, 1000, () => now);
  assert.ok(r.take('a'));
  assert.ok(r.take('a'));
  assert.ok(!r.take('a'));
  assert.ok(r.take('b'), 'keys are separate');
  assert.equal(r.retryAfter('a'), 1);
  now = 1001;
  assert.ok(r.take('a'), 'the window slid');
});

test('registration: closed by default; open, it creates accounts once, checks passwords, limits each address', async () => {
  const store = await openStore({ kind: 'lmdb', path: tempDir('parley-reg') });
  try {
    const accounts = new Accounts(store);
    const closed = new InBandRegistration(accounts, loadConfig(undefined, {}, {}));
    assert.equal(closed.open, false);
    assert.equal(condition(await closed.answer(set('c', 'x', 'password1'), 'localhost', '10.0.0.1')), 'service-unavailable');

    const reg = new InBandRegistration(accounts, loadConfig(undefined, {}, { registration: { open: true, maxPerIp: 3 } }));
    const form = await reg.answer(iq('get', 'g'), 'localhost', '10.0.0.1');
    assert.equal(form.attrs.type, 'result');
    const r1 = await reg.answer(set('1', 'Newbie', 'password1'), 'localhost', '10.0.0.1');
    assert.equal(r1.attrs.type, 'result');
    assert.ok(await accounts.exists('newbie@localhost'), 'the localpart is normalized');
    assert.equal(condition(await reg.answer(set('2', 'newbie', 'password1'), 'localhost', '10.0.0.1')), 'conflict');
    const short = await reg.answer(set('3', 'other', 'short'), 'localhost', '10.0.0.1');
    assert.equal(condition(short), 'not-acceptable');
    assert.ok(!JSON.stringify(short).includes('short"'), 'the password is not echoed back');
    assert.equal(condition(await reg.answer(set('4', 'other', 'password1'), 'localhost', '10.0.0.1')), 'resource-constraint');
    assert.equal((await reg.answer(set('5', 'other', 'password1'), 'localhost', '10.0.0.2')).attrs.type, 'result', 'another address');
    assert.equal(condition(await reg.answer(set('6', 'a b', 'password1'), 'localhost', '10.0.0.3')), 'jid-malformed');
    assert.equal(condition(await reg.answer(iq('set', '7', el('remove')), 'localhost', '10.0.0.3')), 'registration-required');
  } finally {
    await store.close();
  }
});

test('registration answers the first thing to fix: the form, then the username, then the password policy', async () => {
  const store = await openStore({ kind: 'lmdb', path: tempDir('parley-reg-order') });
  try {
    const accounts = new Accounts(store);
    const reg = new InBandRegistration(accounts, loadConfig(undefined, {}, { registration: { open: true, maxPerIp: 100, minPasswordLength: 8 } }));
    const textOf = (e: Element) => JSON.stringify(e);
    assert.equal((await reg.answer(set('1', 'taken', 'password1'), 'localhost', '10.0.0.1')).attrs.type, 'result');

    const twice = iq('set', '2', el('username', {}, 'a'), el('username', {}, 'b'), el('password', {}, 'x'));
    assert.equal(condition(await reg.answer(twice, 'localhost', '10.0.0.1')), 'bad-request', 'two usernames: the form is wrong');
    assert.equal(condition(await reg.answer(iq('set', '3', el('username', {}, 'taken')), 'localhost', '10.0.0.1')), 'not-acceptable', 'no password (XEP-0077 §3.1)');
    assert.equal(condition(await reg.answer(set('4', 'a b', 'x'), 'localhost', '10.0.0.1')), 'jid-malformed', 'a bad username before a short password');

    const conflict = await reg.answer(set('5', 'Taken', 'x'), 'localhost', '10.0.0.1');
    assert.equal(condition(conflict), 'conflict', 'a taken username before a short password');
    assert.match(textOf(conflict), /"type":"cancel"/);

    const short = await reg.answer(set('6', 'free', 'x'), 'localhost', '10.0.0.1');
    assert.equal(condition(short), 'not-acceptable', 'a free username with a short password');
    assert.match(textOf(short), /at least 8 characters/);
    assert.equal(await accounts.exists('free@localhost'), false);
  } finally {
    await store.close();
  }
});
