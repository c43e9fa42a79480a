// slixmpp's own ad-hoc command (XEP-0050) and service administration (XEP-0133) plugins against Parley: an admin
// named in the configuration lists the commands, adds a user through the form and counts the online users; anyone
// else sees no commands and is refused. Embedded, and a cluster with the two users on different connection managers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { plainAuth, rawConnect, STREAM_OPEN } from '../support/raw.ts';
import { startCluster, startEmbedded, type Deployment } from '../support/parley.ts';

const run = promisify(execFile);

async function canLogIn(port: number, user: string, password: string): Promise<boolean> {
  const c = await rawConnect(port);
  try {
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth(user, password));
    return /<success/.test(await c.waitFor(/<failure|<success/));
  } finally {
    c.close();
  }
}

async function scenario(d: Deployment): Promise<void> {
  await d.addUser('root');
  await d.addUser('pat');
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_admin.py', '127.0.0.1', String(d.ports[0]), 'root@localhost', 'pat@localhost', 'secret', 'newbie@localhost'], { timeout: 60_000 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  const commands = r.commands as string[];
  for (const n of ['add-user', 'delete-user', 'disable-user', 'change-user-password', 'get-online-users-num', 'announce', 'set-motd']) {
    assert.ok(commands.includes(`http://jabber.org/protocol/admin#${n}`), `${n} listed: ${commands.join(' ')}`);
  }
  assert.equal(r.form_status, 'executing');
  assert.deepEqual(r.form_fields, ['FORM_TYPE', 'accountjid', 'password', 'password-verify']);
  assert.equal(r.added_status, 'completed');
  assert.equal(r.added_note, 'newbie@localhost added');
  assert.equal(r.online, '2');
  assert.equal(r.other, 'forbidden');
  assert.equal(r.other_commands, 0);
  assert.ok(await canLogIn(d.ports[d.ports.length - 1], 'newbie', 'n3w-pass'), 'the added user logs in');
}

describe('slixmpp XEP-0133, embedded', () => {
  let d: Deployment;
  before(async () => { d = await startEmbedded({ admins: ['root@localhost'] }); });
  after(async () => { await d?.stop(); });
  test('an admin adds a user and counts the online users; a non-admin is refused', () => scenario(d));
});

describe('slixmpp XEP-0133, cluster', () => {
  let d: Deployment;
  before(async () => { d = await startCluster({ c2s: 2, session: 2, config: { admins: ['root@localhost'] } }); });
  after(async () => { await d?.stop(); });
  test('an admin adds a user and counts the online users; a non-admin is refused', () => scenario(d));
});
