// The one enforcement path of privacy lists and blocking: JID matching
// (XEP-0016 §2.1), first match by order, stanza classes, roster-based items,
// the block list before any list, per-resource active lists and the refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StanzaError } from '../../../libs/errors/index.ts';
import type { Contact, FilteredStanza } from '../module.ts';
import { pack } from 'msgpackr';
import { loadConfig } from '../../../libs/config/index.ts';
import {
  BlockedError, classOf, CompiledList, decodeItems, encodeItems, EVERYTHING, IQ, MESSAGE, OTHER, peerKeys, PRESENCE_IN, PRESENCE_OUT,
  PrivacyRules, privacyRules, refusal, type PrivacyItem,
} from './privacy-rules.ts';

const item = (type: PrivacyItem['type'], value: string, allow: boolean, order: number, mask = EVERYTHING): PrivacyItem => ({ type, value, allow, order, mask });
const noRoster = { contact: (): Contact | undefined => undefined };
const roster = (entries: Record<string, Contact>) => ({ contact: (b: string) => entries[b] });

test('JID items match as XEP-0016 §2.1 says: full, bare, domain/resource, domain', () => {
  const cases: [string, string, boolean][] = [
    ['juliet@example.com/balcony', 'juliet@example.com/balcony', true],
    ['juliet@example.com/balcony', 'juliet@example.com/garden', false],
    ['juliet@example.com', 'juliet@example.com/any', true],
    ['juliet@example.com', 'juliet@example.com', true],
    ['juliet@example.com', 'romeo@example.com/x', false],
    ['example.com/balcony', 'juliet@example.com/balcony', true],
    ['example.com/balcony', 'juliet@example.com/garden', false],
    ['example.com', 'anyone@example.com/r', true],
    ['example.com', 'example.com', true],
    ['example.com', 'juliet@example.org', false],
    ['example.com', 'sub.example.com', false],
  ];
  for (const [value, peer, matches] of cases) {
    const list = new CompiledList([item('jid', value, false, 1)]);
    assert.equal(list.decide(MESSAGE, peerKeys(peer), undefined), matches ? false : undefined, `${value} vs ${peer}`);
  }
});

test('the item with the lowest order wins, whatever kind it is and wherever it sits in the list', () => {
  const list = new CompiledList([
    item('', '', true, 100),
    item('jid', 'example.com', false, 20),
    item('jid', 'juliet@example.com', true, 10),
    item('group', 'Enemies', false, 5, MESSAGE),
  ]);
  assert.equal(list.decide(MESSAGE, peerKeys('juliet@example.com/r'), undefined), true, 'order 10 before 20');
  assert.equal(list.decide(MESSAGE, peerKeys('romeo@example.com/r'), undefined), false, 'the domain item');
  assert.equal(list.decide(MESSAGE, peerKeys('nurse@example.org'), undefined), true, 'fall-through');
  assert.equal(list.decide(MESSAGE, peerKeys('juliet@example.com'), { subscription: 'both', groups: ['Enemies'] }), false, 'group at order 5');
  assert.equal(list.decide(IQ, peerKeys('juliet@example.com'), { subscription: 'both', groups: ['Enemies'] }), true, 'the group item covers messages only');
});

test('stanza classes: an item naming none covers everything, subscriptions and probes included', () => {
  const some = new CompiledList([item('jid', 'a@x', false, 1, MESSAGE | PRESENCE_IN)]);
  const all = new CompiledList([item('jid', 'a@x', false, 1)]);
  const p = peerKeys('a@x/r');
  assert.equal(some.decide(MESSAGE, p, undefined), false);
  assert.equal(some.decide(PRESENCE_IN, p, undefined), false);
  assert.equal(some.decide(PRESENCE_OUT, p, undefined), undefined);
  assert.equal(some.decide(OTHER, p, undefined), undefined, 'a subscription request is not a presence notification');
  assert.equal(all.decide(OTHER, p, undefined), false);
  const s = (dir: 'in' | 'out', kind: FilteredStanza['kind'], type: string): FilteredStanza => ({ dir, kind, type, peer: 'a@x', resource: '' });
  assert.equal(classOf(s('in', 'presence', '')), PRESENCE_IN);
  assert.equal(classOf(s('in', 'presence', 'unavailable')), PRESENCE_IN);
  assert.equal(classOf(s('out', 'presence', '')), PRESENCE_OUT);
  assert.equal(classOf(s('in', 'presence', 'subscribe')), OTHER);
  assert.equal(classOf(s('in', 'presence', 'probe')), OTHER);
  assert.equal(classOf(s('in', 'iq', 'get')), IQ);
});

test('subscription items use the roster; a JID outside it counts as none', () => {
  const list = new CompiledList([item('subscription', 'both', true, 1, MESSAGE), item('subscription', 'none', false, 2, MESSAGE)]);
  assert.ok(list.usesRoster);
  const rules = new PrivacyRules();
  rules.listsForWrite().set('l', list);
  rules.defaultList = 'l';
  rules.recount();
  const r = roster({ 'friend@x': { subscription: 'both', groups: [] }, 'fan@x': { subscription: 'from', groups: [] } });
  assert.equal(rules.decide(MESSAGE, 'friend@x/a', '', r), 'allow');
  assert.equal(rules.decide(MESSAGE, 'stranger@x/a', '', r), 'denied');
  assert.equal(rules.decide(MESSAGE, 'fan@x/a', '', r), 'allow', 'from: no item matches');
});

