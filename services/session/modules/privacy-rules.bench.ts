// Micro-benchmark of the privacy/blocking enforcement path:
//   node --import tsx services/session/modules/privacy-rules.bench.ts [messages]
// 1. one rule check (ns) by rule-set size: the cost must stay flat;
// 2. an account's actor taking chat messages to its bare JID (the whole
//    inbound path: filter, priority routing, hand-off to the c2s): no rules
//    (not filtered at all), a 10,000-JID block list, a 1,000-item default
//    list, and a 1,000-item active list on one of two sessions (checked per
//    session).
import { MemoryWindowCounters } from '../../../libs/cluster/window-counters.ts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pack } from 'msgpackr';
import { HostedDomains } from '../../../libs/accounts/hosts.ts';
import { envelope, type Envelope } from '../../../libs/bus/envelope.ts';
import { loadConfig } from '../../../libs/config/index.ts';
import { setLogLevel } from '../../../libs/log/index.ts';
import { openLmdbStore } from '../../../libs/store/lmdb-store.ts';
import type { Store } from '../../../libs/store/store.ts';
import { encodeItem, emptyItem } from '../im/roster.ts';
import { ModuleRegistry, type Contact } from '../module.ts';
import type { Router } from '../router.ts';
import type { SessionServices } from '../services.ts';
import { UserActor } from '../user-actor.ts';
import { modules } from './index.ts';
import { CompiledList, encodeItems, MESSAGE, PRESENCE_IN, PrivacyRules, type PrivacyItem } from './privacy-rules.ts';

const N = Number(process.argv[2] ?? 200_000);
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
setLogLevel('error');

// ---------------------------------------------------------------- 1. one check

const roster = { contact: (b: string): Contact | undefined => (b === 'friend@example.org' ? { subscription: 'both', groups: ['Friends', 'Work'] } : undefined) };
const jidItems = (n: number): PrivacyItem[] => Array.from({ length: n }, (_, i) => ({ type: 'jid', value: `noise${i}@example.net`, allow: false, order: i + 1, mask: MESSAGE }));

function nsPerCheck(rules: PrivacyRules, peer: string, resource = ''): number {
  const iterations = 2_000_000;
  let sink = 0;
  for (let i = 0; i < 100_000; i++) sink += rules.decide(MESSAGE, peer, resource, roster).length; // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += rules.decide(i & 1 ? MESSAGE : PRESENCE_IN, peer, resource, roster).length;
  const ns = Number(process.hrtime.bigint() - t0) / iterations;
  if (sink === 0) throw new Error('unreachable');
  return ns;
}

function rulesWith(o: { blocked?: number; listItems?: number; group?: boolean }): PrivacyRules {
  const r = new PrivacyRules();
  for (let i = 0; i < (o.blocked ?? 0); i++) r.blockedForWrite().add(`spam${i}@example.org`);
  if (o.listItems !== undefined) {
    const items = jidItems(o.listItems);
    if (o.group) items.push({ type: 'group', value: 'Work', allow: false, order: 1_000_000, mask: MESSAGE });
    items.push({ type: 'jid', value: 'target@example.org', allow: false, order: 2_000_000, mask: MESSAGE });
    r.listsForWrite().set('big', new CompiledList(items));
    r.defaultList = 'big';
  }
  r.recount();
  return r;
}

if (process.env.PRIVACY_BENCH_SETUP === undefined) {
console.log(`node ${process.version}`);
console.log('1. one check (ns), peer not matched / matched by the last item:');
for (const [label, rules] of [
  ['block list of 10', rulesWith({ blocked: 10 })],
  ['block list of 10,000', rulesWith({ blocked: 10_000 })],
  ['privacy list of 10 items', rulesWith({ listItems: 10 })],
  ['privacy list of 1,000 items', rulesWith({ listItems: 1000 })],
  ['privacy list of 10,000 items', rulesWith({ listItems: 10_000 })],
  ['1,000 items + a group item', rulesWith({ listItems: 1000, group: true })],
] as const) {
  const miss = nsPerCheck(rules, 'friend@example.org/phone');
  const hit = nsPerCheck(rules, rules.blocked.size ? 'spam7@example.org/x' : 'target@example.org/x');
  console.log(`   ${label.padEnd(30)} ${miss.toFixed(0).padStart(5)} ns   ${hit.toFixed(0).padStart(5)} ns`);
}
}

