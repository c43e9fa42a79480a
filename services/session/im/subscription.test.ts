// RFC 6121 Appendix A, row by row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inbound, NONE, outbound, type SubscriptionState, type SubscriptionType } from './subscription.ts';

// Appendix A's state names → our representation.
const S: Record<string, SubscriptionState> = {
  'None': NONE,
  'None + Pending Out': { ...NONE, ask: true },
  'None + Pending In': { ...NONE, pendingIn: true },
  'None + Pending Out/In': { ...NONE, ask: true, pendingIn: true },
  'To': { ...NONE, subscription: 'to' },
  'To + Pending In': { ...NONE, subscription: 'to', pendingIn: true },
  'From': { ...NONE, subscription: 'from' },
  'From + Pending Out': { ...NONE, subscription: 'from', ask: true },
  'Both': { ...NONE, subscription: 'both' },
};
const name = (s: SubscriptionState) => Object.entries(S).find(([, v]) =>
  v.subscription === s.subscription && v.ask === s.ask && v.pendingIn === s.pendingIn && v.approved === s.approved)?.[0] ?? JSON.stringify(s);

function table(fn: typeof outbound, type: SubscriptionType, rows: [string, string | null][]) {
  for (const [from, to] of rows) {
    const before = S[from];
    const after = fn(before, type);
    if (to === null) assert.equal(after, before, `${type} in ${from}: no state change`);
    else assert.equal(name(after), to, `${type} in ${from}`);
  }
}

test('A.2.1 outbound subscribe', () => table(outbound, 'subscribe', [
  ['None', 'None + Pending Out'], ['None + Pending Out', null], ['None + Pending In', 'None + Pending Out/In'],
  ['None + Pending Out/In', null], ['To', null], ['To + Pending In', null], ['From', 'From + Pending Out'],
  ['From + Pending Out', null], ['Both', null],
]));

test('A.2.2 outbound unsubscribe', () => table(outbound, 'unsubscribe', [
  ['None', null], ['None + Pending Out', 'None'], ['None + Pending In', null], ['None + Pending Out/In', 'None + Pending In'],
  ['To', 'None'], ['To + Pending In', 'None + Pending In'], ['From', null], ['From + Pending Out', 'From'], ['Both', 'From'],
]));

test('A.2.3 outbound subscribed (approval; pre-approval where nothing is pending)', () => {
  table(outbound, 'subscribed', [
    ['None + Pending In', 'From'], ['None + Pending Out/In', 'From + Pending Out'], ['To + Pending In', 'Both'],
    ['From', null], ['From + Pending Out', null], ['Both', null],
  ]);
  for (const s of ['None', 'None + Pending Out', 'To']) assert.equal(outbound(S[s], 'subscribed').approved, true, `${s} pre-approves`);
});

test('A.2.4 outbound unsubscribed', () => table(outbound, 'unsubscribed', [
  ['None', null], ['None + Pending Out', null], ['None + Pending In', 'None'], ['None + Pending Out/In', 'None + Pending Out'],
  ['To', null], ['To + Pending In', 'To'], ['From', 'None'], ['From + Pending Out', 'None + Pending Out'], ['Both', 'To'],
]));

test('A.3.1 inbound subscribe', () => table(inbound, 'subscribe', [
  ['None', 'None + Pending In'], ['None + Pending Out', 'None + Pending Out/In'], ['None + Pending In', null],
  ['None + Pending Out/In', null], ['To', 'To + Pending In'], ['To + Pending In', null], ['From', null],
  ['From + Pending Out', null], ['Both', null],
]));

test('A.3.1 with pre-approval the subscription is granted at once', () => {
  assert.equal(name(inbound({ ...NONE, approved: true }, 'subscribe')), 'From');
  assert.equal(name(inbound({ ...NONE, subscription: 'to', approved: true }, 'subscribe')), 'Both');
});

test('A.3.2 inbound unsubscribe', () => table(inbound, 'unsubscribe', [
  ['None', null], ['None + Pending Out', null], ['None + Pending In', 'None'], ['None + Pending Out/In', 'None + Pending Out'],
  ['To', null], ['To + Pending In', 'To'], ['From', 'None'], ['From + Pending Out', 'None + Pending Out'], ['Both', 'To'],
]));

test('A.3.3 inbound subscribed: only an outstanding request is granted', () => table(inbound, 'subscribed', [
  ['None', null], ['None + Pending Out', 'To'], ['None + Pending In', null], ['None + Pending Out/In', 'To + Pending In'],
  ['To', null], ['To + Pending In', null], ['From', null], ['From + Pending Out', 'Both'], ['Both', null],
]));

test('A.3.4 inbound unsubscribed', () => table(inbound, 'unsubscribed', [
  ['None', null], ['None + Pending Out', 'None'], ['None + Pending In', null], ['None + Pending Out/In', 'None + Pending In'],
  ['To', 'None'], ['To + Pending In', 'None + Pending In'], ['From', null], ['From + Pending Out', 'From'], ['Both', 'From'],
]));
