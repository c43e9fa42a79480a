// What `parley` says when it is given something wrong: one line on stderr, no
// stack trace, exit status 2 for a command line or configuration at fault, 1
// for a listener that cannot bind. Each case runs the real command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';
import { tempDir } from '../../test/support/servers.ts';

const BIN = join(import.meta.dirname, '../../bin/parley.mjs');

interface Run { status: number | null; stdout: string; stderr: string }

function parley(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  // Only the variables given here: none of the caller's PARLEY_* settings.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...base, ...env }, timeout: 60_000, encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

/** A configuration serving example.com, with its data in a directory of its own. */
function configFile(extra = ''): string {
  const dir = tempDir('parley-cli');
  const file = join(dir, 'parley.yaml');
  writeFileSync(file, `domains: [example.com]\ndataDir: ${JSON.stringify(join(dir, 'data'))}\nlog: { level: warn }\n${extra}`);
  return file;
}

function refusedWith(r: Run, status: number, line: string): void {
  assert.equal(r.stderr, `parley: ${line}\n`, `stdout: ${r.stdout}`);
  assert.equal(r.status, status);
  assert.equal(r.stdout, '');
}

test('an unknown option, or an option without its value, is one line pointing at --help', async () => {
  refusedWith(await parley(['--bogus']), 2, "unknown option '--bogus' (parley --help lists the options)");
  refusedWith(await parley(['user', 'list', 'example.com', '-x']), 2, "unknown option '-x' (parley --help lists the options)");
  refusedWith(await parley(['user', 'add', 'alice@example.com', '--password']), 2, "option '--password' needs a value (parley --help lists the options)");
  refusedWith(await parley(['user', 'list', '--config']), 2, "option '--config' needs a value (parley --help lists the options)");
  refusedWith(await parley(['user', 'bulk-add', '--start', '-1']), 2, "option '--start' needs a value; one that starts with '-' is written --start=VALUE");
  refusedWith(await parley(['--help=yes']), 2, "option '--help' takes no value (parley --help lists the options)");
});

test('--help, -h and `parley help` print the usage on stdout and succeed; no command at all is a usage error', async () => {
  for (const args of [['--help'], ['-h'], ['help'], ['user', '--help']]) {
    const r = await parley(args);
    assert.equal(r.status, 0, args.join(' '));
    assert.match(r.stdout, /^usage: parley <command> \[options\]\n/);
    assert.match(r.stdout, /user bulk-add --domain D --prefix P --count N --password PW/);
    assert.equal(r.stderr, '');
  }
  const none = await parley([]);
  assert.equal(none.status, 2);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^usage: parley <command> \[options\]\n/);
});

test('accounts are made only in served domains; nothing is written for another', async () => {
  const cfg = configFile();
  const notServed = 'not-served.example is not a served domain (configured: example.com; added at run time: none)';
  const pw = { PARLEY_PASSWORD: 'secret' };
  refusedWith(await parley(['user', 'add', 'carol@not-served.example', '--config', cfg], pw), 2, notServed);
  refusedWith(await parley(['user', 'passwd', 'carol@not-served.example', '--config', cfg], pw), 2, notServed);
  refusedWith(await parley(['user', 'bulk-add', '--domain', 'not-served.example', '--count', '3', '--config', cfg], pw), 2, notServed);
  for (const sub of ['del', 'roster', 'blocks', 'vcard']) {
    refusedWith(await parley(['user', sub, 'carol@not-served.example', '--config', cfg]), 2, notServed);
  }
  refusedWith(await parley(['user', 'list', 'not-served.example', '--config', cfg]), 2, notServed);

  // Served from now on (at run time): the domain has no account, so nothing was written before.
  assert.equal((await parley(['domain', 'add', 'not-served.example', '--config', cfg])).status, 0);
  const listed = await parley(['user', 'list', 'not-served.example', '--config', cfg]);
  assert.deepEqual([listed.status, listed.stdout, listed.stderr], [0, '', '']);
  const added = await parley(['user', 'add', 'carol@not-served.example', '--config', cfg], pw);
  assert.deepEqual([added.status, added.stdout], [0, 'created carol@not-served.example\n'], added.stderr);

  // Served no longer: the account left there can still be read and deleted.
  assert.equal((await parley(['domain', 'del', 'not-served.example', '--config', cfg])).status, 0);
  const left = await parley(['user', 'list', 'not-served.example', '--config', cfg]);
  assert.deepEqual([left.status, left.stdout], [0, 'carol@not-served.example\n'], left.stderr);
  refusedWith(await parley(['user', 'add', 'dave@not-served.example', '--config', cfg], pw), 2,
    'not-served.example is not a served domain (configured: example.com; added at run time: none)');
  const deleted = await parley(['user', 'del', 'carol@not-served.example', '--config', cfg]);
  assert.equal(deleted.status, 0, deleted.stderr);
});