test('the block list comes before any list and blocks every class', () => {
  const rules = new PrivacyRules();
  rules.listsForWrite().set('allow-all', new CompiledList([item('', '', true, 1)]));
  rules.defaultList = 'allow-all';
  rules.blockedForWrite().add('spam.example');
  rules.blockedForWrite().add('eve@example.com');
  rules.recount();
  for (const bit of [MESSAGE, IQ, PRESENCE_IN, PRESENCE_OUT, OTHER]) {
    assert.equal(rules.decide(bit, 'bot7@spam.example/x', '', noRoster), 'blocked');
    assert.equal(rules.decide(bit, 'eve@example.com/laptop', '', noRoster), 'blocked');
  }
  assert.equal(rules.decide(MESSAGE, 'bob@example.com/laptop', '', noRoster), 'allow');
});

test('active lists are per resource; the account as a whole uses the default unless resources differ', () => {
  const rules = new PrivacyRules();
  rules.listsForWrite().set('deny-bob', new CompiledList([item('jid', 'bob@x', false, 1)]));
  rules.listsForWrite().set('open', new CompiledList([item('', '', true, 1)]));
  rules.defaultList = 'open';
  rules.recount();
  assert.ok(rules.hasRules);
  assert.equal(rules.perSession, false);
  assert.equal(rules.decide(MESSAGE, 'bob@x/1', '', noRoster), 'allow');
  rules.activeForWrite().set('phone', { sid: 's1', list: 'deny-bob' });
  rules.recount();
  assert.equal(rules.perSession, true);
  assert.equal(rules.decide(MESSAGE, 'bob@x/1', 'phone', noRoster), 'denied');
  assert.equal(rules.decide(MESSAGE, 'bob@x/1', 'laptop', noRoster), 'allow', 'the default governs other resources');
  assert.equal(rules.decide(MESSAGE, 'bob@x/1', '', noRoster), 'allow', 'bare deliveries are decided per session');
  assert.equal(new PrivacyRules().hasRules, false, 'no rules: nothing to filter');
});

test('refusals: inbound looks like a missing account, outbound tells the user, errors are never answered', () => {
  const s = (dir: 'in' | 'out', kind: FilteredStanza['kind'], type: string): FilteredStanza => ({ dir, kind, type, peer: 'a@x', resource: '' });
  const cond = (v: unknown) => (v instanceof StanzaError ? v.condition : v);
  assert.equal(cond(refusal(s('in', 'message', 'chat'), true)), 'service-unavailable');
  assert.equal(cond(refusal(s('in', 'iq', 'get'), false)), 'service-unavailable');
  assert.equal(refusal(s('in', 'iq', 'result'), true), 'drop');
  assert.equal(refusal(s('in', 'presence', ''), true), 'drop');
  assert.equal(refusal(s('in', 'presence', 'subscribe'), true), 'drop');
  assert.equal(refusal(s('in', 'message', 'error'), true), 'drop');
  assert.ok(refusal(s('out', 'message', 'chat'), true) instanceof BlockedError);
  assert.equal(cond(refusal(s('out', 'message', 'chat'), false)), 'not-acceptable');
  assert.ok(!(refusal(s('out', 'message', 'chat'), false) instanceof BlockedError));
  const xml = new BlockedError().toElement();
  assert.equal(xml.children.at(-1) && typeof xml.children.at(-1) !== 'string' ? (xml.children.at(-1) as { attrs: Record<string, string> }).attrs.xmlns : '', 'urn:xmpp:blocking:errors');
});

test('items survive the store encoding', () => {
  const items = [item('jid', 'a@b/c', false, 3, MESSAGE | IQ), item('group', 'Friends', true, 7), item('', '', false, 9)];
  assert.deepEqual(decodeItems(encodeItems(items)), items);
});

test('loading keeps the choices of live sessions only (a crashed session\'s fields never apply to a new one)', () => {
  const privacy = new Map<string, Uint8Array>([
    ['list:l', encodeItems([item('jid', 'bob@x', false, 1)])],
    ['default', pack('gone')],
    ['active:phone', pack(['s1', 'l'])],
    ['active:laptop', pack(['old-sid', 'l'])],
    ['active:tablet', pack(['s3', 'no-such-list'])],
    ['blockpush:phone', pack('s1')],
    ['blockpush:laptop', pack('old-sid')],
  ]);
  const blocklist = new Map<string, Uint8Array>([['eve@x', new Uint8Array(0)]]);
  const rules = privacyRules.load(new Map([['privacy', privacy], ['blocklist', blocklist]]),
    { account: 'a@x', config: loadConfig(undefined, {}, {}), sessions: new Map([['phone', 's1'], ['laptop', 's2'], ['tablet', 's3']]) });
  assert.deepEqual([...rules.active.keys()], ['phone']);
  assert.deepEqual([...rules.blockInterest.keys()], ['phone']);
  assert.equal(rules.defaultList, '', 'a default naming a missing list is ignored');
  assert.ok(rules.blocked.has('eve@x'));
  assert.equal(rules.perSession, true);
});
