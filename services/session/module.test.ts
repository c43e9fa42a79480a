// The module registry: which modules run, what disco shows per target, which
// state an actor keeps and which collections an account owns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../libs/config/index.ts';
import { defineAccountState, defineModule, ModuleRegistry } from './module.ts';
import { modules } from './modules/index.ts';
import { privacyRules } from './modules/privacy-rules.ts';

const config = (tree: Record<string, unknown> = {}) => loadConfig(undefined, {}, tree);

test('software version is off by default and on by configuration; modules.disabled turns any module off', () => {
  assert.ok(!new ModuleRegistry(modules, config()).features('host').includes('jabber:iq:version'));
  const on = new ModuleRegistry(modules, config({ version: { enabled: true }, modules: { disabled: ['time'] } }));
  assert.ok(on.features('host').includes('jabber:iq:version'));
  assert.ok(!on.features('host').includes('urn:xmpp:time'));
  assert.equal(on.iqHandler('get', 'host', { name: 'time', attrs: { xmlns: 'urn:xmpp:time' }, children: [] }), undefined);
});

test('disco features per target, forms only when configured', () => {
  const r = new ModuleRegistry(modules, config());
  assert.ok(r.features('host').includes('urn:xmpp:blocking'));
  assert.ok(!r.features('account').includes('urn:xmpp:blocking'));
  assert.ok(r.features('account').includes('vcard-temp'));
  assert.deepEqual(r.forms('host'), []);
  const withAddresses = new ModuleRegistry(modules, config({ contactAddresses: { abuse: ['mailto:a@b'] } }));
  assert.equal(withAddresses.forms('host').length, 1);
  assert.deepEqual(withAddresses.forms('account'), []);
});

test('disco#items of a served domain lists its MUC service while MUC is on', () => {
  assert.deepEqual(new ModuleRegistry(modules, config()).hostItems('example.com'), [{ jid: 'conference.example.com', name: 'Chatrooms' }]);
  assert.deepEqual(new ModuleRegistry(modules, config({ muc: { subdomain: 'rooms', name: 'Rooms' } })).hostItems('example.com'), [{ jid: 'rooms.example.com', name: 'Rooms' }]);
  assert.deepEqual(new ModuleRegistry(modules, config({ muc: { enabled: false } })).hostItems('example.com'), []);
});

test('a state shared by two modules is one slot; collections loaded and owned', () => {
  const r = new ModuleRegistry(modules, config());
  assert.equal(r.states.filter((s) => s === privacyRules).length, 1, 'privacy and blocking share one rule set');
  assert.ok(r.loadCollections.includes('blocklist') && r.loadCollections.includes('privacy'));
  for (const c of ['vcard', 'private', 'last', 'blocklist', 'privacy']) assert.ok(r.ownedCollections.includes(c), c);
  assert.ok(!r.loadCollections.includes('vcard'), 'vCards are read on demand, not at activation');
  const off = new ModuleRegistry(modules, config({ modules: { disabled: ['privacy', 'blocking'] } }));
  assert.equal(off.states.includes(privacyRules), false, 'no enforcement without a module that edits the rules');
  assert.throws(() => off.slot(privacyRules), /no enabled module declares it/);
});

test('two modules may not answer the same iq', () => {
  const a = defineModule({ name: 'a', iq: { 'get/host/urn:x:y': () => undefined } });
  const b = defineModule({ name: 'b', iq: { 'get/host/urn:x:y': () => undefined } });
  assert.throws(() => new ModuleRegistry([a, b], config()), /two modules handle get\/host\/urn:x:y/);
});

test('hook slots list only the states that have the hook', () => {
  const quiet = defineAccountState({ name: 'quiet', collections: [], load: () => 0 });
  const noisy = defineAccountState({ name: 'noisy', collections: ['n'], load: () => 0, hooks: { ended: () => undefined } });
  const r = new ModuleRegistry([defineModule({ name: 'q', state: [quiet] }), defineModule({ name: 'n', state: [noisy], stored: ['m'] })], config());
  assert.deepEqual(r.hookSlots, { available: [], unavailable: [], ended: [1], contactPresence: [], contactAdded: [] });
  assert.deepEqual(r.loadCollections, ['n']);
  assert.deepEqual(r.ownedCollections, ['n', 'm']);
});
