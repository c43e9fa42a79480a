// Where components are connected, as every process learns it from the
// announcements on the bus: the newest connection of a domain wins, an ended
// one is forgotten at once, one whose process died once its announcement
// expires.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subjects } from '../bus/bus.ts';
import { envelope, type Envelope } from '../bus/envelope.ts';
import { InProcessBus } from '../bus/inprocess.ts';
import { ComponentDirectory } from './index.ts';

const timing = { announceMs: 50, ttlMs: 200 };
const msg = (to: string) => envelope({ kind: 'message', dir: 'in', from: 'a@localhost/r', to, xml: `<message to='${to}'/>` });

test('a held connection is reachable from every process; released, it is not', async () => {
  const bus = new InProcessBus();
  const subjects = new Subjects();
  const holder = new ComponentDirectory(bus, subjects, ['echo.localhost'], 'c2s-1', timing);
  const router = new ComponentDirectory(bus, subjects, ['echo.localhost'], 'session-1', timing);
  await holder.start();
  await router.start();
  assert.equal(router.has('echo.localhost'), true);
  assert.equal(router.has('other.localhost'), false);
  assert.equal(router.send('echo.localhost', msg('echo.localhost')), false);
  const got: Envelope[] = [];
  const hold = await holder.hold('echo.localhost', (e) => got.push(e), () => assert.fail('not displaced'));
  assert.equal(router.holderOf('echo.localhost'), 'c2s-1');
  assert.equal(router.send('echo.localhost', msg('bot@echo.localhost')), true);
  assert.deepEqual(got.map((e) => e.to), ['bot@echo.localhost']);
  hold.release();
  assert.equal(router.connected('echo.localhost'), false);
  assert.equal(router.send('echo.localhost', msg('echo.localhost')), false);
  holder.stop();
  router.stop();
});

test('a newer connection displaces the older, on another process too', async () => {
  const bus = new InProcessBus();
  const subjects = new Subjects();
  const one = new ComponentDirectory(bus, subjects, ['echo.localhost'], 'c2s-1', timing);
  const two = new ComponentDirectory(bus, subjects, ['echo.localhost'], 'c2s-2', timing);
  await one.start();
  await two.start();
  let displaced = 0;
  const first: Envelope[] = [];
  const second: Envelope[] = [];
  await one.hold('echo.localhost', (e) => first.push(e), () => displaced++);
  await two.hold('echo.localhost', (e) => second.push(e), () => assert.fail('the newest stays'));
  assert.equal(displaced, 1);
  assert.equal(one.holderOf('echo.localhost'), 'c2s-2');
  one.send('echo.localhost', msg('echo.localhost'));
  assert.equal(first.length, 0);
  assert.equal(second.length, 1);
  one.stop();
  two.stop();
});

test('a connection whose process stopped announcing is forgotten after ttlMs; a process that starts learns of held ones at once', async () => {
  const bus = new InProcessBus();
  const subjects = new Subjects();
  const router = new ComponentDirectory(bus, subjects, ['echo.localhost'], 'session-1', timing);
  await router.start();
  // A holder on a process that then dies: one announcement, never renewed, never ended.
  bus.publish(subjects.components(), envelope({ kind: 'ctl', dir: 'deliver', op: 'component-up', data: { domain: 'echo.localhost', node: 'gone', conn: 'gone/1', since: Date.now(), fresh: true } }));
  assert.equal(router.connected('echo.localhost'), true);
  await new Promise((r) => setTimeout(r, timing.ttlMs + 50));
  assert.equal(router.connected('echo.localhost'), false);

  const holder = new ComponentDirectory(bus, subjects, ['echo.localhost'], 'c2s-1', timing);
  await holder.start();
  await holder.hold('echo.localhost', () => {}, () => {});
  const late = new ComponentDirectory(bus, subjects, ['echo.localhost'], 'session-2', timing);
  await late.start();
  assert.equal(late.holderOf('echo.localhost'), 'c2s-1');
  // Renewed while held.
  await new Promise((r) => setTimeout(r, timing.ttlMs + 50));
  assert.equal(late.connected('echo.localhost'), true);
  for (const d of [router, holder, late]) d.stop();
});
