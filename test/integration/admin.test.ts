// Administration of a running embedded server, as an operator does it: the
// `parley` command and the HTTP admin API against `parley start --config`,
// with real clients on TCP, STARTTLS and WebSocket seeing the results on the
// wire (a kick's stream error, an announcement), the log output changing with
// the level, a reload (command and SIGHUP) serving a new certificate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { parse as parseYaml, stringify } from 'yaml';
import { ROUTES } from '../../services/admin/http-api.ts';
import { adminApi, parleyCommand, rawTlsLogin, rawWsLogin, startParleyProcess, starttlsCommonName, tokenOf, type ParleyProcess } from '../support/admin.ts';
import { rawLogin } from '../support/im.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import type { RawWs } from '../support/ws-raw.ts';
import { freePort, tempDir } from '../support/servers.ts';

/** A plain connection that has sent one wrong password and been answered. */
async function wrongPassword(port: number): Promise<RawClient> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  c.send(plainAuth('alice', 'wrong'));
  await c.waitFor(/<failure/);
  return c;
}

async function certificate(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2 as const, value: 'localhost' }] }],
  });
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  writeFileSync(files.cert, pems.cert);
  writeFileSync(files.key, pems.private);
  return files;
}

interface SessionRow { jid: string; node: string; transport: string; tls: boolean; sm: boolean; address: string; since: string }

