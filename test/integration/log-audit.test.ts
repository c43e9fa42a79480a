// What an operator reads in the log of a real server (log.format: json): every line one JSON object with the
// same first keys, and the audit events of a client's life (stream-open, auth-failed, login, stream-close) with
// their fields, never the password. Each client has its own loopback address (127.0.0.x).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { fail2banAddress, fail2banRegex } from '../support/fail2ban.ts';
import type { RunningServer } from '../../services/server.ts';

const PW = 'Tr0ub4dor-audit-7c1e';
const WRONG = 'Wr0ng-audit-5d2a';
const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';

type Entry = Record<string, unknown>;

async function until<T>(what: string, f: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const bindIq = (resource: string) => `<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`;

/** Logged in over plain TCP on loopback (PLAIN), bound to `resource`. */
async function plainLogin(port: number, from: string, resource: string): Promise<RawClient> {
  const c = await rawConnect(port, '127.0.0.1', from);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  c.send(plainAuth('alice', PW));
  await c.waitFor(/<success/);
  c.send(STREAM_OPEN());
  await c.waitFor(/xmpp-bind/);
  c.send(bindIq(resource));
  await c.waitFor(/<jid>/);
  return c;
}

describe('audit events in the JSON log', () => {
  let d: Deployment & { server: RunningServer };
  let port: number;
  let raw = '';
  const write = process.stderr.write.bind(process.stderr);
  const entries = (): Entry[] => raw.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Entry);
  const event = (name: string, address: string): Entry | undefined => entries().find((e) => e.event === name && e.address === address);
  const waitEvent = (name: string, address: string) => until(`${name} from ${address}`, () => event(name, address));

  before(async () => {
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      raw += String(chunk);
      return process.env.PARLEY_TEST_VERBOSE ? write(chunk, ...rest) : true;
    }) as typeof process.stderr.write;
    d = await startEmbedded({ log: { level: 'info', format: 'json' } });
    port = d.ports[0];
    await d.server.accounts.add('alice@localhost', PW);
  });
  after(async () => {
    await d.stop();
    process.stderr.write = write;
  });

  test('STARTTLS, a wrong password, the right one, bind, the client closes: each step one entry with its fields', async () => {
    const a = '127.0.0.41';
    const c = await rawConnect(port, '127.0.0.1', a);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    const open = await waitEvent('stream-open', a);
    assert.equal(open.level, 'info');
    assert.equal(open.logger, 'c2s');
    assert.equal(open.msg, 'stream opened');
    assert.equal(open.transport, 'tcp');
    assert.equal(open.tls, 'no', 'TLS at connection time: STARTTLS comes later');
    assert.equal(typeof open.sid, 'string');

    c.send(`<starttls xmlns='${NS_TLS}'/>`);
    await c.waitFor(/<proceed/);
    await c.startTls();
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth('alice', WRONG));
    await c.waitFor(/<not-authorized\/>/, 10_000);
    c.send(plainAuth('alice', PW));
    await c.waitFor(/<success/);
    c.send(STREAM_OPEN());
    await c.waitFor(/xmpp-bind/);
    c.send(bindIq('audit'));
    await c.waitFor(/<jid>alice@localhost\/audit<\/jid>/);

    const failed = await waitEvent('auth-failed', a);
    assert.equal(failed.msg, 'auth failed');
    assert.equal(failed.account, 'alice@localhost');
    assert.equal(failed.mechanism, 'PLAIN');
    assert.equal(failed.condition, 'not-authorized');

    const login = await waitEvent('login', a);
    assert.equal(login.level, 'info');
    assert.equal(login.msg, 'login');
    assert.equal(login.jid, 'alice@localhost/audit');
    assert.equal(login.mechanism, 'PLAIN');
    assert.equal(login.resumed, 'no');
    assert.equal(login.tls, 'yes');
    assert.equal(login.sid, open.sid, 'the same stream');

    c.send('</stream:stream>');
    await c.closed;
    const close = await waitEvent('stream-close', a);
    assert.equal(close.msg, 'stream closed');
    assert.equal(close.jid, 'alice@localhost/audit');
    assert.equal(close.reason, 'client closed');
    assert.equal(close.condition, undefined);
    assert.equal(close.sid, open.sid);
    assert.equal(typeof close.duration, 'number');
    assert.ok((close.duration as number) >= 0 && (close.duration as number) < 60, `duration ${close.duration}`);

    // In order: opened, failed, logged in, closed.
    const order = entries().filter((e) => e.address === a).map((e) => e.event);
    assert.deepEqual(order, ['stream-open', 'auth-failed', 'login', 'stream-close']);

    // The fail2ban filter finds the address in the JSON line (and fail2ban itself, where it is installed).
    const line = raw.split('\n').find((l) => l.includes('"event":"auth-failed"') && l.includes(`"address":"${a}"`))!;
    assert.equal(fail2banAddress(line), a);
    const found = fail2banRegex([line]);
    if (found) assert.deepEqual(found, [a]);
  });

  test('a connection lost, a session replaced (kicked), a stream error, and the server shutting down', async () => {
    const lost = await plainLogin(port, '127.0.0.42', 'lost');
    lost.socket.destroy();
    const l = await waitEvent('stream-close', '127.0.0.42');
    assert.equal(l.reason, 'connection lost');
    assert.equal(l.jid, 'alice@localhost/lost');

    const first = await plainLogin(port, '127.0.0.43', 'dup');
    const second = await plainLogin(port, '127.0.0.44', 'dup');
    await first.waitFor(/<conflict/);
    const k = await waitEvent('stream-close', '127.0.0.43');
    assert.equal(k.reason, 'kicked');
    assert.equal(k.condition, 'conflict');
    assert.equal(k.jid, 'alice@localhost/dup');

    // An unserved domain: the stream error's condition is the reason; nothing was bound.
    const bad = await rawConnect(port, '127.0.0.1', '127.0.0.45');
    bad.send(STREAM_OPEN('elsewhere.example'));
    await bad.closed;
    const h = await waitEvent('stream-close', '127.0.0.45');
    assert.equal(h.reason, 'host-unknown');
    assert.equal(h.condition, 'host-unknown');
    assert.equal(h.jid, undefined);

    await d.server.c2s!.stop();
    const s = await waitEvent('stream-close', '127.0.0.44');
    assert.equal(s.reason, 'shutdown');
    assert.equal(s.condition, 'system-shutdown');
    second.close();
  });

  test('every line is one JSON object with the same first keys; no password anywhere', () => {
    const lines = raw.split('\n').filter(Boolean);
    assert.ok(lines.length >= 10, `lines: ${lines.length}`);
    for (const l of lines) {
      const e = JSON.parse(l) as Entry;
      assert.deepEqual(Object.keys(e).slice(0, 6), ['time', 'level', 'role', 'node', 'logger', 'msg'], l);
      assert.match(String(e.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.equal(e.role, 'all');
      assert.equal(e.node, 'embedded');
    }
    for (const secret of [PW, WRONG, Buffer.from(`\0alice\0${PW}`).toString('base64'), Buffer.from(`\0alice\0${WRONG}`).toString('base64')]) {
      assert.ok(!raw.includes(secret), `${secret} is not in the log`);
    }
  });
});
