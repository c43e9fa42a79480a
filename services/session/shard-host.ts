// Which shards this process serves, and the handoff that moves a shard
// between processes without losing, duplicating or reordering a stanza.
//
// Handoff (new owner N, old owner O, shard s):
//  1. N subscribes to the shard's subject, buffers what arrives, flushes so the
//     NATS server has registered the subscription, then sends `claim s` to O.
//  2. O reads the claim on the same connection as the shard's traffic, so
//     everything routed to O before N's subscription existed precedes it. O
//     unsubscribes, lets the shard's actors finish their mailboxes, and answers
//     `released s` with the last sequence number it processed per publisher.
//  3. N drops buffered envelopes at or below those marks (O handled them) and
//     processes the rest in order, then goes live.
// If O is dead (left the membership) or silent past the handoff timeout, N
// goes live as soon as it holds the shard's lease; state is rebuilt from the
// store by the actors.
//
// Membership decides who should own a shard; the lease (libs/cluster/lease.ts)
// decides who may. A shard goes live here only once its lease is granted, and
// stops the moment the lease can no longer be trusted (not renewed in time: a
// pause, a Redis outage, a partition): its subscription ends, its actors are
// dropped, and envelopes that arrive meanwhile are not processed. O releases
// the lease when it hands a shard over, so N need not wait for it to expire;
// a dead or paused O's lease expires after the TTL.
import type { Bus, Subscription, Subjects } from '../../libs/bus/bus.ts';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import { ownerOf } from '../../libs/cluster/shards.ts';
import { LeaseKeeper, type Clock, type LeaseTable } from '../../libs/cluster/lease.ts';
import type { Membership } from '../../libs/cluster/membership.ts';
import { logger } from '../../libs/log/index.ts';

/** The subjects one shard space uses: bare JIDs over session processes, or remote domains over s2s processes. */
export type ShardSubjects = Pick<Subjects, 'shard' | 'control'>;

const log = logger('shards');

interface ShardState {
  sub: Subscription;
  live: boolean;
  buffer: Envelope[];
  /** Publisher → last sequence the previous owner processed. */
  skip: Map<string, number> | undefined;
  /** Publisher → last sequence processed here (handed over on release). */
  seen: Map<string, number>;
  timer: NodeJS.Timeout | undefined;
  /** Claims that arrived while this shard was still being acquired. */
  deferredClaims: string[];
  /** Waiting for the lease (the handoff is done or given up): the skip marks to go live with. */
  wantLease: boolean;
  pendingSkip: Map<string, number> | undefined;
  leaseInFlight: boolean;
  /** When this process started waiting for the lease (a warning if it takes long). */
  since: number;
  /** Live, but its lease lapsed: envelopes wait in `buffer` until a renewal says whether the shard is still ours. */
  suspended: boolean;
  /**
   * The sequence number of the last envelope this process sent the shard over the bus that has not come back yet
   * (0: none). Until it has, envelopes from here go by the bus too: one handed over at once would overtake it.
   */
  onBus: number;
  onBusSince: number;
}

export interface ShardHostOptions {
  shards: number;
  handoffTimeoutMs: number;
  /** Process one envelope of a shard (enqueue in its actor's mailbox). */
  deliver(shard: number, env: Envelope): void;
  /** Resolves when every actor of the shard has finished and been dropped. */
  drain(shard: number): Promise<void>;
  /** The shard is now served here (after its buffered envelopes): wake what must not wait for an envelope (timers). */
  live?(shard: number): void;
  /** The shard's lease is gone: drop its actors at once, without finishing their mailboxes. */
  drop(shard: number): void;
  /** The shard's lapsed lease is ours again with the same token: its actors go on where they paused. */
  resume?(shard: number): void;
  /** Where the leases live, and how long one lasts (Infinity: one process alone, leases never expire). */
  leases: LeaseTable;
  leaseTtlMs: number;
  /** How often held leases are renewed (and waiting shards ask again). */
  renewMs: number;
  clock?: Clock;
  /** Called with each lease lost, and each one that lapsed (the metrics). */
  onLeaseLost?(shard: number, reason: 'expired' | 'taken'): void;
  onLeaseLapsed?(shard: number): void;
  /** Envelopes a shard keeps while its lease has lapsed; beyond it the shard is given up (its traffic is the next owner's). */
  maxSuspendedBuffer: number;
}

