// The live actors of this process, by bare JID: activated on first envelope,
// passivated when idle (their state is in the store), drained per shard when
// the shard moves to another process.
import type { Envelope } from '../../libs/bus/envelope.ts';
import { bareJid, hasLocalpart } from '../../libs/jid/split.ts';
import type { Actor } from './actor.ts';
import { ServerActor } from './server-actor.ts';
import type { SessionServices } from './services.ts';
import { UserActor } from './user-actor.ts';

/** An account's actor, one of a service domain's (a room, the MUC service), or a served domain's own; `occupants` where it is a room. */
type LiveActor = Actor & { readonly hasSessions: boolean; readonly occupants?: number };

export class ActorSystem {
  private readonly actors = new Map<string, LiveActor>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly svc: SessionServices) {}

  get size(): number {
    return this.actors.size;
  }

  /** The bare JID whose actor handles an envelope. */
  static keyOf(env: Envelope): string {
    if (env.kind === 'ctl') return env.to;
    return bareJid(env.dir === 'out' ? env.from : env.to);
  }

  deliver(shard: number, env: Envelope): void {
    const key = ActorSystem.keyOf(env);
    let a = this.actors.get(key);
    if (!a) {
      a = this.svc.services.actor(key, shard, this.svc)
        // A served domain itself: what other servers' entities ask the server (services/s2s inbound).
        ?? (!hasLocalpart(key) && this.svc.hosts.has(key) ? new ServerActor(key, shard, this.svc) : new UserActor(key, shard, this.svc));
      a.gate = this.svc.serving;
      this.actors.set(key, a);
    }
    a.push(env);
  }

  get(bare: string): LiveActor | undefined {
    return this.actors.get(bare);
  }

  /** Accounts with at least one session (a session waiting to be resumed counts), rooms left out. */
  accountsOnline(): number {
    let n = 0;
    for (const a of this.actors.values()) if (a instanceof UserActor && a.hasSessions) n++;
    return n;
  }

  /** Rooms live here (actors of rooms that exist) and their occupants, for the metrics. */
  rooms(): { rooms: number; occupants: number } {
    let rooms = 0;
    let occupants = 0;
    for (const a of this.actors.values()) {
      if (a.occupants === undefined) continue;
      rooms++;
      occupants += a.occupants;
    }
    return { rooms, occupants };
  }

  mailboxDepth(): number {
    let n = 0;
    for (const a of this.actors.values()) n += a.depth;
    return n;
  }

  async drainShard(shard: number): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const [k, a] of this.actors) {
      if (a.shard !== shard) continue;
      waits.push(a.idle().then(() => {
        if (this.actors.get(k) === a) this.actors.delete(k);
      }));
    }
    await Promise.all(waits);
  }

  /** The shard's lapsed lease is ours again: its actors go on where they paused. */
  resumeShard(shard: number): void {
    for (const a of this.actors.values()) if (a.shard === shard) a.resume();
  }

  /** The shard's lease is gone: its actors stop where they are and are forgotten. */
  dropShard(shard: number): void {
    for (const [k, a] of this.actors) {
      if (a.shard !== shard) continue;
      a.discard();
      this.actors.delete(k);
    }
  }

  /** Resolves when no actor has work left (before the store closes). */
  async idle(): Promise<void> {
    // Actors paused by a lapsed lease wait for a renewal that a stopping process will not ask for.
    const working = () => [...this.actors.values()].filter((a) => a.busy && !a.paused);
    while (working().length) await Promise.all(working().map((a) => a.idle()));
  }

  startSweeper(idleMs: number): void {
    this.sweeper = setInterval(() => {
      const cutoff = Date.now() - idleMs;
      for (const [k, a] of this.actors) if (!a.busy && !a.hasSessions && a.lastActive < cutoff) this.actors.delete(k);
    }, Math.min(idleMs, 30_000));
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }
}