test('numeric options take whole numbers only', async () => {
  const cfg = configFile();
  const bulk = (...more: string[]) => parley(['user', 'bulk-add', '--domain', 'example.com', '--password', 'secret', '--config', cfg, ...more]);
  refusedWith(await bulk('--count', 'abc'), 2, "--count needs a positive integer, not 'abc'");
  refusedWith(await bulk('--count', '0'), 2, "--count needs a positive integer, not '0'");
  refusedWith(await bulk('--count', '2.5'), 2, "--count needs a positive integer, not '2.5'");
  refusedWith(await bulk('--count', '1e3'), 2, "--count needs a positive integer, not '1e3'");
  refusedWith(await bulk(), 2, 'give --count');
  refusedWith(await bulk('--count', '2', '--start=-1'), 2, "--start needs a non-negative integer, not '-1'");
  refusedWith(await bulk('--count', '2', '--start', 'one'), 2, "--start needs a non-negative integer, not 'one'");
  refusedWith(await bulk('--count', '2', '--concurrency', '0'), 2, "--concurrency needs a positive integer, not '0'");
  refusedWith(await bulk('--count', '2', '--concurrency', 'many'), 2, "--concurrency needs a positive integer, not 'many'");
  // None of these made an account; valid numbers do.
  assert.equal((await parley(['user', 'list', 'example.com', '--config', cfg])).stdout, '');
  const ok = await bulk('--count', '2', '--start', '0', '--concurrency', '1', '--prefix', 'u');
  assert.deepEqual([ok.status, ok.stdout], [0, 'created 2 accounts (0 existed)\n'], ok.stderr);
  assert.equal((await parley(['user', 'list', 'example.com', '--config', cfg])).stdout, 'u0@example.com\nu1@example.com\n');
});

test('an unknown configuration key, in the file or a variable, stops the command with one line', async () => {
  const bad = configFile('logg: { level: debug }\n');
  refusedWith(await parley(['user', 'list', 'example.com', '--config', bad]), 2, `invalid configuration in ${bad}: unknown key 'logg' (did you mean 'log'?)`);
  const nested = configFile('c2s:\n  tpc: { port: 5300 }\n');
  refusedWith(await parley(['start', '--config', nested]), 2, `invalid configuration in ${nested}: unknown key 'c2s.tpc' (did you mean 'c2s.tcp'?)`);
  refusedWith(await parley(['user', 'list', 'example.com', '--config', configFile()], { PARLEY_C2S__TPC__PORT: '5300' }), 2,
    "invalid configuration in PARLEY_C2S__TPC__PORT: unknown key 'c2s.tpc' (did you mean 'c2s.tcp'?)");
  refusedWith(await parley(['user', 'list', 'example.com', '--config', '/nonexistent/parley.yaml']), 2, 'cannot read configuration /nonexistent/parley.yaml: no such file');
});

function holdPort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

test('a listener whose port is taken is named, with the key that moves it', async () => {
  const { server, port } = await holdPort();
  try {
    // Every other listener on a free port.
    const others = 'metrics: { port: 0 }\nc2s:\n  tcp: { port: 0 }\n  directTls: { port: 0 }\n  http: { port: 0 }\ns2s:\n  listen: { port: 0 }\n  directTls: { port: 0 }\n';
    const cases: Array<[string, Record<string, string>, string]> = [
      ['the c2s TCP listener', { PARLEY_C2S__TCP__PORT: String(port) }, 'c2s.tcp.port'],
      ['the c2s direct TLS listener', { PARLEY_C2S__DIRECT_TLS__ENABLED: 'true', PARLEY_C2S__DIRECT_TLS__PORT: String(port) }, 'c2s.directTls.port'],
      ['the HTTP listener (WebSocket, BOSH)', { PARLEY_C2S__HTTP__ENABLED: 'true', PARLEY_C2S__HTTP__PORT: String(port) }, 'c2s.http.port'],
      ['the s2s listener', { PARLEY_S2S__ENABLED: 'true', PARLEY_S2S__LISTEN__PORT: String(port) }, 's2s.listen.port'],
      ['the metrics listener', { PARLEY_METRICS__PORT: String(port) }, 'metrics.port'],
    ];
    for (const [listener, env, key] of cases) {
      refusedWith(await parley(['start', '--config', configFile(others)], env), 1, `${listener} cannot bind 127.0.0.1:${port} (address in use): set ${key}`);
    }
  } finally {
    server.close();
  }
});

test('the HTTP listener does not share its port with another HTTP server that allows sharing', async () => {
  // uWS binds with SO_REUSEPORT unless asked not to: a second process would then take half the connections in silence.
  const uws = createRequire(import.meta.url)('@trufflesuite/uws-js-unofficial') as typeof UwsTypes;
  const { server, port: probe } = await holdPort();
  await new Promise<void>((r) => server.close(() => r()));
  const app = uws.App();
  const socket = await new Promise<UwsTypes.us_listen_socket>((resolve, reject) => {
    app.listen('127.0.0.1', probe, (s) => (s ? resolve(s) : reject(new Error(`cannot hold port ${probe}`))));
  });
  try {
    const config = configFile('metrics: { port: 0 }\nc2s:\n  tcp: { port: 0 }\n  http: { enabled: true }\n');
    refusedWith(await parley(['start', '--config', config], { PARLEY_C2S__HTTP__PORT: String(probe) }), 1,
      `the HTTP listener (WebSocket, BOSH) cannot bind 127.0.0.1:${probe} (address in use): set c2s.http.port`);
  } finally {
    uws.us_listen_socket_close(socket);
  }
});