// ---------------------------------------------------------------- 2. the actor's inbound path

interface Setup { label: string; blocked?: number; listItems?: number; activeOnOne?: boolean }

async function actorRun(store: Store, s: Setup, idx: number): Promise<number> {
  const bare = `bench${idx}@localhost`;
  const b = store.batch(bare).hset('account', 'creds', pack({}));
  const session = (sid: string) => pack([sid, 'c2s-1', 0, true, Date.now(), '<presence/>', [], true]);
  b.hset('sessions', 'phone', session('s1')).hset('sessions', 'laptop', session('s2'));
  b.hset('roster', 'friend@example.org', encodeItem({ ...emptyItem(), subscription: 'both', inRoster: true, groups: ['Friends'] }));
  for (let i = 0; i < (s.blocked ?? 0); i++) b.hset('blocklist', `spam${i}@example.org`, new Uint8Array(0));
  if (s.listItems !== undefined) {
    b.hset('privacy', 'list:big', encodeItems([...jidItems(s.listItems - 1), { type: 'jid', value: 'target@example.org', allow: false, order: 1e6, mask: MESSAGE }]));
    if (s.activeOnOne) b.hset('privacy', 'active:phone', pack(['s1', 'big']));
    else b.hset('privacy', 'default', pack('big'));
  }
  await b.exec();

  const config = loadConfig(undefined, {}, { session: { maxMailbox: 10_000_000 } });
  let delivered = 0;
  const router = { deliver: () => { delivered++; }, control: () => {}, toActor: () => {}, fanout: () => {}, toRemote: () => false };
  const registry = new ModuleRegistry(modules, config);
  const hosts = new HostedDomains(['localhost']);
  // Only what the inbound message path touches; the rest of SessionServices is not reached.
  const svc = {
    config, store, router: router as unknown as Router, hosts, modules: registry,
    context: { config, store, hosts, disco: registry, rates: new MemoryWindowCounters() }, c2sAlive: () => true, newResource: () => 'r',
  } as unknown as SessionServices;
  const actor = new UserActor(bare, 0, svc);
  const msg = (i: number): Envelope => envelope({ kind: 'message', dir: 'in', from: 'friend@example.org/desk', to: bare, type: 'chat', id: `m${i}`,
    xml: `<message from="friend@example.org/desk" to="${bare}" type="chat" id="m${i}"><body>hello ${i}</body></message>` });
  const batch = Array.from({ length: N }, (_, i) => msg(i));
  for (let i = 0; i < 20_000; i++) actor.push(msg(i)); // activation + warm-up
  await actor.idle();
  delivered = 0;
  const t0 = process.hrtime.bigint();
  for (const e of batch) actor.push(e);
  await actor.idle();
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (delivered !== 2 * N) throw new Error(`${s.label}: ${delivered} deliveries for ${N} messages to two sessions`);
  return N / secs;
}

const setups: Setup[] = [
  { label: 'no rules (not filtered)' },
  { label: 'block list of 10,000', blocked: 10_000 },
  { label: 'default list of 1,000 items', listItems: 1000 },
  { label: 'active list of 1,000 on one session', listItems: 1000, activeOnOne: true },
];

/** One setup in a fresh process: earlier setups would otherwise leave their JIT state behind. */
async function oneSetup(i: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'parley-privacy-bench-'));
  const store = await openLmdbStore(dir);
  try {
    const runs: number[] = [];
    for (let k = 0; k < 5; k++) runs.push(await actorRun(store, setups[i], k));
    runs.sort((a, b) => a - b);
    process.stdout.write(JSON.stringify({ median: runs[2] }));
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env.PRIVACY_BENCH_SETUP !== undefined) {
  await oneSetup(Number(process.env.PRIVACY_BENCH_SETUP));
} else {
  console.log(`2. an actor taking ${fmt(N)} chat messages to its bare JID, two sessions (median of 5, one process per row):`);
  for (let i = 0; i < setups.length; i++) {
    const out = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), String(N)], { env: { ...process.env, PRIVACY_BENCH_SETUP: String(i) } });
    const { median } = JSON.parse(out.toString()) as { median: number };
    console.log(`   ${setups[i].label.padEnd(38)} ${fmt(median).padStart(10)} msg/s  ${(1e9 / median).toFixed(0).padStart(6)} ns/msg`);
  }
}
