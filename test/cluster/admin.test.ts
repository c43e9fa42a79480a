// Administration of a cluster (two c2s processes, one session process on NATS
// and Redis): an operation asked of any process gathers from or routes to the
// others over the bus — every c2s answers for its own connections, a kick
// reaches the process holding the stream, a log level can go to one process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { adminApi, parleyCommand, rawTlsLogin } from '../support/admin.ts';
import { rawLogin } from '../support/im.ts';
import { startCluster, type ClusterProcess } from '../support/parley.ts';
import type { RawClient } from '../support/raw.ts';
import { tempDir } from '../support/servers.ts';

const TOKEN = 'cluster-admin-token-for-the-tests';

const adminUrl = (p: ClusterProcess) => /server: started .*admin=(\S+)/.exec(p.log.find((l) => l.includes('server: started')) ?? '')?.[1] ?? '';

interface SessionRow { jid: string; node: string; transport: string; tls: boolean }

test('administration of a cluster: every process answers for what it holds, any process asks the others', async (t) => {
  const cluster = await startCluster({ c2s: 2, session: 1, config: { admin: { token: TOKEN }, c2s: { requireTls: false } } });
  const raws: RawClient[] = [];
  t.after(async () => {
    for (const r of raws) r.close();
    await cluster.stop();
  });
  const [c2s1, c2s2] = cluster.processes.filter((p) => p.role === 'c2s');
  const session1 = cluster.processes.find((p) => p.role === 'session')!;
  const [n1, n2, ns] = [c2s1.nodeId, c2s2.nodeId, session1.nodeId];
  const api = (p: ClusterProcess, method: string, path: string, body?: unknown) => adminApi(adminUrl(p), TOKEN, method, path, body);
  // The command as an operator's workstation runs it: a configuration with the token, the address of any process.
  const cliConfig = join(tempDir('parley-admin-cli'), 'cli.yaml');
  writeFileSync(cliConfig, stringify({ dataDir: join(cliConfig, '..', 'data'), admin: { token: TOKEN } }));
  const cli = (p: ClusterProcess, ...args: string[]) => parleyCommand([...args, '--config', cliConfig, '--url', adminUrl(p)]);

  await cluster.addUser('alice');
  await cluster.addUser('bob');
  const alice = await rawLogin(c2s1.port, 'alice', 'desk');
  raws.push(alice);
  const bob = await rawTlsLogin(c2s2.port, 'bob', 'phone');
  raws.push(bob);

  await t.test('nodes and sessions, asked of the session process: each c2s lists its own connections', async () => {
    // A process started last is seen by the others at their next membership refresh (cluster.heartbeatMs).
    let nodes = await api(session1, 'GET', '/nodes');
    for (let i = 0; i < 40 && (nodes.body.nodes as unknown[]).length < 3; i++) {
      await new Promise((r) => setTimeout(r, 100));
      nodes = await api(session1, 'GET', '/nodes');
    }
    assert.deepEqual((nodes.body.nodes as Array<{ node: string; role: string }>).map((n) => `${n.node}:${n.role}`), [`${n1}:c2s`, `${n2}:c2s`, `${ns}:session`].sort());
    const r = await cli(session1, 'sessions', 'list', '--json');
    assert.equal(r.status, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as SessionRow[];
    assert.deepEqual(rows.map((s) => [s.jid, s.node, s.transport, s.tls]), [
      ['alice@localhost/desk', n1, 'tcp', false],
      ['bob@localhost/phone', n2, 'tcp', true],
    ]);
  });

  await t.test('announce from one c2s reaches the sessions of both', async () => {
    const r = await api(c2s1, 'POST', '/announce', { domain: 'localhost', body: 'cluster maintenance', type: 'normal' });
    assert.equal(r.status, 200);
    assert.deepEqual([r.body.sessions, r.body.users], [2, 2]);
    for (const c of [alice, bob]) await c.waitFor(/<message[^>]*from=["']localhost["'][^>]*>.*<body>cluster maintenance<\/body>/s, 15_000);
  });

  await t.test('a kick asked of c2s1 closes the stream held by c2s2', async () => {
    const r = await cli(c2s1, 'sessions', 'kick', 'bob@localhost');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `kicked bob@localhost/phone on ${n2}\n`);
    await bob.waitFor(/<stream:error><policy-violation xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']\/><text[^>]*>the session was ended by an administrator<\/text><\/stream:error>/, 15_000);
    await bob.closed;
    const again = await api(c2s1, 'POST', '/sessions/kick', { jid: 'bob@localhost' });
    assert.equal(again.status, 404);
    assert.equal(again.body.message, 'no session of bob@localhost');
  });

  await t.test('stats gathered from every process: sessions per node, users online from the session process', async () => {
    const r = await api(c2s2, 'GET', '/stats');
    assert.equal(r.status, 200);
    const nodes = r.body.nodes as Array<{ node: string; sessions: number; usersOnline: number; logins: { total: number } }>;
    const by = new Map(nodes.map((n) => [n.node, n]));
    assert.deepEqual([...by.keys()].sort(), [n1, n2, ns].sort());
    assert.deepEqual([n1, n2, ns].map((n) => by.get(n)!.sessions), [1, 0, 0]);
    assert.deepEqual([n1, n2, ns].map((n) => by.get(n)!.logins.total), [1, 1, 0]);
    assert.equal(by.get(ns)!.usersOnline, 1);
    assert.equal(r.body.usersOnline, 1);
    assert.deepEqual(r.body.unreachable, []);
  });

  await t.test('log-level --node changes one process only, and its log output; an unknown node is refused', async () => {
    const r = await cli(session1, 'log-level', 'debug', '--node', n2);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${n2}: info -> debug\n`);
    const levels = await api(c2s1, 'GET', '/log-level');
    assert.deepEqual((levels.body.nodes as Array<{ node: string; logLevel: string }>).map((n) => `${n.node}:${n.logLevel}`), [`${n1}:info`, `${n2}:debug`, `${ns}:info`].sort());
    const mark2 = c2s2.log.length;
    const mark1 = c2s1.log.length;
    for (const p of [c2s1, c2s2]) {
      const c = await rawLogin(p.port, 'alice', `probe-${p.nodeId}`);
      c.send('<nonsense/>');
      await c.closed;
    }
    const debugLine = /^\S+ debug c2s: stream error .*condition=unsupported-stanza-type/;
    await new Promise((res) => setTimeout(res, 300));
    assert.ok(c2s2.log.slice(mark2).some((l) => debugLine.test(l)), c2s2.log.slice(mark2).join('\n'));
    assert.ok(!c2s1.log.slice(mark1).some((l) => debugLine.test(l)), c2s1.log.slice(mark1).join('\n'));
    const unknown = await cli(c2s1, 'log-level', 'debug', '--node', 'c2s9');
    assert.equal(unknown.status, 2);
    assert.equal(unknown.stderr, `parley: no live node 'c2s9' (live: ${[n1, n2, ns].sort().join(', ')})\n`);
  });

  await t.test('reload: every process re-reads its own file, or one does', async () => {
    const all = await api(c2s1, 'POST', '/reload');
    assert.equal(all.status, 200);
    // c2s2's level was set at run time; its file says info.
    const reloads = new Map((all.body.nodes as Array<{ node: string; applied: string[]; certificatesReloaded: boolean }>).map((n) => [n.node, [n.applied, n.certificatesReloaded]]));
    assert.deepEqual([n1, n2, ns].map((n) => reloads.get(n)), [[[], true], [['log.level'], true], [[], false]]);
    const one = await api(c2s1, 'POST', '/reload', { node: ns });
    assert.deepEqual((one.body.nodes as Array<{ node: string }>).map((n) => n.node), [ns]);
  });

  await t.test('a process that does not answer within admin.requestTimeoutMs is named, beside the answers of the others', async () => {
    // Stopped, it is still a member until its heartbeat lapses, but answers nothing.
    c2s2.child.kill('SIGSTOP');
    try {
      // Asked at once, before its membership lapses (cluster.memberTtlMs).
      const started = Date.now();
      const r = await api(c2s1, 'GET', '/stats');
      assert.ok(Date.now() - started >= 3000, 'waited admin.requestTimeoutMs');
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.unreachable, [n2]);
      assert.deepEqual((r.body.nodes as Array<{ node: string }>).map((n) => n.node).sort(), [n1, ns].sort());
    } finally {
      c2s2.child.kill('SIGCONT');
    }
  });
});
