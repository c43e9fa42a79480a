import { after, before, test } from 'node:test';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { presenceStorm } from '../scenarios/presence-storm.ts';

let d: Deployment;
before(async () => { d = await startEmbedded(); });
after(async () => { await d.stop(); });

test('presence storm, embedded: 200 users with 100 contacts each log in at once', async () => {
  await presenceStorm(d, { users: 200, contacts: 100, prefix: 'storm' });
});
