// Multi-user chat on a cluster: 2 c2s + 2 session processes, the occupants of
// every room spread over both connection managers.
import { after, before, describe } from 'node:test';
import { startCluster, type Cluster } from '../support/parley.ts';
import { mucScenarios, MUC_CONFIG } from '../scenarios/muc.ts';
import { managedFanoutScenario } from '../scenarios/muc-managed.ts';

describe('multi-user chat, cluster', () => {
  let c: Cluster;
  before(async () => { c = await startCluster({ c2s: 2, session: 2, config: MUC_CONFIG }); });
  after(async () => { await c?.stop(); });
  mucScenarios(() => c);
  managedFanoutScenario(() => c, 2);
});
