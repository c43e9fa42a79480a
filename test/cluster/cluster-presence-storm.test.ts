import { after, before, test } from 'node:test';
import { createConnection } from 'node:net';
import { startCluster, type Cluster } from '../support/parley.ts';
import { presenceScaling } from '../scenarios/presence-storm.ts';

/** Commands Redis has processed so far (INFO stats). */
function redisCommands(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    let out = '';
    s.on('data', (d) => {
      out += d.toString();
      const m = /total_commands_processed:(\d+)/.exec(out);
      if (m) {
        s.destroy();
        resolve(Number(m[1]));
      }
    });
    s.on('error', reject);
    s.write('INFO stats\r\n');
  });
}

let c: Cluster;
before(async () => { c = await startCluster({ c2s: 2, session: 2 }); });
after(async () => { await c?.stop(); });

test('presence storm, cluster (2 c2s + 2 session): 220 users log in at once and change presence, with 20 then 200 contacts each; bus messages and Redis commands grow no faster than the contacts', async () => {
  await presenceScaling(c, { users: 220, small: 20, large: 200, storeCommands: () => redisCommands(c.redis.port) });
});
