// A connection manager that cannot serve says so: /readyz answers 503 with the
// reason, new streams are refused at once with a stream error, and streams
// whose sessions the cluster ended are closed instead of left open and silent.
// Real nats-server and redis-server; what the clients see is read off the wire.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { rawAuthenticated, rawLogin } from '../support/im.ts';
import { PASSWORD, startCluster, type Cluster, type ClusterProcess } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { startRelay, type Spawned } from '../support/servers.ts';

const NS_SM = 'urn:xmpp:sm:3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The whole stream error as sent: condition, then a text saying why, then the end of the stream. */
const STREAM_ERROR = /<stream:error><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">([^<]+)<\/text><\/stream:error><\/stream:stream>/;

async function readyz(p: ClusterProcess): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${p.metricsPort}/readyz`);
  return { status: r.status, body: await r.text() };
}

async function readyGauge(p: ClusterProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`)).text();
  return Number(/^parley_ready (\S+)$/m.exec(text)?.[1]);
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const logged = (p: ClusterProcess, re: RegExp, timeoutMs?: number) => until(`${p.nodeId} to log ${re}`, async () => p.log.find((l) => re.test(l)), timeoutMs);
const count = (p: ClusterProcess, re: RegExp) => p.log.filter((l) => re.test(l)).length;

/** Authenticated, stream restarted, not yet bound. */
const authenticated = rawAuthenticated;

/** Sends the stream header and returns what the server answered by the time it closed the stream, and how long that took. */
async function refused(port: number): Promise<{ out: string; ms: number }> {
  const t0 = Date.now();
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  const out = await c.waitFor(/<\/stream:stream>/, 5000);
  await c.closed;
  return { out, ms: Date.now() - t0 };
}

