// Moving from ejabberd or Prosody: each Debian server, run as the current
// user with its own data directory, gets accounts with passwords, a roster, a
// vCard and messages through its own tools, then writes its XEP-0227 export
// (ejabberd's export_piefxis, prosody-migrator's xep0227 store). `parley
// import` takes the files into a running Parley — embedded for ejabberd's, a
// cluster for Prosody's — and a real client logs in with the original
// password and sees its roster, vCard, offline message and archive on the
// wire. Each peer runs for a few seconds; every step is bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { xml, type Client } from '@xmpp/client';
import { inbox, testClient, type Inbox, type Stanza } from '../support/clients.ts';
import { startCluster, startEmbedded } from '../support/parley.ts';
import { freePort, tempDir } from '../support/servers.ts';
import { waitForPort } from './support.ts';

const BIN = join(import.meta.dirname, '../../bin/parley.mjs');
const DOMAIN = 'localhost';
const ALICE_PASSWORD = 'wonder land';
const BOB_PASSWORD = 'builder';

interface Run { status: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, timeout: opts.timeoutMs ?? 60_000, encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

function parley(args: string[]): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  return run(process.execPath, [BIN, ...args], { env });
}

// ---------------------------------------------------------------- ejabberd

// Debian puts ejabberd-23.01/ here; its dependencies are in /usr/lib/erlang/lib.
const EJABBERD_LIBS = '/usr/lib/x86_64-linux-gnu';
const bin = (s: string): string => `<<"${s}">>`;

/**
 * ejabberd with no listener, its passwords stored as SCRAM (its default) or in clear: its administration
 * commands (those `ejabberdctl register`, `add_rosteritem`, `set_vcard` and `send_message` run) and
 * `export_piefxis`, called in the node.
 */
async function ejabberdExport(passwordFormat: 'scram' | 'plain'): Promise<string> {
  const dir = tempDir('parley-pie-ejabberd');
  const out = join(dir, 'export');
  mkdirSync(out);
  const cfg = join(dir, 'ejabberd.yml');
  writeFileSync(cfg, `hosts: ["${DOMAIN}"]
loglevel: info
log_rotate_count: 0
listen: []
auth_method: internal
auth_password_format: ${passwordFormat}
acl: {}
access_rules: {}
modules:
  mod_roster: {}
  mod_vcard: {}
  mod_offline: {}
  mod_admin_extra: {}
`);
  const steps = [
    `ok = ejabberd_auth:try_register(${bin('alice')}, ${bin(DOMAIN)}, ${bin(ALICE_PASSWORD)})`,
    `ok = ejabberd_auth:try_register(${bin('bob')}, ${bin(DOMAIN)}, ${bin(BOB_PASSWORD)})`,
    `ok = mod_admin_extra:add_rosteritem(${bin('alice')}, ${bin(DOMAIN)}, ${bin('bob')}, ${bin(DOMAIN)}, ${bin('Bobby')}, ${bin('Friends')}, ${bin('both')})`,
    `ok = mod_admin_extra:add_rosteritem(${bin('bob')}, ${bin(DOMAIN)}, ${bin('alice')}, ${bin(DOMAIN)}, ${bin('Alice')}, ${bin('Friends')}, ${bin('both')})`,
    `ok = mod_admin_extra:set_vcard(${bin('alice')}, ${bin(DOMAIN)}, ${bin('FN')}, ${bin('Alice Liddell')})`,
    `ok = mod_admin_extra:send_message(${bin('chat')}, ${bin(`bob@${DOMAIN}`)}, ${bin(`alice@${DOMAIN}`)}, ${bin('')}, ${bin('hello while away')})`,
    `timer:sleep(300)`,
    `ok = ejabberd_piefxis:export_server(${JSON.stringify(out)})`,
    `io:format("PIE_EXPORTED~n")`,
    `init:stop()`,
  ];
  const r = await run('erl', ['-noinput', '-noshell', '-mnesia', 'dir', JSON.stringify(join(dir, 'db')), '-s', 'ejabberd', '-eval', `${steps.join(', ')}.`], {
    cwd: dir, timeoutMs: 60_000,
    env: { ERL_LIBS: EJABBERD_LIBS, EJABBERD_CONFIG_PATH: cfg, EJABBERD_LOG_PATH: join(dir, 'ejabberd.log'), ERL_CRASH_DUMP: join(dir, 'erl_crash.dump'), HOME: dir },
  });
  assert.match(r.stdout, /PIE_EXPORTED/, `ejabberd did not export:\n${r.stdout}\n${r.stderr}`);
  // The server file (it XIncludes one file per host): the one name without the host in it.
  const main = readdirSync(out).find((f) => /^\d{8}-\d{6}\.xml$/.test(f));
  assert.ok(main, `no export in ${readdirSync(out).join(', ')}`);
  return join(out, main);
}

