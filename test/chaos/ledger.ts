// The books of a chaos run, per sender → recipient pair: what was typed,
// what the server acknowledged (XEP-0198), what arrived, and from those what
// was lost, duplicated, reordered, and how long chat took to flow again
// after the fault.
import type { ChatClient } from './client.ts';

export interface PairFigures {
  from: string;
  to: string;
  typed: number;
  acked: number;
  /** Distinct messages (by seq) that arrived, whatever the copy. */
  delivered: number;
  /** Acknowledged by the server, never delivered. */
  lost: number[];
  /** Typed, never delivered (acknowledged or not). */
  undelivered: number;
  /** Copies of one stanza after the recipient acknowledged the first (and the server read that ack). */
  dupAfterAck: number;
  /** Copies of one stanza while the first was not known to be acknowledged. */
  redelivered: number;
  /** Extra copies of a message that came from the sender's own re-sends after a failed resumption. */
  clientCopies: number;
  /** First deliveries that came after a later message of the same sender. */
  reordered: number;
  /** Acknowledged or not, returned to the sender with an error: the sender was told. */
  bounced: number;
  /** From the fault to the first delivery of a message typed after it; undefined: none arrived. */
  firstAfterMs?: number;
  /** The longest time without a new message arriving, from the fault to the end of the chat. */
  silenceMs: number;
  /**
   * From the fault to the end of the last silence longer than `SILENCE_MS` (0: none): when chat flowed
   * steadily again. Infinity when the pair was still silent when the chat ended.
   */
  recoveredMs: number;
}

/**
 * A pair exchanges a message every 100–200 ms: two seconds without one is the fault's doing, not the
 * cadence's (a resumption on loopback costs a few hundred milliseconds).
 */
export const SILENCE_MS = 2000;

export interface RunFigures {
  flavour: 'sm' | 'plain';
  pairs: PairFigures[];
  typed: number;
  acked: number;
  delivered: number;
  lost: number;
  undelivered: number;
  dupAfterAck: number;
  redelivered: number;
  clientCopies: number;
  reordered: number;
  bounced: number;
  /** Pairs with no delivery of a post-fault message by the end. */
  neverFlowed: number;
  /** Over the pairs: the latest first delivery of a post-fault message, and its median. */
  firstAfterMaxMs: number;
  firstAfterMedianMs: number;
  /** Over the pairs: the longest silence, and the latest return to steady chat (of those that returned). */
  silenceMaxMs: number;
  recoveredMaxMs: number;
  /** Pairs still silent when the chat ended. */
  silentAtEnd: number;
  resumed: number;
  resumeFailed: number;
  resentAfterResume: number;
  resentAfterFailure: number;
  ackTimeouts: number;
  logins: number;
  bouncedConditions: string;
  streamErrors: number;
  protocolErrors: string[];
}

