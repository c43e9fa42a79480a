// slixmpp (Debian's python3-slixmpp) closing a managed stream with messages it
// has not acknowledged: it sends </stream:stream> with no <a/> before it, and
// answers the server's <r/> after it; nothing is stored offline and the next
// login gets nothing again. Embedded and in a cluster.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DOMAIN, startCluster, startEmbedded, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN } from '../support/raw.ts';

const run = promisify(execFile);
const WAIT_MS = 3000;
const COUNT = 3;

interface Seen { sm: boolean; bodies: string[]; handled: number; closeSeconds: number }

async function closeWithoutAck(d: Deployment, a: string, b: string): Promise<void> {
  await d.addUser(a);
  await d.addUser(b);
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_close.py', '127.0.0.1', String(d.ports[0]), `${a}@${DOMAIN}`, `${b}@${DOMAIN}`, 'secret', String(COUNT)], { timeout: 60_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as Seen;
  assert.equal(r.sm, true);
  assert.deepEqual(r.bodies, Array.from({ length: COUNT }, (_, i) => `close ${i}`));
  // The server closed as soon as slixmpp's <a/> acknowledged everything, not at the end of the wait.
  assert.ok(r.closeSeconds * 1000 < WAIT_MS, `closed after ${r.closeSeconds} s`);
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(await d.store.llen(`${a}@${DOMAIN}`, 'offline'), 0, 'nothing handed back to offline storage');
  const again = await rawConnect(d.ports[0]);
  try {
    again.send(STREAM_OPEN());
    await again.waitFor(/<\/stream:features>/);
    again.send(plainAuth(a, 'secret'));
    await again.waitFor(/<success/);
    again.send(STREAM_OPEN());
    await again.waitFor(/<bind xmlns/);
    again.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq><presence/>`);
    await again.waitFor(/<presence/);
    await new Promise((res) => setTimeout(res, 500));
    assert.doesNotMatch(again.output, /close \d/, 'the next login gets none of them again');
  } finally {
    again.close();
  }
}

describe('slixmpp closes a managed stream without acknowledging, embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded({ streamManagement: { closeAckWaitMs: WAIT_MS } }); });
  after(async () => { await d.stop(); });
  test('its <a/> after </stream:stream> is taken: each message once', async () => closeWithoutAck(d, 'slixca', 'slixcb'));
});

describe('slixmpp closes a managed stream without acknowledging, cluster', () => {
  let d: Deployment;
  before(async () => { d = await startCluster({ c2s: 2, session: 2, config: { streamManagement: { closeAckWaitMs: WAIT_MS } } }); });
  after(async () => { await d.stop(); });
  test('its <a/> after </stream:stream> is taken: each message once', async () => closeWithoutAck(d, 'slixcc', 'slixcd'));
});
