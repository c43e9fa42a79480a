// XEP-0198 stream management, the c2s half: counters of one connection and
// the protocol elements. The c2s keeps no stanza for the client: the
// account's actor numbers every stanza for a managed session and keeps it
// until acknowledged (services/session/sm), so whichever c2s node the client
// resumes on can resend what it missed. Here we write numbered stanzas in
// order, drop what was already written, ask for what went missing on the bus,
// relay to the actor what reached us without a number, and pass acks both ways.
//
// What the client sends is kept here, numbered, until the account's actor
// confirms it safe (`sm-h`): the bus may lose it on the way (a session process
// dies, a NATS server restarts), so what is not confirmed in time is sent
// again and the actor drops what it already has. `<a h/>` only ever reports
// what the actor confirmed, never what was merely forwarded.
import { emptyMap, filledMap } from '../../libs/lazy/index.ts';
import type { Envelope } from '../../libs/bus/envelope.ts';
import type { Config } from '../../libs/config/schema.ts';
import { NS_STANZAS, StreamError } from '../../libs/errors/index.ts';
import { el } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';

export const NS_SM = 'urn:xmpp:sm:3';
const WRAP = 2 ** 32;

/** XEP-0198 §4: `h` counts modulo 2^32. The full count `h` stands for, given a count it cannot be below. */
export function unwrap(h: number, floor: number): number {
  return floor + ((h - floor) % WRAP + WRAP) % WRAP;
}

export function parseH(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,10}$/.test(v)) return undefined;
  const n = Number(v);
  return n < WRAP ? n : undefined;
}

