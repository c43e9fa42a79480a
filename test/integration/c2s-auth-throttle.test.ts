// Brute-force protection on the wire: failed logins from one address are
// answered ever later, then the address is blocked for a while (a stream error
// with text on every new stream), while other addresses log in as usual; an
// account attacked from many addresses is slowed but never locked. Each client
// here has its own loopback address (127.0.0.x) so the counts are its own.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import type { RunningServer } from '../../services/server.ts';
import { fail2banAddress, fail2banRegex } from '../support/fail2ban.ts';

const FAILURE = /<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><not-authorized\/><\/failure>/;
const BLOCKED_ERROR = /<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text xmlns="urn:ietf:params:xml:ns:xmpp-streams" xml:lang="en">this address is temporarily blocked after too many failed logins; try again in \d+ seconds<\/text><\/stream:error><\/stream:stream>/;
const BASE = 200;

/** A stream from `from` with its features read. */
async function open(port: number, from: string): Promise<RawClient> {
  const c = await rawConnect(port, '127.0.0.1', from);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  return c;
}

/** Milliseconds from sending a PLAIN attempt to the answer that matches `re`, counting answers already on the stream. */
async function attempt(c: RawClient, user: string, password: string, re: RegExp): Promise<number> {
  const seen = c.output.match(new RegExp(re.source, 'g'))?.length ?? 0;
  const t0 = performance.now();
  c.send(plainAuth(user, password));
  await c.waitFor(new RegExp(`(${re.source}[^]*){${seen + 1}}`), 10_000);
  return performance.now() - t0;
}

async function loginSucceeds(port: number, from: string, user: string): Promise<number> {
  const c = await open(port, from);
  const ms = await attempt(c, user, PASSWORD, /<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>/);
  c.close();
  return ms;
}

describe('c2s login throttling, embedded', () => {
  let d: Deployment & { server: RunningServer };
  let port: number;
  const logged: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  before(async () => {
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      logged.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof process.stderr.write;
    d = await startEmbedded({
      log: { level: 'info' },
      c2s: {
        maxAuthFailures: 10,
        authThrottle: {
          windowSeconds: 60, addressBackoffAfter: 2, maxFailuresPerAddress: 5, blockSeconds: 3,
          accountBackoffAfter: 2, backoffBaseMs: BASE, backoffMaxMs: 5000,
        },
      },
    });
    port = d.ports[0];
    await d.addUser('alice');
    await d.addUser('victim');
  });
  after(async () => {
    process.stderr.write = write;
    await d.stop();
  });

  test('one address: back-off grows, then a block refuses even the right password while another address logs in', async () => {
    const a = '127.0.0.3';
    const c = await open(port, a);
    // Open before the block starts: its next attempt is refused too.
    const early = await open(port, a);
    const times: number[] = [];
    // A different account each time: only the address's count grows.
    for (let i = 1; i <= 5; i++) times.push(await attempt(c, `nobody${i}`, 'wrong', FAILURE));
    assert.ok(times[0] < BASE * 0.9 && times[1] < BASE * 0.9, `the first two failures are answered at once: ${times}`);
    assert.ok(times[2] >= BASE * 0.95, `the third waits the base back-off: ${times}`);
    assert.ok(times[3] >= 2 * BASE * 0.95 && times[3] > times[2], `the fourth twice that: ${times}`);
    assert.ok(times[4] >= 4 * BASE * 0.95 && times[4] > times[3], `the fifth twice again: ${times}`);
    // The fifth failure blocks the address: this stream ends with the reason.
    await c.waitFor(BLOCKED_ERROR);
    await c.closed;

    // A new stream from the blocked address is refused before any authentication, right password or not.
    const refused = await rawConnect(port, '127.0.0.1', a);
    refused.send(STREAM_OPEN());
    const out = await refused.waitFor(BLOCKED_ERROR);
    assert.doesNotMatch(out, /<mechanisms/);
    await refused.closed;

    // A stream opened before the block: the right password gets temporary-auth-failure, with the reason.
    early.send(plainAuth('alice', PASSWORD));
    await early.waitFor(/<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><temporary-auth-failure\/><text xml:lang="en">this address is temporarily blocked after too many failed logins; try again in \d+ seconds<\/text><\/failure>/);
    assert.doesNotMatch(early.output, /<success/);
    early.close();

    // Another address is not affected.
    assert.ok(await loginSucceeds(port, '127.0.0.4', 'alice') < BASE, 'another address logs in at once');

    // Once the block is over (3 s), the right password from that address works again.
    await new Promise((r) => setTimeout(r, 3200));
    await loginSucceeds(port, a, 'alice');

    // Every failure was logged with address, account and mechanism, never the password; the block once.
    const failed = logged.filter((l) => l.includes('auth failed') && l.includes(`address=${a} `));
    assert.equal(failed.length, 5);
    for (let i = 1; i <= 5; i++) assert.ok(failed.some((l) => l.includes(`account=nobody${i}@localhost mechanism=PLAIN`)), `nobody${i} logged`);
    assert.ok(failed.every((l) => / event=auth-failed\n?$/.test(l)), 'each is the auth-failed audit event');
    assert.ok(!logged.some((l) => l.includes('wrong') || l.includes(PASSWORD)), 'no password in the log');
    assert.equal(logged.filter((l) => l.includes('auth blocked') && l.includes(`address=${a} `)).length, 1);

    // The fail2ban filter shipped in deploy/ finds the address in those lines (and fail2ban itself, where it is installed).
    for (const l of failed) assert.equal(fail2banAddress(l.trimEnd()), a, `fail2ban matches: ${l}`);
    const found = fail2banRegex(failed.map((l) => l.trimEnd()));
    if (found) assert.deepEqual(found, failed.map(() => a));
  });

  test('one account from many addresses: back-off, never a lock', async () => {
    const times: number[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await open(port, `127.0.0.${10 + i}`);
      times.push(await attempt(c, 'victim', 'wrong', FAILURE));
      c.close();
    }
    assert.ok(times[0] < BASE * 0.9 && times[1] < BASE * 0.9, `the first two failures are answered at once: ${times}`);
    assert.ok(times[2] >= BASE * 0.95, `then the base back-off: ${times}`);
    assert.ok(times[3] >= 2 * BASE * 0.95 && times[3] > times[2], `then twice that: ${times}`);
    // The owner, from anywhere (even an address that just failed), gets in at once.
    assert.ok(await loginSucceeds(port, '127.0.0.20', 'victim') < BASE, 'the right password is answered at once');
    assert.ok(await loginSucceeds(port, '127.0.0.13', 'victim') < BASE, 'also from an address that failed');
  });
});
