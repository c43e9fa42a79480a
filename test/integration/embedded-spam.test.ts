// Spam controls on the wire, embedded mode: the rate limit on messages to
// strangers (per account, per domain), what happens to messages from
// strangers under each policy (deliver, mark, hold, drop), and blocking
// reports kept for the operator and shown by the CLI.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadConfig } from '../../libs/config/index.ts';
import { MemoryWindowCounters } from '../../libs/cluster/window-counters.ts';
import type { RunningServer } from '../../services/server.ts';
import { NS_STRANGER } from '../../services/session/modules/strangers.ts';
import { connect, isMessageWithBody, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { befriend, jid, NS_ROSTER, rosterGet } from '../support/im.ts';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { cli } from '../scenarios/account-services.ts';

type Embedded = Deployment & { server: RunningServer };

async function online(d: Deployment, local: string): Promise<TestClient> {
  await d.addUser(local);
  const c = await connect(d.ports[0], local);
  await rosterGet(c);
  await c.send(xml('presence'));
  return c;
}

const chat = (to: string, body: string, ...extra: ReturnType<typeof xml>[]) => xml('message', { to, type: 'chat', id: body }, xml('body', {}, body), ...extra);
const errorFor = (id: string) => (s: Stanza) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === id;
const condition = (s: Stanza) => s.getChild('error')?.getChildElements()[0]?.name;
const errorText = (s: Stanza) => s.getChild('error')?.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-stanzas') ?? '';
const settle = () => new Promise((r) => setTimeout(r, 300));

describe('spam controls, embedded mode', () => {
  describe('rate limit on messages to strangers; marked messages from strangers', () => {
    let d: Embedded;
    const clients: TestClient[] = [];
    before(async () => {
      d = await startEmbedded({ spam: { strangerRate: { perAccount: 3, perDomain: 8 }, strangers: { policy: 'mark' } } });
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.stop()));
      await d.stop();
    });
    const user = async (local: string) => { const c = await online(d, local); clients.push(c); return c; };

    test('past the per-account limit the sender gets policy-violation (type wait) with a text, and the message is not delivered', async () => {
      const alice = await user('ratea');
      const bob = await user('rateb');
      for (let i = 1; i <= 3; i++) {
        await alice.send(chat(jid('rateb'), `hello ${i}`));
        await bob.waitFor(isMessageWithBody(`hello ${i}`));
      }
      await alice.send(chat(jid('rateb'), 'hello 4'));
      const err = await alice.waitFor(errorFor('hello 4'));
      assert.equal(condition(err), 'policy-violation');
      assert.equal(err.getChild('error')!.attrs.type, 'wait');
      assert.match(errorText(err), /at most 3 per 60 s/);
      await settle();
      assert.equal(bob.received.some(isMessageWithBody('hello 4')), false, 'the refused message was not delivered');
    });

    test('messages to contacts with a subscription are not counted', async () => {
      const carol = await user('ratec');
      const dave = await user('rated');
      await befriend(carol, 'ratec', dave, 'rated');
      for (let i = 1; i <= 6; i++) await carol.send(chat(jid('rated'), `friend ${i}`));
      await dave.waitFor(isMessageWithBody('friend 6'));
      assert.equal(carol.received.some((s) => s.attrs.type === 'error'), false);
    });

    test('a message from a stranger carries the marker; one from a contact does not, and a forged marker is removed', async () => {
      const [ratea, rateb] = [clients[0], clients[1]];
      const marked = rateb.received.find(isMessageWithBody('hello 1'))!;
      assert.equal(marked.getChild('stranger', NS_STRANGER)?.attrs.by, 'localhost', marked.toString());
      const [carol, dave] = [clients[2], clients[3]];
      await carol.send(chat(jid('rated'), 'forged', xml('stranger', { xmlns: NS_STRANGER, by: 'localhost' })));
      const m = await dave.waitFor(isMessageWithBody('forged'));
      assert.equal(m.getChild('stranger', NS_STRANGER), undefined, m.toString());
      assert.equal(dave.received.find(isMessageWithBody('friend 1'))!.getChild('stranger', NS_STRANGER), undefined);
      void ratea;
    });

    test('past the per-domain limit every account of the domain is refused', async () => {
      // The domain counted 3 (ratea) so far; 5 more reach the limit of 8.
      const senders = [await user('ratee'), await user('ratef'), await user('rateg')];
      const target = await user('rateh');
      let sent = 0;
      for (const [i, s] of senders.entries()) {
        for (let k = 0; k < 2 && sent < 5; k++, sent++) {
          await s.send(chat(jid('rateh'), `domain ${i}.${k}`));
          await target.waitFor(isMessageWithBody(`domain ${i}.${k}`));
        }
      }
      await senders[2].send(chat(jid('rateh'), 'domain over'));
      const err = await senders[2].waitFor(errorFor('domain over'));
      assert.equal(condition(err), 'policy-violation');
      assert.match(errorText(err), /from localhost/);
      await settle();
      assert.equal(target.received.some(isMessageWithBody('domain over')), false);
    });
  });

  describe('held messages from strangers', () => {
    let d: Embedded;
    const clients: TestClient[] = [];
    before(async () => { d = await startEmbedded({ spam: { strangers: { policy: 'hold', maxHeld: 2 } } }); });
    after(async () => {
      await Promise.all(clients.map((c) => c.stop()));
      await d.stop();
    });

    test('held until the recipient adds the sender to the roster, then delivered in order with a delay stamp; past maxHeld refused', async () => {
      const alice = await online(d, 'holda');
      const bob = await online(d, 'holdb');
      clients.push(alice, bob);
      await alice.send(chat(jid('holdb'), 'held 1'));
      await alice.send(chat(jid('holdb'), 'held 2'));
      await alice.send(chat(jid('holdb'), 'held 3'));
      const err = await alice.waitFor(errorFor('held 3'));
      assert.equal(condition(err), 'resource-constraint');
      await settle();
      assert.equal(bob.received.some((s) => s.is('message')), false, 'nothing reached the recipient');
      assert.equal(alice.received.some(errorFor('held 1')) || alice.received.some(errorFor('held 2')), false, 'the sender is not told');
      // The recipient accepts: a roster item for the sender.
      await bob.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('query', NS_ROSTER, xml('item', { jid: jid('holda') }))));
      const first = await bob.waitFor(isMessageWithBody('held 1'));
      await bob.waitFor(isMessageWithBody('held 2'));
      const bodies = bob.received.filter((s) => s.is('message')).map((s) => s.getChildText('body'));
      assert.deepEqual(bodies, ['held 1', 'held 2']);
      assert.equal(first.getChild('delay', 'urn:xmpp:delay')?.attrs.from, 'localhost', first.toString());
      // From now on the sender is no stranger.
      await alice.send(chat(jid('holdb'), 'direct'));
      const direct = await bob.waitFor(isMessageWithBody('direct'));
      assert.equal(direct.getChild('delay', 'urn:xmpp:delay'), undefined);
    });

    test('a stranger asks for a subscription; the recipient grants it and gets what was held', async () => {
      const erin = await online(d, 'holde');
      const frank = await online(d, 'holdf');
      clients.push(erin, frank);
      await erin.send(chat(jid('holdf'), 'hi, it is erin'));
      await erin.send(xml('presence', { to: jid('holdf'), type: 'subscribe' }));
      await frank.waitFor((s) => s.is('presence') && s.attrs.type === 'subscribe' && s.attrs.from === jid('holde'));
      assert.equal(frank.received.some((s) => s.is('message')), false, 'the request is seen, the message is not');
      await frank.send(xml('presence', { to: jid('holde'), type: 'subscribed' }));
      const m = await frank.waitFor(isMessageWithBody('hi, it is erin'));
      assert.equal(m.attrs.from?.startsWith(`${jid('holde')}/`), true, m.toString());
    });

    test('held messages survive the recipient being offline and wait in the store', async () => {
      const carol = await online(d, 'holdc');
      await d.addUser('holdd');
      clients.push(carol);
      await carol.send(chat(jid('holdd'), 'for later'));
      await settle();
      assert.equal((await d.store.hgetall(jid('holdd'), 'strangers-held')).size, 1);
      assert.equal((await d.store.llen(jid('holdd'), 'offline')), 0, 'not in offline storage: the recipient would see it at login');
      const dave = await online(d, 'holdd');
      clients.push(dave);
      await settle();
      assert.equal(dave.received.some((s) => s.is('message')), false);
    });
  });

  describe('dropped messages from strangers', () => {
    let d: Embedded;
    const clients: TestClient[] = [];
    before(async () => { d = await startEmbedded({ spam: { strangers: { policy: 'drop' } } }); });
    after(async () => {
      await Promise.all(clients.map((c) => c.stop()));
      await d.stop();
    });

    test('the sender gets service-unavailable, the recipient nothing; contacts still get through', async () => {
      const alice = await online(d, 'dropa');
      const bob = await online(d, 'dropb');
      const carol = await online(d, 'dropc');
      clients.push(alice, bob, carol);
      await alice.send(chat(jid('dropb'), 'spam'));
      const err = await alice.waitFor(errorFor('spam'));
      assert.equal(condition(err), 'service-unavailable');
      await befriend(carol, 'dropc', bob, 'dropb');
      await carol.send(chat(jid('dropb'), 'friend'));
      await bob.waitFor(isMessageWithBody('friend'));
      assert.equal(bob.received.some(isMessageWithBody('spam')), false);
    });
  });

  describe('defaults, and blocking reports with the CLI', () => {
    let d: Embedded;
    let config = '';
    const clients: TestClient[] = [];
    before(async () => {
      d = await startEmbedded();
      config = join(d.server.config.dataDir, 'cli.yaml');
      writeFileSync(config, stringify({ dataDir: d.server.config.dataDir, domains: ['localhost'], log: { level: 'warn' } }));
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.stop()));
      await d.stop();
    });

    test('by default strangers\' messages are delivered unmarked and the rate limit is on (600 a minute per account)', async () => {
      const c = loadConfig(undefined, {}, {});
      assert.equal(c.spam.strangerRate.enabled, true);
      assert.equal(c.spam.strangers.policy, 'deliver');
      const alice = await online(d, 'defa');
      const bob = await online(d, 'defb');
      clients.push(alice, bob);
      for (let i = 1; i <= 601; i++) await alice.send(chat(jid('defb'), `m${i}`));
      const err = await alice.waitFor(errorFor('m601'));
      assert.equal(condition(err), 'policy-violation');
      const first = await bob.waitFor(isMessageWithBody('m600'));
      assert.equal(first.getChild('stranger', NS_STRANGER), undefined);
      assert.equal(alice.received.filter((s) => s.attrs.type === 'error').length, 1);
    });

    test('a block with a XEP-0377 report (both forms) blocks as before and the report is listed by `parley reports list`', async () => {
      const alice = await online(d, 'repa');
      clients.push(alice);
      const info = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('query', 'http://jabber.org/protocol/disco#info')));
      const features = info.getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
      assert.ok(features.includes('urn:xmpp:reporting:1') && features.includes('urn:xmpp:reporting:0'));
      await alice.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('block', 'urn:xmpp:blocking',
        xml('item', { jid: 'spammer@spam.example' }, xml('report', { xmlns: 'urn:xmpp:reporting:1', reason: 'urn:xmpp:reporting:spam' },
          xml('stanza-id', { xmlns: 'urn:xmpp:sid:0', by: 'repa@localhost', id: 'sid-1' }),
          xml('text', { 'xml:lang': 'en' }, 'Buy now\nand again'))),
        xml('item', { jid: 'troll@abuse.example' }, xml('report', { xmlns: 'urn:xmpp:reporting:0' }, xml('abuse'))),
        xml('item', { jid: 'plain@block.example' }))));
      const list = await alice.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('blocklist', 'urn:xmpp:blocking')));
      assert.deepEqual(list.getChild('blocklist')!.getChildren('item').map((i) => i.attrs.jid).sort(), ['plain@block.example', 'spammer@spam.example', 'troll@abuse.example']);
      const { stdout } = await cli(config, 'reports', 'list', '--domain', 'localhost');
      const lines = stdout.trim().split('\n');
      assert.equal(lines.at(-1), '# 2 reports');
      const rows = lines.slice(0, -1).map((l) => l.split('\t'));
      assert.deepEqual(rows.map((r) => [r[0], r[3], r[4], r[5], r[6], r[7]]), [
        ['localhost', 'repa@localhost', 'spammer@spam.example', 'spam', 'repa@localhost sid-1', JSON.stringify('Buy now\nand again')],
        ['localhost', 'repa@localhost', 'troll@abuse.example', 'abuse', '-', '""'],
      ]);
      assert.ok(Math.abs(Date.parse(rows[0][2]) - Date.now()) < 60_000);
      // One cleared by id; the other is still there (listed for every served domain without --domain), then cleared.
      assert.equal((await cli(config, 'reports', 'clear', '--domain', 'localhost', '--id', rows[0][1])).stdout.trim(), 'cleared 1 report of localhost');
      const left = (await cli(config, 'reports', 'list')).stdout.trim().split('\n');
      assert.deepEqual(left.map((l) => l.split('\t')[4] ?? l), ['troll@abuse.example', '# 1 reports']);
      assert.equal((await cli(config, 'reports', 'clear', '--domain', 'localhost')).stdout.trim(), 'cleared 1 report of localhost');
      assert.equal((await d.store.logCount('$reports:localhost', 'reports')), 0);
    });

    test('a malformed report is refused (bad-request, with a text) and nothing is blocked or kept', async () => {
      const bob = await online(d, 'repb');
      clients.push(bob);
      const refused = await bob.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('block', 'urn:xmpp:blocking',
        xml('item', { jid: 'ok@spam.example' }),
        xml('item', { jid: 'x@spam.example' }, xml('report', { xmlns: 'urn:xmpp:reporting:1', reason: 'urn:xmpp:reporting:boring' })))))
        .then(() => undefined, (e: { condition?: string; text?: string }) => e);
      assert.equal(refused?.condition, 'bad-request');
      assert.match(refused?.text ?? '', /reason/);
      const tooLong = await bob.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('block', 'urn:xmpp:blocking',
        xml('item', { jid: 'y@spam.example' }, xml('report', { xmlns: 'urn:xmpp:reporting:1', reason: 'urn:xmpp:reporting:spam' }, xml('text', {}, 'x'.repeat(2001)))))))
        .then(() => undefined, (e: { condition?: string }) => e.condition);
      assert.equal(tooLong, 'not-acceptable');
      // Beside the items (slixmpp's form) a report must be about the only item.
      const beside = await bob.xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('block', 'urn:xmpp:blocking',
        xml('item', { jid: 'z1@spam.example' }), xml('item', { jid: 'z2@spam.example' }), xml('report', { xmlns: 'urn:xmpp:reporting:0' }, xml('spam')))))
        .then(() => undefined, (e: { condition?: string }) => e.condition);
      assert.equal(beside, 'bad-request');
      const list = await bob.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('blocklist', 'urn:xmpp:blocking')));
      assert.equal(list.getChild('blocklist')!.getChildren('item').length, 0);
      assert.equal((await cli(config, 'reports', 'list')).stdout.trim(), '# 0 reports');
    });

    test('CLI errors: unknown subcommand, missing or unserved domain, bad id (one line, exit status 2)', async () => {
      for (const [args, re] of [
        [['reports', 'list', '--domain', 'nowhere.example'], /nowhere.example is not a served domain/],
        [['reports', 'clear', '--domain', 'localhost', '--id', 'abc'], /--id needs a report id/],
        [['reports', 'clear', '--domain', 'localhost', '--id', '12345'], /no report 12345 for localhost/],
      ] as const) {
        const r = await cli(config, ...args).then(() => assert.fail(`${args.join(' ')} succeeded`), (e: { code?: number; stderr?: string }) => e);
        assert.equal(r.code, 2, args.join(' '));
        assert.match(r.stderr!.split('\n')[0], re);
      }
    });
  });

  test('window counters: a window restarts after it ends; the oldest keys go first past the bound', () => {
    const c = new MemoryWindowCounters(2);
    assert.equal(c.hitNow('a', 1000, 0), 1);
    assert.equal(c.hitNow('a', 1000, 999), 2);
    assert.equal(c.hitNow('a', 1000, 1000), 1, 'a new window');
    c.hitNow('b', 1000, 1000);
    c.hitNow('c', 1000, 1000);
    assert.equal(c.hitNow('a', 1000, 1001), 1, "'a' was forgotten first");
  });
});
