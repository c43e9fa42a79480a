// Instant messaging and presence on a cluster: 2 c2s + 2 session processes,
// the two users of every scenario on different connection managers.
import { after, before, describe } from 'node:test';
import { startCluster, type Cluster } from '../support/parley.ts';
import { imScenarios, IM_CONFIG } from '../scenarios/im.ts';

describe('instant messaging and presence, cluster', () => {
  let c: Cluster;
  before(async () => { c = await startCluster({ c2s: 2, session: 2, config: IM_CONFIG }); });
  after(async () => { await c?.stop(); });
  imScenarios(() => c);
});
