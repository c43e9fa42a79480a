// `parley export` and `parley import` as an operator runs them: a round trip
// from a running embedded Parley into a fresh cluster gives the same document
// and the same data on the wire; bad files and refused imports write nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, xml } from '../../test/support/clients.ts';
import { PASSWORD, startCluster, startEmbedded } from '../../test/support/parley.ts';
import { tempDir } from '../../test/support/servers.ts';
import { createDatabase } from '../../test/support/postgres.ts';

const BIN = join(import.meta.dirname, '../../bin/parley.mjs');

interface Run { status: number | null; stdout: string; stderr: string }

function parley(args: string[]): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 60_000, encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

/** An embedded configuration for the CLI: example.com and localhost served, data in its own directory. */
function embeddedConfig(extra = '', dataDir = join(tempDir('parley-pie'), 'data')): string {
  const file = join(tempDir('parley-pie-config'), 'parley.yaml');
  writeFileSync(file, `domains: [localhost, example.com]\ndataDir: ${JSON.stringify(dataDir)}\nlog: { level: warn }\n${extra}`);
  return file;
}

function pieFile(body: string): string {
  const file = join(tempDir('parley-pie-file'), 'export.xml');
  writeFileSync(file, body);
  return file;
}

const users = async (cfg: string, domain = 'localhost') => (await parley(['user', 'list', domain, '--config', cfg])).stdout;

test('round trip: an export of a running embedded Parley imports into a fresh cluster as the same document, and its users see their data', { timeout: 120_000 }, async () => {
  const dataDir = tempDir('parley-pie-source');
  const source = await startEmbedded({ dataDir });
  let exported: string;
  const file = join(tempDir('parley-pie-out'), 'parley.xml');
  try {
    await source.addUser('alice');
    await source.addUser('bob');
    const alice = await connect(source.ports[0], 'alice');
    await alice.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', { xmlns: 'jabber:iq:roster' },
      xml('item', { jid: 'bob@localhost', name: 'Bob & co' }, xml('group', {}, 'Work'), xml('group', {}, 'Friends')))));
    await alice.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('vCard', { xmlns: 'vcard-temp' }, xml('FN', {}, 'Alice <A.> Liddell'), xml('NICKNAME', {}, 'al'))));
    await alice.send(xml('message', { to: 'bob@localhost', type: 'chat', id: 'm1' }, xml('body', {}, 'kept for bob')));
    // Archived and stored offline once routed: wait until both are in the store.
    for (let i = 0; i < 100; i++) {
      const [archived, waiting] = await Promise.all([source.store.logCount('bob@localhost', 'mam'), source.store.llen('bob@localhost', 'offline')]);
      if (archived && waiting && await source.store.logCount('alice@localhost', 'mam')) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    await alice.stop();
    const cfg = embeddedConfig('', dataDir);
    const r = await parley(['export', '--domain', 'localhost', '--out', file, '--config', cfg]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, `exported 2 accounts of localhost to ${file}\n`);
    exported = readFileSync(file, 'utf8');
  } finally {
    await source.stop();
  }
  assert.match(exported, /^<\?xml version='1\.0' encoding='UTF-8'\?>\n<server-data xmlns='urn:xmpp:pie:0'>\n<host jid="localhost">\n<user name="alice">/);
  assert.match(exported, /<scram-credentials xmlns="urn:xmpp:pie:0#scram" mechanism="SCRAM-SHA-1">.*<scram-credentials xmlns="urn:xmpp:pie:0#scram" mechanism="SCRAM-SHA-256">/);
  assert.match(exported, /<query xmlns="jabber:iq:roster" ver="\d+"><item jid="bob@localhost" name="Bob &amp; co" subscription="none"><group>Work<\/group><group>Friends<\/group><\/item><\/query>/);
  assert.match(exported, /<vCard xmlns="vcard-temp"><FN>Alice &lt;A\.&gt; Liddell<\/FN><NICKNAME>al<\/NICKNAME><\/vCard>/);
  assert.match(exported, /<user name="bob">.*<offline-messages><message xmlns="jabber:client" [^>]*><body>kept for bob<\/body>.*<\/offline-messages>/);
  assert.match(exported, /<archive xmlns="urn:xmpp:pie:0#mam"><result xmlns="urn:xmpp:mam:2" id="[0-9a-z]+"><forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" stamp="[^"]+"\/><message xmlns="jabber:client"/);

  const c = await startCluster({ c2s: 1, session: 1 });
  try {
    const cfg = join(tempDir('parley-pie-cluster'), 'parley.yaml');
    writeFileSync(cfg, `domains: [localhost]\nbus: { kind: nats, url: "${c.nats.url}" }\nstore: { kind: redis, url: "${c.redis.url}" }\nlog: { level: warn }\n`);
    const imported = await parley(['import', file, '--config', cfg]);
    assert.equal(imported.status, 0, imported.stderr);
    assert.equal(imported.stdout, [
      'alice@localhost: SCRAM-SHA-1+SCRAM-SHA-256 credentials, 1 contacts, a vCard, 0 offline messages, 1 archived messages',
      'bob@localhost: SCRAM-SHA-1+SCRAM-SHA-256 credentials, 0 contacts, no vCard, 1 offline messages, 1 archived messages',
      `imported 2 accounts from ${file}`, ''].join('\n'));
    const again = await parley(['export', '--config', cfg]);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(again.stdout, exported, 'the same document out of the cluster');

    // On the wire: bob logs in with his password and gets what waited; his archive has it too.
    const bob = await connect(c.ports[0], 'bob', { password: PASSWORD });
    try {
      await bob.send(xml('presence'));
      const m = await bob.waitFor((s) => s.is('message') && s.getChildText('body') === 'kept for bob');
      assert.equal(m.attrs.from?.split('/')[0], 'alice@localhost');
    } finally {
      await bob.stop();
    }
  } finally {
    await c.stop();
  }
});

