// Loading the configuration: unknown keys are errors naming the nearest known
// key, from the file and from PARLEY_* variables alike; every configuration
// the project ships (docs, README, deploy/) loads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { tempDir } from '../../test/support/servers.ts';
import { ConfigError, loadConfig } from './index.ts';

const ROOT = join(import.meta.dirname, '../..');

function file(text: string): string {
  const f = join(tempDir('parley-config'), 'parley.yaml');
  writeFileSync(f, text);
  return f;
}

function refused(path: string | undefined, env: NodeJS.ProcessEnv = {}): string {
  try {
    loadConfig(path, env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  assert.fail('the configuration loaded');
}

test('an unknown top-level key names the nearest known key', () => {
  const f = file('logg: { level: debug }\n');
  assert.equal(refused(f), `invalid configuration in ${f}: unknown key 'logg' (did you mean 'log'?)`);
});

test('an unknown nested key is named by its path, with its nearest sibling', () => {
  const f = file('c2s:\n  tpc: { port: 5300 }\n');
  assert.equal(refused(f), `invalid configuration in ${f}: unknown key 'c2s.tpc' (did you mean 'c2s.tcp'?)`);
  const g = file('c2s:\n  tcp: { host: 0.0.0.0, prot: 5300 }\n');
  assert.equal(refused(g), `invalid configuration in ${g}: unknown key 'c2s.tcp.prot' (did you mean 'c2s.tcp.port'?)`);
  // Case alone differs.
  const h = file('datadir: /tmp/x\n');
  assert.equal(refused(h), `invalid configuration in ${h}: unknown key 'datadir' (did you mean 'dataDir'?)`);
});

test('a key far from every known one gets no suggestion; several unknown keys give a line each', () => {
  const f = file('frobnicate: 1\nmetrics: { enabled: true, prot: 1 }\n');
  assert.equal(refused(f), [
    `invalid configuration in ${f}: unknown key 'frobnicate'`,
    `invalid configuration in ${f}: unknown key 'metrics.prot' (did you mean 'metrics.port'?)`,
  ].join('\n'));
});

test('the store and bus keys are those of their kind', () => {
  // `path` belongs to lmdb: with Redis it would be ignored.
  const f = file('store: { kind: redis, url: "redis://127.0.0.1:6379", path: /var/lib/parley }\n');
  assert.equal(refused(f), `invalid configuration in ${f}: unknown key 'store.path'`);
  const g = file('bus: { kind: nats, url: "nats://127.0.0.1:4222", subjetPrefix: x }\n');
  assert.equal(refused(g), `invalid configuration in ${g}: unknown key 'bus.subjetPrefix' (did you mean 'bus.subjectPrefix'?)`);
  assert.equal(loadConfig(file('store: { kind: lmdb, path: /tmp/parley-db, sync: commit }\n'), {}).store.kind, 'lmdb');
});

test('records take any name, but the entries under them are checked', () => {
  const ok = loadConfig(file('s2s:\n  routes: { "example.org": "127.0.0.1:5269" }\nc2s:\n  certificates:\n    example.com: { cert: a.pem, key: b.pem }\n'), {});
  assert.equal(ok.s2s.routes['example.org'], '127.0.0.1:5269');
  const f = file('c2s:\n  certificates:\n    example.com: { cert: a.pem, kee: b.pem }\n');
  assert.match(refused(f), /unknown key 'c2s\.certificates\.example\.com\.kee' \(did you mean 'c2s\.certificates\.example\.com\.key'\?\)$/);
});

test('PARLEY_* variables are checked too, and named', () => {
  assert.equal(refused(undefined, { PARLEY_C2S__TPC__PORT: '5300' }),
    "invalid configuration in PARLEY_C2S__TPC__PORT: unknown key 'c2s.tpc' (did you mean 'c2s.tcp'?)");
  const f = file('domains: [example.com]\n');
  assert.equal(refused(f, { PARLEY_METRICS__PROT: '1' }),
    "invalid configuration in PARLEY_METRICS__PROT: unknown key 'metrics.prot' (did you mean 'metrics.port'?)");
  // Variables that set known keys still work, and override the file.
  const c = loadConfig(f, { PARLEY_C2S__TCP__PORT: '5300', PARLEY_DOMAINS: '["example.org"]', PARLEY_STORE__KIND: 'lmdb' });
  assert.equal(c.c2s.tcp.port, 5300);
  assert.deepEqual(c.domains, ['example.org']);
});

test('PARLEY_* variables that are not keys are left alone', () => {
  const c = loadConfig(undefined, {
    PARLEY_PASSWORD: 'secret', PARLEY_LOG_LEVEL: 'debug', PARLEY_TEST_VERBOSE: '1', PARLEY_CHAOS_LONG: '1', PARLEY_SOAK_MS: '1000',
  });
  assert.equal(c.log.level, 'info');
});

test('a file that cannot be read or parsed is one line', () => {
  assert.equal(refused('/nonexistent/parley.yaml'), 'cannot read configuration /nonexistent/parley.yaml: no such file');
  const f = file('c2s: { tcp: [1\n');
  assert.match(refused(f), new RegExp(`^invalid YAML in ${f}: [^\\n]+$`));
  const g = file('- role: all\n');
  assert.equal(refused(g), `invalid configuration in ${g}: expected keys and values at the top, found a list`);
});

test('every configuration in the docs, the README and deploy/ loads', () => {
  const docs = ['README.md', 'deploy/README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  let checked = 0;
  for (const doc of docs) {
    const md = readFileSync(join(ROOT, doc), 'utf8');
    for (const m of md.matchAll(/```ya?ml\n([\s\S]*?)```/g)) {
      const tree: unknown = parse(m[1]);
      // Compose files, Kubernetes objects and Prometheus settings are not Parley configurations.
      if (!tree || typeof tree !== 'object' || ['services', 'apiVersion', 'scrape_configs'].some((k) => k in tree)) continue;
      const line = md.slice(0, m.index).split('\n').length;
      assert.doesNotThrow(() => loadConfig(file(m[1]), {}), `${doc}:${line}`);
      checked++;
    }
  }
  const configMap = parse(readFileSync(join(ROOT, 'deploy/kubernetes/configmap.yaml'), 'utf8')) as { data: Record<string, string> };
  assert.equal(loadConfig(file(configMap.data['parley.yaml']), {}).bus.kind, 'nats');
  const compose = parse(readFileSync(join(ROOT, 'deploy/compose.yaml'), 'utf8')) as { services: Record<string, { environment?: Record<string, unknown> }> };
  for (const [name, s] of Object.entries(compose.services)) {
    if (!s.environment || !Object.keys(s.environment).some((k) => k.startsWith('PARLEY_'))) continue;
    const env = Object.fromEntries(Object.entries(s.environment).map(([k, v]) => [k, String(v)]));
    assert.doesNotThrow(() => loadConfig(undefined, env), `deploy/compose.yaml service ${name}`);
    checked++;
  }
  assert.ok(checked >= 10, `only ${checked} configurations found`);
});
