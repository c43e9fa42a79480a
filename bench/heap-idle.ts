// Where the memory of one idle, logged-in user goes, per server process:
//   node --import tsx bench/heap-idle.ts [--target parley|parley-cluster] [--users 2000] [--sm] [--top 25] [--keep]
//     [--root DIR (that checkout's server)]
// Starts a fresh server (the bench peer, every Node process with --heapsnapshot-signal), takes a heap snapshot of
// each Node process, logs the users in (bench/lib/pool.ts, as the idle scenario), waits, snapshots again, and
// prints per process the V8 heap's growth per user, grouped by what V8 calls each object (constructor, closure,
// string, array …) and what holds it, largest first. RSS is not read here (a snapshot inflates it): bench idle does.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OPTION_SPEC, toOptions } from './lib/options.ts';
import { Ctx, runScenario, sleep, type ScenarioOutput } from './lib/run.ts';
import { PEERS } from './peers/index.ts';

const { values } = parseArgs({
  options: { ...OPTION_SPEC, target: { type: 'string', default: 'parley' }, top: { type: 'string', default: '25' }, 'http-port': { type: 'string', default: '15280' }, root: { type: 'string', default: '' }, keep: { type: 'boolean', default: false } },
});
const users = Number(values.users ?? 2000) || 2000;
const top = Number(values.top);
const port = process.argv.includes('--port') ? Number(values.port) : 15222;
const make = PEERS[values.target];
if (!make?.name.startsWith('parley')) throw new Error(`--target parley or parley-cluster, not ${values.target}`);
const peer = make({ users, port, httpPort: Number(values['http-port']), root: values.root, keep: true, nodeArgs: ['--heapsnapshot-signal=SIGUSR2'] });
const started = await peer.start();

const cmdline = (pid: number): string => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
const nodes = started.pids.filter((p) => cmdline(p).includes('parley.mjs'));
const roleOf = (pid: number): string => /--config \S*?([\w-]+)\.yaml/.exec(cmdline(pid))?.[1] ?? String(pid);

/** SIGUSR2 to each process, then waits until its new snapshot file (in its cwd, the peer's dir) stops growing. */
async function snapshots(): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (const pid of nodes) {
    const before = new Set(readdirSync(started.dir));
    process.kill(pid, 'SIGUSR2');
    let file = '';
    for (let size = -1; ; await sleep(1000)) {
      file ||= readdirSync(started.dir).find((f) => f.endsWith('.heapsnapshot') && f.includes(`.${pid}.`) && !before.has(f)) ?? '';
      if (!file) continue;
      const s = statSync(join(started.dir, file)).size;
      if (s === size && s > 0) break;
      size = s;
    }
    out.set(pid, join(started.dir, file));
  }
  return out;
}

interface Summary { heap: number; groups: Map<string, { count: number; bytes: number }> }

/** Node kinds that are only storage or plumbing: named after what holds them (up to a named object). */
const PLUMBING = /^(array|hidden|string|concatenated string|sliced string|number|object (Object|Array|Map|Set|system \/ Context)|closure|code|native)\b/;

/**
 * Self sizes summed per (V8 node type, name, holder): a diff of two such summaries is what the users added. The holder
 * of an array, a Map, a closure … is the first object that references it, followed up through other plumbing to the
 * first object with a constructor of its own (e.g. `array ← Map ← UserActor.sessions`).
 */
