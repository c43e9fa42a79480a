// The same messaging scenarios on a real cluster: NATS, Redis, 2 c2s and
// 2 session processes, users spread over the c2s nodes.
import { after, before, describe } from 'node:test';
import { startCluster, type Cluster } from '../support/parley.ts';
import { messagingScenarios } from '../scenarios/messaging.ts';

describe('messaging, cluster (2 c2s + 2 session on NATS and Redis)', () => {
  let c: Cluster;
  before(async () => { c = await startCluster({ c2s: 2, session: 2 }); });
  after(async () => { await c?.stop(); });
  messagingScenarios(() => c);
});