// ---------------------------------------------------------------- Prosody

async function login(port: number, local: string, password: string, domain = DOMAIN): Promise<{ xmpp: Client; box: Inbox }> {
  const xmpp = testClient({ service: `xmpp://127.0.0.1:${port}`, domain, username: local, password, resource: 'r' });
  const box = inbox(xmpp, local);
  await xmpp.start();
  return { xmpp, box };
}

/**
 * Prosody with hashed passwords: accounts made with `prosodyctl register`, the roster, vCard and messages by
 * real clients (so its archive holds them), then prosody-migrator from its internal store to the xep0227 one.
 * Prosody 0.12's xep0227 store writes accounts, rosters, vCards and archives; it has no offline messages.
 */
async function prosodyExport(): Promise<string[]> {
  const dir = tempDir('parley-pie-prosody');
  const data = join(dir, 'data');
  const out = join(dir, 'export');
  mkdirSync(data);
  mkdirSync(out);
  const port = await freePort();
  const cfg = join(dir, 'prosody.cfg.lua');
  writeFileSync(cfg, `-- generated by test/federation/xep0227-import.test.ts
run_as_root = true
pidfile = "${dir}/prosody.pid"
data_path = "${data}"
log = { { levels = { min = "info" }, to = "file", filename = "${dir}/prosody.log" } }
network_backend = "epoll"
interfaces = { "127.0.0.1" }
c2s_ports = { ${port} }
s2s_ports = { }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
storage = "internal"
default_archive_policy = true
modules_enabled = { "roster", "saslauth", "disco", "presence", "vcard", "mam" }
modules_disabled = { "offline" }
VirtualHost "${DOMAIN}"
`);
  for (const [user, pw] of [['alice', ALICE_PASSWORD], ['bob', BOB_PASSWORD]]) {
    const r = await run('prosodyctl', ['--config', cfg, 'register', user, DOMAIN, pw]);
    assert.equal(r.status, 0, `prosodyctl register ${user}: ${r.stdout}${r.stderr}`);
  }
  const prosody = spawn('prosody', ['-F', '--config', cfg], { cwd: dir, stdio: 'ignore' });
  const stopped = new Promise((r) => prosody.once('exit', r));
  const kill = () => prosody.kill('SIGKILL');
  process.once('exit', kill);
  try {
    await waitForPort('127.0.0.1', port, 20_000, () => prosody.exitCode === null);
    const alice = await login(port, 'alice', ALICE_PASSWORD);
    await alice.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:roster' },
      xml('item', { jid: `bob@${DOMAIN}`, name: 'Bobby' }, xml('group', {}, 'Friends')))));
    await alice.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Alice Liddell'))));
    await alice.xmpp.send(xml('presence'));
    const bob = await login(port, 'bob', BOB_PASSWORD);
    await bob.xmpp.send(xml('message', { to: `alice@${DOMAIN}/r`, type: 'chat', id: 'm1' }, xml('body', {}, 'archived hello')));
    await alice.box.waitFor((s) => s.is('message') && s.getChildText('body') === 'archived hello');
    await Promise.all([alice.xmpp.stop(), bob.xmpp.stop()]);
  } finally {
    prosody.kill('SIGTERM');
    const t = setTimeout(kill, 10_000);
    await stopped;
    clearTimeout(t);
    process.removeListener('exit', kill);
  }
  // prosody-migrator, started as root, drops to the prosody user: it must read the data and write the export.
  if (process.getuid?.() === 0) {
    for (const d of [dir, data, out]) chmodSync(d, 0o777);
    await run('chmod', ['-R', 'a+rwX', data]);
  }
  // The xep0227 store writes into Prosody's data directory, which prosody-migrator takes from its own first
  // lines (it reads no Prosody configuration): a copy of it with that line pointing at the export directory.
  const migrator = join(dir, 'prosody-migrator.lua');
  writeFileSync(migrator, readFileSync('/usr/bin/prosody-migrator', 'utf8').replace(/^CFG_DATADIR=.*$/m, `CFG_DATADIR=${JSON.stringify(out)};`));
  const stores = '{ "accounts", "roster", "vcard", "archive-archive" }';
  const migratorCfg = join(dir, 'migrator.cfg.lua');
  writeFileSync(migratorCfg, `input { type = "internal"; path = "${data}"; hosts = { ["${DOMAIN}"] = ${stores} } }
output { type = "xep0227"; hosts = { ["${DOMAIN}"] = ${stores} } }
`);
  // Run by the interpreter its first line names (`#!/usr/bin/env lua5.4`).
  const [interpreter, ...interpreterArgs] = /^#!\s*(.+)$/m.exec(readFileSync('/usr/bin/prosody-migrator', 'utf8'))![1].trim().split(/\s+/);
  const r = await run(interpreter, [...interpreterArgs, migrator, `--config=${migratorCfg}`, 'input', 'output']);
  assert.equal(r.status, 0, `prosody-migrator: ${r.stdout}${r.stderr}`);
  const files = readdirSync(out).filter((f) => f.endsWith('.xml')).sort();
  assert.deepEqual(files, [`alice@${DOMAIN}.xml`, `bob@${DOMAIN}.xml`]);
  return files.map((f) => join(out, f));
}