function summarize(file: string): Summary {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
    nodes: number[]; edges: number[]; strings: string[];
  };
  const m = snap.snapshot.meta;
  const f = m.node_fields;
  const [T, N, S, E, W] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size'), f.indexOf('edge_count'), f.length];
  const ef = m.edge_fields;
  const [ET, EN, ETO, EW] = [ef.indexOf('type'), ef.indexOf('name_or_index'), ef.indexOf('to_node'), ef.length];
  const types = m.node_types[0];
  const edgeTypes = m.edge_types[0];
  const count = snap.nodes.length / W;
  // First strong retainer of each node and the edge's name.
  const holder = new Int32Array(count).fill(-1);
  const via: string[] = new Array(count);
  for (let i = 0, e = 0; i < count; i++) {
    const n = snap.nodes[i * W + E];
    for (let k = 0; k < n; k++, e += EW) {
      const et = edgeTypes[snap.edges[e + ET]];
      if (et === 'weak' || et === 'shortcut') continue;
      const to = snap.edges[e + ETO] / W;
      if (holder[to] !== -1 || to === i) continue;
      holder[to] = i;
      via[to] = et === 'element' || et === 'hidden' ? `[]` : String(snap.strings[snap.edges[e + EN]] ?? snap.edges[e + EN]).slice(0, 30);
    }
  }
  const kind = (i: number): string => {
    const type = types[snap.nodes[i * W + T]];
    const name = snap.strings[snap.nodes[i * W + N]];
    return type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'number' ? type : `${type} ${name.slice(0, 40)}`;
  };
  const groups = new Map<string, { count: number; bytes: number }>();
  let heap = 0;
  for (let i = 0; i < count; i++) {
    let key = kind(i);
    if (PLUMBING.test(key)) {
      let path = '';
      for (let h = i, depth = 0; depth < 4; depth++) {
        const up = holder[h];
        if (up < 0) break;
        path = `${via[h]}${path ? ` > ${path}` : ''}`;
        const k = kind(up);
        h = up;
        if (!PLUMBING.test(k) || depth === 3) { path = `${k.replace(/^object /, '')}.${path}`; break; }
      }
      key = `${key} ← ${path}`;
    }
    const g = groups.get(key) ?? { count: 0, bytes: 0 };
    g.count++;
    g.bytes += snap.nodes[i * W + S];
    heap += snap.nodes[i * W + S];
    groups.set(key, g);
  }
  return { heap, groups };
}

try {
  const o = { ...toOptions({ ...values, users: String(users), port: String(started.port) }, 'idle'), pids: started.pids, target: `heap-${values.target}` };
  await runScenario('heap-idle', async (ctx: Ctx): Promise<ScenarioOutput> => {
    await sleep(5000);
    const snap0 = await snapshots();
    const r = await ctx.loginAll('idle connect');
    if (!r.ok) throw new Error(`no login succeeded: ${r.errors.join('; ')}`);
    await sleep(10_000);
    const snap1 = await snapshots();
    const summary: Record<string, number> = { connections: r.ok, failed: r.failed };
    const lines = [`\n${r.ok} idle users (${r.failed} failed), ${values.target}${values.sm ? ', stream management' : ''}`];
    for (const pid of nodes) {
      const a = summarize(snap0.get(pid)!);
      const b = summarize(snap1.get(pid)!);
      const per = (x: number): number => Math.round(x / r.ok);
      summary[`${roleOf(pid)}HeapPerUser`] = per(b.heap - a.heap);
      lines.push(`\n## ${roleOf(pid)}: V8 heap (live objects) +${per(b.heap - a.heap)} B/user`);
      const rows = [...b.groups].map(([k, g]) => {
        const g0 = a.groups.get(k) ?? { count: 0, bytes: 0 };
        return { k, count: (g.count - g0.count) / r.ok, bytes: (g.bytes - g0.bytes) / r.ok };
      }).sort((x, y) => y.bytes - x.bytes).slice(0, top);
      lines.push('| bytes/user | objects/user | V8 type and name |\n|---:|---:|---|');
      for (const x of rows) lines.push(`| ${x.bytes.toFixed(0)} | ${x.count.toFixed(2)} | ${x.k} |`);
    }
    console.log(lines.join('\n'));
    await ctx.logoutAll();
    return { summary, details: { breakdown: lines }, svg: '<svg xmlns="http://www.w3.org/2000/svg"/>' };
  }, o);
} finally {
  await peer.stop();
  if (!values.keep) (await import('node:fs')).rmSync(started.dir, { recursive: true, force: true });
}
process.exit();