/** Events counted and logged once per burst (200 ms), not one line each. */
class BurstLog {
  private n = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly write: (msg: string, fields?: Record<string, unknown>) => void, private readonly msg: string, private readonly event?: string) {}
  count(fields: Record<string, unknown> = {}): void {
    this.n++;
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.write(this.msg, { ...(this.event ? { event: this.event } : {}), count: this.n, ...fields });
      this.n = 0;
      this.timer = undefined;
    }, 200);
  }
}

export class ShardHost {
  private readonly states = new Map<number, ShardState>();
  /** Best knowledge of who holds each shard (or is about to). */
  private holder: string[] = [];
  private members: readonly string[] = [];
  private releasing = new Set<number>();
  // Shards move by the hundred at once: one line per burst, with a count.
  private readonly releasedLog = new BurstLog(log.info, 'released shards');
  private readonly lapsedLog = new BurstLog(log.warn, 'shard leases lapsed (not renewed in time); holding their traffic until renewed', 'leases-lapsed');
  private readonly lostLog = new BurstLog(log.warn, 'shard leases lost; stopped serving those shards', 'leases-lost');
  private ticker: NodeJS.Timeout | undefined;
  readonly leases: LeaseKeeper;

  constructor(
    private readonly bus: Bus,
    private readonly subjects: ShardSubjects,
    private readonly membership: Membership,
    private readonly opts: ShardHostOptions,
  ) {
    this.leases = new LeaseKeeper(opts.leases, membership.self, {
      ttlMs: opts.leaseTtlMs,
      renewMs: opts.renewMs,
      clock: opts.clock,
      onLapsed: (shard) => this.suspend(shard),
      onRegained: (shard, fresh) => this.regained(shard, fresh),
      onLost: (shard, reason) => this.stepDown(shard, reason),
      onError: (e) => log.warn('renewing shard leases failed', { error: e }),
    });
  }

  get self(): string { return this.membership.self; }

  ownedCount(): number {
    let n = 0;
    for (const st of this.states.values()) if (st.live) n++;
    return n;
  }

  /** The process that serves a shard, as far as this one knows. */
  holderOf(shard: number): string {
    return this.states.get(shard)?.live ? this.self : this.holder[shard] || this.self;
  }

  /** Served here, under a lease this process can still trust. */
  owns(shard: number): boolean {
    return this.states.get(shard)?.live === true && this.leases.valid(shard);
  }

  /**
   * Whether the shard's actors may go on with their mailboxes: it is served here under a trusted lease, or being
   * handed over (it finishes what it has before answering `released`).
   */
  mayAct(shard: number): boolean {
    if (!this.leases.valid(shard)) return false;
    const st = this.states.get(shard);
    return st ? st.live && !st.suspended : this.releasing.has(shard);
  }

  /**
   * An envelope this process sends to a shard it serves: handed to the shard's actors at once, as the embedded bus
   * does, instead of a round trip through the bus server (two messages, their encoding and their system calls).
   * False (send it by the bus) unless the shard is live under a trusted lease and nothing this process sent it by
   * the bus is still on its way: per-sender order holds across the two paths.
   */
  deliverLocally(shard: number, env: Envelope): boolean {
    const st = this.states.get(shard);
    if (st === undefined || !st.live || st.suspended || st.onBus !== 0 || !this.leases.valid(shard)) return false;
    this.opts.deliver(shard, env);
    return true;
  }