// ---------------------------------------------------------------- what the user sees

async function rosterOf(xmpp: Client): Promise<Array<{ jid: string; name?: string; subscription?: string; groups: string[] }>> {
  const res = await xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
  return res.getChild('query')!.getChildren('item').map((i: Stanza) => ({
    jid: i.attrs.jid as string, name: i.attrs.name as string | undefined, subscription: i.attrs.subscription as string | undefined,
    groups: i.getChildren('group').map((g: Stanza) => g.getText()),
  }));
}

async function vcardName(xmpp: Client): Promise<string | undefined> {
  const res = await xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('vCard', { xmlns: 'vcard-temp' })));
  return res.getChild('vCard')?.getChildText('FN') ?? undefined;
}

/** Bodies of the archive (XEP-0313), oldest first. */
async function archivedBodies(xmpp: Client, box: Inbox): Promise<string[]> {
  const since = box.received.length;
  await xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: 'urn:xmpp:mam:2', queryid: 'q1' })), 10_000);
  return box.received.slice(since)
    .filter((s) => s.is('message') && s.getChild('result', 'urn:xmpp:mam:2')?.attrs.queryid === 'q1')
    .map((s) => s.getChild('result')!.getChild('forwarded')!.getChild('message')!.getChildText('body') ?? '');
}

/** A running embedded server and a configuration file naming its data directory, for `parley` commands beside it. */
async function embeddedWithConfigFile(): Promise<{ d: Awaited<ReturnType<typeof startEmbedded>>; cfg: string }> {
  const dataDir = tempDir('parley-pie-embedded');
  const d = await startEmbedded({ dataDir });
  const cfg = join(dataDir, 'parley.yaml');
  writeFileSync(cfg, `domains: [${DOMAIN}]\ndataDir: ${JSON.stringify(dataDir)}\nlog: { level: warn }\n`);
  return { d, cfg };
}

