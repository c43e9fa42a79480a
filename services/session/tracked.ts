// The receiving half of tracked delivery (services/session/sm/confirm.ts has
// the sending half): an account's actor applies a stream-managed session's
// message once and in that session's order, and confirms it to the sender's
// actor once what it wrote is stored. What it has applied, per sending
// session, is a mark in the account's `seen` hash, written with the
// application's own writes (same turn, same connection: they land together),
// so a new owner of the account after a crash still knows.
import { emptyMap, filledMap } from '../../libs/lazy/index.ts';
import { pack, unpack } from 'msgpackr';
import type { Track } from '../../libs/bus/envelope.ts';
import type { Bytes } from '../../libs/store/store.ts';

/** Control op from a recipient's actor to the sender's: message [src, n] is applied and stored. */
export const OP_ROUTED = 'sm-routed';
/** The account's collection of marks: sending session's id → [last number applied, when]. */
export const SEEN = 'seen';
/**
 * A new owner of an account asks each connection what tracked messages it already wrote to its client
 * (`OP_DELIVERED_ASK` to the c2s, `OP_DELIVERED` back, services/c2s/stream-management.ts): a predecessor that
 * delivered a message and lost its write in a failover must not have it applied and delivered again. Tracked
 * messages wait until every connection answered, or `DELIVERED_WAIT_MS`.
 */
export const OP_DELIVERED_ASK = 'sm-delivered?';
export const OP_DELIVERED = 'sm-delivered';
export const OP_DELIVERED_OVER = 'delivered-wait-over';
export const DELIVERED_WAIT_MS = 1000;

export type SeenVerdict = 'apply' | 'again' | 'gap';

export class SeenMarks {
  /** The shared empty Map until a first mark (libs/lazy): most accounts receive no tracked message. */
  private marks: ReadonlyMap<string, number> = emptyMap();

  private marksForWrite(): Map<string, number> {
    const m = filledMap(this.marks);
    this.marks = m;
    return m;
  }

  /** Read the stored marks; those older than `maxAgeMs` (their session can no longer send again) are returned to delete. */
  load(stored: Map<string, Bytes> | undefined, maxAgeMs: number, now: number): string[] {
    const stale: string[] = [];
    for (const [src, raw] of stored ?? []) {
      let n: number;
      let at: number;
      try {
        [n, at] = unpack(raw) as [number, number];
      } catch {
        stale.push(src);
        continue;
      }
      if (now - at > maxAgeMs) stale.push(src);
      else this.marksForWrite().set(src, n);
    }
    return stale;
  }

  /**
   * Apply a tracked stanza, drop it as one applied before ('again': confirm it anew), or leave it for its sender to
   * send again in order ('gap': the one before it from that session has not arrived).
   */
  verdict([src, n, prev]: Track): SeenVerdict {
    const last = this.marks.get(src) ?? 0;
    if (n <= last) return 'again';
    if (prev === -1 || prev <= last) return 'apply';
    return 'gap';
  }

  /** Mark `n` applied; the value to store. */
  applied(src: string, n: number, now: number): Bytes {
    this.marksForWrite().set(src, n);
    return pack([n, now]);
  }

  /** What the previous owner delivered (a connection says so): at least `n` from `src` was applied. The value to store, or undefined. */
  raise(src: string, n: number, now: number): Bytes | undefined {
    if (n <= (this.marks.get(src) ?? 0)) return undefined;
    return this.applied(src, n, now);
  }

  get size(): number {
    return this.marks.size;
  }
}
