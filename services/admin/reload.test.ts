// Which keys a reload sees as changed, which it applies, and that it writes
// only those into the live configuration (the file and certificates are the
// integration tests': test/integration/admin.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configSchema, type Config } from '../../libs/config/schema.ts';
import { changedKeys, reloadConfiguration } from './reload.ts';

const config = (tree: Record<string, unknown>): Config => configSchema.parse(tree);

test('changed keys are leaves, except subtrees compared whole (certificates, domains)', () => {
  const a = config({});
  const b = config({ limits: { bytesPerSecond: 1 }, c2s: { tls: { cert: 'x.crt', key: 'x.key' }, tcp: { port: 5300 } }, domains: ['a.example'] });
  assert.deepEqual(changedKeys(a, b).sort(), ['c2s.tcp.port', 'c2s.tls', 'domains', 'limits.bytesPerSecond']);
  assert.deepEqual(changedKeys(a, config({})), []);
});

test('a reload writes the reloadable keys into the live configuration and names the others', async () => {
  const live = config({});
  const fresh = config({ limits: { bytesPerSecond: 123 }, roster: { maxItems: 7 }, c2s: { tcp: { port: 5300 } }, log: { level: 'info' } });
  const r = await reloadConfiguration('n1', live, { read: () => fresh });
  assert.deepEqual(r, { node: 'n1', applied: ['limits.bytesPerSecond', 'roster.maxItems'], notApplied: ['c2s.tcp.port'], certificatesReloaded: false });
  assert.equal(live.limits.bytesPerSecond, 123);
  assert.equal(live.roster.maxItems, 7);
  assert.equal(live.c2s.tcp.port, 5222, 'a listener port waits for a restart');
});

test('a configuration that cannot be read, or certificates that cannot be, change nothing', async () => {
  const live = config({});
  const r = await reloadConfiguration('n1', live, { read: () => { throw new Error('invalid YAML in p.yaml'); } });
  assert.deepEqual(r, { node: 'n1', applied: [], notApplied: [], certificatesReloaded: false, error: 'invalid YAML in p.yaml' });
  const fresh = config({ limits: { bytesPerSecond: 9 } });
  const bad = await reloadConfiguration('n1', live, { read: () => fresh, prepareCertificates: async () => { throw new Error('ENOENT: x.crt'); } });
  assert.equal(bad.error, 'ENOENT: x.crt');
  assert.equal(live.limits.bytesPerSecond, config({}).limits.bytesPerSecond);
});
