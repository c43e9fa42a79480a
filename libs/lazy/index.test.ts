import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deleteFrom, emptyMap, emptySet, filledMap, filledSet } from './index.ts';

test('holders share one empty Map until their first entry, which goes into a Map of their own', () => {
  let a = emptyMap<string, number>();
  let b = emptyMap<string, number>();
  assert.equal(a, b);
  assert.equal(deleteFrom(a, 'x'), false);
  (a = filledMap(a)).set('x', 1);
  assert.equal(a.get('x'), 1);
  assert.equal(b.size, 0, 'the other holder still sees nothing');
  assert.equal(filledMap(a), a, 'a filled Map is written in place');
  assert.equal(deleteFrom(a, 'x'), true);
  assert.equal(a.size, 0);
  b = filledMap(b);
  assert.notEqual(a, b);
});

test('the shared empty collections refuse entries (a write past filledMap / filledSet is an error, not a change seen by all)', () => {
  assert.throws(() => (emptyMap<string, number>() as Map<string, number>).set('x', 1), /takes no entries/);
  assert.throws(() => (emptySet<string>() as Set<string>).add('x'), /takes no entries/);
  assert.equal(emptyMap().size, 0);
  assert.equal(emptySet().size, 0);
  const s = filledSet(emptySet<string>()).add('y');
  assert.ok(s.has('y'));
  assert.equal(emptySet<string>().has('y'), false);
});
