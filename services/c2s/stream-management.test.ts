// The c2s half of stream management: the counters and their verdicts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../libs/config/index.ts';
import { StreamError } from '../../libs/errors/index.ts';
import { parseH, smElement, StreamManagement, unwrap } from './stream-management.ts';

const cfg = loadConfig(undefined, {}, { streamManagement: { ackRequestStanzas: 3, ackRequestSeconds: 10 } }).streamManagement;

test('numbered stanzas are written once and in order; a gap asks for a resend once', () => {
  const sm = new StreamManagement(cfg);
  sm.state = 'on';
  assert.equal(sm.numbered(1), 'write');
  sm.wrote(1, 0);
  assert.equal(sm.numbered(1), 'duplicate');
  assert.equal(sm.numbered(3), 'gap', 'number 2 went missing');
  assert.equal(sm.numbered(4), 'duplicate', 'already asked: wait for the resend');
  assert.equal(sm.numbered(2), 'write', 'the resend');
  sm.wrote(2, 0);
  assert.equal(sm.numbered(3), 'write');
});

test('acks: asked for after N stanzas or T seconds; more than was sent is a stream error', () => {
  const sm = new StreamManagement(cfg);
  sm.state = 'on';
  assert.equal(sm.wrote(1, 1000), false);
  assert.equal(sm.wrote(2, 1000), false);
  assert.equal(sm.wrote(3, 1000), true, 'three unacknowledged');
  assert.equal(sm.wrote(4, 1000), false, 'one request at a time');
  assert.equal(sm.ack(2, 2000), 2);
  assert.equal(sm.due(5000), false);
  assert.equal(sm.due(13_000), true, 'the oldest unacknowledged is 11 s old');
  const err = sm.ack(9, 14_000);
  assert.ok(err instanceof StreamError);
  assert.equal(err.condition, 'undefined-condition');
  assert.equal(err.detail?.name, 'handled-count-too-high');
  assert.equal(sm.ack(4, 14_000), 4);
  assert.equal(sm.due(60_000), false, 'nothing unacknowledged');
});

test('counts wrap at 2^32 on the wire and not inside', () => {
  const sm = new StreamManagement(cfg);
  sm.state = 'on';
  sm.written = 2 ** 32 + 1;
  sm.acked = 2 ** 32 - 3;
  assert.equal(sm.ack(1, 0), 2 ** 32 + 1);
  assert.equal(smElement.a(2 ** 32 + 7), `<a xmlns='urn:xmpp:sm:3' h='7'/>`);
  assert.equal(unwrap(0, 2 ** 32 - 1), 2 ** 32);
  assert.equal(parseH('4294967295'), 2 ** 32 - 1);
  for (const bad of ['4294967296', '-1', '1.5', '', 'x', undefined]) assert.equal(parseH(bad), undefined);
});

test('unconfirmed client stanzas: ask after confirmAfterMs, resend after resendAfterMs, back off while nothing moves, never resend in one process', () => {
  const c = { ...cfg, confirmAfterMs: 1000, resendAfterMs: 2000 };
  const sm = new StreamManagement(c);
  sm.state = 'on';
  const env = () => ({ kind: 'message', dir: 'out', from: '', to: '', type: '', id: '', xml: '', sid: '', op: '', data: undefined, origin: '', seq: 0, t: 0 }) as const;
  sm.handled = 1;
  sm.track({ ...env() }, 0);
  sm.handled = 2;
  sm.track({ ...env() }, 0);
  assert.equal(sm.confirmDue(999), undefined);
  assert.equal(sm.confirmDue(1000), 'ask');
  assert.equal(sm.confirmDue(2999), undefined);
  assert.equal(sm.confirmDue(3000), 'resend');
  assert.equal(sm.confirmDue(6999), undefined, 'the second resend waits twice as long');
  assert.equal(sm.confirmDue(7000), 'resend');
  // Progress resets the back-off; a confirmation of everything leaves nothing to watch.
  assert.equal(sm.confirm(1, 7100), false);
  assert.equal(sm.pending().length, 1);
  assert.equal(sm.confirmDue(8100), 'ask');
  assert.equal(sm.confirmDue(10_100), 'resend');
  sm.wantAck(10_200);
  assert.equal(sm.confirm(2, 10_300), true, 'the waiting <r/> is answered once everything is confirmed');
  assert.equal(sm.confirmDue(20_000), undefined);

  const alone = new StreamManagement(c, false);
  alone.state = 'on';
  alone.handled = 1;
  alone.track({ ...env() }, 0);
  assert.equal(alone.confirmDue(1000), 'ask');
  assert.equal(alone.confirmDue(3000), 'ask', 'the in-process bus loses nothing: ask again, never resend');
});

test('what was written of other accounts\' managed messages: the last number per sending session, for an account\'s next owner, bounded', () => {
  const sm = new StreamManagement(cfg);
  sm.noteDelivered('a', 3);
  sm.noteDelivered('b', 7);
  sm.noteDelivered('a', 2); // an older one written again (a resend): the mark stays
  sm.noteDelivered('a', 5);
  assert.deepEqual([...sm.delivered], [['b', 7], ['a', 5]], 'the last updated last');
  for (let i = 0; i < 2000; i++) sm.noteDelivered(`s${i}`, 1);
  assert.equal(sm.delivered.size, 1024, 'bounded: the longest-quiet senders go');
  assert.equal(sm.delivered.has('b'), false);
  assert.equal(sm.delivered.get('s1999'), 1);
});
