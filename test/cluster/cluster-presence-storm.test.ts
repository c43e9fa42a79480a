import { after, before, test } from 'node:test';
import { createConnection } from 'node:net';
import { startCluster, type Cluster } from '../support/parley.ts';
import { presenceStorm } from '../scenarios/presence-storm.ts';

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

test('presence storm, cluster (2 c2s + 2 session): 200 users with 100 contacts each log in at once', async () => {
  await presenceStorm(c, { users: 200, contacts: 100, prefix: 'storm', storeCommands: () => redisCommands(c.redis.port) });
});
