// An external component of one Parley deployment, reached from another over
// federation: a.parley.test serves the component echo.a.parley.test; bob on
// b.parley.test writes to it and gets its answer, and the component writes to
// bob first — each direction over a server stream for the component's domain,
// authenticated by dialback like any domain of a.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { component, xml as cxml, type Component } from '@xmpp/component';
import { freePortOn, goOnline, login, messageWithBody, startParley, xml, type Parley, type Stanza, type User } from './support.ts';

const HOST = '127.0.0.1';
const SECRET = 'federated-component-secret';

describe('an external component reached over federation', () => {
  let a: Parley;
  let b: Parley;
  let bob: User;
  let echo: Component;
  const seen: Stanza[] = [];

  before(async () => {
    const [pa, pb, pc] = await Promise.all([freePortOn(HOST), freePortOn(HOST), freePortOn(HOST)]);
    a = await startParley('a.parley.test', { listen: { host: HOST, port: pa }, routes: { 'b.parley.test': `${HOST}:${pb}` } },
      { components: { listen: { host: HOST, port: pc }, services: [{ domain: 'echo.a.parley.test', secret: SECRET }] } });
    // The component's domain is reached like a's own (an SRV record, or here a route, for it).
    b = await startParley('b.parley.test', { listen: { host: HOST, port: pb }, routes: { 'a.parley.test': `${HOST}:${pa}`, 'echo.a.parley.test': `${HOST}:${pa}` } });
    await b.addUser('bob');
    bob = await login(HOST, b.port, 'bob@b.parley.test');
    await goOnline(bob);
    echo = component({ service: `xmpp://${HOST}:${pc}`, domain: 'echo.a.parley.test', password: SECRET });
    echo.reconnect.stop();
    echo.on('error', () => {});
    echo.on('stanza', (s: Stanza) => {
      seen.push(s);
      const body = s.getChildText('body');
      if (s.is('message') && s.attrs.type !== 'error' && body) void echo.send(cxml('message', { from: s.attrs.to, to: s.attrs.from, type: 'chat' }, cxml('body', {}, `echo: ${body}`)));
    });
    await echo.start();
  });

  after(async () => {
    await echo?.stop().catch(() => {});
    await bob?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  test('the component writes to a remote user first, then the user writes to it and gets its echo', async () => {
    await echo.send(cxml('message', { from: 'news@echo.a.parley.test', to: 'bob@b.parley.test', type: 'chat' }, cxml('body', {}, 'hello over federation')));
    const greeting = await bob.waitFor(messageWithBody('hello over federation'), 15_000);
    assert.equal(greeting.attrs.from, 'news@echo.a.parley.test');

    await bob.send(xml('message', { to: 'bot@echo.a.parley.test', type: 'chat' }, xml('body', {}, 'hello component')));
    const answer = await bob.waitFor(messageWithBody('echo: hello component'), 15_000);
    assert.equal(answer.attrs.from, 'bot@echo.a.parley.test');
    assert.match(seen.find((s) => s.getChildText('body') === 'hello component')?.attrs.from ?? '', /^bob@b\.parley\.test\//);
    // Streams for the component's domain, authenticated by dialback.
    assert.ok(a.streams().some((s) => s.local === 'echo.a.parley.test' && s.remote.includes('b.parley.test') && s.auth === 'dialback'), JSON.stringify(a.streams()));
  });
});
