// The archive over a real Store (in memory): appends, retention, and queries
// that read only what a page needs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../../libs/config/index.ts';
import { MemoryStore } from '../../../libs/store/memory-store.ts';
import type { Store } from '../../../libs/store/store.ts';
import { el } from '../../../libs/xml/element.ts';
import { MessageEvent, type AccountContext } from '../module.ts';
import { archive, parseArchiveId, parseQuery, runQuery, type ArchiveState } from './mam.ts';

function fakeAccount(store: Store, mam: Record<string, unknown> = {}): { account: AccountContext; state: ArchiveState; calls: () => number } {
  const config = loadConfig(undefined, {}, { mam });
  let calls = 0;
  const counting: Store = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...a: unknown[]) => { calls++; return (v as (...x: unknown[]) => unknown).apply(target, a); };
    },
  });
  const account = { bare: 'alice@example.com', server: { config, store: counting }, contact: () => undefined, background: () => undefined } as unknown as AccountContext;
  const state = archive.load(new Map(), { account: account.bare, config, sessions: new Map() });
  return { account, state, calls: () => calls };
}

/** Archive one inbound message; its archive id as stamped on it. */
async function receive(account: AccountContext, state: ArchiveState, from: string, body: string, extra = ''): Promise<{ msg: MessageEvent; id: string }> {
  const msg = new MessageEvent('in', from, `${account.bare}/phone`, 'chat', `<message from="${from}" to="${account.bare}/phone" type="chat"><body>${body}</body>${extra}</message>`);
  await archive.messages!.routing!(state, account, msg);
  await state.writes;
  return { msg, id: /<stanza-id [^>]*id="([^"]+)"/.exec(msg.xml)?.[1] ?? '' };
}

test('each archived message gets a stanza id; a spoofed one is removed; a page costs a few reads, not the archive', async () => {
  const { account, state, calls } = fakeAccount(new MemoryStore());
  const spoof = await receive(account, state, 'bob@x/y', 'hi', '<stanza-id xmlns="urn:xmpp:sid:0" by="alice@example.com" id="forged"/>');
  assert.equal((spoof.msg.xml.match(/stanza-id/g) ?? []).length, 1);
  assert.notEqual(spoof.id, 'forged');
  const ids: string[] = [spoof.id];
  for (let i = 0; i < 999; i++) ids.push((await receive(account, state, i % 3 === 0 ? 'carol@x/z' : 'bob@x/y', `m${i}`)).id);
  assert.equal(new Set(ids).size, 1000, 'distinct ids');
  assert.deepEqual([...ids].sort((a, b) => parseArchiveId(a) - parseArchiveId(b)), ids, 'increasing');
  const before = calls();
  const q = parseQuery(el('query', { xmlns: 'urn:xmpp:mam:2' }, el('set', { xmlns: 'http://jabber.org/protocol/rsm' }, el('max', {}, '50'), el('after', {}, ids[499]))), account.server.config.mam);
  const page = await runQuery(account, q);
  assert.equal(page.messages.length, 50);
  assert.equal(page.messages[0].id, parseArchiveId(ids[500]));
  assert.equal(page.firstIndex, 500);
  assert.equal(page.count, 1000);
  assert.ok(calls() - before <= 4, `a page costs a few store calls (${calls() - before})`);
  const withCarol = await runQuery(account, { queryId: '', max: 1000, with: 'carol@x' });
  assert.equal(withCarol.messages.length, 333);
  assert.equal(withCarol.complete, true);
  const lastCarol = await runQuery(account, { queryId: '', max: 10, with: 'carol@x', before: '' });
  assert.deepEqual(lastCarol.messages.map((m) => m.id), withCarol.messages.slice(-10).map((m) => m.id));
  assert.equal(lastCarol.complete, false);
});

test('retention by count drops the oldest; ids of dropped messages are not found; the rest still page', async () => {
  const { account, state } = fakeAccount(new MemoryStore(), { maxMessages: 100 });
  const first = await receive(account, state, 'bob@x/y', 'first');
  for (let i = 0; i < 249; i++) await receive(account, state, 'bob@x/y', `m${i}`);
  assert.equal(await account.server.store.logCount(account.bare, 'mam'), 100);
  await assert.rejects(runQuery(account, { queryId: '', max: 10, after: first.id }), /no archived message/);
  const last = await runQuery(account, { queryId: '', max: 10, before: '' });
  assert.equal(last.messages.length, 10);
  assert.equal(last.firstIndex, 90);
  // A new actor (the account activated again) counts what is there before it trims.
  const again = fakeAccount(account.server.store, { maxMessages: 100 });
  for (let i = 0; i < 49; i++) await receive(again.account, again.state, 'bob@x/y', `n${i}`);
  assert.equal(await account.server.store.logCount(account.bare, 'mam'), 149, 'not trimmed before the step is reached');
  await receive(again.account, again.state, 'bob@x/y', 'n49');
  assert.equal(await account.server.store.logCount(account.bare, 'mam'), 100);
  const newest = await runQuery(again.account, { queryId: '', max: 1, before: '' });
  assert.match(newest.messages[0].xml, /n49/);
});

test('queries refuse what they cannot answer', () => {
  const cfg = loadConfig(undefined, {}, {}).mam;
  const form = (v: string, value: string) => el('query', { xmlns: 'urn:xmpp:mam:2' }, el('x', { xmlns: 'jabber:x:data', type: 'submit' }, el('field', { var: v }, el('value', {}, value))));
  assert.throws(() => parseQuery(form('start', 'yesterday'), cfg), /date-time/);
  assert.throws(() => parseQuery(form('colour', 'red'), cfg), /does not filter by/);
  assert.throws(() => parseQuery(form('with', '@@'), cfg), /not a JID/);
  const big = parseQuery(el('query', {}, el('set', { xmlns: 'http://jabber.org/protocol/rsm' }, el('max', {}, '99999'))), cfg);
  assert.equal(big.max, cfg.maxPage);
  assert.throws(() => parseArchiveId('not-an-id!'), /no archived message/);
});
