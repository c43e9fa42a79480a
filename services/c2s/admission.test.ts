// Admission control's buckets and what a connection manager remembers of its peers (admission.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Admission, AdmissionPeers, TokenBucket } from './admission.ts';

test('a bucket admits its burst at once, then its rate', () => {
  const b = new TokenBucket(10, 3, 0);
  assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
  assert.equal(b.take(50), false); // half a token
  assert.equal(b.take(100), true); // one after 100 ms at 10/s
  assert.equal(b.take(100), false);
  assert.equal(b.level(10_000), 1); // never above the burst
});

test('each kind has its own bucket; refusals are counted by kind; off admits everything', () => {
  const refused: string[] = [];
  const bucket = { ratePerSecond: 0.001, burst: 1 };
  const a = new Admission({ enabled: true, streams: bucket, logins: bucket, resumptions: { ratePerSecond: 0.001, burst: 2 } }, (w) => refused.push(w));
  assert.equal(a.admit('stream'), true);
  assert.equal(a.admit('stream'), false);
  assert.equal(a.admit('login'), true);
  assert.equal(a.admit('resumption'), true);
  assert.equal(a.admit('resumption'), true);
  assert.equal(a.admit('resumption'), false);
  assert.deepEqual(refused, ['stream', 'resumption']);
  assert.equal(a.hasRoom(), false);
  const off = new Admission({ enabled: false, streams: bucket, logins: bucket, resumptions: bucket });
  for (let i = 0; i < 5; i++) assert.equal(off.admit('stream'), true);
  assert.equal(off.hasRoom(), true);
});

test('peers: only a live one that announced room lately, never this node itself', () => {
  const p = new AdmissionPeers('self', 1000);
  p.heard({ node: 'self', address: 'me:5222', room: true }, 0);
  p.heard({ node: 'full', address: 'full:5222', room: false }, 0);
  assert.equal(p.withRoom(undefined, 10), undefined);
  p.heard({ node: 'b', address: 'b:5222', room: true }, 0);
  assert.equal(p.withRoom(undefined, 10), 'b:5222');
  assert.equal(p.withRoom(['self', 'full'], 10), undefined); // b left the membership
  assert.equal(p.withRoom(undefined, 1001), undefined); // b stopped announcing
});
