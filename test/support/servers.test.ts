// The test helpers themselves: servers come up, restart on their port, and
// never outlive the process that started them.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startNats, startRedis } from './servers.ts';

const accepts = (port: number): Promise<boolean> => new Promise((resolve) => {
  const s = createConnection({ port, host: '127.0.0.1' });
  s.on('connect', () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
});

it('redis: start, kill, restart on the same port, stop', async () => {
  const r = await startRedis();
  assert.equal(r.url, `redis://127.0.0.1:${r.port}`);
  await r.kill();
  assert.equal(await accepts(r.port), false);
  await r.restart();
  assert.equal(await accepts(r.port), true);
  await r.stop();
  assert.equal(await accepts(r.port), false);
});

it('nats with JetStream: start, restart, stop', async () => {
  const n = await startNats({ jetstream: true });
  assert.equal(n.url, `nats://127.0.0.1:${n.port}`);
  await n.restart();
  assert.equal(await accepts(n.port), true);
  await n.stop();
  assert.equal(await accepts(n.port), false);
});

for (const how of ['exit', 'SIGTERM'] as const) {
  it(`servers and temp dirs do not outlive the process (${how})`, async () => {
    const mod = fileURLToPath(new URL('./servers.ts', import.meta.url));
    const code = `const s = await import(${JSON.stringify(mod)});
      const r = await s.startRedis(); const n = await s.startNats({ jetstream: true });
      console.log(JSON.stringify({ ports: [r.port, n.port], dir: s.tempDir('parley-leak') }));
      process.stdin.once('data', () => process.exit(0));`;
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve) => p.stdout.once('data', (d) => resolve(String(d))));
    const { ports, dir } = JSON.parse(line) as { ports: number[]; dir: string };
    for (const port of ports) assert.equal(await accepts(port), true);
    if (how === 'SIGTERM') p.kill('SIGTERM');
    else p.stdin.write('exit\n');
    await new Promise((r) => p.once('exit', r));
    // A SIGKILLed child takes a moment to die and release its port.
    for (const port of ports) {
      const deadline = Date.now() + 5_000;
      while (await accepts(port) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      assert.equal(await accepts(port), false, `port ${port} still open`);
    }
    assert.equal(existsSync(dir), false);
  });
}
