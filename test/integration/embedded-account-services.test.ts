// Account services in the embedded mode; the CLI works on the same lmdb
// directory. `user del` runs its own actors there, so it is tested once the
// server has stopped (as the CLI's help says to).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { openStore } from '../../libs/store/index.ts';
import { connect, xml } from '../support/clients.ts';
import { befriend, jid, rosterGet } from '../support/im.ts';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import type { RunningServer } from '../../services/server.ts';
import { accountScenarios, ACCOUNT_CONFIG, cli } from '../scenarios/account-services.ts';

describe('account services, embedded mode', () => {
  let d: Deployment & { server: RunningServer };
  let config = '';
  before(async () => {
    d = await startEmbedded(ACCOUNT_CONFIG);
    config = join(d.server.config.dataDir, 'cli.yaml');
    writeFileSync(config, stringify({ dataDir: d.server.config.dataDir, domains: ['localhost'], log: { level: 'warn' } }));
  });
  after(async () => { await d.stop(); });
  accountScenarios(() => d, { cliConfig: () => config, liveRemoval: false });

  test('CLI `user del` with the server stopped: the account, its data and its subscriptions are gone from the store', async () => {
    await d.addUser('cliemba');
    await d.addUser('cliembb');
    const port = d.ports[0];
    const alice = await connect(port, 'cliemba');
    const bob = await connect(port, 'cliembb');
    for (const c of [alice, bob]) {
      await rosterGet(c);
      await c.send(xml('presence'));
    }
    await befriend(alice, 'cliemba', bob, 'cliembb');
    await alice.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('vCard', 'vcard-temp', xml('FN', {}, 'gone soon'))));
    await alice.stop();
    await bob.stop();
    await d.stop();
    assert.match((await cli(config, 'user', 'del', jid('cliemba'))).stdout, /deleted/);
    const store = await openStore({ kind: 'lmdb', path: join(d.server.config.dataDir, 'db') });
    try {
      for (const coll of ['account', 'roster', 'vcard']) assert.equal((await store.hgetall(jid('cliemba'), coll)).size, 0, `no ${coll} left`);
      const item = (await store.hgetall(jid('cliembb'), 'roster')).get(jid('cliemba'));
      assert.ok(item, 'the contact keeps the item');
      const { decodeItem } = await import('../../services/session/im/roster.ts');
      assert.equal(decodeItem(item).subscription, 'none', 'both subscriptions were cancelled in the contact\'s roster');
      assert.equal((await store.hgetall('$domain:localhost', 'users')).has('cliemba'), false);
    } finally {
      await store.close();
    }
  });
});
