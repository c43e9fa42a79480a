// The rate limit on messages to strangers in a cluster: 2 c2s + 2 session
// processes. An account's count lives in its actor (one owner); the domain's
// is shared by every session process through Redis, so senders whose actors
// run on different processes add to one count.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ownerOf, shardOf } from '../../libs/cluster/shards.ts';
import { connect, isMessageWithBody, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { jid, rosterGet } from '../support/im.ts';
import { startCluster, type Cluster } from '../support/parley.ts';
import { redisCommand } from '../support/servers.ts';

const SHARDS = 1024;
const condition = (s: Stanza) => s.getChild('error')?.getChildElements()[0]?.name;
const errorFor = (id: string) => (s: Stanza) => s.is('message') && s.attrs.type === 'error' && s.attrs.id === id;
const chat = (to: string, body: string) => xml('message', { to, type: 'chat', id: body }, xml('body', {}, body));

/** A user name whose account the rendezvous hash gives to `node` (the lease table follows it once settled). */
function userOn(node: string, prefix: string): string {
  for (let i = 0; ; i++) if (ownerOf(shardOf(jid(`${prefix}${i}`), SHARDS), ['session1', 'session2']) === node) return `${prefix}${i}`;
}

describe('rate limit on messages to strangers, cluster', () => {
  let c: Cluster;
  const clients: TestClient[] = [];
  before(async () => {
    c = await startCluster({ c2s: 2, session: 2, config: { spam: { strangerRate: { perAccount: 3, perDomain: 5 } } } });
  });
  after(async () => {
    await Promise.all(clients.map((x) => x.stop()));
    await c?.stop();
  });

  test('per account in its actor, per domain across session processes through Redis', async () => {
    const one = userOn('session1', 'sr');
    const two = userOn('session2', 'sr');
    const target = 'srtarget';
    for (const u of [one, two, target]) await c.addUser(u);
    const [a, b, t] = await Promise.all([connect(c.ports[0], one), connect(c.ports[1], two), connect(c.ports[0], target)]);
    clients.push(a, b, t);
    await rosterGet(t);
    await t.send(xml('presence'));
    for (let i = 1; i <= 3; i++) {
      await a.send(chat(jid(target), `a${i}`));
      await t.waitFor(isMessageWithBody(`a${i}`));
    }
    await a.send(chat(jid(target), 'a4'));
    assert.equal(condition(await a.waitFor(errorFor('a4'))), 'policy-violation', 'the account limit');
    for (let i = 1; i <= 2; i++) {
      await b.send(chat(jid(target), `b${i}`));
      await t.waitFor(isMessageWithBody(`b${i}`));
    }
    // The other account is under its own limit (3), but the domain has had 5.
    await b.send(chat(jid(target), 'b3'));
    const err = await b.waitFor(errorFor('b3'));
    assert.equal(condition(err), 'policy-violation');
    assert.match(err.getChild('error')!.getChildText('text', 'urn:ietf:params:xml:ns:xmpp-stanzas') ?? '', /from localhost/);
    assert.equal(t.received.some((s) => ['a4', 'b3'].includes(s.getChildText('body') ?? '')), false);
    // The shared count, with the window as its TTL.
    assert.equal(Number(await redisCommand(c.redis.port, 'GET', 'parley:{rate:strangers:localhost}')), 6);
    const ttl = Number(await redisCommand(c.redis.port, 'PTTL', 'parley:{rate:strangers:localhost}'));
    assert.ok(ttl > 0 && ttl <= 60_000, `ttl ${ttl}`);
  });
});
