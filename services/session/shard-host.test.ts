// Two real ShardHosts on one bus and one lease table: a host that stops (a
// long GC pause, SIGSTOP) and wakes with a stale view of the membership never
// serves a shard beside the host that took it over, and takes it back by a
// handoff that loses nothing.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Bus, Subscription } from '../../libs/bus/bus.ts';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import { MemoryLeaseTable, monotonic, type Clock } from '../../libs/cluster/lease.ts';
import type { Membership } from '../../libs/cluster/membership.ts';
import { ShardHost } from './shard-host.ts';

const SHARDS = 16;
const TTL = 300;
const subjects = { shard: (n: number) => `shard.${n}`, control: (node: string) => `ctl.${node}` };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One subject space shared by several processes' buses. */
class Hub {
  readonly subs = new Map<string, Set<(env: Envelope) => void>>();
}

/** A process's bus on the hub; while paused, what arrives waits in its "socket" and is read first on waking. */
class TestBus implements Bus {
  readonly kind: 'inprocess' | 'nats';
  private seq = 0;
  get published(): number { return this.seq; }
  paused = false;
  private readonly inbox: (() => void)[] = [];
  /** `remote`: deliveries arrive this many ms later, as over NATS (and the host may hand its own envelopes over itself). */
  constructor(private readonly hub: Hub, readonly origin: string, private readonly remote = 0) {
    this.kind = remote ? 'nats' : 'inprocess';
  }
  publish(subject: string, env: Envelope): void {
    const e = { ...env, origin: this.origin, seq: ++this.seq };
    env.seq = e.seq;
    const send = () => {
      const handlers = this.hub.subs.get(subject);
      if (handlers) for (const h of [...handlers]) h(e);
    };
    if (this.remote) setTimeout(send, this.remote);
    else send();
  }
  subscribe(subject: string, handler: (env: Envelope) => void): Subscription {
    const wrapped = (env: Envelope) => {
      if (this.paused) this.inbox.push(() => handler(env));
      else handler(env);
    };
    let set = this.hub.subs.get(subject);
    if (!set) this.hub.subs.set(subject, (set = new Set()));
    set.add(wrapped);
    return { unsubscribe: () => set.delete(wrapped) };
  }
  wake(): void {
    this.paused = false;
    for (const f of this.inbox.splice(0)) f();
  }
  async flush(): Promise<void> {}
  healthy(): boolean { return true; }
  async rtt(): Promise<number> { return 0; }
  async close(): Promise<void> {}
}

class TestMembership implements Membership {
  private view: string[];
  private readonly listeners: ((m: readonly string[], prev: readonly string[]) => void)[] = [];
  constructor(readonly self: string, initial: string[]) { this.view = [...initial].sort(); }
  members(): readonly string[] { return this.view; }
  alive(): readonly string[] { return this.view; }
  onChange(cb: (m: readonly string[], prev: readonly string[]) => void): void { this.listeners.push(cb); }
  set(m: string[]): void {
    const prev = this.view;
    this.view = [...m].sort();
    for (const l of this.listeners) l(this.view, prev);
  }
  async start(): Promise<void> {}
  async markLeaving(): Promise<void> {}
  async stop(): Promise<void> {}
}

/** A clock that stands still while its process is paused, then jumps. */
class PausableClock implements Clock {
  private frozenAt: number | undefined;
  private offset = 0;
  now(): number { return this.frozenAt ?? monotonic.now() + this.offset; }
  freeze(): void { this.frozenAt = this.now(); }
  thaw(): void {
    this.offset = 0;
    this.frozenAt = undefined;
  }
}

interface Proc {
  name: string;
  bus: TestBus;
  membership: TestMembership;
  host: ShardHost;
  clock: PausableClock;
  table: { paused: boolean };
  /** Every envelope this process's actors got, with the token it acted under. */
  handled: { id: string; shard: number; token: number }[];
  /** Times its actors were dropped (a lease lost, or regained with a new token). */
  dropped: number;
}