describe('c2s readiness: no session process', () => {
  let c: Cluster;
  before(async () => {
    c = await startCluster({ c2s: 1, session: 0 });
    await c.addUser('early');
  });
  after(async () => { await c?.stop(); });

  test('503 and an immediate stream error while no session process lives; 200 and logins once one starts; the stream error at bind when the last one dies', async () => {
    const c2s = c.processes.find((p) => p.role === 'c2s')!;
    const r = await readyz(c2s);
    assert.equal(r.status, 503);
    assert.equal(r.body, 'not ready: no session process is alive\n');
    assert.equal(await readyGauge(c2s), 0);
    await logged(c2s, /warn .*server: not ready reason="no session process is alive"/);

    // Refused at once, not after the 10 s bind timeout.
    const { out, ms } = await refused(c2s.port);
    assert.match(out, STREAM_ERROR);
    assert.match(STREAM_ERROR.exec(out)![1], /no session process is alive/);
    assert.ok(ms < 2000, `refused after ${ms} ms`);

    const session = await c.add('session');
    await until('/readyz 200', async () => ((await readyz(c2s)).status === 200 ? true : undefined));
    assert.equal((await readyz(c2s)).body, 'ready\n');
    assert.equal(await readyGauge(c2s), 1);
    await logged(c2s, /info .*server: ready again was="no session process is alive"/);
    const ok = await rawLogin(c2s.port, 'early', 'r1');
    assert.match(ok.output, /<jid>early@localhost\/r1<\/jid>/);
    ok.close();

    // A client that authenticated while the cluster could serve, and binds once it cannot.
    const late = await authenticated(c2s.port, 'early');
    await c.kill(session, 'SIGKILL');
    await until('/readyz 503', async () => ((await readyz(c2s)).status === 503 ? true : undefined));
    const t0 = Date.now();
    late.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r2</resource></bind></iq>`);
    const bindOut = await late.waitFor(/<\/stream:stream>/, 5000);
    assert.ok(Date.now() - t0 < 2000, `bind refused after ${Date.now() - t0} ms`);
    assert.match(STREAM_ERROR.exec(bindOut)?.[1] ?? '', /no session process is alive/);
    await late.closed;
  });
});

// The cut: the c2s under test reaches Redis through a relay process of its own
// (test/support/servers.ts startRelay); SIGSTOP of that relay leaves its Redis
// connections open with nothing moving on them, as a partition does, while the
// session processes, the other c2s and the test keep using the same real
// redis-server directly. Its NATS connection is untouched.
describe('c2s cut off from Redis', () => {
  // Room for the session processes to act before the c2s's own timer does (second test), on a loaded machine too.
  const TTL = 3000;
  let c: Cluster;
  let relay: Spawned;
  let cut: ClusterProcess;
  let other: ClusterProcess;
  let redis: Redis;
  before(async () => {
    c = await startCluster({ c2s: 1, session: 1, cluster: { memberTtlMs: TTL } });
    relay = await startRelay(c.redis);
    cut = await c.add('c2s', 'c2s-cut', { store: { kind: 'redis', url: relay.url } });
    other = c.processes.find((p) => p.role === 'c2s' && p !== cut)!;
    redis = new Redis(c.redis.url);
    for (const u of ['cuta', 'cutb', 'cutw']) await c.addUser(u);
  });
  after(async () => {
    redis?.disconnect();
    await c?.stop();
    await relay?.stop();
  });

  test('past memberTtlMs: every stream ends with internal-server-error, new ones are refused, a managed session resumes elsewhere; back once a heartbeat gets through', async () => {
    const phone = await rawLogin(cut.port, 'cuta', 'phone');
    phone.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const previd = /<enabled [^>]*id="([^"]+)"/.exec(await phone.waitFor(/<enabled [^>]*id="[^"]+"/))![1];
    const desk = await rawLogin(cut.port, 'cutb', 'desk');
    const watcher = await rawLogin(other.port, 'cutw', 'w');

    const t0 = Date.now();
    relay.pause();
    const [phoneOut, deskOut] = await Promise.all([phone, desk].map((x) => x.waitFor(/<\/stream:stream>/, TTL + 5000)));
    const ms = Date.now() - t0;
    // By its own timer, or by the session processes' notice if they were quicker: either says why.
    for (const out of [phoneOut, deskOut]) assert.match(STREAM_ERROR.exec(out)?.[1] ?? '', /lost contact/);
    assert.ok(ms < TTL + 2000, `closed after ${ms} ms`);
    await Promise.all([phone.closed, desk.closed]);
    await logged(cut, /warn .*c2s: membership expired/);

    const r = await readyz(cut);
    assert.equal(r.status, 503);
    assert.equal(r.body, 'not ready: this node lost contact with the cluster (its membership expired)\n');
    assert.match(STREAM_ERROR.exec((await refused(cut.port)).out)?.[1] ?? '', /lost contact with the cluster/);

    // The managed session waited in its account's actor: it resumes on the other node with what came meanwhile.
    watcher.send(`<message to='cuta@localhost/phone' type='chat' id='m1'><body>while cut</body></message>`);
    const back = await authenticated(other.port, 'cuta');
    back.send(`<resume xmlns='${NS_SM}' previd='${previd}' h='0'/>`);
    await back.waitFor(/<resumed [^>]*previd="[^"]+"/);
    await back.waitFor(/<body>while cut<\/body>/);

    relay.resume();
    await until('/readyz 200 again', async () => ((await readyz(cut)).status === 200 ? true : undefined));
    await logged(cut, /info .*c2s: membership renewed/);
    const again = await rawLogin(cut.port, 'cutb', 'desk2');
    assert.match(again.output, /<jid>cutb@localhost\/desk2<\/jid>/);
    for (const x of [back, watcher, again]) x.close();
  });

  test('the session processes end its sessions while it still runs: it closes those streams, and only those', async () => {
    relay.resume(); // whatever the test before left
    await until('c2s-cut ready', async () => ((await readyz(cut)).status === 200 ? true : undefined));
    // The session processes must have seen it back since the test before (they act on a change they saw).
    await sleep(1000);
    const bound = await rawLogin(cut.port, 'cutb', 'desk3');
    const waiting = await rawConnect(cut.port); // no session yet: nothing of it was ended
    waiting.send(STREAM_OPEN());
    await waiting.waitFor(/<\/stream:features>/);
    const session = c.processes.find((p) => p.role === 'session')!;
    const expired = /membership expired/;
    const gone = /connection manager gone; ending its sessions node=c2s-cut/;
    const [expiredBefore, goneBefore] = [count(cut, expired), count(session, gone)];

    // The session processes count it dead when its entry is gone from the membership set at one of their
    // heartbeats. Remove the entry while the c2s cannot renew it (relay paused), and give it the link back
    // once they have, before its own memberTtlMs runs out: only their notice can close the stream.
    const t0 = Date.now();
    relay.pause();
    try {
      let removed = 0;
      for (const key of await redis.keys('*')) {
        if ((await redis.type(key)) === 'zset' && (await redis.zrem(key, cut.nodeId))) removed++;
      }
      assert.equal(removed, 1, 'the c2s entry of the membership set');
      await until('the session process to end its sessions', async () => (count(session, gone) > goneBefore ? true : undefined), TTL - 1000);
    } finally {
      relay.resume();
    }
    assert.ok(Date.now() - t0 < TTL, 'before the c2s could notice by itself');
    const out = await bound.waitFor(/<\/stream:stream>/);
    assert.match(STREAM_ERROR.exec(out)?.[1] ?? '', /the cluster ended this session/);
    await logged(cut, /warn .*c2s: the cluster counted this node dead and ended its sessions: closing their streams node=c2s-cut sessions=1/);
    await bound.closed;

    // Its own heartbeat went through in time: no expiry, and the other stream carries on.
    await sleep(TTL);
    assert.equal(count(cut, expired), expiredBefore);
    waiting.send(plainAuth('cutb', PASSWORD));
    await waiting.waitFor(/<success/);
    waiting.close();
  });
});