test('a file that is not well-formed XML is refused with the parser\'s reason; nothing is imported', async () => {
  const cfg = embeddedConfig();
  const file = pieFile(`<?xml version='1.0'?>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='carol' password='secret'></host></server-data>`);
  const r = await parley(['import', file, '--config', cfg]);
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, new RegExp(`^parley: ${file} is not well-formed XML: </host> closes <user> at offset \\d+; nothing imported\\n$`));
  assert.equal(await users(cfg), '');
});

test('an unknown namespace in one account refuses the whole file, the accounts before it included', async () => {
  const cfg = embeddedConfig();
  const file = pieFile(`<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>
<user name='carol' password='secret'/>
<user name='dave' password='secret'><settings xmlns='urn:example:settings'/></user>
</host></server-data>`);
  const r = await parley(['import', file, '--config', cfg]);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, `parley: ${file}: unknown element <settings xmlns='urn:example:settings'> in dave@localhost; nothing imported\n`);
  assert.equal(await users(cfg), '');

  const notPie = pieFile(`<server-data xmlns='urn:example:other'/>`);
  const n = await parley(['import', notPie, '--config', cfg]);
  assert.equal(n.stderr, `parley: ${notPie}: the document is <server-data xmlns='urn:example:other'>, not XEP-0227 <server-data xmlns='urn:xmpp:pie:0'>; nothing imported\n`);
});

test('an account that exists, a domain not served or a limit passed refuses the import; nothing is written', async () => {
  const cfg = embeddedConfig('roster: { maxItems: 1 }\n');
  assert.equal((await parley(['user', 'add', 'erin@localhost', '--password', 'secret', '--config', cfg])).status, 0);
  const both = pieFile(`<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='frank' password='secret'/><user name='erin' password='other'/></host></server-data>`);
  const exists = await parley(['import', both, '--config', cfg]);
  assert.equal(exists.status, 2);
  assert.equal(exists.stderr, 'parley: erin@localhost exists already (import only creates accounts); nothing imported\n');
  assert.equal(await users(cfg), 'erin@localhost\n');

  const elsewhere = pieFile(`<server-data xmlns='urn:xmpp:pie:0'><host jid='elsewhere.example'><user name='gina' password='secret'/></host></server-data>`);
  const notServed = await parley(['import', elsewhere, '--config', cfg]);
  assert.equal(notServed.stderr, "parley: elsewhere.example is not a served domain (configured: localhost, example.com; added at run time: none); add it with 'parley domain add elsewhere.example' or to domains in the configuration; nothing imported\n");

  const big = pieFile(`<server-data xmlns='urn:xmpp:pie:0'><host jid='example.com'><user name='hal' password='secret'><query xmlns='jabber:iq:roster'><item jid='a@example.com'/><item jid='b@example.com'/></query></user></host></server-data>`);
  const over = await parley(['import', big, '--config', cfg]);
  assert.equal(over.stderr, `parley: ${big}: hal@example.com has roster items: 2, over roster.maxItems (1); raise it in the configuration to import this account; nothing imported\n`);
  assert.equal(await users(cfg, 'example.com'), '');
});

test('credentials: a clear password is stored as SCRAM, SCRAM values are taken as they come; none at all is refused', async () => {
  const cfg = embeddedConfig();
  const none = pieFile(`<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='ivan'/></host></server-data>`);
  const r = await parley(['import', none, '--config', cfg]);
  assert.equal(r.stderr, `parley: ${none}: ivan@localhost has neither a password nor SCRAM-SHA-1/SCRAM-SHA-256 credentials; nothing imported\n`);
  const plain = pieFile(`<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='judy' password='p&amp;ss word'/></host></server-data>`);
  const ok = await parley(['import', plain, '--config', cfg]);
  assert.equal(ok.stdout, `judy@localhost: password, 0 contacts, no vCard, 0 offline messages, 0 archived messages\nimported 1 accounts from ${plain}\n`);
  const out = await parley(['export', '--config', cfg]);
  assert.doesNotMatch(out.stdout, /password=/, 'an export carries no clear password');
  assert.match(out.stdout, /<user name="judy"><scram-credentials xmlns="urn:xmpp:pie:0#scram" mechanism="SCRAM-SHA-1">/);
});

