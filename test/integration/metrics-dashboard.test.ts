// The Grafana dashboard (deploy/grafana) queries only metrics a live process
// exports: every metric name in its panels' expressions and its variables'
// queries is in /metrics of an embedded server, so a renamed metric cannot
// leave a panel empty unnoticed. The server runs federation too, so the
// s2s role's metrics are there.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import type { RunningServer } from '../../services/server.ts';

const DASHBOARD = new URL('../../deploy/grafana/parley-dashboard.json', import.meta.url);

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

/** Each query of the dashboard, with where it is: panel targets (rows included) and query variables. */
function queries(): { where: string; expr: string }[] {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[]; templating?: { list: { name: string; query?: unknown }[] } };
  const out: { where: string; expr: string }[] = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr });
      if (p.panels) walk(p.panels);
    }
  };
  walk(d.panels);
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query;
    if (q && q.includes('(')) out.push({ where: `variable $${v.name}`, expr: q });
  }
  return out;
}

/** The metric names a PromQL expression selects: every selector here has a `{…}` matcher; label_values(name, …) names one too. */
function metricNames(expr: string): string[] {
  const names = new Set<string>();
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\{/g)) names.add(m[1]);
  for (const m of expr.matchAll(/label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/g)) names.add(m[1]);
  return [...names];
}

/** Every series name /metrics can have: each metric's name, and a histogram's or summary's _bucket, _sum and _count. */
function exported(text: string): Set<string> {
  const out = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    out.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) out.add(name + s);
  }
  return out;
}

let d: Deployment & { server: RunningServer };
before(async () => { d = await startEmbedded({ s2s: { enabled: true, listen: { host: '127.0.0.1', port: 0 } } }); });
after(async () => { await d.stop(); });

test('the names are found in an expression: selectors with matchers, histogram series, label_values', () => {
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, op) (rate(parley_store_seconds_bucket{job=~"$job"}[5m])))'), ['parley_store_seconds_bucket']);
  assert.deepEqual(metricNames('sum by (tls) (parley_c2s_connections{job=~"$job", instance=~"$instance"}) / on() sum(parley_ready{})'), ['parley_c2s_connections', 'parley_ready']);
  assert.deepEqual(metricNames('label_values(parley_actors{job=~"$job"}, instance)'), ['parley_actors']);
});

test('every metric the Grafana dashboard queries is in a live /metrics', async () => {
  const text = await (await fetch(`http://127.0.0.1:${d.server.metricsPort()}/metrics`)).text();
  const live = exported(text);
  const qs = queries();
  assert.ok(qs.length >= 20, `the dashboard has its queries (${qs.length})`);
  const missing: string[] = [];
  const queried = new Set<string>();
  for (const { where, expr } of qs) {
    const names = metricNames(expr);
    assert.ok(names.length > 0, `${where}: no metric name found in ${expr}`);
    for (const n of names) {
      queried.add(n);
      if (!live.has(n)) missing.push(`${where}: ${n}`);
    }
  }
  assert.deepEqual(missing, [], 'metrics the dashboard queries and /metrics lacks');
  for (const n of ['parley_build_info', 'parley_auth_failures_total', 'parley_auth_blocks_total', 'parley_sm_resumptions_total', 'parley_stanza_errors_total',
    'parley_shard_leases_lapsed_total', 'parley_shard_leases_lost_total', 'parley_s2s_links', 'parley_s2s_queued', 'parley_s2s_stanzas_total',
    'parley_s2s_dialback_failures_total', 'parley_muc_rooms', 'parley_muc_occupants']) assert.ok(queried.has(n), `the dashboard has a panel for ${n}`);
});
