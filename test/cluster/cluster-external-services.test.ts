// XEP-0215 in a cluster: a user on each connection manager asks for TURN credentials (answered by whichever session
// process owns the account) and Debian's coturn allocates a relay with each.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NS_EXTDISCO } from '../../services/session/modules/external-services.ts';
import { connect, xml, type TestClient } from '../support/clients.ts';
import { allocateRelay, startCoturn, type Coturn } from '../support/coturn.ts';
import { startCluster, type Cluster } from '../support/parley.ts';

const SECRET = 'turn-shared-secret-for-cluster-tests';

describe('external services (XEP-0215) with coturn, cluster (2 c2s + 2 session)', () => {
  let turn: Coturn;
  let c: Cluster;
  const clients: TestClient[] = [];

  before(async () => {
    turn = await startCoturn({ secret: SECRET, realm: 'localhost' });
    c = await startCluster({
      c2s: 2, session: 2,
      config: { externalServices: [{ host: '127.0.0.1', port: turn.port, type: 'turn', transport: 'udp', secret: SECRET, credentialTtlSeconds: 600 }] },
    });
    for (const u of ['ta', 'tb']) await c.addUser(u);
  });
  after(async () => {
    for (const x of clients) await x.stop();
    await c?.stop();
    await turn?.stop();
  });

  test('credentials handed out on either connection manager let coturn allocate a relay', async () => {
    for (const [i, user] of ['ta', 'tb'].entries()) {
      const client = await connect(c.ports[i], user);
      clients.push(client);
      const reply = await client.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' },
        xml('credentials', NS_EXTDISCO, xml('service', { host: '127.0.0.1', type: 'turn' }))));
      const s = reply.getChild('credentials', NS_EXTDISCO)?.getChild('service');
      const { username = '', password = '' } = s?.attrs ?? {};
      assert.ok(username.endsWith(`:${user}@localhost`) && password, `${user}: ${reply.toString()}`);
      const relay = await allocateRelay(turn.port, username, password);
      assert.ok(relay.ok, `${user}: coturn allocated a relay (${relay.output.slice(-300)})`);
    }
  });
});
