// The upload defaults (limits on), when the service is offered, and the disk
// store's signed PUT URLs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../config/index.ts';
import { DiskFiles } from './disk.ts';
import { diskBaseUrl, uploadOffered } from './index.ts';
import type { Slot } from './slots.ts';

test('limits are on by default: 10 MiB a file, 100 MiB an account, slots for 5 minutes, files for 30 days, no HTML or SVG', () => {
  const u = loadConfig(undefined, {}, {}).upload;
  assert.equal(u.enabled, true);
  assert.equal(u.maxFileBytes, 10 * 1024 * 1024);
  assert.equal(u.quotaBytes, 100 * 1024 * 1024);
  assert.equal(u.slotSeconds, 300);
  assert.equal(u.fileLifetimeSeconds, 30 * 86_400);
  assert.equal(u.store.kind, 'disk');
  assert.ok(!u.allowedContentTypes.includes('text/html'));
  assert.ok(u.allowedContentTypes.includes('image/*'));
});

test('the disk store is offered with the HTTP listener in the embedded mode; object storage in a cluster too', () => {
  assert.equal(uploadOffered(loadConfig(undefined, {}, {})), false, 'no HTTP listener: nowhere to PUT');
  assert.equal(uploadOffered(loadConfig(undefined, {}, { c2s: { http: { enabled: true } } })), true);
  assert.equal(uploadOffered(loadConfig(undefined, {}, { c2s: { http: { enabled: true } }, upload: { enabled: false } })), false);
  const cluster = { bus: { kind: 'nats', url: 'nats://127.0.0.1:4222' }, store: { kind: 'redis', url: 'redis://127.0.0.1:6379' } };
  assert.equal(uploadOffered(loadConfig(undefined, {}, { ...cluster, c2s: { http: { enabled: true } } })), false, 'a file on one node would be missing on the others');
  assert.equal(uploadOffered(loadConfig(undefined, {}, { ...cluster, upload: { store: { kind: 's3', bucket: 'b' } } })), true);
  assert.throws(() => loadConfig(undefined, {}, { upload: { allowedContentTypes: ['not a type'] } }));
  assert.throws(() => loadConfig(undefined, {}, { upload: { store: { kind: 's3' } } }), 'a bucket is required');
});

test('disk URLs: the configured base, else the public URL, else the port the listener got', () => {
  const c = loadConfig(undefined, {}, { c2s: { http: { enabled: true, port: 0 } } });
  assert.equal(diskBaseUrl(c, 4321), 'http://127.0.0.1:4321');
  assert.equal(diskBaseUrl(loadConfig(undefined, {}, { c2s: { http: { publicUrl: 'https://chat.example.com' } } })), 'https://chat.example.com');
  assert.equal(diskBaseUrl(loadConfig(undefined, {}, { upload: { store: { kind: 'disk', url: 'https://files.example.com' } } })), 'https://files.example.com');
});

test('a signed PUT URL grants what it says until its deadline; anything altered is forged', async () => {
  const files = new DiskFiles(mkdtempSync(join(tmpdir(), 'parley-upload-')), () => 'https://chat.example.com');
  const now = Date.now();
  const slot: Slot = { id: 'AAAAAAAAAAAAAAAAAAAAAA', owner: 'a@example.com', size: 42, contentType: 'image/png', fileName: 'a b.png', created: now, putUntil: now + 1000, expires: now + 9000 };
  const { put, get } = await files.urls('upload.example.com', slot);
  assert.equal(get, 'https://chat.example.com/upload/upload.example.com/AAAAAAAAAAAAAAAAAAAAAA/a%20b.png');
  const query = new URL(put).search.slice(1);
  assert.deepEqual(files.verifyPut('upload.example.com', slot.id, 'a b.png', query, now), { size: 42, contentType: 'image/png', fileName: 'a b.png' });
  assert.equal(files.verifyPut('upload.example.com', slot.id, 'a b.png', query, now + 1001), 'expired');
  assert.equal(files.verifyPut('upload.example.com', slot.id, 'c.png', query, now), 'forged');
  assert.equal(files.verifyPut('upload.example.com', 'BAAAAAAAAAAAAAAAAAAAAA', 'a b.png', query, now), 'forged');
  assert.equal(files.verifyPut('upload.example.com', slot.id, 'a b.png', query.replace('size=42', 'size=43'), now), 'forged');
  assert.equal(files.verifyPut('upload.example.com', slot.id, 'a b.png', query.replace('image%2Fpng', 'text%2Fhtml'), now), 'forged');
  assert.equal(files.verifyPut('upload.example.com', slot.id, 'a b.png', query.replace(/until=\d+/, `until=${now + 99_999}`), now), 'forged');
  assert.equal(files.verifyPut('../etc', slot.id, 'a b.png', query, now), 'forged');
  // Another data directory has another key.
  const other = new DiskFiles(mkdtempSync(join(tmpdir(), 'parley-upload-')), () => 'https://chat.example.com');
  assert.equal(other.verifyPut('upload.example.com', slot.id, 'a b.png', query, now), 'forged');
});
