// The personal eventing service (XEP-0163) on a cluster: 2 c2s + 2 session
// processes, publisher and contacts on different connection managers, the
// caps cache shared through Redis.
import { after, before, describe } from 'node:test';
import { startCluster, type Cluster } from '../support/parley.ts';
import { pepScenarios, PEP_CONFIG } from '../scenarios/pep.ts';

describe('PEP, cluster', () => {
  let c: Cluster;
  before(async () => { c = await startCluster({ c2s: 2, session: 2, config: PEP_CONFIG }); });
  after(async () => { await c?.stop(); });
  pepScenarios(() => c);
});
