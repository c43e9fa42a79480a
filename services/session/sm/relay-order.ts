// Relayed stanzas back in their connection's order. A c2s sends what it asks
// the account to number by way of the session process holding the shard
// (services/c2s `viaHolder`); that path keeps no order across a shard move,
// so each relay carries the connection's own sequence. What arrives ahead of
// a gap waits, briefly: the caller gives the gap up after a timeout, and a
// late stanza is still let through (out of order, never dropped).

import { emptyMap, filledMap } from '../../../libs/lazy/index.ts';

export class RelayOrder<T> {
  /** The connection the sequence is of; '' until the first relay (state loaded from the store). */
  private sid: string;
  /** Sequence expected next. */
  private next: number;
  /** The shared empty Map (libs/lazy) while nothing waits, which is nearly always. */
  private waiting: ReadonlyMap<number, T> = emptyMap();
  /** A gap timer is armed (the caller's). */
  timer = false;

  /** A connection's relays count from 1; a session loaded from the store learns where the count is from its first relay. */
  constructor(sid = '', private readonly maxWaiting = 10_000) {
    this.sid = sid;
    this.next = 1;
  }

  get expected(): number { return this.next; }
  get size(): number { return this.waiting.size; }

  /** What may go out now, in order. */
  admit(sid: string, seq: number, item: T): T[] {
    let out: T[] = [];
    if (sid !== this.sid) {
      out = this.giveUp();
      this.sid = sid;
      this.next = seq;
    }
    if (seq < this.next) {
      out.push(item); // late: its gap was given up on
      return out;
    }
    if (seq === this.next && this.waiting.size === 0) {
      // In order, nothing waiting: the usual case, which needs no Map.
      this.next++;
      out.push(item);
      return out;
    }
    const waiting = filledMap(this.waiting);
    this.waiting = waiting;
    waiting.set(seq, item);
    while (waiting.has(this.next)) {
      out.push(waiting.get(this.next)!);
      waiting.delete(this.next++);
    }
    if (waiting.size === 0) this.waiting = emptyMap();
    else if (waiting.size > this.maxWaiting) out.push(...this.giveUp());
    return out;
  }

  /** Stop waiting for the gap: everything held, in order. */
  giveUp(): T[] {
    if (this.waiting.size === 0) return [];
    const seqs = [...this.waiting.keys()].sort((a, b) => a - b);
    const out = seqs.map((n) => this.waiting.get(n)!);
    this.waiting = emptyMap();
    this.next = seqs[seqs.length - 1] + 1;
    return out;
  }
}