  /** This process sent the shard envelope `seq` by the bus: later ones take the bus too until it is back. */
  sentOnBus(shard: number, seq: number): void {
    const st = this.states.get(shard);
    // Not subscribed: it goes to the shard's holder, which the handoff orders. In one process the bus delivered it already.
    if (st === undefined || this.bus.kind === 'inprocess') return;
    if (st.onBus === 0) st.onBusSince = Date.now();
    st.onBus = seq;
  }

  /** The fencing token this process's writes for the shard carry (its current or last lease). */
  token(shard: number): number | undefined {
    return this.leases.token(shard);
  }

  start(): void {
    this.leases.start();
    this.ticker = setInterval(() => this.tick(), this.opts.renewMs);
    this.ticker.unref();
    this.bus.subscribe(this.subjects.control(this.self), (env) => this.onControl(env));
    this.membership.onChange((m) => this.rebalance(m));
    const current = this.membership.members();
    // Before our first view, the shards belong to whoever owned them without us.
    const others = current.filter((m) => m !== this.self);
    this.holder = Array.from({ length: this.opts.shards }, (_, s) => ownerOf(s, others) ?? '');
    this.rebalance(current);
  }

  private rebalance(members: readonly string[]): void {
    this.members = members;
    if (!members.includes(this.self)) return; // not joined yet (or partitioned): keep what we serve
    let acquired = 0;
    for (let s = 0; s < this.opts.shards; s++) {
      const owner = ownerOf(s, members) ?? '';
      const st = this.states.get(s);
      if (owner === this.self) {
        if (!st) {
          acquired++;
          this.acquire(s);
        }
      } else if (!st) {
        this.holder[s] = owner;
      } else if (!st.live) {
        // Still acquiring a shard that is no longer ours: give it up (its new owner has the traffic too).
        this.abandon(s, st, owner);
      }
      // A shard we hold but no longer own stays served until its new owner claims it.
    }
    if (acquired) log.info('membership changed; acquiring shards', { members: members.join(','), acquiring: acquired });
    // A handoff waiting on a process that just died completes now (once its lease has expired).
    const alive = this.membership.alive();
    for (const [s, st] of this.states) {
      if (!st.live && !st.wantLease && !alive.includes(this.holder[s])) this.takeLease(s, undefined);
    }
  }

  private abandon(s: number, st: ShardState, owner: string): void {
    st.sub.unsubscribe();
    if (st.timer) clearTimeout(st.timer);
    this.states.delete(s);
    this.holder[s] = owner;
    for (const by of st.deferredClaims.splice(0)) this.handOver(s, by);
  }

  /** Shards waiting for a lease ask again; shards dropped after a lost lease are taken back if still ours. */
  private tick(): void {
    const now = Date.now();
    for (const [s, st] of this.states) {
      // The bus lost it (a reconnection): nothing can overtake it any more.
      if (st.onBus !== 0 && now - st.onBusSince > this.opts.handoffTimeoutMs) st.onBus = 0;
      if (st.live || !st.wantLease) continue;
      if (now - st.since > this.opts.handoffTimeoutMs) {
        log.warn('still waiting for a shard lease', { shard: s, holder: this.holder[s], seconds: Math.round((now - st.since) / 1000) });
        st.since = now;
      }
      this.takeLease(s, st.pendingSkip);
    }
    this.rebalance(this.members);
  }

