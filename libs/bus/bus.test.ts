import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNats } from '../../test/support/servers.ts';
import { decodeEnvelope, encodeEnvelope, envelope, type Envelope } from './envelope.ts';
import { isFrame, packFrame, unpackFrame } from './frame.ts';
import { NatsBus } from './nats.ts';

test('an envelope survives encoding; a header too large for its length field is refused, not corrupted', () => {
  const e = envelope({ kind: 'message', dir: 'in', from: 'a@x/r', to: 'b@x', type: 'chat', id: '1', xml: '<message>é</message>', data: { n: 1 }, t: 5 });
  const d = decodeEnvelope(encodeEnvelope(e));
  assert.equal(Buffer.from(d.xml).toString(), '<message>é</message>');
  assert.deepEqual({ ...d, xml: '' }, { ...e, xml: '' });
  assert.throws(() => encodeEnvelope(envelope({ kind: 'ctl', dir: 'in', op: 'big', data: 'x'.repeat(70_000) })), RangeError);
  const tracked = envelope({ kind: 'message', dir: 'in', from: 'a@x/r', to: 'b@x', track: ['smid1', 7, 3] });
  assert.deepEqual(decodeEnvelope(encodeEnvelope(tracked)).track, ['smid1', 7, 3]);
  assert.equal('track' in d, false, 'an untracked envelope stays untracked');
});

test('a frame holds envelopes back to back and is told apart from a single envelope', () => {
  const parts = [encodeEnvelope(envelope({ kind: 'iq', dir: 'out', id: 'a' })), new Uint8Array(0), encodeEnvelope(envelope({ kind: 'iq', dir: 'out', id: 'b' }))];
  const f = packFrame(parts);
  assert.ok(isFrame(f));
  assert.ok(!isFrame(parts[0]));
  assert.deepEqual(unpackFrame(f).map((p) => Buffer.from(p).toString('hex')), parts.map((p) => Buffer.from(p).toString('hex')));
  assert.throws(() => unpackFrame(f.subarray(0, f.length - 1)), /truncated/);
});

test('NATS: envelopes for one subject in one turn travel as one message, in order; other subjects keep theirs', async () => {
  const nats = await startNats();
  const a = await NatsBus.connect(nats.url, 'a');
  const b = await NatsBus.connect(nats.url, 'b');
  try {
    const got: Record<string, string[]> = { x: [], y: [] };
    for (const s of ['x', 'y']) b.subscribe(s, (env: Envelope) => got[s].push(env.id));
    await b.flush();
    const before = a.published;
    for (let i = 0; i < 500; i++) a.publish(i % 5 === 0 ? 'y' : 'x', envelope({ kind: 'message', dir: 'in', id: String(i), xml: 'z'.repeat(1000) }));
    await a.flush();
    const deadline = Date.now() + 5000;
    while (got.x.length + got.y.length < 500 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(got.x, Array.from({ length: 500 }, (_, i) => i).filter((i) => i % 5 !== 0).map(String));
    assert.deepEqual(got.y, Array.from({ length: 100 }, (_, i) => String(i * 5)));
    // 400 KB for x is split into frames under the payload limit; y fits in one.
    const messages = a.published - before;
    assert.ok(messages >= 3 && messages <= 4, `${messages} bus messages for 500 envelopes on 2 subjects`);
    assert.equal(a.envelopes, 500);
  } finally {
    await a.close();
    await b.close();
    await nats.stop();
  }
});
