// Two Parley clusters federate: x.parley.test runs as separate processes on
// NATS and Redis (a session process, a c2s process and two s2s processes);
// y.parley.test is a one-process cluster (role 'all') on its own NATS and
// Redis. Exactly one s2s process of x holds the stream to y (the owner of
// y's shard); y connects back to the other one, which verifies the dialback
// key its sibling issued (the secret is shared through Redis) and hands y's
// stanzas to the actors. When the owner leaves, the other takes the shard
// over and opens its own stream. (y offers and asks no XEP-0288 here, so each
// direction has a stream of its own and the topology above holds.) A user of
// y enters a room of conference.x: the room's stanzas leave through the s2s
// process that owns y's shard, from the room service's domain, and y's
// dialback check of that domain is answered by the other s2s process; y's
// iqs to x itself are answered by x's session process.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';
import { startNats, startRedis, tempDir, type Spawned } from '../support/servers.ts';
import { FAST_CLUSTER } from '../support/parley.ts';
import { Accounts } from '../../libs/accounts/index.ts';
import { createRedisStore } from '../../libs/store/redis-store.ts';
import {
  chatBothWays, createInstantRoom, freePortOn, goOnline, login, messageWithBody, PASSWORD, subscribeBothWays, visitRoom, waitUntil, xml, type User,
} from './support.ts';

const HOST = '127.0.0.1';
const X = 'x.parley.test';
const Y = 'y.parley.test';
const S2S_SHARDS = 64;

interface Proc {
  name: string;
  child: ChildProcess;
  log: string[];
}