function proc(hub: Hub, table: MemoryLeaseTable, name: string, members: string[], ttl = TTL, remote = 0): Proc {
  const bus = new TestBus(hub, name, remote);
  const membership = new TestMembership(name, members);
  const clock = new PausableClock();
  const gate = { paused: false };
  // While paused the process sends nothing to the table either.
  const pausable = {
    acquire: async (o: string, s: readonly number[], ttl: number) => {
      while (gate.paused) await sleep(5);
      return table.acquire(o, s, ttl);
    },
    release: (o: string, s: readonly number[]) => table.release(o, s),
  };
  const handled: Proc['handled'] = [];
  const p: Proc = { name, bus, membership, clock, table: gate, handled, dropped: 0, host: undefined as unknown as ShardHost };
  p.host = new ShardHost(bus, subjects, membership, {
    shards: SHARDS, handoffTimeoutMs: 2000,
    deliver: (shard, env) => handled.push({ id: env.id, shard, token: p.host.token(shard)! }),
    drain: async () => {},
    drop: () => { p.dropped++; },
    leases: pausable, leaseTtlMs: ttl, renewMs: 50, clock, maxSuspendedBuffer: 100_000,
  });
  return p;
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('shard host with leases', () => {
  test('a paused host never serves beside the host that took its shards; no envelope is handled twice', async () => {
    const hub = new Hub();
    const table = new MemoryLeaseTable();
    const a = proc(hub, table, 'a', ['a', 'b']);
    const b = proc(hub, table, 'b', ['a', 'b']);
    a.host.start();
    b.host.start();
    const all = () => Array.from({ length: SHARDS }, (_, s) => s);
    await until('every shard served once', () => all().every((s) => a.host.owns(s) !== b.host.owns(s)));
    const aShards = all().filter((s) => a.host.owns(s));
    assert.ok(aShards.length > 0 && aShards.length < SHARDS);

    let n = 0;
    let doubled = 0;
    const publisher = setInterval(() => {
      for (let s = 0; s < SHARDS; s++) b.bus.publish(subjects.shard(s), envelope({ kind: 'message', dir: 'in', id: `m${n++}` }));
      // A paused process does nothing; what counts is what it believes once it runs.
      if (!a.bus.paused) for (let s = 0; s < SHARDS; s++) if (a.host.owns(s) && b.host.owns(s)) doubled++;
    }, 5);

    // a stops: no timer, no I/O, no renewal; its clock stands still.
    a.bus.paused = true;
    a.table.paused = true;
    a.clock.freeze();
    // b's membership drops a after its TTL; b waits for the leases to expire on the table, then serves them.
    await sleep(TTL);
    b.membership.set(['b']);
    await until('b serves every shard', () => all().every((s) => b.host.owns(s)));
    const takenAt = n;

    // a wakes, its view of the membership unchanged: what waited in its socket is read before any timer.
    a.clock.thaw();
    a.table.paused = false;
    a.bus.wake();
    for (const s of aShards) assert.equal(a.host.owns(s), false, `a must not serve shard ${s} after waking`);
    // a rejoins: it takes its shards back by handoff.
    b.membership.set(['a', 'b']);
    await until('a serves its shards again', () => aShards.every((s) => a.host.owns(s)));
    await sleep(100);
    clearInterval(publisher);

    assert.equal(doubled, 0, 'never two hosts serving one shard');
    const seen = new Map<string, string>();
    for (const p of [a, b]) {
      for (const h of p.handled) {
        assert.equal(seen.has(h.id), false, `${h.id} handled by ${seen.get(h.id)} and ${p.name}`);
        seen.set(h.id, p.name);
      }
    }
    // Every envelope after the takeover was handled (by exactly one host); the pause window itself is the bus's loss.
    for (let i = takenAt; i < n - SHARDS * 20; i++) assert.ok(seen.has(`m${i}`), `m${i} was lost after the takeover`);
    // Tokens only grow per shard, across hosts.
    const last = new Map<number, number>();
    for (const h of [...a.handled, ...b.handled].sort((x, y) => Number(x.id.slice(1)) - Number(y.id.slice(1)))) {
      assert.ok(h.token >= (last.get(h.shard) ?? 0), `shard ${h.shard}: token went back`);
      last.set(h.shard, h.token);
    }
    await a.host.stop();
    await b.host.stop();
  });

  test('a host whose renewals stall past ⅔ of the TTL holds its traffic, and goes on with it once a renewal finds the lease still its own', async () => {
    const hub = new Hub();
    const table = new MemoryLeaseTable();
    const a = proc(hub, table, 'a', ['a'], 600);
    a.host.start();
    const all = Array.from({ length: SHARDS }, (_, s) => s);
    await until('a serves every shard', () => all.every((s) => a.host.owns(s)));
    let n = 0;
    let sawSuspended = false;
    const publisher = setInterval(() => {
      for (let s = 0; s < SHARDS; s++) a.bus.publish(subjects.shard(s), envelope({ kind: 'message', dir: 'in', id: `m${n++}` }));
      if (!a.host.owns(0)) sawSuspended = true;
    }, 5);
    // The lease table stops answering (a slow Redis, a long stall): renewals hang, trust runs out at 400 ms.
    a.table.paused = true;
    await sleep(480);
    a.table.paused = false; // before the table's 600 ms: the lease is still a's
    await until('a serves again', () => all.every((s) => a.host.owns(s)), 3000);
    await sleep(50);
    clearInterval(publisher);
    await sleep(20);
    assert.equal(sawSuspended, true, 'a stopped acting while its lease could not be trusted');
    assert.equal(a.dropped, 0, 'the same token: nobody can have acted meanwhile, so the actors go on');
    const ids = a.handled.map((h) => Number(h.id.slice(1)));
    assert.equal(new Set(ids).size, ids.length, 'nothing handled twice');
    assert.deepEqual(Array.from({ length: n }, (_, i) => i).filter((i) => !ids.includes(i)), [], 'nothing that arrived meanwhile was dropped');
    for (let s = 0; s < SHARDS; s++) {
      const mine = a.handled.filter((h) => h.shard === s).map((h) => Number(h.id.slice(1)));
      assert.deepEqual(mine, [...mine].sort((x, y) => x - y), `shard ${s} in order`);
    }
    await a.host.stop();
  });

  test('a host cut off from the lease table stops serving within ⅔ of the TTL, and serves again when it returns', async () => {
    const hub = new Hub();
    const table = new MemoryLeaseTable();
    const a = proc(hub, table, 'a', ['a']);
    a.host.start();
    await until('a serves every shard', () => Array.from({ length: SHARDS }, (_, s) => s).every((s) => a.host.owns(s)));
    table.down = true;
    const t0 = Date.now();
    await until('a stops serving', () => !a.host.owns(0), TTL * 3);
    const stoppedAfter = Date.now() - t0;
    assert.ok(stoppedAfter <= TTL, `stopped after ${stoppedAfter} ms (lease ${TTL} ms)`);
    table.down = false;
    await until('a serves again', () => a.host.owns(0), 3000);
    await a.host.stop();
  });

  test('envelopes a host sends to shards it serves skip the bus, once what it sent them by the bus has come back: in order, once', async () => {
    const hub = new Hub();
    const table = new MemoryLeaseTable();
    const a = proc(hub, table, 'a', ['a'], 600, 100);
    a.host.start();
    const all = Array.from({ length: SHARDS }, (_, s) => s);
    await until('a serves every shard', () => all.every((s) => a.host.owns(s)));
    let n = 0;
    let local = 0;
    // What services/session/router.ts does for an actor's envelope.
    const send = (s: number) => {
      const env = envelope({ kind: 'message', dir: 'in', id: `m${n++}`, data: s });
      if (a.host.deliverLocally(s, env)) return void local++;
      a.bus.publish(subjects.shard(s), env);
      a.host.sentOnBus(s, env.seq);
    };
    const burst = () => { for (let s = 0; s < SHARDS; s++) for (let i = 0; i < 3; i++) send(s); };
    burst();
    assert.equal(local, n, 'served here and nothing on its way: handed over without the bus');
    // The lease lapses (the table stalls past ⅔ of the TTL): by the bus again, held until the renewal.
    a.table.paused = true;
    await until('the lease lapsed', () => !a.host.owns(0), 2000);
    const localAtLapse = local;
    burst();
    assert.equal(local, localAtLapse, 'nothing handed over while the lease cannot be trusted');
    a.table.paused = false;
    // Renewed while that burst is still on the bus: what follows must not overtake it.
    await until('a serves again', () => all.every((s) => a.host.owns(s)), 3000);
    const localAtRenewal = local;
    burst();
    assert.equal(local, localAtRenewal, 'by the bus while what it sent before is on its way');
    await sleep(250);
    burst();
    assert.ok(local > localAtRenewal, 'handed over again once the bus brought the last one back');
    await sleep(250);
    const ids = a.handled.map((h) => Number(h.id.slice(1)));
    assert.equal(new Set(ids).size, ids.length, 'nothing handled twice');
    assert.equal(ids.length, n, 'nothing lost');
    for (let s = 0; s < SHARDS; s++) {
      const mine = a.handled.filter((h) => h.shard === s).map((h) => Number(h.id.slice(1)));
      assert.deepEqual(mine, [...mine].sort((x, y) => x - y), `shard ${s}: in the order sent, across both paths`);
    }
    await a.host.stop();
  });
});