  private acquire(s: number): void {
    const st: ShardState = {
      sub: undefined as unknown as Subscription, live: false, buffer: [], skip: undefined, seen: new Map(), timer: undefined, deferredClaims: [],
      wantLease: false, pendingSkip: undefined, leaseInFlight: false, since: Date.now(), suspended: false, onBus: 0, onBusSince: 0,
    };
    this.states.set(s, st);
    st.sub = this.bus.subscribe(this.subjects.shard(s), (env) => this.onShardEnvelope(s, st, env));
    const prev = this.holder[s];
    const mustClaim = prev !== '' && prev !== this.self && this.membership.alive().includes(prev);
    if (!mustClaim) {
      // Nobody alive holds it: subscription registration order doesn't matter.
      this.takeLease(s, undefined);
      return;
    }
    const claim = (): void => {
      if (this.states.get(s) !== st || st.live) return;
      this.bus.publish(this.subjects.control(prev), envelope({ kind: 'ctl', dir: 'in', op: 'claim', data: { shard: s, by: this.self } }));
      st.timer = setTimeout(() => {
        log.warn('handoff timed out; taking the shard once its lease is free', { shard: s, from: prev });
        this.takeLease(s, undefined);
      }, this.opts.handoffTimeoutMs);
    };
    this.bus.flush().then(claim, (e: unknown) => {
      // The bus is down: claim anyway (it goes out once the connection is back); the handoff timeout still bounds the wait.
      log.warn('flushing the bus before a shard claim failed', { shard: s, error: e });
      claim();
    }).catch((e: unknown) => log.error('claiming a shard failed', { shard: s, from: prev, error: e }));
  }

  /** Go live once the lease is granted; until then keep buffering (the tick asks again). */
  private takeLease(s: number, skip: Map<string, number> | undefined): void {
    const st = this.states.get(s);
    if (!st || st.live) return;
    if (!st.wantLease) {
      st.wantLease = true;
      st.pendingSkip = skip;
      st.since = Date.now();
      if (st.timer) clearTimeout(st.timer);
      st.timer = undefined;
    }
    if (st.leaseInFlight) return;
    st.leaseInFlight = true;
    this.leases.acquire(s).then((token) => {
      st.leaseInFlight = false;
      if (token === undefined) return;
      if (this.states.get(s) !== st) {
        // Given away while the grant was on its way: hand the lease back.
        void this.leases.release(s);
        return;
      }
      this.goLive(s, st.pendingSkip);
    }).catch((e: unknown) => log.error('going live with a shard failed', { shard: s, error: e }));
  }

  private onShardEnvelope(s: number, st: ShardState, env: Envelope): void {
    if (st.onBus !== 0 && env.seq >= st.onBus && env.origin === this.bus.origin) st.onBus = 0;
    if (!st.live) {
      st.buffer.push(env);
      return;
    }
    // Checked per envelope: after a pause, what waited in the socket is read before any timer can fire.
    if (st.suspended || !this.leases.valid(s)) {
      if (!st.suspended) this.leases.expire(); // lapses the lease: suspend() runs
      if (!st.suspended || st.buffer.length >= this.opts.maxSuspendedBuffer) return this.stepDown(s, 'expired');
      st.buffer.push(env);
      return;
    }
    if (st.skip !== undefined) {
      const mark = st.skip.get(env.origin);
      if (mark !== undefined && env.seq <= mark) return;
    }
    st.seen.set(env.origin, env.seq);
    this.opts.deliver(s, env);
  }

  private goLive(s: number, skip: Map<string, number> | undefined): void {
    const st = this.states.get(s);
    if (!st || st.live) return;
    if (st.timer) clearTimeout(st.timer);
    st.timer = undefined;
    st.wantLease = false;
    st.live = true;
    st.skip = skip;
    this.holder[s] = this.self;
    const buffered = st.buffer;
    st.buffer = [];
    for (const env of buffered) this.onShardEnvelope(s, st, env);
    for (const by of st.deferredClaims.splice(0)) this.handOver(s, by);
    this.opts.live?.(s);
  }

  private onControl(env: Envelope): void {
    if (env.op === 'claim') {
      const { shard, by } = env.data as { shard: number; by: string };
      const st = this.states.get(shard);
      if (st && !st.live) st.deferredClaims.push(by);
      else this.handOver(shard, by);
    } else if (env.op === 'released') {
      const { shard, marks } = env.data as { shard: number; marks: Record<string, number> };
      const st = this.states.get(shard);
      if (st && !st.live) this.takeLease(shard, new Map(Object.entries(marks)));
    }
  }

