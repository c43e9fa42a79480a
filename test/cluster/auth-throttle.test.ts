// Failed logins are counted in Redis, so every connection manager of a
// cluster throttles the same address: failures on one c2s process put the
// address in back-off on the other and block it there. Real nats-server,
// redis-server and Parley processes; what the clients see is read off the wire.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PASSWORD, startCluster, type Cluster } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { redisCommand } from '../support/servers.ts';

const FAILURE = /<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><not-authorized\/><\/failure>/;
const BLOCKED_ERROR = /<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">this address is temporarily blocked after too many failed logins; try again in \d+ seconds<\/text><\/stream:error><\/stream:stream>/;
const BASE = 300;

async function open(port: number, from: string): Promise<RawClient> {
  const c = await rawConnect(port, '127.0.0.1', from);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  return c;
}

/** Milliseconds from a PLAIN attempt on a new stream to the answer matching `re`. */
async function attempt(port: number, from: string, user: string, password: string, re: RegExp): Promise<number> {
  const c = await open(port, from);
  const t0 = performance.now();
  c.send(plainAuth(user, password));
  await c.waitFor(re, 10_000);
  const ms = performance.now() - t0;
  c.close();
  return ms;
}

describe('login throttling shared by the connection managers of a cluster', () => {
  let cl: Cluster;
  before(async () => {
    cl = await startCluster({
      session: 1, c2s: 2,
      config: { c2s: { authThrottle: { windowSeconds: 60, addressBackoffAfter: 1, maxFailuresPerAddress: 3, blockSeconds: 30, accountBackoffAfter: 10, backoffBaseMs: BASE } } },
    });
    await cl.addUser('alice');
  });
  after(async () => { await cl.stop(); });

  test('failures on one c2s process slow and then block the address on the other', async () => {
    const [p1, p2] = cl.ports;
    const a = '127.0.0.5';
    const t1 = await attempt(p1, a, 'alice', 'wrong1', FAILURE);
    const t2 = await attempt(p2, a, 'alice', 'wrong2', FAILURE);
    assert.ok(t1 < BASE * 0.9, `the first failure is answered at once: ${t1}`);
    assert.ok(t2 >= BASE * 0.95, `the second, on the other process, waits the back-off: ${t2}`);
    // The third blocks the address: on that stream, the answer, then the stream error.
    const c = await open(p1, a);
    c.send(plainAuth('alice', 'wrong3'));
    await c.waitFor(BLOCKED_ERROR, 10_000);
    await c.closed;
    // The other process refuses new streams from it, the right password or not.
    const refused = await rawConnect(p2, '127.0.0.1', a);
    refused.send(STREAM_OPEN());
    await refused.waitFor(BLOCKED_ERROR);
    await refused.closed;
    // Another address logs in on either process.
    for (const p of [p1, p2]) await attempt(p, '127.0.0.6', 'alice', PASSWORD, /<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>/);

    // One hash per address in Redis, with a TTL (the block's, the longer): nothing stays for good.
    const ttl = Number(await redisCommand(cl.redis.port, 'PTTL', `parley:{auth:a:${a}}`));
    assert.ok(ttl > 0 && ttl <= 60_000, `the address's counters expire: ${ttl}`);
    assert.ok(Number(await redisCommand(cl.redis.port, 'PTTL', 'parley:{auth:u:alice@localhost}')) > 0, "the account's too");

    // Logged where each failure happened; the block once, by the process that saw the failure starting it.
    const c2s = cl.processes.filter((p) => p.role === 'c2s');
    const failedLines = c2s.flatMap((p) => p.log.filter((l) => l.includes(`auth failed address=${a} account=alice@localhost mechanism=PLAIN`)));
    assert.equal(failedLines.length, 3);
    assert.equal(c2s.flatMap((p) => p.log.filter((l) => l.includes('auth blocked') && l.includes(`address=${a} `))).length, 1);
  });
});
