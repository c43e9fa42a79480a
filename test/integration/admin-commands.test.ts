// XEP-0050 ad-hoc commands with the XEP-0133 administration set, on the wire:
// an admin named in `admins` adds, disables, re-enables and deletes users,
// changes a password, lists online and active users, announces and sets the
// message of the day; anyone else is refused and nothing changes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { rawLogin } from '../support/im.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';

const ADMIN = 'http://jabber.org/protocol/admin';
const NS = 'http://jabber.org/protocol/commands';

let d: Deployment;
let port: number;
let boss: RawClient;
before(async () => {
  d = await startEmbedded({ admins: ['boss@localhost'] });
  port = d.ports[0];
  for (const u of ['boss', 'alice', 'bob', 'carol']) await d.addUser(u);
  boss = await rawLogin(port, 'boss', 'desk');
});
after(async () => {
  boss?.close();
  await d.stop();
});

let seq = 0;
/** Send an iq and resolve with its answer (the iq element's XML). */
async function iq(c: RawClient, type: 'get' | 'set', payload: string, to = 'localhost'): Promise<string> {
  const id = `q${++seq}`;
  c.send(`<iq type='${type}' to='${to}' id='${id}'>${payload}</iq>`);
  const re = new RegExp(`<iq[^>]*id="${id}"[^>]*(?:/>|>[\\s\\S]*?</iq>)`);
  const out = await c.waitFor(re, 10_000);
  return re.exec(out)![0];
}

const execute = (node: string) => `<command xmlns='${NS}' node='${ADMIN}#${node}' action='execute'/>`;
const field = (v: string, ...values: string[]) => `<field var='${v}'>${values.map((x) => `<value>${x}</value>`).join('')}</field>`;
const submit = (node: string, sessionid: string | undefined, ...fields: string[]) =>
  `<command xmlns='${NS}' node='${ADMIN}#${node}'${sessionid ? ` sessionid='${sessionid}'` : ''} action='complete'><x xmlns='jabber:x:data' type='submit'>${field('FORM_TYPE', ADMIN)}${fields.join('')}</x></command>`;
const sessionOf = (answer: string) => /sessionid="([^"]+)"/.exec(answer)?.[1];

/** Both steps: execute (a form comes back), then submit it. */
async function run(c: RawClient, node: string, ...fields: string[]): Promise<string> {
  const form = await iq(c, 'set', execute(node));
  assert.match(form, /type="result"/, `${node}: ${form}`);
  assert.match(form, /status="executing"/);
  assert.match(form, /<x xmlns="jabber:x:data" type="form"/);
  return iq(c, 'set', submit(node, sessionOf(form), ...fields));
}

async function loginFails(user: string, password = 'secret'): Promise<string> {
  const c = await rawConnect(port);
  try {
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth(user, password));
    return await c.waitFor(/<failure[\s\S]*<\/failure>|<success/);
  } finally {
    c.close();
  }
}

test('the commands node lists the XEP-0133 set for an admin and nothing for anyone else', async () => {
  const info = await iq(boss, 'get', `<query xmlns='http://jabber.org/protocol/disco#info'/>`);
  assert.match(info, /<feature var="http:\/\/jabber.org\/protocol\/commands"\/>/);
  const items = await iq(boss, 'get', `<query xmlns='http://jabber.org/protocol/disco#items' node='${NS}'/>`);
  for (const n of ['add-user', 'delete-user', 'disable-user', 'change-user-password', 'get-online-users-list', 'get-active-users', 'announce', 'set-motd']) {
    assert.ok(items.includes(`node="${ADMIN}#${n}"`), `${n} listed: ${items}`);
  }
  const alice = await rawLogin(port, 'alice', 'r');
  try {
    const hers = await iq(alice, 'get', `<query xmlns='http://jabber.org/protocol/disco#items' node='${NS}'/>`);
    assert.doesNotMatch(hers, /<item/);
    const refused = await iq(alice, 'set', execute('add-user'));
    assert.match(refused, /type="error"[\s\S]*<forbidden/);
    const direct = await iq(alice, 'set', submit('add-user', undefined, field('accountjid', 'mallory@localhost'), field('password', 'pw')));
    assert.match(direct, /<forbidden/);
    assert.match(await loginFails('mallory', 'pw'), /<not-authorized/, 'nothing was created');
  } finally {
    alice.close();
  }
});

test('add-user creates an account that logs in; a taken name is a conflict; a mismatched password changes nothing', async () => {
  const done = await run(boss, 'add-user', field('accountjid', 'dave@localhost'), field('password', 'pw-dave'), field('password-verify', 'pw-dave'));
  assert.match(done, /status="completed"/);
  assert.match(done, /<note type="info">dave@localhost added<\/note>/);
  assert.match(await loginFails('dave', 'pw-dave'), /<success/);
  const again = await run(boss, 'add-user', field('accountjid', 'dave@localhost'), field('password', 'x'), field('password-verify', 'x'));
  assert.match(again, /type="error"[\s\S]*<conflict/);
  const differ = await run(boss, 'add-user', field('accountjid', 'erin@localhost'), field('password', 'a'), field('password-verify', 'b'));
  assert.match(differ, /<not-acceptable[\s\S]*the two passwords differ/);
  assert.match(await loginFails('erin', 'a'), /<not-authorized/);
  const foreign = await run(boss, 'add-user', field('accountjid', 'x@elsewhere.example'), field('password', 'a'));
  assert.match(foreign, /<not-acceptable/);
  const malformed = await run(boss, 'add-user', field('accountjid', 'not a jid@@'), field('password', 'a'));
  assert.match(malformed, /<bad-request/);
});

