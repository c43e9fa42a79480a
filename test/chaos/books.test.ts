// The chaos runs' books and log check on records made up here: a loss, a
// duplicate after an ack, a client's own re-send, a reordering, a silence,
// and a stale actor must each be counted as such (and nothing else).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkActivations } from './activations.ts';
import { ChatClient, type Delivery } from './client.ts';
import { account } from './ledger.ts';

const client = (user: string) => new ChatClient({
  user, password: 'x', domain: 'localhost', resource: 'r', streamManagement: true,
  endpoints: () => [], ackTimeoutMs: 1000, stepTimeoutMs: 1000,
});

describe('chaos books', () => {
  test('lost, duplicated after an ack, client copies, reordered, bounced, and when chat flowed again', () => {
    const a = client('a');
    const b = client('b');
    const t0 = 1_000_000;
    // a typed 0…5 every 100 ms; the fault at t0 + 250.
    for (let i = 0; i < 6; i++) a.typed[i] = t0 + i * 100;
    for (const i of [0, 1, 2, 3, 4, 5]) a.acked.set(i, t0 + i * 100 + 10);
    a.bouncedSeqs.add(5);
    const d = (seq: number, at: number, copy: Delivery['copy'] = 'first', id = `a-${seq}`): Delivery => ({ from: 'a', seq, id, at, epoch: 1, n: 0, copy });
    b.deliveries.push(
      d(0, t0 + 20),
      d(1, t0 + 120),
      d(1, t0 + 130, 'again-acked'),       // the server's duplicate
      d(3, t0 + 3400),                      // chat resumes 3.15 s after the fault
      d(3, t0 + 3410, 'first', 'a-3-r2'),  // a's own re-send after a failed resumption
      d(2, t0 + 3420),                      // 2 arrives after all, behind 3
      d(0, t0 + 3430, 'again'),            // a copy the recipient had not acknowledged: allowed
      d(4, t0 + 3500),
    );
    const f = account('sm', [[a, b]], t0 + 250, t0 + 4000);
    const p = f.pairs[0];
    assert.deepEqual(p.lost, [], '2 arrived in the end; 5 was returned with an error');
    assert.equal(p.delivered, 5);
    assert.equal(p.bounced, 1);
    assert.equal(p.dupAfterAck, 1);
    assert.equal(p.redelivered, 1);
    assert.equal(p.clientCopies, 1);
    assert.equal(p.reordered, 1, '2 came after 3');
    assert.equal(p.firstAfterMs, 3400 - 250, 'the first message typed after the fault is 3');
    assert.equal(p.silenceMs, 3400 - 250);
    assert.equal(p.recoveredMs, 3400 - 250);
  });

  test('an acknowledged message that never arrives is lost; a pair silent at the end never recovered', () => {
    const a = client('a');
    const b = client('b');
    const t0 = 2_000_000;
    for (let i = 0; i < 3; i++) { a.typed[i] = t0 + i * 100; a.acked.set(i, t0 + i * 100); }
    b.deliveries.push({ from: 'a', seq: 0, id: 'a-0', at: t0 + 10, epoch: 1, n: 1, copy: 'first' });
    const f = account('sm', [[a, b]], t0 + 50, t0 + 5000);
    assert.deepEqual(f.pairs[0].lost, [1, 2]);
    assert.equal(f.neverFlowed, 1);
    assert.equal(f.silentAtEnd, 1);
  });

  test('activations: growing tokens pass; a stale actor, a shared token, or no activation line at all fail', () => {
    const line = (t: string, token: number, msg = 'actor started') => `2030-01-01T00:00:${t}Z debug user: ${msg} account=x@localhost shard=3 token=${token}`;
    const watched = new Set(['x@localhost']);
    const fine = checkActivations([
      { nodeId: 's1', text: [line('01.000', 5), line('02.000', 5)].join('\n') },
      { nodeId: 's2', text: line('03.000', 9) },
    ], watched);
    assert.deepEqual(fine.violations, []);
    assert.equal(fine.activations, 3);
    assert.equal(fine.moved, 1);

    const stale = checkActivations([
      { nodeId: 's1', text: [line('01.000', 5), line('04.000', 5, 'actor stopping')].join('\n') },
      { nodeId: 's2', text: line('03.000', 9) },
    ], watched);
    assert.equal(stale.violations.length, 1);
    assert.match(stale.violations[0], /s1 acted under token 5 .* after s2 had token 9/);

    const shared = checkActivations([{ nodeId: 's1', text: line('01.000', 5) }, { nodeId: 's2', text: line('02.000', 5) }], watched);
    assert.match(shared.violations[0], /both acted under token 5/);

    assert.match(checkActivations([{ nodeId: 's1', text: 'nothing here' }], watched).violations[0], /no `actor started/);
  });
});
