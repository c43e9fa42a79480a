// Many domains on one deployment (RFC 2779 2.1.4, 2.1.5): each administered on
// its own, added at run time, and their users talk to each other.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded } from '../support/parley.ts';
import { connect, isMessageWithBody, xml } from '../support/clients.ts';
import type { RunningServer } from '../../services/server.ts';
import type { Deployment } from '../support/parley.ts';

let d: Deployment & { server: RunningServer };
before(async () => { d = await startEmbedded({ domains: ['localhost', 'one.example'], domainRefreshSeconds: 0.2 }); });
after(async () => { await d.stop(); });

test('the same name in two domains is two accounts; each domain lists its own users', async () => {
  const { accounts } = d.server;
  assert.equal(await accounts.add('sam@one.example', 'pw-one'), true);
  assert.equal(await accounts.add('sam@localhost', 'pw-local'), true);
  assert.deepEqual(await accounts.list('one.example'), ['sam@one.example']);
  assert.ok((await accounts.list('localhost')).includes('sam@localhost'));
  const one = await connect(d.ports[0], 'sam', { domain: 'one.example', password: 'pw-one' });
  const local = await connect(d.ports[0], 'sam', { password: 'pw-local' });
  try {
    assert.match(one.jid, /^sam@one\.example\//);
    await local.send(xml('presence'));
    await one.send(xml('message', { to: 'sam@localhost', type: 'chat' }, xml('body', {}, 'across domains')));
    const m = await local.waitFor(isMessageWithBody('across domains'));
    assert.match(m.attrs.from!, /^sam@one\.example\//);
  } finally {
    await one.stop();
    await local.stop();
  }
  await assert.rejects(connect(d.ports[0], 'sam', { domain: 'one.example', password: 'pw-local' }), 'one domain\'s password is not the other\'s');
});

test('a domain added at run time is served without a restart', async () => {
  await assert.rejects(connect(d.ports[0], 'newbie', { domain: 'added.example', password: 'x' }));
  await d.server.domains.add('added.example');
  await d.server.accounts.add('newbie@added.example', 'x');
  await new Promise((r) => setTimeout(r, 500));
  const c = await connect(d.ports[0], 'newbie', { domain: 'added.example', password: 'x' });
  assert.match(c.jid, /^newbie@added\.example\//);
  await c.stop();
});
