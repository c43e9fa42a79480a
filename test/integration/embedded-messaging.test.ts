import { after, before, describe } from 'node:test';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { messagingScenarios } from '../scenarios/messaging.ts';

describe('messaging, embedded mode', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded(); });
  after(async () => { await d.stop(); });
  messagingScenarios(() => d);
});