test('change-user-password: the new password works, the old one no longer does', async () => {
  const done = await run(boss, 'change-user-password', field('accountjid', 'carol@localhost'), field('password', 'n3w'));
  assert.match(done, /status="completed"/);
  assert.match(await loginFails('carol', 'n3w'), /<success/);
  assert.match(await loginFails('carol', 'secret'), /<not-authorized/);
  const missing = await run(boss, 'change-user-password', field('accountjid', 'nobody@localhost'), field('password', 'n3w'));
  assert.match(missing, /<item-not-found/);
});

test('online users: the number and the list; active users include those online', async () => {
  const alice = await rawLogin(port, 'alice', 'r');
  try {
    const num = await iq(boss, 'set', execute('get-online-users-num'));
    assert.match(num, /status="completed"/);
    assert.match(num, /<field var="onlineusersnum"[^>]*><value>2<\/value>/);
    const list = await run(boss, 'get-online-users-list', field('max_items', '100'));
    assert.match(list, /<value>alice@localhost<\/value>/);
    assert.match(list, /<value>boss@localhost<\/value>/);
    const active = await run(boss, 'get-active-users', field('max_items', 'none'));
    assert.match(active, /<value>alice@localhost<\/value>/);
  } finally {
    alice.close();
  }
});

test('announce reaches every online user of the domain', async () => {
  const bob = await rawLogin(port, 'bob', 'r');
  try {
    bob.send('<presence/>');
    const done = await run(boss, 'announce', field('subject', 'Maintenance'), field('announcement', 'Back at 10:00'));
    assert.match(done, /status="completed"/);
    await bob.waitFor(/<message[^>]*from="localhost"[\s\S]*<body>Back at 10:00<\/body>/);
  } finally {
    bob.close();
  }
});

test('the message of the day reaches a user when it goes available, until deleted', async () => {
  const set = await run(boss, 'set-motd', field('subject', 'Welcome'), field('motd', 'Be nice'));
  assert.match(set, /status="completed"/);
  const edit = await iq(boss, 'set', execute('edit-motd'));
  assert.match(edit, /<value>Be nice<\/value>/);
  const bob = await rawLogin(port, 'bob', 'motd');
  bob.send('<presence/>');
  await bob.waitFor(/<message[^>]*from="localhost"[\s\S]*<body>Be nice<\/body>/);
  bob.close();
  const del = await iq(boss, 'set', execute('delete-motd'));
  assert.match(del, /status="completed"/);
  await new Promise((r) => setTimeout(r, 5100)); // past each process's cached copy
  const again = await rawLogin(port, 'bob', 'motd2');
  again.send(`<presence/><iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await again.waitFor(/id="ping"/);
  await new Promise((r) => setTimeout(r, 300));
  assert.doesNotMatch(again.output, /Be nice/);
  again.close();
});

test('disable-user ends the sessions and refuses logins with account-disabled until re-enabled', async () => {
  const alice = await rawLogin(port, 'alice', 'r');
  const done = await run(boss, 'disable-user', field('accountjids', 'alice@localhost'));
  assert.match(done, /status="completed"/);
  await alice.waitFor(/<stream:error>[\s\S]*disabled/);
  await alice.closed;
  assert.match(await loginFails('alice'), /<account-disabled/);
  const back = await run(boss, 'reenable-user', field('accountjids', 'alice@localhost'));
  assert.match(back, /status="completed"/);
  assert.match(await loginFails('alice'), /<success/);
  const self = await run(boss, 'disable-user', field('accountjids', 'boss@localhost'));
  assert.match(self, /<not-allowed/);
});

test('delete-user removes the account; a wrong or reused sessionid and an unknown command are refused', async () => {
  const form = await iq(boss, 'set', execute('delete-user'));
  const sid = sessionOf(form)!;
  const wrong = await iq(boss, 'set', submit('delete-user', 'nope', field('accountjids', 'dave@localhost')));
  assert.match(wrong, /<bad-request[\s\S]*<bad-sessionid xmlns="http:\/\/jabber.org\/protocol\/commands#errors"/);
  const done = await iq(boss, 'set', submit('delete-user', sid, field('accountjids', 'dave@localhost')));
  assert.match(done, /status="completed"/);
  assert.match(await loginFails('dave', 'pw-dave'), /<not-authorized/);
  const reused = await iq(boss, 'set', submit('delete-user', sid, field('accountjids', 'bob@localhost')));
  assert.match(reused, /<bad-sessionid/);
  assert.match(await loginFails('bob'), /<success/, 'bob is still there');
  const unknown = await iq(boss, 'set', execute('launch-rockets'));
  assert.match(unknown, /<item-not-found/);
  const canceled = await iq(boss, 'set', execute('delete-user'));
  const c = await iq(boss, 'set', `<command xmlns='${NS}' node='${ADMIN}#delete-user' sessionid='${sessionOf(canceled)}' action='cancel'/>`);
  assert.match(c, /status="canceled"/);
});