/** `pairs` lists who sends to whom; every client's records are read as they stand. Chat ran until `chatEnd`. */
export function account(flavour: 'sm' | 'plain', pairs: readonly [ChatClient, ChatClient][], faultAt: number, chatEnd: number): RunFigures {
  const out: PairFigures[] = [];
  for (const [s, r] of pairs) {
    const name = s.bare.split('@')[0];
    const got = r.deliveries.filter((d) => d.from === name);
    const seen = new Set(got.map((d) => d.seq));
    const idsBySeq = new Map<number, Set<string>>();
    let reordered = 0;
    let top = -1;
    const firstSeen = new Set<number>();
    let firstAfterMs: number | undefined;
    // Arrival times of new messages after the fault, bracketed by the fault and the end of the chat.
    const arrivals = [faultAt];
    for (const d of got) {
      if (d.copy === 'first') {
        let ids = idsBySeq.get(d.seq);
        if (!ids) idsBySeq.set(d.seq, (ids = new Set()));
        ids.add(d.id);
      }
      if (firstSeen.has(d.seq)) continue;
      firstSeen.add(d.seq);
      if (d.seq < top) reordered++;
      top = Math.max(top, d.seq);
      if (firstAfterMs === undefined && (s.typed[d.seq] ?? 0) >= faultAt) firstAfterMs = d.at - faultAt;
      if (d.at > faultAt && d.at <= chatEnd) arrivals.push(d.at);
    }
    arrivals.push(chatEnd);
    let silenceMs = 0;
    let recoveredMs = 0;
    for (let i = 1; i < arrivals.length; i++) {
      const gap = arrivals[i] - arrivals[i - 1];
      silenceMs = Math.max(silenceMs, gap);
      if (gap > SILENCE_MS) recoveredMs = i === arrivals.length - 1 ? Infinity : arrivals[i] - faultAt;
    }
    const lost = [...s.acked.keys()].filter((seq) => !seen.has(seq) && !s.bouncedSeqs.has(seq)).sort((a, b) => a - b);
    let clientCopies = 0;
    for (const ids of idsBySeq.values()) clientCopies += ids.size - 1;
    out.push({
      from: s.bare, to: r.bare,
      typed: s.typed.length,
      acked: s.acked.size,
      delivered: seen.size,
      lost,
      undelivered: s.typed.length - seen.size,
      dupAfterAck: got.filter((d) => d.copy === 'again-acked').length,
      redelivered: got.filter((d) => d.copy === 'again').length,
      clientCopies,
      reordered,
      bounced: s.bouncedSeqs.size,
      firstAfterMs,
      silenceMs,
      recoveredMs,
    });
  }
  const sum = (f: (p: PairFigures) => number) => out.reduce((a, p) => a + f(p), 0);
  const flows = out.map((p) => p.firstAfterMs).filter((v): v is number => v !== undefined).sort((a, b) => a - b);
  const clients = [...new Set(pairs.flat())];
  const csum = (f: (c: ChatClient) => number) => clients.reduce((a, c) => a + f(c), 0);
  const bounced = new Map<string, number>();
  for (const c of clients) for (const [k, v] of c.counters.bounced) bounced.set(k, (bounced.get(k) ?? 0) + v);
  return {
    flavour,
    pairs: out,
    typed: sum((p) => p.typed),
    acked: sum((p) => p.acked),
    delivered: sum((p) => p.delivered),
    lost: sum((p) => p.lost.length),
    undelivered: sum((p) => p.undelivered),
    dupAfterAck: sum((p) => p.dupAfterAck),
    redelivered: sum((p) => p.redelivered),
    clientCopies: sum((p) => p.clientCopies),
    reordered: sum((p) => p.reordered),
    bounced: sum((p) => p.bounced),
    neverFlowed: out.filter((p) => p.firstAfterMs === undefined).length,
    firstAfterMaxMs: flows.length ? flows[flows.length - 1] : NaN,
    firstAfterMedianMs: flows.length ? flows[Math.floor(flows.length / 2)] : NaN,
    silenceMaxMs: Math.max(0, ...out.map((p) => p.silenceMs)),
    recoveredMaxMs: Math.max(0, ...out.map((p) => p.recoveredMs).filter((v) => v !== Infinity)),
    silentAtEnd: out.filter((p) => p.recoveredMs === Infinity).length,
    resumed: csum((c) => c.counters.resumed),
    resumeFailed: csum((c) => c.counters.resumeFailed),
    resentAfterResume: csum((c) => c.counters.resentAfterResume),
    resentAfterFailure: csum((c) => c.counters.resentAfterFailure),
    ackTimeouts: csum((c) => c.counters.ackTimeouts),
    logins: csum((c) => c.counters.logins),
    bouncedConditions: [...bounced].map(([k, v]) => `${k} ${v}`).join(', ') || 'none',
    streamErrors: csum((c) => c.counters.streamErrors.length),
    protocolErrors: clients.flatMap((c) => c.counters.protocolErrors.map((e) => `${c.bare}: ${e}`)),
  };
}

const s = (ms: number) => (Number.isNaN(ms) ? '–' : (ms / 1000).toFixed(1));

/** One line of figures for a run. */
export function summarize(f: RunFigures): string {
  const flow = `first post-fault message in ${s(f.firstAfterMaxMs)} s max (${s(f.firstAfterMedianMs)} median)${f.neverFlowed ? `, ${f.neverFlowed} pairs never` : ''}, ` +
    `longest silence ${s(f.silenceMaxMs)} s, steady again after ${s(f.recoveredMaxMs)} s${f.silentAtEnd ? ` (${f.silentAtEnd} pairs silent at the end)` : ''}`;
  if (f.flavour === 'plain') {
    return `plain: typed ${f.typed}, delivered ${f.delivered}, undelivered ${f.undelivered}, delivered twice ${f.redelivered}, out of order ${f.reordered}; ${flow}; logins ${f.logins}, errors returned ${f.bouncedConditions}`;
  }
  return `SM: typed ${f.typed}, acked ${f.acked}, delivered ${f.delivered}, LOST ${f.lost} (acked, never delivered, no error), DUP ${f.dupAfterAck} (after the recipient's ack), out of order ${f.reordered}; ${flow}; ` +
    `returned with an error ${f.bounced} (error stanzas: ${f.bouncedConditions}), unacked at the end ${f.typed - f.acked}, resumed ${f.resumed}, resumption failed ${f.resumeFailed}, re-sent after <resumed/> ${f.resentAfterResume}, ` +
    `client re-sends after a failed resumption ${f.resentAfterFailure} (${f.clientCopies} extra copies), redelivered before an ack ${f.redelivered}, ack timeouts ${f.ackTimeouts}`;
}
