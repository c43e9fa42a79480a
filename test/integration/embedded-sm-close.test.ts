// Stream management when the client closes its stream without acknowledging
// (test/scenarios/sm-close.ts), in the embedded mode.
import { after, before, describe } from 'node:test';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { smCloseScenarios } from '../scenarios/sm-close.ts';

const WAIT_MS = 800;

describe('closing a managed stream with stanzas unacknowledged, embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded({ streamManagement: { closeAckWaitMs: WAIT_MS } }); });
  after(async () => { await d.stop(); });
  smCloseScenarios(() => d, WAIT_MS);
});