  /** release(), its failure logged: the claimant takes the shard after its handoff timeout anyway. */
  private handOver(s: number, to: string): void {
    this.release(s, to).catch((e: unknown) => log.error('handing a shard over failed', { shard: s, to, error: e }));
  }

  /** Give a shard to the process that claimed it. */
  private async release(s: number, to: string): Promise<void> {
    const st = this.states.get(s);
    this.holder[s] = to;
    let marks: Record<string, number> = {};
    if (st && !this.releasing.has(s)) {
      this.releasing.add(s);
      st.sub.unsubscribe();
      this.states.delete(s);
      try {
        await this.opts.drain(s);
      } finally {
        this.releasing.delete(s);
      }
      marks = Object.fromEntries(st.seen);
      await this.leases.release(s);
    }
    this.bus.publish(this.subjects.control(to), envelope({ kind: 'ctl', dir: 'in', op: 'released', data: { shard: s, marks } }));
    this.releasedLog.count();
  }

  /**
   * The lease lapsed (not renewed in time: this process stalled, or the lease
   * table was slow or out of reach): act no more for the shard, and keep its
   * traffic, until a renewal says whether it is still ours. Its actors pause
   * between envelopes (their gate asks `owns`).
   */
  private suspend(s: number): void {
    const st = this.states.get(s);
    if (!st || !st.live || st.suspended) return;
    st.suspended = true;
    this.opts.onLeaseLapsed?.(s);
    this.lapsedLog.count();
  }

  /**
   * A lapsed lease is ours again. With the same token nobody can have held it
   * meanwhile: the actors go on. With a new token another process may have
   * acted meanwhile: the actors are dropped and rebuilt from the store. Either
   * way what arrived meanwhile is processed now, in order.
   */
  private regained(s: number, fresh: boolean): void {
    const st = this.states.get(s);
    if (!st || !st.live) return;
    if (fresh) this.opts.drop(s);
    st.suspended = false;
    const buffered = st.buffer;
    st.buffer = [];
    for (const env of buffered) this.onShardEnvelope(s, st, env);
    if (!fresh) this.opts.resume?.(s);
  }

  /**
   * The lease is gone: stop serving the shard at once. Its actors are dropped
   * unfinished (the next owner rebuilds them from the store; their late writes
   * carry an old fencing token and are refused). If the shard is still ours by
   * the membership, the next tick takes it back through a handoff.
   */
  private stepDown(s: number, reason: 'expired' | 'taken'): void {
    const st = this.states.get(s);
    // Lost while being handed over: its paused actors would never finish; the next owner has what they held.
    if (!st && this.releasing.has(s)) this.opts.drop(s);
    if (!st || !st.live) return;
    st.sub.unsubscribe();
    if (st.timer) clearTimeout(st.timer);
    this.states.delete(s);
    this.opts.drop(s);
    this.holder[s] = ownerOf(s, this.members.filter((m) => m !== this.self)) ?? '';
    this.opts.onLeaseLost?.(s, reason);
    this.lostLog.count({ reason, tokenOfLast: this.leases.token(s) ?? 0 });
  }

  /**
   * Graceful leave: announce it and keep serving until every shard has been
   * claimed (so each one moves by handoff, not by failover), then go.
   */
  async leave(timeoutMs: number): Promise<void> {
    await this.membership.markLeaving();
    const deadline = Date.now() + timeoutMs;
    while (this.states.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (this.states.size > 0) log.warn('left with shards unclaimed', { shards: this.states.size });
    await this.membership.stop();
  }

  /** Stop serving; the leases still held are handed back so nobody waits for them to expire. */
  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    for (const st of this.states.values()) {
      st.sub.unsubscribe();
      if (st.timer) clearTimeout(st.timer);
    }
    this.states.clear();
    await this.leases.stop(true);
  }
}
