// Admission control: when a connection manager dies, every one of its clients
// connects to the others within a second or two. Token buckets per process
// pace what such a storm costs — new streams, logins, resumptions — so that the
// clients already connected here keep their latency: their stanzas never pass
// through a bucket. A client past a bucket is told to come back (or, for a new
// stream, where to go instead); nothing it had is lost.
import type { Config } from '../../libs/config/schema.ts';

/** What a bucket admits: the first stream header of a connection, a SASL success, a XEP-0198 resumption. */
export type AdmissionKind = 'stream' | 'login' | 'resumption';

export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(private readonly ratePerSecond: number, private readonly burst: number, now = Date.now()) {
    this.tokens = burst;
    this.at = now;
  }

  private refill(now: number): void {
    if (now > this.at) this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.ratePerSecond);
    this.at = now;
  }

  /** One token, if there is one. */
  take(now = Date.now()): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** How full the bucket is, 0 to 1. */
  level(now = Date.now()): number {
    this.refill(now);
    return this.tokens / this.burst;
  }
}

/** What a client is told when refused: busy, retry later (RFC 6120's resource-constraint, §4.9.3.17 and XEP-0198 §4). */
export const BUSY_TEXT = 'this server is busy with a wave of reconnections: retry in a few seconds';

export class Admission {
  readonly enabled: boolean;
  private readonly buckets: Record<AdmissionKind, TokenBucket>;

  constructor(settings: Config['c2s']['admission'], private readonly refused: (what: AdmissionKind) => void = () => {}) {
    this.enabled = settings.enabled;
    const bucket = (b: { ratePerSecond: number; burst: number }) => new TokenBucket(b.ratePerSecond, b.burst);
    this.buckets = { stream: bucket(settings.streams), login: bucket(settings.logins), resumption: bucket(settings.resumptions) };
  }

  /** Whether one more of `what` may go ahead now; a refusal is counted. */
  admit(what: AdmissionKind, now = Date.now()): boolean {
    if (!this.enabled || this.buckets[what].take(now)) return true;
    this.refused(what);
    return false;
  }

  /**
   * Whether this process can take clients sent from elsewhere: at least half its stream and login buckets left.
   * Half, not any: a node announced with room keeps some for the clients that reach it on their own meanwhile.
   */
  hasRoom(now = Date.now()): boolean {
    return !this.enabled || (this.buckets.stream.level(now) >= 0.5 && this.buckets.login.level(now) >= 0.5);
  }
}

/** A connection manager's announcement to the others: where clients reach it, and whether it has room now. */
export interface AdmissionAnnouncement {
  node: string;
  address: string;
  room: boolean;
}

/**
 * The other connection managers' latest announcements, each trusted for a few
 * heartbeats: one killed stops announcing and is forgotten soon after.
 */
export class AdmissionPeers {
  private readonly peers = new Map<string, { address: string; room: boolean; until: number }>();

  constructor(private readonly self: string, private readonly ttlMs: number) {}

  heard(a: AdmissionAnnouncement, now = Date.now()): void {
    if (a.node === this.self || typeof a.address !== 'string') return;
    this.peers.set(a.node, { address: a.address, room: a.room === true, until: now + this.ttlMs });
  }

  /** The address of a live peer with room (chosen at random, to spread what is sent away), or undefined. */
  withRoom(live: readonly string[] | undefined, now = Date.now()): string | undefined {
    const candidates: string[] = [];
    for (const [node, p] of this.peers) {
      if (p.until < now) {
        this.peers.delete(node);
        continue;
      }
      if (p.room && (!live || live.includes(node))) candidates.push(p.address);
    }
    return candidates.length ? candidates[Math.floor(Math.random() * candidates.length)] : undefined;
  }
}
