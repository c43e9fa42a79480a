// Invitation-only in-band registration (XEP-0445 over XEP-0077): tokens made
// with `parley register-token create`, presented with
// <preauth xmlns='urn:xmpp:pars:0'/>, each use creating one account. A wrong,
// expired or used-up token gets item-not-found and creates nothing. The same
// on one process (lmdb, the CLI beside the running server) and in a cluster
// (the tokens in Redis, two c2s processes).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../../libs/config/index.ts';
import { startServer, type RunningServer } from '../../services/server.ts';
import { DOMAIN, PLAIN_ON_LOOPBACK, startCluster, type Cluster } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { tempDir } from '../support/servers.ts';

const BIN = join(import.meta.dirname, '../../bin/parley.mjs');
const PASSWORD = 'a-long-password';

interface Run { status: number | null; stdout: string; stderr: string }

function cli(config: string, args: string[]): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args, '--config', config], { env, timeout: 60_000, encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

async function createToken(config: string, ...opts: string[]): Promise<string> {
  const r = await cli(config, ['register-token', 'create', ...opts]);
  assert.equal(r.status, 0, r.stderr);
  const [token, uri] = r.stdout.split('\n');
  assert.match(token, /^[A-Za-z0-9_-]{20,}$/);
  assert.equal(uri, `xmpp:${DOMAIN}?register;preauth=${token}`);
  return token;
}

/** A fresh stream up to the pre-authentication features. */
async function fresh(port: number): Promise<{ c: RawClient; features: string }> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  const features = await c.waitFor(/<\/stream:features>/);
  return { c, features };
}

let n = 0;
/** Send an iq and wait for its answer (result or error). */
async function iq(c: RawClient, body: string, type = 'set'): Promise<string> {
  const id = `q${++n}`;
  c.send(`<iq type='${type}' id='${id}' to='${DOMAIN}'>${body}</iq>`);
  // Self-closing (an empty result), or up to its end tag.
  const re = new RegExp(`<iq[^>]*id="${id}"(?:[^>]*/>|[^]*?</iq>)`);
  return re.exec(await c.waitFor(re))![0];
}

const preauth = (token: string) => `<preauth xmlns='urn:xmpp:pars:0' token='${token}'/>`;
const register = (user: string) => `<query xmlns='jabber:iq:register'><username>${user}</username><password>${PASSWORD}</password></query>`;
const isResult = (reply: string) => assert.match(reply, /type="result"/, reply);
const refused = (reply: string, condition: string, textRe: RegExp) => {
  assert.match(reply, new RegExp(`type="error"[^]*<${condition} xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>`), reply);
  assert.match(reply, textRe, reply);
};

async function canLogIn(port: number, user: string): Promise<boolean> {
  const c = await rawConnect(port);
  try {
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth(user, PASSWORD));
    const out = await c.waitFor(/<success|<failure/);
    return out.includes('<success');
  } finally {
    c.close();
  }
}