export const smElement = {
  feature: (): string => `<sm xmlns='${NS_SM}'/>`,
  enabled: (id: string | undefined, max: number | undefined): string => serialize(el('enabled', { xmlns: NS_SM, id, resume: id ? 'true' : undefined, max: max !== undefined ? String(max) : undefined })),
  failed: (condition: string, text?: string): string => serialize(el('failed', { xmlns: NS_SM }, el(condition, { xmlns: NS_STANZAS }),
    text ? el('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, text) : undefined)),
  resumed: (previd: string, h: number): string => serialize(el('resumed', { xmlns: NS_SM, previd, h: String(h % WRAP) })),
  a: (h: number): string => `<a xmlns='${NS_SM}' h='${h % WRAP}'/>`,
  r: (): string => `<r xmlns='${NS_SM}'/>`,
};

/** XEP-0198 §4: an ack for more than was sent ends the stream. */
export function tooHigh(h: number, sent: number): StreamError {
  return new StreamError('undefined-condition', 'acknowledged more stanzas than were sent',
    el('handled-count-too-high', { xmlns: NS_SM, h: String(h), 'send-count': String(sent % WRAP) }));
}

export type NumberedVerdict = 'write' | 'duplicate' | 'gap';

/** The counters of one managed connection; the stream decides what to do with the verdicts. */
/** Sending sessions remembered per stream (`StreamManagement.delivered`). */
const MAX_DELIVERED_SOURCES = 1024;

export class StreamManagement {
  state: 'off' | 'enabling' | 'resuming' | 'on' = 'off';
  resumable = false;
  /** Client stanzas received since <enable/> (or carried over by a resumption). */
  handled = 0;
  /** Numbered stanzas written to the client; the actor's numbering and the client's count agree. */
  written = 0;
  /** Of those, acknowledged by the client. */
  acked = 0;
  /** `handled` as of the last <a/> sent: an <r/> with nothing new since is answered at once. */
  reported = -1;
  private requested = false;
  private requestedAt = 0;
  /** When the oldest unacknowledged stanza was written. */
  private oldestAt = 0;
  /** A resend from the actor is on its way; numbers past the gap are dropped until it arrives. */
  private resendFrom = 0;
  /** The client's stanzas on their way to the account's actor, numbered, oldest first, until it confirms them. */
  private inflight: Envelope[] = [];
  /** What the actor confirmed: what `<a h/>` may report. */
  confirmed = 0;
  /** The client asked (<r/>) while stanzas were unconfirmed: answer once they are. */
  private ackWantedAt = 0;
  /** When the actor was last asked to confirm, or sent the unconfirmed stanzas again; when it last confirmed any. */
  private askedAt = 0;
  private resentAt = 0;
  private progressAt = 0;
  /** Resends in a row without progress: each doubles the wait before the next (a busy actor is late, not lost). */
  private resends = 0;

  /**
   * Per sending session (services/session/tracked.ts), the number of the last tracked message written to this
   * client. A new owner of the account asks for it (`sm-delivered?`): what its predecessor delivered, but could not
   * store before a failover, must not be applied and delivered again. The shared empty Map (libs/lazy) until then.
   */
  delivered: ReadonlyMap<string, number> = emptyMap();

  /** A tracked message from session `src`, number `n`, was written to the client. */
  noteDelivered(src: string, n: number): void {
    const cur = this.delivered.get(src);
    if (cur !== undefined && cur >= n) return;
    const delivered = filledMap(this.delivered);
    this.delivered = delivered;
    if (cur === undefined && delivered.size >= MAX_DELIVERED_SOURCES) {
      // The longest-quiet sender goes (insertion order: re-inserted on every update below).
      for (const k of delivered.keys()) {
        delivered.delete(k);
        break;
      }
    }
    delivered.delete(src);
    delivered.set(src, n);
  }

  /** `resendable`: the bus can lose what is sent (NATS); false in one process. */
  constructor(private readonly cfg: Config['streamManagement'], private readonly resendable = true) {}

  get on(): boolean {
    return this.state === 'on';
  }

  /** Whether a stanza numbered `n` is the next one to write. */
  numbered(n: number): NumberedVerdict {
    if (n <= this.written) return 'duplicate';
    if (n === this.written + 1) {
      this.resendFrom = 0;
      return 'write';
    }
    if (this.resendFrom === this.written + 1) return 'duplicate'; // already asked; the resend brings it in order
    this.resendFrom = this.written + 1;
    return 'gap';
  }

  /** After writing stanza n: true when the client should be asked for an ack now. */
  wrote(n: number, now: number): boolean {
    if (this.written === this.acked) this.oldestAt = now;
    this.written = n;
    if (!this.requested && this.written - this.acked >= this.cfg.ackRequestStanzas) return this.request(now);
    return false;
  }

  /** The client's <a h/>: the full count, or a stream error when it claims more than was written. */
  ack(h: number, now: number): number | StreamError {
    const n = unwrap(h, this.acked);
    if (n > this.written) return tooHigh(h, this.written);
    if (n > this.acked) {
      this.acked = n;
      this.oldestAt = now;
    }
    this.requested = false;
    return n;
  }

  /** Keep a numbered client stanza (its number is `handled`) until the actor confirms it. */
  track(env: Envelope, now: number): void {
    env.track = ['', this.handled, 0];
    if (this.inflight.length === 0) this.progressAt = now;
    this.inflight.push(env);
  }

  get unconfirmed(): number {
    return this.inflight.length;
  }

  /** Nothing is on its way: `h` can be answered at once. */
  get settled(): boolean {
    return this.inflight.length === 0;
  }

  /** The client's <r/> with stanzas unconfirmed: answer when they are (or when `confirmAfterMs` runs out). */
  wantAck(now: number): void {
    if (this.ackWantedAt === 0) this.ackWantedAt = now;
  }

  /** The actor's `sm-h`: forget what it confirmed. True when an `<a h/>` should go to the client now. */
  confirm(h: number, now: number): boolean {
    if (h > this.confirmed) {
      this.confirmed = Math.min(h, this.handled);
      let i = 0;
      while (i < this.inflight.length && this.inflight[i].track![1] <= this.confirmed) i++;
      if (i > 0) this.inflight.splice(0, i);
      this.progressAt = now;
      this.askedAt = 0;
      this.resends = 0;
    }
    if (this.ackWantedAt !== 0 && this.inflight.length === 0) {
      this.ackWantedAt = 0;
      return true;
    }
    return false;
  }

  /** A resumption or a fresh count: everything up to `h` is confirmed, nothing is on its way. */
  reset(h: number): void {
    this.handled = h;
    this.confirmed = h;
    this.inflight = [];
    this.ackWantedAt = 0;
    this.askedAt = 0;
  }

  /** What to send again, from number `from` on (the actor saw a gap), at most once per `resendAfterMs` / 4. */
  resend(from: number, now: number): Envelope[] {
    if (now - this.resentAt < this.cfg.resendAfterMs / 4) return [];
    this.resentAt = now;
    this.askedAt = now;
    return this.inflight.filter((e) => e.track![1] >= from);
  }

  /**
   * The node's confirmation sweeper, for streams with stanzas unconfirmed:
   * 'ack' — the client has waited long enough, report what is confirmed;
   * 'ask' — the oldest is `confirmAfterMs` old, ask the actor to confirm;
   * 'resend' — asked `resendAfterMs` ago with no progress: the bus lost them, send them again.
   */
  confirmDue(now: number): 'ack' | 'ask' | 'resend' | undefined {
    if (this.ackWantedAt !== 0 && now - this.ackWantedAt >= this.cfg.confirmAfterMs) {
      this.ackWantedAt = 0;
      return 'ack';
    }
    if (this.inflight.length === 0) return undefined;
    if (this.askedAt === 0) {
      if (now - this.progressAt < this.cfg.confirmAfterMs) return undefined;
      this.askedAt = now;
      return 'ask';
    }
    if (now - this.askedAt < this.cfg.resendAfterMs * 2 ** Math.min(this.resends, 4)) return undefined;
    this.askedAt = now;
    // One process alone (the in-process bus) loses nothing on the way: what is unconfirmed is late, never lost.
    if (!this.resendable) return 'ask';
    this.resentAt = now;
    this.resends++;
    return 'resend';
  }

  /** Everything unconfirmed, oldest first (to send again). */
  pending(): readonly Envelope[] {
    return this.inflight;
  }

  /** The node's sweeper: ask for an ack once the oldest unacknowledged stanza is old enough. */
  due(now: number): boolean {
    if (!this.on || this.written === this.acked) return false;
    if (this.requested && now - this.requestedAt < this.cfg.ackRequestSeconds * 1000) return false;
    if (now - this.oldestAt < this.cfg.ackRequestSeconds * 1000) return false;
    return this.request(now);
  }

  request(now: number): true {
    this.requested = true;
    this.requestedAt = now;
    return true;
  }
}