test('administration of a running embedded server: sessions, kick, announce, stats, log level, reload, SIGHUP, the API and its description', async (t) => {
  const dir = tempDir('parley-admin');
  const dataDir = join(dir, 'data');
  const [tcpPort, httpPort] = [await freePort(), await freePort()];
  // The certificate files are rewritten in place later, as a renewal does.
  const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
  const a = await certificate(dir, 'cert-a');
  writeFileSync(live.cert, readFileSync(a.cert));
  writeFileSync(live.key, readFileSync(a.key));
  const base = {
    dataDir, domains: ['localhost'], log: { level: 'info' }, metrics: { port: 0 }, admin: { maxAnnounceLength: 200 },
    // Plain connections are one of the transports listed (the STARTTLS one is the other).
    c2s: { requireTls: false, tcp: { host: '127.0.0.1', port: tcpPort }, http: { enabled: true, host: '127.0.0.1', port: httpPort }, tls: live },
  };
  const configFile = join(dir, 'parley.yaml');
  writeFileSync(configFile, stringify(base));
  const cli = (...args: string[]) => parleyCommand([...args, '--config', configFile]);

  const p: ParleyProcess = await startParleyProcess(configFile);
  const raws: RawClient[] = [];
  let carol: RawWs | undefined;
  t.after(async () => {
    for (const r of raws) r.close();
    carol?.destroy();
    await p.stop();
  });
  const token = tokenOf(dataDir);
  const api = (method: string, path: string, body?: unknown) => adminApi(p.adminUrl, token, method, path, body);

  await t.test('the token file is the owner\'s alone, and the API refuses a missing or wrong token, changing nothing', async () => {
    const { statSync } = await import('node:fs');
    assert.equal(statSync(join(dataDir, 'admin-token')).mode & 0o777, 0o600);
    const none = await adminApi(p.adminUrl, undefined, 'PUT', '/log-level', { level: 'debug' });
    assert.equal(none.status, 401);
    assert.equal(none.body.error, 'unauthorized');
    const wrong = await adminApi(p.adminUrl, 'x'.repeat(43), 'PUT', '/log-level', { level: 'debug' });
    assert.equal(wrong.status, 401);
    assert.match(String(wrong.body.message), /wrong admin token/);
    const levels = await api('GET', '/log-level');
    assert.equal((levels.body.nodes as Array<{ logLevel: string }>)[0].logLevel, 'info');
    // The command with a configuration naming another token is refused the same way.
    const other = join(dir, 'other-token.yaml');
    writeFileSync(other, stringify({ ...base, admin: { token: 'not-the-token-of-this-server' } }));
    const r = await parleyCommand(['stats', '--config', other, '--url', p.adminUrl]);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'parley: wrong admin token\n');
  });

  await t.test('accounts through the API; bad input is a 4xx with a JSON error', async () => {
    for (const u of ['alice', 'bob', 'carol']) assert.equal((await api('POST', '/users', { jid: `${u}@localhost`, password: 'secret' })).status, 200);
    const again = await api('POST', '/users', { jid: 'alice@localhost', password: 'secret' });
    assert.equal(again.status, 409);
    assert.equal(again.body.error, 'conflict');
    const malformed = await api('POST', '/users', { jid: 'a@@localhost', password: 'secret' });
    assert.equal(malformed.status, 400);
    assert.match(String(malformed.body.message), /malformed JID/);
    const missing = await api('DELETE', `/users/${encodeURIComponent('nobody@localhost')}`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.message, 'no account nobody@localhost');
    const users = await api('GET', '/users?domain=localhost');
    assert.deepEqual(users.body.users, ['alice@localhost', 'bob@localhost', 'carol@localhost']);
  });

  let alice!: RawClient;
  let bob!: RawClient & { commonName: string };
  await t.test('sessions list: one line per session with transport, TLS and stream management (TCP, STARTTLS, WebSocket)', async () => {
    alice = await rawLogin(tcpPort, 'alice', 'desk');
    raws.push(alice);
    alice.send(`<enable xmlns='urn:xmpp:sm:3'/>`);
    await alice.waitFor(/<enabled/);
    bob = await rawTlsLogin(tcpPort, 'bob', 'laptop');
    raws.push(bob);
    assert.equal(bob.commonName, 'cert-a');
    carol = await rawWsLogin(`ws://127.0.0.1:${httpPort}/xmpp-websocket`, 'carol', 'web');

    const r = await cli('sessions', 'list', '--json');
    assert.equal(r.status, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as SessionRow[];
    const by = new Map(rows.map((s) => [s.jid, s]));
    assert.deepEqual([...by.keys()].sort(), ['alice@localhost/desk', 'bob@localhost/laptop', 'carol@localhost/web']);
    assert.deepEqual([by.get('alice@localhost/desk')!.transport, by.get('alice@localhost/desk')!.tls, by.get('alice@localhost/desk')!.sm], ['tcp', false, true]);
    assert.deepEqual([by.get('bob@localhost/laptop')!.transport, by.get('bob@localhost/laptop')!.tls, by.get('bob@localhost/laptop')!.sm], ['tcp', true, false]);
    assert.deepEqual([by.get('carol@localhost/web')!.transport, by.get('carol@localhost/web')!.tls], ['ws', false]);
    for (const s of rows) {
      assert.equal(s.node, 'embedded');
      assert.equal(s.address, '127.0.0.1');
      assert.ok(Date.now() - Date.parse(s.since) < 60_000, s.since);
    }
    const text = await cli('sessions', 'list');
    assert.match(text.stdout, /^JID\s+NODE\s+ADDRESS\s+SINCE\s+TRANSPORT\s+TLS\s+SM$/m);
    assert.match(text.stdout, /^bob@localhost\/laptop\s+embedded\s+127\.0\.0\.1\s+\S+\s+tcp\s+yes\s+no$/m);
    assert.match(text.stdout, /^alice@localhost\/desk\s+embedded\s+127\.0\.0\.1\s+\S+\s+tcp\s+no\s+yes$/m);
    assert.match(text.stdout, /^# 3 sessions$/m);
    const elsewhere = await api('GET', '/sessions?domain=example.org');
    assert.equal(elsewhere.status, 404);
    assert.equal(elsewhere.body.message, 'example.org is not a served domain (served: localhost)');
  });

  await t.test('announce: every online session of the domain receives the headline from the domain', async () => {
    const r = await cli('announce', '--domain', 'localhost', '--body', 'maintenance at 18:00 <UTC>');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'announced to 3 sessions of 3 users\n');
    for (const c of [alice, bob]) await c.waitFor(/<message[^>]*from=["']localhost["'][^>]*>.*<body>maintenance at 18:00 &lt;UTC&gt;<\/body>/s, 15_000);
    assert.match(alice.output, /<message[^>]*type=["']headline["']/);
    await carol!.waitFor(/^<message[^>]*from=["']localhost["'][^>]*>.*<body>maintenance at 18:00 &lt;UTC&gt;<\/body>/s, 15_000);
    const empty = await api('POST', '/announce', { domain: 'localhost', body: ' ' });
    assert.equal(empty.status, 400);
    assert.equal(empty.body.message, 'give a body: the announcement cannot be empty');
    // admin.maxAnnounceLength is 200 here.
    const long = await api('POST', '/announce', { domain: 'localhost', body: 'x'.repeat(201) });
    assert.equal(long.status, 400);
    assert.equal(long.body.message, 'the body is 201 characters, more than admin.maxAnnounceLength (200)');
    const huge = await api('POST', '/announce', { domain: 'localhost', body: 'x'.repeat(70_000) });
    assert.equal(huge.status, 400);
    assert.equal(huge.body.message, 'the request body is larger than admin.maxRequestBytes (65536)');
  });

  await t.test('kick: the client sees <policy-violation/> with the text on the wire; a session that does not exist is an error', async () => {
    const r = await cli('sessions', 'kick', 'bob@localhost/laptop', '--reason', 'spamming');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'kicked bob@localhost/laptop on embedded\n');
    await bob.waitFor(/<stream:error><policy-violation xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']\/><text[^>]*>spamming<\/text><\/stream:error>/, 15_000);
    await bob.closed;
    const gone = await cli('sessions', 'kick', 'bob@localhost/laptop');
    assert.equal(gone.status, 2);
    assert.equal(gone.stderr, 'parley: no session of bob@localhost/laptop\n');
    const malformed = await api('POST', '/sessions/kick', { jid: 'bob@@localhost' });
    assert.equal(malformed.status, 400);
    assert.match(String(malformed.body.message), /^malformed JID 'bob@@localhost'/);
    const list = (await api('GET', '/sessions')).body.sessions as SessionRow[];
    assert.deepEqual(list.map((s) => s.jid).sort(), ['alice@localhost/desk', 'carol@localhost/web']);
  });

  await t.test('stats: users online, sessions by transport, login and stanza counts from the live process', async () => {
    for (const id of ['p1', 'p2', 'p3']) alice.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await alice.waitFor(/id=["']p3["']/);
    const r = await api('GET', '/stats');
    assert.equal(r.status, 200);
    const s = r.body as unknown as { usersOnline: number; sessions: number; nodes: Array<{ sessionsByTransport: Record<string, number>; connections: Record<string, number>; logins: { total: number }; stanzas: { total: number; perSecond: number } }> };
    assert.equal(s.usersOnline, 2);
    assert.equal(s.sessions, 2);
    assert.deepEqual(s.nodes[0].sessionsByTransport, { tcp: 1, tls: 0, ws: 1, bosh: 0 });
    assert.equal(s.nodes[0].connections.tcp, 1);
    assert.equal(s.nodes[0].connections.ws, 1);
    assert.equal(s.nodes[0].logins.total, 3);
    assert.ok(s.nodes[0].stanzas.total >= 3, JSON.stringify(s.nodes[0]));
    assert.ok(s.nodes[0].stanzas.perSecond > 0);
    const text = await cli('stats');
    assert.match(text.stdout, /^users online: 2 {3}sessions: 2 /m);
    assert.match(text.stdout, /^embedded\s+all\s+2\s+1\s+0\s+1\s+0\s+2\s/m);
  });

  await t.test('log-level: the log output follows the level set at run time; bad levels and unknown nodes are refused', async () => {
    const quiet = await cli('log-level', 'warn');
    assert.equal(quiet.stdout, 'embedded: info -> warn\n');
    let mark = p.log.length;
    (await rawLogin(tcpPort, 'carol', 'quiet')).close();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(p.log.slice(mark).filter((l) => /stream opened/.test(l)).length, 0, p.log.slice(mark).join('\n'));
    const loud = await cli('log-level', 'debug');
    assert.equal(loud.stdout, 'embedded: warn -> debug\n');
    mark = p.log.length;
    const loudClient = await rawLogin(tcpPort, 'carol', 'loud');
    await p.waitForLine(/info {2}c2s: stream opened/, mark);
    // A stanza of no known kind ends the stream; the stream error is a debug line.
    loudClient.send('<nonsense/>');
    await loudClient.closed;
    await p.waitForLine(/^\S+ debug c2s: stream error .*condition=unsupported-stanza-type/, mark);
    const bad = await api('PUT', '/log-level', { level: 'verbose' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.message, 'unknown log level \'verbose\' (one of debug, info, warn, error)');
    const nowhere = await cli('log-level', 'info', '--node', 'c2s-9');
    assert.equal(nowhere.status, 2);
    assert.equal(nowhere.stderr, 'parley: no live node \'c2s-9\' (live: embedded)\n');
    const levels = await api('GET', '/log-level');
    assert.deepEqual(levels.body.nodes, [{ node: 'embedded', role: 'all', logLevel: 'debug', logFormat: 'text' }]);
  });

  await t.test('reload: certificate files renewed in place reach new TLS connections; changed keys that need a restart are named', async () => {
    const b = await certificate(dir, 'cert-b');
    writeFileSync(live.cert, readFileSync(b.cert));
    writeFileSync(live.key, readFileSync(b.key));
    // Before: a wrong password is answered, and the stream stays open for another try (c2s.maxAuthFailures is 3).
    const before = await wrongPassword(tcpPort);
    before.send(plainAuth('alice', 'wrong'));
    await before.waitFor(/<failure[^]*<failure/);
    before.close();
    writeFileSync(configFile, stringify({ ...base, c2s: { ...base.c2s, maxConnections: 500, maxAuthFailures: 1 }, limits: { bytesPerSecond: 500_000 } }));
    const r = await cli('reload');
    assert.equal(r.status, 0, r.stderr);
    // log.level: the file says info, the run-time level was debug.
    assert.equal(r.stdout, 'embedded: applied: log.level, c2s.maxAuthFailures, limits.bytesPerSecond; needs a restart: c2s.maxConnections; certificates re-read\n');
    assert.equal(await starttlsCommonName(tcpPort), 'cert-b');
    // A limit read at each use: now the first failure ends the stream.
    const after = await wrongPassword(tcpPort);
    await after.waitFor(/<stream:error><policy-violation xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']\/><text[^>]*>too many failed authentication attempts/, 15_000);
    await after.closed;
    // The open session goes on with the certificate it had.
    alice.send(`<iq type='get' id='p4' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await alice.waitFor(/id=["']p4["']/);
  });

  await t.test('reload of a bad configuration changes nothing and says why', async () => {
    writeFileSync(configFile, `${stringify(base)}\nc2s: { tcp: [\n`);
    // The command reads a configuration of its own (here: only where the data directory is), the server its file.
    const cliConfig = join(dir, 'cli.yaml');
    writeFileSync(cliConfig, stringify({ dataDir }));
    const r = await parleyCommand(['reload', '--config', cliConfig]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^parley: configuration not reloaded, nothing changed there: embedded: invalid YAML in .*parley\.yaml/);
    assert.equal(r.stderr.split('\n').length, 2, r.stderr);
    writeFileSync(configFile, stringify({ ...base, c2s: { ...base.c2s, tls: { cert: join(dir, 'missing.crt'), key: live.key } } }));
    const missing = await api('POST', '/reload');
    assert.equal(missing.status, 400);
    assert.match(String(missing.body.message), /^configuration not reloaded, nothing changed there: embedded: .*missing\.crt/);
    const [node] = missing.body.nodes as Array<{ error: string; applied: string[] }>;
    assert.match(node.error, /missing\.crt/);
    assert.deepEqual(node.applied, []);
    assert.equal(await starttlsCommonName(tcpPort), 'cert-b');
  });

  await t.test('SIGHUP re-reads the file: a certificate at new paths, and the log format', async () => {
    const c = await certificate(dir, 'cert-c');
    writeFileSync(configFile, stringify({ ...base, log: { level: 'info', format: 'json' }, c2s: { ...base.c2s, tls: c } }));
    const mark = p.log.length;
    p.child.kill('SIGHUP');
    const line = await p.waitForLine(/configuration reloaded/, mark);
    const entry = JSON.parse(line) as Record<string, unknown>;
    // The limit set by the previous reload is back to its default, as the file says now.
    assert.equal(entry.applied, 'log.format,c2s.tls,c2s.maxAuthFailures,limits.bytesPerSecond');
    // c2s.maxConnections was never applied: what runs is what the file says again.
    assert.equal(entry.restartNeeded, 'none');
    assert.equal(await starttlsCommonName(tcpPort), 'cert-c');
  });

  await t.test('the OpenAPI description: served as kept in the repository, every route documented, every documented route answers', async () => {
    const doc = parseYaml(readFileSync(new URL('../../services/admin/openapi.yaml', import.meta.url), 'utf8')) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown>; security?: unknown[] }>>;
    };
    const served = await adminApi(p.adminUrl, undefined, 'GET', '/openapi.json');
    assert.equal(served.status, 200);
    assert.deepEqual(served.body, doc);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)).sort();
    assert.deepEqual(ROUTES.map((r) => `${r.method} ${r.path}`).sort(), documented);
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const concrete = path.replace('{jid}', encodeURIComponent('nobody@localhost'));
        const open = Array.isArray(op.security) && op.security.length === 0;
        // Without the token: 401 for every route but the description.
        const anonymous = await adminApi(p.adminUrl, undefined, method.toUpperCase(), concrete, method === 'get' || method === 'delete' ? undefined : {});
        assert.equal(anonymous.status, open ? 200 : 401, `${method} ${path} without a token`);
        const r = await api(method.toUpperCase(), concrete, method === 'get' || method === 'delete' ? undefined : {});
        assert.ok(String(r.status) in op.responses, `${method} ${path} answered ${r.status}, not documented: ${JSON.stringify(r.body)}`);
        if (r.status >= 400) assert.equal(typeof r.body.message, 'string');
      }
    }
    const unknown = await api('GET', '/no-such-route');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error, 'not-found');
    const wrongMethod = await api('DELETE', '/stats');
    assert.equal(wrongMethod.status, 405);
  });

  await t.test('disabling an account through the API ends its session on the wire; a bad value changes nothing', async () => {
    const bad = await api('PUT', `/users/${encodeURIComponent('carol@localhost')}/disabled`, { disabled: 'yes' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.message, 'give disabled: true or false');
    const r = await api('PUT', `/users/${encodeURIComponent('carol@localhost')}/disabled`, { disabled: true });
    assert.deepEqual(r.body, { jid: 'carol@localhost', disabled: true });
    await carol!.waitFor(/<policy-violation xmlns=["']urn:ietf:params:xml:ns:xmpp-streams["']\/><text[^>]*>this account has been disabled by an administrator</, 15_000);
    const back = await api('PUT', `/users/${encodeURIComponent('carol@localhost')}/disabled`, { disabled: false });
    assert.equal(back.status, 200);
  });

  await t.test('parley user disable|enable: one line each, a missing account is an error', async () => {
    const off = await cli('user', 'disable', 'carol@localhost');
    assert.equal(off.status, 0, off.stderr);
    assert.equal(off.stdout, 'disabled carol@localhost: its sessions ended; it cannot log in until enabled\n');
    const on = await cli('user', 'enable', 'carol@localhost');
    assert.equal(on.status, 0, on.stderr);
    assert.equal(on.stdout, 'enabled carol@localhost\n');
    const missing = await cli('user', 'disable', 'nobody@localhost');
    assert.equal(missing.status, 2);
    assert.equal(missing.stderr, 'parley: no account nobody@localhost\n');
  });

  await t.test('with the server stopped, the command says it cannot reach it', async () => {
    await p.stop();
    const r = await cli('stats');
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `parley: cannot reach the admin API at ${p.adminUrl} (ECONNREFUSED); is the server running?\n`);
  });
});
