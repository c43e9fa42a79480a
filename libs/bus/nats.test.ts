// Connecting the NATS bus: the server list a configuration names, credentials
// in a server URL, and the one error an unreachable or refusing NATS gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, startNats } from '../../test/support/servers.ts';
import { envelope, type Envelope } from './envelope.ts';
import { NatsBus, natsServers } from './nats.ts';

test('the servers: bus.servers, else bus.url split on commas, else the default', () => {
  assert.deepEqual(natsServers({ servers: ['nats://a:4222', 'nats://b:4222'] }), ['nats://a:4222', 'nats://b:4222']);
  assert.deepEqual(natsServers({ url: 'nats://a:4222, nats://b:4222,' }), ['nats://a:4222', 'nats://b:4222']);
  assert.deepEqual(natsServers({}), ['nats://127.0.0.1:4222']);
});

test('credentials in a server URL authenticate; a wrong password fails at once, naming the server without it', async () => {
  const nats = await startNats({ user: 'parley', pass: 'p@ss' });
  try {
    const url = (cred: string) => `nats://${cred}@127.0.0.1:${nats.port}`;
    const t0 = Date.now();
    await assert.rejects(NatsBus.connect(url('parley:wrong'), 'x', undefined, { timeoutMs: 10_000 }),
      { message: `cannot reach NATS at nats://parley:***@127.0.0.1:${nats.port}: Authorization Violation` });
    assert.ok(Date.now() - t0 < 5_000, 'refused credentials are not retried until the timeout');

    // The first server is down and carries no credentials: the second's are used.
    const bus = await NatsBus.connect([`nats://127.0.0.1:${await freePort()}`, url('parley:p%40ss')], 'x');
    try {
      const got = new Promise<Envelope>((resolve) => bus.subscribe('t', resolve));
      await bus.flush();
      bus.publish('t', envelope({ kind: 'ctl', dir: 'in', op: 'ping' }));
      assert.equal((await got).op, 'ping');
    } finally {
      await bus.close();
    }
  } finally {
    await nats.stop();
  }
});

test('no server answering: one error naming them all after the timeout', async () => {
  const [a, b] = [await freePort(), await freePort()];
  const t0 = Date.now();
  await assert.rejects(NatsBus.connect(`nats://127.0.0.1:${a},nats://127.0.0.1:${b}`, 'x', undefined, { timeoutMs: 1000 }),
    { message: `cannot reach NATS at nats://127.0.0.1:${a}, nats://127.0.0.1:${b} within 1 s: connection refused` });
  assert.ok(Date.now() - t0 >= 1000, 'it kept trying for the whole timeout');
});
