import { after, before, test } from 'node:test';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { presenceScaling } from '../scenarios/presence-storm.ts';

let d: Deployment;
before(async () => { d = await startEmbedded(); });
after(async () => { await d.stop(); });

test('presence storm, embedded: 220 users log in at once and change presence, with 20 then 200 contacts each; costs grow no faster than the contacts', async () => {
  await presenceScaling(d, { users: 220, small: 20, large: 200 });
});