function startProcess(dir: string, name: string, config: Record<string, unknown>): Promise<Proc> {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify({ nodeId: name, dataDir: join(dir, name), log: { level: 'info' }, metrics: { port: 0 }, ...config }));
  const child = spawn(process.execPath, ['bin/parley.mjs', 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { name, child, log: [] };
  process.once('exit', () => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    const onData = (buf: Buffer) => {
      for (const line of buf.toString().split('\n')) {
        if (!line) continue;
        p.log.push(line);
        if (process.env.PARLEY_TEST_VERBOSE) process.stderr.write(`[${name}] ${line}\n`);
        if (line.includes('server: started')) resolve(p);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}:\n${p.log.join('\n')}`)));
  });
}

async function stopProcess(p: Proc, signal: NodeJS.Signals): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill(signal);
  const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

describe('two Parley clusters federate', () => {
  const infra: Spawned[] = [];
  const procs: Proc[] = [];
  let owner: Proc;
  let other: Proc;
  let xena: User;
  let yuri: User;
  let c2sPort = 0;
  let yC2sPort = 0;

  before(async () => {
    const [natsX, redisX, natsY, redisY] = await Promise.all([startNats(), startRedis(), startNats(), startRedis()]);
    infra.push(natsX, redisX, natsY, redisY);
    const dir = tempDir('parley-fed-cluster');
    const [s2sA, s2sB, yS2s] = await Promise.all([freePortOn(HOST), freePortOn(HOST), freePortOn(HOST)]);
    [c2sPort, yC2sPort] = await Promise.all([freePortOn(HOST), freePortOn(HOST)]);

    // Which of x's s2s processes owns y's shard decides where y must not connect to.
    const yOwner = ownerOf(shardOf(Y, S2S_SHARDS), ['s2s-a', 's2s-b']);
    const otherPort = yOwner === 's2s-a' ? s2sB : s2sA;

    const xCommon = {
      domains: [X], bus: { kind: 'nats', url: natsX.url }, store: { kind: 'redis', url: redisX.url }, cluster: FAST_CLUSTER,
      c2s: { tcp: { host: HOST, port: 0, allowPlainOnLoopback: true } },
    };
    const xS2s = (port: number) => ({ enabled: true, shards: S2S_SHARDS, listen: { host: HOST, port }, routes: { [Y]: `${HOST}:${yS2s}` } });
    procs.push(await startProcess(dir, 'session-1', { ...xCommon, role: 'session', s2s: xS2s(0) }));
    const [a, b] = await Promise.all([
      startProcess(dir, 's2s-a', { ...xCommon, role: 's2s', s2s: xS2s(s2sA) }),
      startProcess(dir, 's2s-b', { ...xCommon, role: 's2s', s2s: xS2s(s2sB) }),
    ]);
    procs.push(a, b);
    procs.push(await startProcess(dir, 'c2s-1', { ...xCommon, role: 'c2s', s2s: xS2s(0), c2s: { tcp: { host: HOST, port: c2sPort, allowPlainOnLoopback: true } } }));
    procs.push(await startProcess(dir, 'y-all', {
      role: 'all', domains: [Y], bus: { kind: 'nats', url: natsY.url }, store: { kind: 'redis', url: redisY.url }, cluster: FAST_CLUSTER,
      c2s: { tcp: { host: HOST, port: yC2sPort, allowPlainOnLoopback: true } },
      s2s: { enabled: true, shards: S2S_SHARDS, bidi: false, listen: { host: HOST, port: yS2s }, routes: { [X]: `${HOST}:${otherPort}`, [`conference.${X}`]: `${HOST}:${otherPort}` } },
    }));
    owner = yOwner === 's2s-a' ? a : b;
    other = yOwner === 's2s-a' ? b : a;

    for (const [url, jid] of [[redisX.url, `xena@${X}`], [redisY.url, `yuri@${Y}`]]) {
      const store = createRedisStore({ url });
      await new Accounts(store).add(jid, PASSWORD);
      await store.close();
    }
    // Both s2s processes of x must see each other before the shards settle.
    await new Promise((r) => setTimeout(r, FAST_CLUSTER.heartbeatMs * 3));
    xena = await login(HOST, c2sPort, `xena@${X}`);
    yuri = await login(HOST, yC2sPort, `yuri@${Y}`);
    await Promise.all([goOnline(xena), goOnline(yuri)]);
  });

  after(async () => {
    await Promise.all([xena?.stop(), yuri?.stop()]);
    await Promise.all(procs.map((p) => stopProcess(p, 'SIGKILL')));
    await Promise.all(infra.map((s) => s.stop()));
  });

  test('users subscribe, see presence and chat; one s2s process holds the stream, the other takes y in', async () => {
    await subscribeBothWays(xena, `xena@${X}`, yuri, `yuri@${Y}`);
    await chatBothWays(yuri, `yuri@${Y}`, xena, `xena@${X}`, 'clusters');
    const established = (p: Proc) => p.log.some((l) => l.includes('outgoing stream established') && l.includes(`remote=${Y}`));
    assert.ok(established(owner), `the owner of ${Y}'s shard holds the stream:\n${owner.log.join('\n')}`);
    assert.ok(!established(other), `only the owner connects to ${Y}:\n${other.log.join('\n')}`);
    // y reached the other process, which checked x's dialback key (issued by its sibling).
    assert.ok(other.log.some((l) => l.includes('incoming stream authenticated') && l.includes(`remote=${Y}`) && l.includes('auth=dialback')), other.log.join('\n'));
  });

  test('a user of y enters a room of x, talks and leaves; y asks x what its modules answer', async () => {
    const room = `clustered@conference.${X}`;
    await createInstantRoom(xena, room, 'Xena');
    await visitRoom(xena, 'Xena', yuri, 'Yuri', room, 'cluster-room');
    assert.ok(owner.log.some((l) => l.includes('outgoing stream established') && l.includes(`local=conference.${X}`) && l.includes(`remote=${Y}`)), owner.log.join('\n'));
    assert.ok(other.log.some((l) => l.includes('incoming stream authenticated') && l.includes(`local=conference.${X}`) && l.includes(`remote=${Y}`)), other.log.join('\n'));
    const items = await yuri.xmpp.iqCaller.request(xml('iq', { type: 'get', to: X }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' })), 10_000);
    assert.ok(items.getChild('query')?.getChildren('item').some((i) => i.attrs.jid === `conference.${X}`), items.toString());
  });

  test("when the owner of y's shard leaves, the other s2s process takes the shard and its own stream", async () => {
    const mark = other.log.length;
    await stopProcess(owner, 'SIGTERM');
    await waitUntil('the other process has taken the shards', () => other.log.slice(mark).some((l) => l.includes('acquiring shards')), 10_000);
    await xena.send(xml('message', { to: `yuri@${Y}`, type: 'chat' }, xml('body', {}, 'after the handoff')));
    await yuri.waitFor(messageWithBody('after the handoff'));
    assert.ok(other.log.some((l) => l.includes('outgoing stream established') && l.includes(`remote=${Y}`)), other.log.join('\n'));
  });
});
