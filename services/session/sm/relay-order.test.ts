import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RelayOrder } from './relay-order.ts';

test('relays: in order at once; ahead of a gap they wait; the gap filled releases them in order', () => {
  const o = new RelayOrder<string>('c1');
  assert.deepEqual(o.admit('c1', 1, 'a'), ['a']);
  assert.deepEqual(o.admit('c1', 3, 'c'), []);
  assert.deepEqual(o.admit('c1', 4, 'd'), []);
  assert.equal(o.size, 2);
  assert.deepEqual(o.admit('c1', 2, 'b'), ['b', 'c', 'd']);
  assert.equal(o.expected, 5);
});

test('relays: a gap given up on lets the rest out in order; the late one still goes out', () => {
  const o = new RelayOrder<string>('c1');
  o.admit('c1', 1, 'a');
  assert.deepEqual(o.admit('c1', 4, 'd'), []);
  assert.deepEqual(o.admit('c1', 3, 'c'), []);
  assert.deepEqual(o.giveUp(), ['c', 'd']);
  assert.equal(o.expected, 5);
  assert.deepEqual(o.admit('c1', 2, 'b'), ['b']);
  assert.deepEqual(o.admit('c1', 5, 'e'), ['e']);
});

test('relays: state loaded from the store starts wherever the count is; a new connection flushes the old one first', () => {
  const o = new RelayOrder<string>();
  assert.deepEqual(o.admit('c1', 41, 'x'), ['x']);
  assert.deepEqual(o.admit('c1', 43, 'z'), []);
  assert.deepEqual(o.admit('c2', 1, 'n'), ['z', 'n']);
  assert.equal(o.expected, 2);
});

test('relays: waiting is bounded', () => {
  const o = new RelayOrder<number>('c', 3);
  for (let i = 2; i <= 4; i++) assert.deepEqual(o.admit('c', i, i), []);
  assert.deepEqual(o.admit('c', 5, 5), [2, 3, 4, 5]);
});
