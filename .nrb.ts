// Same "no rules" actor run, against whichever tree PARLEY_ROOT points at.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack } from 'msgpackr';
const root = process.env.PARLEY_ROOT!;
const { HostedDomains } = await import(`${root}/libs/accounts/hosts.ts`);
const { envelope } = await import(`${root}/libs/bus/envelope.ts`);
const { loadConfig } = await import(`${root}/libs/config/index.ts`);
const { setLogLevel } = await import(`${root}/libs/log/index.ts`);
const { openLmdbStore } = await import(`${root}/libs/store/lmdb-store.ts`);
const { encodeItem, emptyItem } = await import(`${root}/services/session/im/roster.ts`);
const { ModuleRegistry } = await import(`${root}/services/session/module.ts`);
const { UserActor } = await import(`${root}/services/session/user-actor.ts`);
const { modules } = await import(`${root}/services/session/modules/index.ts`);
setLogLevel('error');
const N = 200_000;
const dir = mkdtempSync(join(tmpdir(), 'nrb-'));
const store = await openLmdbStore(dir);
const runs: number[] = [];
for (let k = 0; k < 5; k++) {
  const bare = `b${k}@localhost`;
  const session = (sid: string) => pack([sid, 'c2s-1', 0, true, Date.now(), '<presence/>', [], true]);
  await store.batch(bare).hset('account', 'creds', pack({})).hset('sessions', 'phone', session('s1')).hset('sessions', 'laptop', session('s2'))
    .hset('roster', 'friend@example.org', encodeItem({ ...emptyItem(), subscription: 'both', inRoster: true, groups: ['Friends'] })).exec();
  const config = loadConfig(undefined, {}, { session: { maxMailbox: 10_000_000 } });
  let delivered = 0;
  const router = { deliver: () => { delivered++; }, control: () => {}, toActor: () => {}, fanout: () => {} };
  const registry = new ModuleRegistry(modules, config);
  const hosts = new HostedDomains(['localhost']);
  const svc = { config, store, router, hosts, modules: registry, context: { config, store, hosts, disco: registry, features: [] }, c2sAlive: () => true, newResource: () => 'r' };
  const actor = new UserActor(bare, 0, svc);
  const msg = (i: number) => envelope({ kind: 'message', dir: 'in', from: 'friend@example.org/desk', to: bare, type: 'chat', id: `m${i}`, xml: `<message><body>hello ${i}</body></message>` });
  const batch = Array.from({ length: N }, (_, i) => msg(i));
  for (let i = 0; i < 20_000; i++) actor.push(msg(i));
  await actor.idle();
  delivered = 0;
  const t0 = process.hrtime.bigint();
  for (const e of batch) actor.push(e);
  await actor.idle();
  runs.push(N / (Number(process.hrtime.bigint() - t0) / 1e9));
  if (delivered < N) throw new Error('lost');
}
await store.close();
rmSync(dir, { recursive: true, force: true });
runs.sort((a, b) => a - b);
console.log(`${root}: median ${Math.round(runs[2]).toLocaleString()} msg/s, ${(1e9 / runs[2]).toFixed(0)} ns/msg`);
