// The personal eventing service (XEP-0163) in the embedded mode.
import { after, before, describe } from 'node:test';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { pepScenarios, PEP_CONFIG } from '../scenarios/pep.ts';

describe('PEP, embedded mode', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(PEP_CONFIG); });
  after(async () => { await d.stop(); });
  pepScenarios(() => d);
});