/** The scenarios, against a server whose c2s listens on `ports` and whose CLI configuration is `config`. */
function scenarios(deployment: () => { ports: number[]; config: string }, tag: string): void {
  const port = (i: number) => deployment().ports[i % deployment().ports.length];

  test('the token feature is offered; without a token nothing is created (forbidden)', async () => {
    const { c, features } = await fresh(port(0));
    assert.match(features, /<register xmlns="urn:xmpp:ibr-token:0"\/>/);
    assert.match(features, /<register xmlns="http:\/\/jabber.org\/features\/iq-register"\/>/);
    refused(await iq(c, register(`${tag}none`)), 'forbidden', /invitation only/);
    c.close();
    assert.equal(await canLogIn(port(0), `${tag}none`), false);
  });

  test('a wrong token, a token of another domain: item-not-found, nothing created', async () => {
    const { c } = await fresh(port(0));
    refused(await iq(c, preauth('no-such-token')), 'item-not-found', /invalid or expired/);
    refused(await iq(c, register(`${tag}wrong`)), 'forbidden', /invitation only/);
    c.close();
    assert.equal(await canLogIn(port(0), `${tag}wrong`), false);
  });

  test('a valid token creates one account, on any c2s process; used up, it is refused and creates nothing', async () => {
    const token = await createToken(deployment().config, '--uses', '1', '--ttl', '1h');
    const { c } = await fresh(port(0));
    isResult(await iq(c, preauth(token)));
    isResult(await iq(c, register(`${tag}one`)));
    // One account per presented token: a second one on the same stream needs the token again.
    refused(await iq(c, register(`${tag}two`)), 'forbidden', /invitation only/);
    refused(await iq(c, preauth(token)), 'item-not-found', /used up/);
    c.close();
    assert.equal(await canLogIn(port(1), `${tag}one`), true);
    const { c: other } = await fresh(port(1));
    refused(await iq(other, preauth(token)), 'item-not-found', /used up/);
    other.close();
    assert.equal(await canLogIn(port(0), `${tag}two`), false);
    const list = await cli(deployment().config, ['register-token', 'list']);
    assert.match(list.stdout, new RegExp(`^${token} ${DOMAIN} 1/1 \\S+ used up$`, 'm'));
  });

  test('a taken username gives the use back; a token for two accounts makes two', async () => {
    const token = await createToken(deployment().config, '--uses', '2');
    const { c } = await fresh(port(0));
    isResult(await iq(c, preauth(token)));
    isResult(await iq(c, register(`${tag}first`)));
    isResult(await iq(c, preauth(token)));
    refused(await iq(c, register(`${tag}first`)), 'conflict', /taken/);
    assert.match((await cli(deployment().config, ['register-token', 'list'])).stdout, new RegExp(`^${token} ${DOMAIN} 1/2 \\S+ valid$`, 'm'));
    isResult(await iq(c, register(`${tag}second`)));
    c.close();
    assert.equal(await canLogIn(port(1), `${tag}second`), true);
  });

  test('an expired token: item-not-found, nothing created', async () => {
    const token = await createToken(deployment().config, '--ttl', '1s');
    await new Promise((r) => setTimeout(r, 1300));
    const { c } = await fresh(port(0));
    refused(await iq(c, preauth(token)), 'item-not-found', /invalid or expired/);
    refused(await iq(c, register(`${tag}late`)), 'forbidden', /invitation only/);
    c.close();
    assert.match((await cli(deployment().config, ['register-token', 'list'])).stdout, new RegExp(`^${token} ${DOMAIN} 0/1 \\S+ expired$`, 'm'));
  });

  test('a revoked token: item-not-found; revoking an unknown one fails', async () => {
    const token = await createToken(deployment().config);
    const revoked = await cli(deployment().config, ['register-token', 'revoke', token]);
    assert.equal(revoked.status, 0, revoked.stderr);
    assert.equal(revoked.stdout, `revoked ${token}\n`);
    const { c } = await fresh(port(0));
    refused(await iq(c, preauth(token)), 'item-not-found', /invalid or expired/);
    c.close();
    const again = await cli(deployment().config, ['register-token', 'revoke', token]);
    assert.equal(again.status, 1);
    assert.equal(again.stderr, `parley: no registration token '${token}'\n`);
    assert.doesNotMatch((await cli(deployment().config, ['register-token', 'list'])).stdout, new RegExp(token));
  });
}

describe('registration tokens, embedded (the CLI beside the running server)', () => {
  let server: RunningServer;
  const state = { ports: [] as number[], config: '' };
  before(async () => {
    const dir = tempDir('parley-regtoken');
    state.config = join(dir, 'parley.yaml');
    writeFileSync(state.config, stringify({
      dataDir: join(dir, 'data'), domains: [DOMAIN], log: { level: 'warn' }, metrics: { enabled: false },
      c2s: { tcp: { host: '127.0.0.1', port: 0, ...PLAIN_ON_LOOPBACK } },
      registration: { requireToken: true, maxPerIp: 20, minPasswordLength: 8 },
    }));
    server = await startServer(loadConfig(state.config));
    state.ports = [server.c2s!.tcpPort()];
  });
  after(async () => { await server.stop(false); });
  scenarios(() => state, 'rte');
});

describe('registration tokens, cluster (tokens in Redis, two c2s processes)', () => {
  let c: Cluster;
  const state = { ports: [] as number[], config: '' };
  before(async () => {
    c = await startCluster({ c2s: 2, session: 1, config: { registration: { requireToken: true, maxPerIp: 20, minPasswordLength: 8 } } });
    state.ports = c.ports;
    state.config = join(tempDir('parley-regtoken-cli'), 'cli.yaml');
    writeFileSync(state.config, stringify({ domains: [DOMAIN], log: { level: 'warn' }, store: { kind: 'redis', url: c.redis.url } }));
  });
  after(async () => { await c?.stop(); });
  scenarios(() => state, 'rtc');
});

describe('registration tokens: the CLI refuses what it cannot use', () => {
  test('a bad --uses, a bad --ttl, a domain not served', async () => {
    const dir = tempDir('parley-regtoken-bad');
    const config = join(dir, 'parley.yaml');
    writeFileSync(config, stringify({ dataDir: join(dir, 'data'), domains: [DOMAIN], log: { level: 'warn' } }));
    const uses = await cli(config, ['register-token', 'create', '--uses', '0']);
    assert.equal(uses.status, 2);
    assert.equal(uses.stderr, "parley: --uses needs a number of accounts from 1 to 1000000, not '0'\n");
    const ttl = await cli(config, ['register-token', 'create', '--ttl', 'soon']);
    assert.equal(ttl.status, 2);
    assert.equal(ttl.stderr, "parley: --ttl needs a duration such as 90s, 30m, 12h or 7d (0: never), not 'soon'\n");
    const other = await cli(config, ['register-token', 'create', '--domain', 'elsewhere.example']);
    assert.equal(other.status, 2);
    assert.match(other.stderr, /elsewhere\.example/);
    assert.match((await cli(config, ['register-token', 'list'])).stdout, /^# 0 tokens$/m);
  });
});
