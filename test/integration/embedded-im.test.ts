import { after, before, describe } from 'node:test';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { imScenarios, IM_CONFIG } from '../scenarios/im.ts';

describe('instant messaging and presence, embedded mode', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(IM_CONFIG); });
  after(async () => { await d.stop(); });
  imScenarios(() => d);
});
