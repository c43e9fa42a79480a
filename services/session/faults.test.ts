// Store and bus failures under the account actors and stream management: the
// process keeps running (no unhandled rejection), the sender of a stanza the
// failure affected hears so (a stanza error with a text, or XEP-0198 <failed>
// with one), and once the store or bus answers again everything works.
import { MemoryWindowCounters } from '../../libs/cluster/window-counters.ts';
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { HostedDomains } from '../../libs/accounts/hosts.ts';
import { Subjects, type Bus } from '../../libs/bus/bus.ts';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import { shardOf } from '../../libs/cluster/shards.ts';
import { loadConfig } from '../../libs/config/index.ts';
import { setLogLevel } from '../../libs/log/index.ts';
import { MemoryStore } from '../../libs/store/memory-store.ts';
import { StaleFenceError, type Store, type StoreBatch } from '../../libs/store/store.ts';
import { ActorSystem } from './actor-system.ts';
import { ModuleRegistry } from './module.ts';
import { ServiceDomains } from './service-domains.ts';
import { modules } from './modules/index.ts';
import { Router, type FanoutData } from './router.ts';
import type { SessionServices } from './services.ts';
import { decodeRecord, queueOf, SM_STATE } from './sm/state.ts';

setLogLevel('error');

// A rejection nobody handles would end a real process: here it fails the test that caused it.
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => { unhandled.push(e); };
before(() => { process.on('unhandledRejection', onUnhandled); });
after(() => { process.off('unhandledRejection', onUnhandled); });
afterEach(async () => {
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(unhandled.map(String), [], 'no unhandled rejection');
});

/** A MemoryStore whose chosen operations reject until healed ('batch': a batch's exec); `stale` ones as a fenced store refuses an old owner. */
class FlakyStore {
  readonly failing = new Set<string>();
  readonly stale = new Set<string>();
  readonly store: Store;

  constructor(readonly inner = new MemoryStore()) {
    const { failing, stale } = this;
    const injected = (op: string) => Promise.reject(stale.has(op) ? new StaleFenceError('x', `injected (${op})`) : new Error(`injected store failure (${op})`));
    this.store = new Proxy(inner, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function' || prop === 'constructor') return v;
        const op = String(prop);
        if (op === 'batch') {
          return (scope: string): StoreBatch => {
            const b = target.batch(scope);
            const exec = b.exec.bind(b);
            b.exec = () => (failing.has('batch') || stale.has('batch') ? injected('batch') : exec());
            return b;
          };
        }
        return (...args: unknown[]) => (failing.has(op) || stale.has(op) ? injected(op) : (v as (...a: unknown[]) => unknown).apply(target, args));
      },
    });
  }
}

const C2S = 'c2s-1';

