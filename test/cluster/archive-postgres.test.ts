// Archives in PostgreSQL (archive.postgres), on the wire: a cluster (two
// session processes, NATS, Redis) and the embedded mode, each with a database
// of its own. Real clients (@xmpp/client) chat, then one pages through its
// archive with XEP-0313 and XEP-0059; the messages are in PostgreSQL, not in
// Redis; connections to PostgreSQL cut while messages are archived leave every
// message in the archive once; the periodic upkeep drops an expired partition.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { DOMAIN, startCluster, startEmbedded, type Deployment } from '../support/parley.ts';
import { createDatabase, type TestDatabase } from '../support/postgres.ts';
import { mamQuery } from '../scenarios/mobile.ts';

const NS_MAM = 'urn:xmpp:mam:2';
const NS_RSM = 'http://jabber.org/protocol/rsm';
const resultBody = (r: Stanza) => r.getChild('result', NS_MAM)!.getChild('forwarded', 'urn:xmpp:forward:0')!.getChild('message')!.getChildText('body')!;
const resultId = (r: Stanza) => r.getChild('result', NS_MAM)!.attrs.id as string;
const rsm = (fin: Stanza, name: string) => fin.getChild('set', NS_RSM)?.getChildText(name) ?? undefined;

/** Connected and available (a message to the bare JID reaches available resources only). */
async function online(port: number, local: string, resource?: string): Promise<TestClient> {
  const c = await connect(port, local, { resource });
  await c.send(xml('presence'));
  await c.waitFor((s) => s.is('presence') && s.attrs.from === c.jid);
  return c;
}

let seq = 0;
const names = (tag: string) => [`${tag}a${++seq}`, `${tag}b${seq}`];

async function chat(from: TestClient, to: TestClient, bodies: string[]): Promise<void> {
  for (const body of bodies) await from.send(xml('message', { to: to.jid.split('/')[0], type: 'chat' }, xml('body', {}, body)));
  const lastBody = bodies[bodies.length - 1];
  await to.waitFor((s) => s.is('message') && s.getChildText('body') === lastBody, 15_000);
}

