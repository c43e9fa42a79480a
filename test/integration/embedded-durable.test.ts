// The embedded mode keeps what it acknowledged: 200 messages to an offline
// user, each acknowledged through stream management, then SIGKILL of the
// one-process server right after the last <a h/>. After a restart every
// acknowledged message is in the recipient's offline storage, once, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { Accounts } from '../../libs/accounts/index.ts';
import { openLmdbStore } from '../../libs/store/index.ts';
import { connect, xml } from '../support/clients.ts';
import { managedSender } from '../support/managed-sender.ts';
import { DOMAIN, PASSWORD } from '../support/parley.ts';
import { tempDir } from '../support/servers.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The embedded server as its own process (so it can be killed); resolves with its c2s port once started. */
function startProcess(config: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['bin/parley.mjs', 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      for (const line of b.toString().split('\n')) {
        if (!line) continue;
        log.push(line);
        const m = /server: started.* c2s=[^ ]*:(\d+)/.exec(line);
        if (m) resolve({ child, port: Number(m[1]) });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`the server exited with ${code}:\n${log.join('\n')}`)));
  });
}

test('embedded: SIGKILL right after the last acknowledgement loses none of 200 acknowledged messages', async () => {
  const dataDir = tempDir('parley-durable');
  const store = await openLmdbStore(join(dataDir, 'db'));
  const accounts = new Accounts(store);
  await accounts.add(`dura@${DOMAIN}`, PASSWORD);
  await accounts.add(`durb@${DOMAIN}`, PASSWORD);
  await store.close();
  const config = join(dataDir, 'parley.yaml');
  writeFileSync(config, stringify({ dataDir, domains: [DOMAIN], log: { level: 'info' }, metrics: { enabled: false }, c2s: { tcp: { host: '127.0.0.1', port: 0, allowPlainOnLoopback: true } } }));

  let server = await startProcess(config);
  const alice = await managedSender(server.port, 'dura');
  const total = 200;
  for (let i = 1; i <= total; i++) alice.send(`<message to='durb@${DOMAIN}' type='chat' id='d${i}'><body>d${i}</body></message><r xmlns='urn:xmpp:sm:3'/>`);
  const deadline = Date.now() + 20_000;
  while (alice.acked() < total && Date.now() < deadline) await sleep(1);
  // The moment the last acknowledgement is read, the process dies.
  server.child.kill('SIGKILL');
  const acked = alice.acked();
  assert.equal(acked, total, `acknowledged ${acked} of ${total}`);
  await new Promise((r) => server.child.once('exit', r));
  alice.close();

  server = await startProcess(config);
  try {
    const bob = await connect(server.port, 'durb', { resource: 'b' });
    try {
      await bob.send(xml('presence'));
      const until = Date.now() + 10_000;
      const got = () => bob.received.filter((s) => s.is('message')).map((s) => Number((s.getChildText('body') ?? '').slice(1)));
      while (got().length < acked && Date.now() < until) await sleep(50);
      await sleep(200);
      assert.deepEqual(got(), Array.from({ length: acked }, (_, i) => i + 1), 'every acknowledged message, once, in order');
    } finally {
      await bob.stop();
    }
  } finally {
    server.child.kill('SIGKILL');
  }
});
