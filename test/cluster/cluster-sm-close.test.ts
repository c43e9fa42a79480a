// Stream management when the client closes its stream without acknowledging
// (test/scenarios/sm-close.ts), across a cluster: the client on one c2s
// process, its contact on the other, the accounts on two session processes.
import { after, before, describe } from 'node:test';
import { startCluster, type Cluster } from '../support/parley.ts';
import { smCloseScenarios } from '../scenarios/sm-close.ts';

const WAIT_MS = 800;

describe('closing a managed stream with stanzas unacknowledged, cluster (2 c2s + 2 session)', () => {
  let c: Cluster;
  before(async () => { c = await startCluster({ c2s: 2, session: 2, config: { streamManagement: { closeAckWaitMs: WAIT_MS } } }); });
  after(async () => { await c?.stop(); });
  smCloseScenarios(() => c, WAIT_MS);
});