/** The session side of one process, its bus a stand-in that hands envelopes over in-process and can refuse a subject. */
function harness(data = new MemoryStore()) {
  const config = loadConfig(undefined, {}, { domains: ['example.com'], session: { storeRetries: 2, storeRetryDelayMs: 20 }, cluster: { shards: 8 } });
  const subjects = new Subjects();
  const flaky = new FlakyStore(data);
  const store = flaky.store;
  const refused = new Set<string>();
  const wire: Envelope[] = [];
  let actors: ActorSystem;
  const bus = {
    kind: 'inprocess', origin: 'test', published: 0,
    publish(subject: string, env: Envelope): void {
      if (refused.has(subject)) throw new Error(`injected bus failure (${subject})`);
      if (subject.startsWith('parley.c2s.')) {
        wire.push(env);
        return;
      }
      if (subject.startsWith('parley.shard.')) return actors.deliver(Number(subject.slice('parley.shard.'.length)), env);
      if (subject.startsWith('parley.session.')) {
        // A fan-out batch: each target to its actor.
        const { targets, data } = env.data as FanoutData;
        for (const bare of targets) actors.deliver(shardOf(bare, config.cluster.shards), { ...env, to: bare, op: '', data });
      }
    },
    subscribe: () => ({ unsubscribe() {} }),
    flush: async () => {},
    rtt: async () => 0,
    healthy: () => true,
    close: async () => {},
  } satisfies Bus;
  const hosts = new HostedDomains(config.domains);
  const registry = new ModuleRegistry(modules, config);
  const router = new Router(bus, subjects, config.cluster.shards, () => 'session-1');
  const svc: SessionServices = {
    config, store, router, hosts, modules: registry,
    context: { config, store, hosts, disco: registry, rates: new MemoryWindowCounters() },
    c2sAlive: () => true,
    newResource: () => 'generated',
    services: new ServiceDomains(registry.services, config, hosts),
    toC2s: (node, env) => bus.publish(subjects.c2s(node), env),
  };
  actors = new ActorSystem(svc);

  /** The next envelope for a session (or a control answer to it) that matches, waiting for it. */
  const waitFor = async (sid: string, match: (e: Envelope) => boolean, what: string): Promise<Envelope> => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = wire.findIndex((e) => e.sid === sid && match(e));
      if (i >= 0) return wire.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no ${what} for ${sid}; the wire has: ${wire.map((e) => `${e.sid} ${e.op || e.kind} ${String(e.xml)}`).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const xmlOf = (e: Envelope) => (typeof e.xml === 'string' ? e.xml : Buffer.from(e.xml).toString());

  return {
    config, flaky, refused, wire, actors, xmlOf, waitFor,
    async account(local: string): Promise<string> {
      const bare = `${local}@example.com`;
      await flaky.inner.hset(bare, 'account', 'creds', pack({}));
      return bare;
    },
    ctl(bare: string, op: string, sid: string, data: unknown): void {
      router.toActor(bare, envelope({ kind: 'ctl', dir: 'in', op, to: bare, sid, data }));
    },
    async bind(bare: string, resource: string, sid: string, node = C2S): Promise<void> {
      router.toActor(bare, envelope({ kind: 'ctl', dir: 'in', op: 'bind', to: bare, sid, data: { node, resource } }));
      await waitFor(sid, (e) => e.op === 'bound', 'bound');
    },
    /** A client iq, as the c2s hands it to its account's actor. */
    iq(from: string, sid: string, type: 'get' | 'set', id: string, payload: string): void {
      const xml = `<iq from="${from}" type="${type}" id="${id}">${payload}</iq>`;
      router.toActor(from.split('/')[0], envelope({ kind: 'iq', dir: 'out', from, to: '', type, id, sid, xml, t: Date.now() }));
    },
    /** A client stanza, as the c2s hands it to its account's actor. */
    send(from: string, sid: string, kind: 'message' | 'presence', to: string, type: string, id: string, body = ''): void {
      const xml = kind === 'message'
        ? `<message from="${from}" to="${to}" type="${type}" id="${id}"><body>${body}</body></message>`
        : `<presence from="${from}"${to ? ` to="${to}"` : ''}${type ? ` type="${type}"` : ''}/>`;
      router.toActor(from.split('/')[0], envelope({ kind, dir: 'out', from, to, type, id, sid, xml, t: Date.now() }));
    },
  };
}

test('a message the store cannot keep offline comes back to its sender as internal-server-error with a text; kept once the store answers', async () => {
  const h = harness();
  const alice = await h.account('alice');
  const bob = await h.account('bob');
  await h.bind(alice, 'phone', 'a1');

  h.flaky.failing.add('rpush');
  h.send(`${alice}/phone`, 'a1', 'message', bob, 'chat', 'm1', 'are you there?');
  const err = h.xmlOf(await h.waitFor('a1', (e) => e.kind === 'message' && e.type === 'error', 'error message'));
  assert.match(err, /id="m1"/);
  assert.match(err, /<internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
  assert.match(err, /<text [^>]*>[^<]+<\/text>/, 'the error says what happened');
  assert.equal(await h.flaky.inner.llen(bob, 'offline'), 0);

  h.flaky.failing.delete('rpush');
  h.send(`${alice}/phone`, 'a1', 'message', bob, 'chat', 'm2', 'now?');
  await h.actors.idle();
  assert.equal(await h.flaky.inner.llen(bob, 'offline'), 1, 'stored once the store answers');
  assert.equal(h.wire.filter((e) => e.type === 'error').length, 0, 'no error for the second message');
});

test('a bind or a roster change the store cannot record fails with a text and leaves nothing half-done', async () => {
  const h = harness();
  const alice = await h.account('alice');
  const bob = await h.account('bob');
  await h.bind(bob, 'laptop', 'b1');

  h.flaky.failing.add('hset');
  h.ctl(alice, 'bind', 'a1', { node: C2S, resource: 'phone' });
  const refused = await h.waitFor('a1', (e) => e.op === 'bind-failed' || e.op === 'bound', 'answer to bind');
  assert.equal(refused.op, 'bind-failed');
  assert.deepEqual(refused.data, { condition: 'internal-server-error', text: 'the server could not complete this (a storage error); try again later' });
  h.flaky.failing.delete('hset');
  // No session was left behind: a message to the full JID goes to offline storage, not to a connection that is not bound.
  h.send(`${bob}/laptop`, 'b1', 'message', `${alice}/phone`, 'chat', 'm1', 'for later');
  await h.actors.idle();
  assert.equal(await h.flaky.inner.llen(alice, 'offline'), 1);

  await h.bind(alice, 'phone', 'a2');
  const item = '<query xmlns="jabber:iq:roster"><item jid="carol@example.com" name="Carol"/></query>';
  h.flaky.failing.add('batch');
  h.iq(`${alice}/phone`, 'a2', 'set', 'r1', item);
  const err = h.xmlOf(await h.waitFor('a2', (e) => e.kind === 'iq' && e.type !== '', 'answer to the roster set'));
  assert.match(err, /type="error"/);
  assert.match(err, /<internal-server-error [^>]*\/><text [^>]*>[^<]+<\/text>/);
  h.flaky.failing.delete('batch');
  h.iq(`${alice}/phone`, 'a2', 'get', 'r2', '<query xmlns="jabber:iq:roster"/>');
  const roster = h.xmlOf(await h.waitFor('a2', (e) => e.kind === 'iq' && e.type !== '', 'roster'));
  assert.doesNotMatch(roster, /carol@example.com/, 'the change that was not stored is not in the roster either');
  assert.match(roster, /ver="0"/);
  h.iq(`${alice}/phone`, 'a2', 'set', 'r3', item);
  assert.match(h.xmlOf(await h.waitFor('a2', (e) => e.kind === 'iq' && /id="r3"/.test(h.xmlOf(e)), 'answer to the roster set')), /type="result"/);
  assert.deepEqual([...(await h.flaky.inner.hgetall(alice, 'roster')).keys()], ['carol@example.com']);
});

test('a write refused for a stale fencing token is not bounced nor retried: the account\'s newer owner answers', async () => {
  const h = harness();
  const alice = await h.account('alice');
  const bob = await h.account('bob');
  await h.bind(alice, 'phone', 'a1');
  h.flaky.stale.add('rpush');
  h.send(`${alice}/phone`, 'a1', 'message', bob, 'chat', 'm1', 'are you there?');
  await h.actors.idle();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(h.wire.filter((e) => e.type === 'error').length, 0, 'no error from the process that lost the account');
});

test('a delivery the bus refuses comes back to its sender as internal-server-error; delivered once the bus carries it', async () => {
  const h = harness();
  const alice = await h.account('alice');
  const bob = await h.account('bob');
  await h.bind(alice, 'phone', 'a1');
  await h.bind(bob, 'laptop', 'b1', 'c2s-2');

  h.refused.add('parley.c2s.c2s-2');
  h.send(`${alice}/phone`, 'a1', 'message', `${bob}/laptop`, 'chat', 'm1', 'hello');
  const err = h.xmlOf(await h.waitFor('a1', (e) => e.kind === 'message' && e.type === 'error', 'error message'));
  assert.match(err, /<internal-server-error [^>]*\/><text [^>]*>[^<]+<\/text>/);

  h.refused.clear();
  h.send(`${alice}/phone`, 'a1', 'message', `${bob}/laptop`, 'chat', 'm2', 'hello again');
  const got = h.xmlOf(await h.waitFor('b1', (e) => e.kind === 'message', 'message'));
  assert.match(got, /hello again/);
});

test('stream management: <enable/> the store cannot record fails with a text; a queue write that keeps failing loses nothing', async () => {
  const h = harness();
  const alice = await h.account('alice');
  const bob = await h.account('bob');
  await h.bind(alice, 'phone', 'a1');
  await h.bind(bob, 'laptop', 'b1');

  // The session record cannot be written (hset), through every retry: the client is told, and nothing is left half-enabled.
  h.flaky.failing.add('hset');
  h.ctl(alice, 'sm-enable', 'a1', { resource: 'phone', node: C2S, resume: true });
  const failed = await h.waitFor('a1', (e) => e.op === 'sm-failed' || e.op === 'sm-enabled', 'answer to sm-enable');
  assert.equal(failed.op, 'sm-failed');
  assert.deepEqual(failed.data, { condition: 'internal-server-error', text: 'the session could not be stored; try again later' });
  h.flaky.failing.delete('hset');
  h.ctl(alice, 'sm-enable', 'a1', { resource: 'phone', node: C2S, resume: true });
  const enabled = await h.waitFor('a1', (e) => e.op === 'sm-enabled' || e.op === 'sm-failed', 'answer to sm-enable');
  assert.equal(enabled.op, 'sm-enabled');
  const previd = (enabled.data as { id: string }).id;

  // Queue writes fail through every retry: the stanza still goes out, and stays held for a resumption.
  h.flaky.failing.add('logAppend');
  h.send(`${bob}/laptop`, 'b1', 'message', `${alice}/phone`, 'chat', 'q1', 'kept in memory');
  const first = await h.waitFor('a1', (e) => e.kind === 'message', 'numbered message');
  assert.equal(first.data, 1);
  h.ctl(alice, 'unbind', 'a1', { resource: 'phone', closed: false });
  await h.actors.idle();

  h.ctl(alice, 'sm-resume', 'a2', { previd, h: 0, node: C2S });
  const resumed = await h.waitFor('a2', (e) => e.op === 'sm-resumed' || e.op === 'sm-resume-failed', 'answer to sm-resume');
  assert.equal(resumed.op, 'sm-resumed');
  const again = await h.waitFor('a2', (e) => e.kind === 'message', 'the unacknowledged message, sent again');
  assert.equal(again.data, 1);
  assert.match(h.xmlOf(again), /kept in memory/);

  // The store answers again: the next stanza is queued in it.
  h.flaky.failing.delete('logAppend');
  h.send(`${bob}/laptop`, 'b1', 'message', `${alice}/phone`, 'chat', 'q2', 'queued in the store');
  assert.equal((await h.waitFor('a2', (e) => e.kind === 'message', 'numbered message')).data, 2);
  await h.actors.idle();
  const queues = [...(await h.flaky.inner.hgetall(alice, 'smstate')).keys()];
  assert.deepEqual(queues, ['phone'], 'the session record is stored');
  assert.equal(h.wire.filter((e) => e.type === 'error').length, 0, 'nobody was sent an error: nothing was lost');
});

test('stream management: writes that fail for a moment (a store restart) are tried again and land', async () => {
  const h = harness();
  const alice = await h.account('alice');
  const bob = await h.account('bob');
  await h.bind(alice, 'phone', 'a1');
  await h.bind(bob, 'laptop', 'b1');
  h.ctl(alice, 'sm-enable', 'a1', { resource: 'phone', node: C2S, resume: true });
  const previd = ((await h.waitFor('a1', (e) => e.op === 'sm-enabled', 'sm-enabled')).data as { id: string }).id;

  // Every write fails for 30 ms; the retries wait 20 then 40 ms: the queue, the record of an ack and of the detach, the waiting index.
  for (const op of ['hset', 'hdel', 'logAppend', 'logTrim', 'batch']) h.flaky.failing.add(op);
  h.send(`${bob}/laptop`, 'b1', 'message', `${alice}/phone`, 'chat', 'r1', 'during the outage');
  await h.waitFor('a1', (e) => e.kind === 'message', 'numbered message');
  h.ctl(alice, 'sm-r', 'a1', { h: 0 });
  h.ctl(alice, 'unbind', 'a1', { resource: 'phone', closed: false });
  setTimeout(() => h.flaky.failing.clear(), 30);
  await h.actors.idle(); // background retries included

  const queued = await h.flaky.inner.logRange(alice, queueOf('a1'));
  assert.equal(queued.length, 1, 'the queued stanza reached the store on a retry');
  assert.equal((await h.flaky.inner.logRange(alice, 'mam')).length, 1, 'and the archived message too');
  const record = decodeRecord((await h.flaky.inner.hget(alice, SM_STATE, 'phone'))!);
  assert.ok(record.detachedAt > 0, 'the record says the session waits');
  const waiting = await h.flaky.inner.hgetall(`$smwait:${shardOf(alice, h.config.cluster.shards)}`, 'waiting');
  assert.ok(waiting.has(alice), 'the waiting-session index lists the account');

  h.ctl(alice, 'sm-resume', 'a2', { previd, h: 0, node: C2S });
  assert.equal((await h.waitFor('a2', (e) => e.op === 'sm-resumed' || e.op === 'sm-resume-failed', 'answer to sm-resume')).op, 'sm-resumed');
  assert.match(h.xmlOf(await h.waitFor('a2', (e) => e.kind === 'message', 'message sent again')), /during the outage/);
});

test('a resumption the store cannot serve fails with a text, and succeeds once it can', async () => {
  const first = harness();
  const alice = await first.account('alice');
  await first.bind(alice, 'phone', 'a1');
  first.ctl(alice, 'sm-enable', 'a1', { resource: 'phone', node: C2S, resume: true });
  const previd = ((await first.waitFor('a1', (e) => e.op === 'sm-enabled', 'sm-enabled')).data as { id: string }).id;
  first.ctl(alice, 'unbind', 'a1', { resource: 'phone', closed: false });
  await first.actors.idle();

  // Another process takes the account over (same data) while the store refuses to read the resumption key.
  const next = harness(first.flaky.inner);
  next.flaky.failing.add('hsetnx');
  next.ctl(alice, 'sm-resume', 'a2', { previd, h: 0, node: C2S });
  const failed = await next.waitFor('a2', (e) => e.op === 'sm-resumed' || e.op === 'sm-resume-failed', 'answer to sm-resume');
  assert.equal(failed.op, 'sm-resume-failed');
  assert.deepEqual(failed.data, { condition: 'internal-server-error', text: 'the session could not be read; try again later' });

  next.flaky.failing.clear();
  next.ctl(alice, 'sm-resume', 'a3', { previd, h: 0, node: C2S });
  assert.equal((await next.waitFor('a3', (e) => e.op === 'sm-resumed' || e.op === 'sm-resume-failed', 'answer to sm-resume')).op, 'sm-resumed');
});