test('an export of a domain that is not served is refused; an existing --out file is not overwritten', async () => {
  const cfg = embeddedConfig();
  const r = await parley(['export', '--domain', 'nowhere.example', '--config', cfg]);
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, 'parley: nowhere.example is not a served domain (configured: localhost, example.com; added at run time: none)\n');
  const existing = pieFile('keep me');
  const o = await parley(['export', '--out', existing, '--config', cfg]);
  assert.equal(o.stderr, `parley: cannot write ${existing}: the file exists (give another --out, or remove it)\n`);
  assert.equal(readFileSync(existing, 'utf8'), 'keep me');
});

test('an account imported after its address was written to shows its roster and offline message at first login', { timeout: 60_000 }, async () => {
  const dataDir = tempDir('parley-pie-early');
  const d = await startEmbedded({ dataDir });
  try {
    await d.addUser('alice');
    const alice = await connect(d.ports[0], 'alice');
    // The address has no account yet: its actor loads, finds none and answers for it.
    await alice.send(xml('message', { to: 'kim@localhost', type: 'chat', id: 'early' }, xml('body', {}, 'anyone there?')));
    await alice.waitFor((s) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === 'early');
    await alice.stop();
    const file = pieFile(`<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='kim' password='secret'>
<query xmlns='jabber:iq:roster'><item jid='alice@localhost' name='Alice' subscription='both'><group>Team</group></item></query>
<offline-messages><message xmlns='jabber:client' from='alice@localhost' to='kim@localhost' type='chat'><body>moved in</body></message></offline-messages>
</user></host></server-data>`);
    const r = await parley(['import', file, '--config', embeddedConfig('', dataDir)]);
    assert.equal(r.status, 0, r.stderr);
    const kim = await connect(d.ports[0], 'kim');
    try {
      const roster = await kim.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
      const items = roster.getChild('query')!.getChildren('item');
      assert.deepEqual(items.map((i) => [i.attrs.jid, i.attrs.name, i.attrs.subscription, i.getChildText('group')]), [['alice@localhost', 'Alice', 'both', 'Team']]);
      await kim.send(xml('presence'));
      await kim.waitFor((s) => s.is('message') && s.getChildText('body') === 'moved in');
    } finally {
      await kim.stop();
    }
  } finally {
    await d.stop();
  }
});

test('with archive.postgres, import writes the archive into PostgreSQL and export reads it back from there', { timeout: 60_000 }, async () => {
  const db = await createDatabase();
  try {
    const cfg = embeddedConfig(`archive: { postgres: { url: ${JSON.stringify(db.url)} } }\n`);
    const archived = (id: string, stamp: string, from: string, to: string, body: string) =>
      `<result xmlns='urn:xmpp:mam:2' id='${id}'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='${stamp}'/>`
      + `<message xmlns='jabber:client' from='${from}' to='${to}' type='chat'><body>${body}</body></message></forwarded></result>`;
    const file = pieFile(`<?xml version='1.0'?>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='dora' password='secret'>`
      + `<archive xmlns='urn:xmpp:pie:0#mam'>${archived('a1', '2026-11-01T10:00:00Z', 'eve@example.org/x', 'dora@localhost', 'first')}`
      + `${archived('a2', '2026-11-01T10:05:00Z', 'dora@localhost/phone', 'eve@example.org', 'second')}</archive></user></host></server-data>`);
    const imported = await parley(['import', file, '--config', cfg]);
    assert.equal(imported.status, 0, imported.stderr);
    const rows = await db.query<{ peer: string; dir: number; stamp: string }>('SELECT peer, dir, stamp FROM message_archive WHERE archive = $1 ORDER BY id', ['dora@localhost']);
    assert.deepEqual(rows.rows, [
      { peer: 'eve@example.org', dir: 0, stamp: String(Date.parse('2026-11-01T10:00:00Z')) },
      { peer: 'eve@example.org', dir: 1, stamp: String(Date.parse('2026-11-01T10:05:00Z')) },
    ]);
    const exported = await parley(['export', '--domain', 'localhost', '--config', cfg]);
    assert.equal(exported.status, 0, exported.stderr);
    assert.match(exported.stdout, /<body>first<\/body>[\s\S]*<body>second<\/body>/);
    assert.match(exported.stdout, /stamp="2026-11-01T10:05:00.000Z"/);
  } finally {
    await db.drop();
  }
});