test('an ejabberd export_piefxis imports into a running embedded Parley: the original password logs in, the roster, vCard and offline message are on the wire', { timeout: 120_000 }, async () => {
  const file = await ejabberdExport('scram');
  const { d, cfg } = await embeddedWithConfigFile();
  try {
    const r = await parley(['import', file, '--config', cfg]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^alice@localhost: SCRAM-SHA-1 credentials, 1 contacts, a vCard, 1 offline messages, 0 archived messages; not carried over: SCRAM-SHA-256 login until the password is set again/m);
    assert.match(r.stdout, /^# 2 of these accounts have SCRAM-SHA-1 credentials only: a client that chooses SCRAM-SHA-256 cannot log in to them until their password is set again; leaving SCRAM-SHA-256 out of c2s.saslMechanisms meanwhile lets every client in$/m);
    assert.match(r.stdout, /^imported 2 accounts from /m);

    const alice = await login(d.ports[0], 'alice', ALICE_PASSWORD);
    try {
      assert.deepEqual(await rosterOf(alice.xmpp), [{ jid: `bob@${DOMAIN}`, name: 'Bobby', subscription: 'both', groups: ['Friends'] }]);
      assert.equal(await vcardName(alice.xmpp), 'Alice Liddell');
      await alice.xmpp.send(xml('presence'));
      const offline = await alice.box.waitFor((s) => s.is('message') && s.getChildText('body') === 'hello while away');
      assert.equal(offline.attrs.from, `bob@${DOMAIN}`);
      assert.ok(offline.getChild('delay', 'urn:xmpp:delay')?.attrs.stamp, 'the offline message keeps its delay stamp');
    } finally {
      await alice.xmpp.stop();
    }
    // The other account too, with its own password; a wrong one is refused.
    const bob = await login(d.ports[0], 'bob', BOB_PASSWORD);
    assert.deepEqual(await rosterOf(bob.xmpp), [{ jid: `alice@${DOMAIN}`, name: 'Alice', subscription: 'both', groups: ['Friends'] }]);
    await bob.xmpp.stop();
    await assert.rejects(login(d.ports[0], 'bob', 'not-the-password'), /not-authorized/);

    // Importing the same file again: the accounts exist, nothing is written.
    const again = await parley(['import', file, '--config', cfg]);
    assert.equal(again.status, 2);
    assert.equal(again.stderr, `parley: alice@localhost, bob@localhost exist already (import only creates accounts); nothing imported\n`);
  } finally {
    await d.stop();
  }
});

test('an ejabberd export of clear passwords: they become SCRAM credentials of both kinds, and log in', { timeout: 120_000 }, async () => {
  const file = await ejabberdExport('plain');
  assert.match(readFileSync(file.replace(/\.xml$/, `_${DOMAIN}.xml`), 'utf8'), new RegExp(`<user name='alice' password='${ALICE_PASSWORD}'>`));
  const { d, cfg } = await embeddedWithConfigFile();
  try {
    const r = await parley(['import', file, '--config', cfg]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^alice@localhost: password, 1 contacts, a vCard, 1 offline messages, 0 archived messages\n/m);
    const exported = await parley(['export', '--config', cfg]);
    assert.match(exported.stdout, /<user name="alice"><scram-credentials [^>]*mechanism="SCRAM-SHA-1">.*<scram-credentials [^>]*mechanism="SCRAM-SHA-256">/);
    const alice = await login(d.ports[0], 'alice', ALICE_PASSWORD);
    assert.equal(await vcardName(alice.xmpp), 'Alice Liddell');
    await alice.xmpp.stop();
  } finally {
    await d.stop();
  }
});

test('a prosody-migrator xep0227 export imports into a running cluster: the original password logs in, the roster, vCard and archive are on the wire', { timeout: 120_000 }, async () => {
  const files = await prosodyExport();
  const c = await startCluster({ c2s: 1, session: 1 });
  try {
    const cfg = join(tempDir('parley-pie-cluster'), 'parley.yaml');
    writeFileSync(cfg, `domains: [${DOMAIN}]\nbus: { kind: nats, url: "${c.nats.url}" }\nstore: { kind: redis, url: "${c.redis.url}" }\nlog: { level: warn }\n`);
    const r = await parley(['import', ...files, '--config', cfg]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^alice@localhost: SCRAM-SHA-1 credentials, 1 contacts, a vCard, 0 offline messages, 1 archived messages/m);
    assert.match(r.stdout, /^imported 2 accounts from /m);

    const alice = await login(c.ports[0], 'alice', ALICE_PASSWORD);
    try {
      assert.deepEqual(await rosterOf(alice.xmpp), [{ jid: `bob@${DOMAIN}`, name: 'Bobby', subscription: 'none', groups: ['Friends'] }]);
      assert.equal(await vcardName(alice.xmpp), 'Alice Liddell');
      assert.deepEqual(await archivedBodies(alice.xmpp, alice.box), ['archived hello']);
    } finally {
      await alice.xmpp.stop();
    }
    const bob = await login(c.ports[0], 'bob', BOB_PASSWORD);
    assert.deepEqual(await archivedBodies(bob.xmpp, bob.box), ['archived hello']);
    await bob.xmpp.stop();
  } finally {
    await c.stop();
  }
});