function scenarios(deployment: () => Deployment, db: () => TestDatabase): void {
  test('a client pages through its archive forwards and backwards, by peer and by id; the rows are in PostgreSQL', async () => {
    const [a, b] = names('pg');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const ports = deployment().ports;
    const alice = await online(ports[0], a, 'phone');
    const bob = await online(ports[ports.length - 1], b, 'laptop');
    try {
      const bodies = Array.from({ length: 45 }, (_, i) => `hello ${i}`);
      await chat(bob, alice, bodies);
      // Forwards, 20 a page, from the start to the end.
      const seen: string[] = [];
      const ids: string[] = [];
      let afterId: string | undefined;
      for (let pages = 0; ; pages++) {
        const { results, fin } = await mamQuery(alice, {}, { max: '20', ...(afterId ? { after: afterId } : {}) });
        seen.push(...results.map(resultBody));
        ids.push(...results.map(resultId));
        assert.equal(rsm(fin, 'count'), '45');
        assert.equal(fin.getChild('set', NS_RSM)?.getChild('first')?.attrs.index, results.length ? String(pages * 20) : undefined);
        if (fin.attrs.complete === 'true') break;
        afterId = rsm(fin, 'last');
        assert.ok(pages < 5, 'the paging ends');
      }
      assert.deepEqual(seen, bodies, 'every message once, in order');
      // Backwards: the last page, then the one before it.
      const last = await mamQuery(alice, {}, { max: '10', before: '' });
      assert.deepEqual(last.results.map(resultBody), bodies.slice(35));
      assert.equal(last.fin.attrs.complete, undefined);
      const previous = await mamQuery(alice, {}, { max: '10', before: rsm(last.fin, 'first')! });
      assert.deepEqual(previous.results.map(resultBody), bodies.slice(25, 35));
      // By peer (counted here: an index, not a scan), by id, and between ids.
      const withBob = await mamQuery(alice, { with: `${b}@${DOMAIN}` }, { max: '5' });
      assert.deepEqual(withBob.results.map(resultBody), bodies.slice(0, 5));
      assert.equal(rsm(withBob.fin, 'count'), '45');
      assert.equal((await mamQuery(alice, { with: `nobody@${DOMAIN}` })).results.length, 0);
      const picked = await mamQuery(alice, { ids: [ids[7], ids[3]] });
      assert.deepEqual(picked.results.map(resultBody), [bodies[3], bodies[7]]);
      const between = await mamQuery(alice, { 'after-id': ids[9], 'before-id': ids[13] });
      assert.deepEqual(between.results.map(resultBody), bodies.slice(10, 13));
      await assert.rejects(mamQuery(alice, { 'after-id': 'zzzzzzzzzzz' }), /item-not-found/);
      // The sender's archive holds them too.
      assert.equal(rsm((await mamQuery(bob, {}, { max: '0' })).fin, 'count'), '45');
      const rows = await db().query<{ archive: string; n: string }>('SELECT archive, count(*) AS n FROM message_archive WHERE archive IN ($1, $2) GROUP BY archive ORDER BY archive', [`${a}@${DOMAIN}`, `${b}@${DOMAIN}`]);
      assert.deepEqual(rows.rows, [{ archive: `${a}@${DOMAIN}`, n: '45' }, { archive: `${b}@${DOMAIN}`, n: '45' }]);
      assert.equal(await deployment().store.logCount(`${a}@${DOMAIN}`, 'mam'), 0, 'nothing of the archive in the store');
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });

  test('PostgreSQL connections cut while messages are archived: writes are retried, and each message is in the archive once', async () => {
    const [a, b] = names('pgcut');
    await deployment().addUser(a);
    await deployment().addUser(b);
    const ports = deployment().ports;
    const alice = await online(ports[0], a);
    const bob = await online(ports[ports.length - 1], b);
    try {
      const bodies = Array.from({ length: 60 }, (_, i) => `cut ${i}`);
      const cutting = (async () => {
        for (let i = 0; i < 5; i++) {
          await new Promise((r) => setTimeout(r, 15));
          await db().query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'parley-archive'");
        }
      })();
      await chat(bob, alice, bodies);
      await cutting;
      // Retries wait session.storeRetryDelayMs (doubling): the archive is complete within a few seconds.
      let got: string[] = [];
      for (let i = 0; i < 30; i++) {
        const { results } = await mamQuery(alice, {}, { max: '100' });
        got = results.map(resultBody);
        if (got.length >= bodies.length) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(got, bodies, 'every message, once, in order');
      const dup = await db().query<{ n: string }>('SELECT count(*) AS n FROM message_archive WHERE archive = $1', [`${a}@${DOMAIN}`]);
      assert.equal(dup.rows[0].n, '60');
    } finally {
      await alice.stop();
      await bob.stop();
    }
  });
}

describe('archives in PostgreSQL, cluster', () => {
  let db: TestDatabase;
  let c: Deployment;
  before(async () => {
    db = await createDatabase();
    c = await startCluster({ c2s: 1, session: 2, config: { archive: { postgres: { url: db.url, partition: 'day', upkeepSeconds: 1, retentionDays: 30 } } } });
  });
  after(async () => {
    await c?.stop();
    await db?.drop();
  });
  scenarios(() => c, () => db);

  test('the periodic upkeep (one session process) drops a partition past retention and keeps the current ones', async () => {
    // A partition of a day long past, as an earlier run would have left it, with a message in it.
    const from = Date.UTC(2020, 0, 1) * 1000;
    await db.query(`CREATE TABLE message_archive_p20200101 PARTITION OF message_archive FOR VALUES FROM (${from}) TO (${from + 86_400_000_000})`);
    await db.query("INSERT INTO message_archive VALUES ('old@localhost', $1, $2, 'x@y', 0, '<message/>')", [from + 1, Math.floor(from / 1000)]);
    const exists = async (name: string) => (await db.query<{ n: string }>('SELECT count(*) AS n FROM pg_class WHERE relname = $1', [name])).rows[0].n === '1';
    for (let i = 0; i < 50 && (await exists('message_archive_p20200101')); i++) await new Promise((r) => setTimeout(r, 200));
    assert.equal(await exists('message_archive_p20200101'), false, 'the expired partition is dropped');
    const today = new Date().toISOString().slice(0, 10).replaceAll('-', '');
    assert.equal(await exists(`message_archive_p${today}`), true, "today's partition stays");
    assert.equal((await db.query<{ n: string }>("SELECT count(*) AS n FROM message_archive WHERE archive = 'old@localhost'")).rows[0].n, '0');
  });
});

describe('archives in PostgreSQL, embedded', () => {
  let db: TestDatabase;
  let e: Deployment;
  before(async () => {
    db = await createDatabase();
    e = await startEmbedded({ archive: { postgres: { url: db.url } } });
  });
  after(async () => {
    await e?.stop();
    await db?.drop();
  });
  scenarios(() => e, () => db);
});
