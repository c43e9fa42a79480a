// Account services on a cluster: 2 c2s + 2 session processes, the users of
// each scenario on different connection managers; the CLI reaches the live
// actors over NATS.
import { after, before, describe } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startCluster, type Cluster } from '../support/parley.ts';
import { tempDir } from '../support/servers.ts';
import { accountScenarios, ACCOUNT_CONFIG } from '../scenarios/account-services.ts';

describe('account services, cluster', () => {
  let c: Cluster;
  let config = '';
  before(async () => {
    c = await startCluster({ c2s: 2, session: 2, config: ACCOUNT_CONFIG });
    config = join(tempDir('parley-cli'), 'cli.yaml');
    writeFileSync(config, stringify({ domains: ['localhost'], log: { level: 'warn' }, bus: { kind: 'nats', url: c.nats.url }, store: { kind: 'redis', url: c.redis.url } }));
  });
  after(async () => { await c?.stop(); });
  accountScenarios(() => c, { cliConfig: () => config, liveRemoval: true });
});
