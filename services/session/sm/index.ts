// XEP-0198 stream management, the account's half (the c2s half is
// services/c2s/stream-management.ts). The c2s keeps only the socket; this
// layer, in the account's actor, numbers every stanza given to a managed
// session, keeps it in the store until the client acknowledges it, counts the
// client's stanzas, and keeps a session whose connection went away waiting
// for a resumption that may come through any c2s node. Nothing here depends
// on which node carried the session: what a resumption needs is in the store.
//
// Control ops (c2s → actor): sm-enable, sm-r (ack barrier), sm-ack, sm-csi,
// sm-relay (a stanza that did not come through this actor), sm-resend (the
// c2s saw a gap), sm-resume. Timers: sm-expire, sm-check, sm-overflow.
// Answers (actor → c2s): sm-enabled, sm-failed, sm-h, sm-resumed, sm-resume-failed.
import type { StanzaKind } from '../../../libs/bus/envelope.ts';
import { logger } from '../../../libs/log/index.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { retriedWrite } from '../retry.ts';
import {
  defineAccountState, defineModule, type AccountContext, type ControlRequest, type Delivery, type DetachReason, type LoadedCollections, type LoadContext,
} from '../module.ts';
import { checkResumptionId, makeResumptionId, resumptionSecret, unwrapCount } from './resumption-id.ts';
import { OP_ROUTED } from '../tracked.ts';
import { admit, confirmedBefore, confirmRequested, routeConfirmed, routed } from './confirm.ts';
import { RelayOrder } from './relay-order.ts';
import { markWaiting, OP_WAKE } from './waiting.ts';
import {
  decodeEntry, decodeRecord, encodeEntry, encodeRecord, hold, newSession, queueOf, SM_STATE, type QueuedStanza, type SmSession, type SmSessions,
} from './state.ts';

const log = logger('sm');

/** What a c2s asks for with sm-enable. */
export interface EnableRequest { resource: string; node: string; resume: boolean; max?: number; inactive?: boolean }
/** What a c2s asks for with sm-resume (sid: the new connection). */
export interface ResumeRequest { previd: string; h: number; node: string }
/** What sm-resumed tells the c2s: the session's resource, the `h` to report, and the client's count as a full number. */
export interface ResumedAnswer { bare: string; resource: string; h: number; acked: number; previd: string }
/**
 * A stanza the c2s hands back for numbering: one it answered itself (`counted`: it stands for a client stanza) or
 * one that reached it directly. `seq`: the connection's own count of what it relayed by way of a session process
 * (order is restored here).
 */
export interface RelayRequest { kind: StanzaKind | ''; from: string; to: string; type: string; counted: boolean; seq?: number }

/** How long a relayed stanza waits for an earlier one still on its way (a shard that just moved) before it goes out anyway. */
const RELAY_GAP_MS = 1000;

function load(data: LoadedCollections, ctx: LoadContext): SmSessions {
  const out: SmSessions = new Map();
  for (const [resource, raw] of data.get(SM_STATE) ?? []) {
    try {
      out.set(resource, decodeRecord(raw));
    } catch (e) {
      log.warn('unreadable stream management record', { account: ctx.account, resource, error: e });
    }
  }
  return out;
}

const ownResource = (s: SmSessions, sid: string): [string, SmSession] | undefined => {
  for (const e of s) if (e[1].sid === sid) return e;
  return undefined;
};

/**
 * Store what the session's record says (retried, session.storeRetries, with what it says by then, while the session
 * is still this one). Never rejects: false when every try failed — the session goes on from memory, and the next
 * write of the record (an ack, a barrier) stores all of it again.
 */
function persist(account: AccountContext, resource: string, s: SmSession, trim = false): Promise<boolean> {
  const { store } = account.server;
  const p = retriedWrite(account, {
    what: 'writing a managed session record',
    // With `trim`, what the client acknowledged leaves the queue in the same write. (Method shorthand: the loader
    // names every arrow kept in a property, per call, and this runs per message.)
    write() {
      return trim
        ? store.batch(account.bare).logTrim(queueOf(s.smid), { below: s.acked + 1 }).hset(SM_STATE, resource, encodeRecord(s)).exec()
        : store.hset(account.bare, SM_STATE, resource, encodeRecord(s));
    },
    wanted() { return account.state(streamManagement).get(resource) === s; },
  });
  s.writes = s.writes.then(() => p, () => p);
  return p;
}

/**
 * Stanzas the store could not keep, after every retry: held here until acknowledged, so a resumption on this
 * process still resends them and an ended session still routes them (only a crash of the process loses them).
 */
const unsaved = new WeakMap<SmSession, Map<number, QueuedStanza>>();

async function readQueue(account: AccountContext, s: SmSession): Promise<QueuedStanza[]> {
  await s.writes.catch(() => undefined);
  const kept = (await account.server.store.logRange(account.bare, queueOf(s.smid), { after: s.acked })).map((e) => decodeEntry(e.value));
  const held = unsaved.get(s);
  if (!held || held.size === 0) return kept;
  const have = new Set(kept.map((e) => e.n));
  for (const [n, e] of held) if (n > s.acked && !have.has(n)) kept.push(e);
  return kept.sort((a, b) => a.n - b.n);
}

/** Give a stanza its number, keep it until acknowledged, and send it unless the session waits. */
function number(account: AccountContext, resource: string, s: SmSession, d: Delivery): void {
  const n = ++s.out;
  const full = d.to === '' ? { ...d, to: `${account.bare}/${resource}` } : d;
  const entry = encodeEntry(n, full);
  // A tracked message: its queue entry and its delivery mark in one batch (services/session/tracked.ts).
  const mark = account.deliveryMark(d.track);
  const p = retriedWrite(account, {
    what: 'queueing a stanza for a managed session',
    write() {
      return mark
        ? account.server.store.batch(account.bare).logAppend(queueOf(s.smid), n, entry).hset(mark.coll, mark.field, mark.value).exec()
        : account.server.store.logAppend(account.bare, queueOf(s.smid), n, entry);
    },
    wanted() { return n > s.acked && account.state(streamManagement).get(resource) === s; },
    gaveUp() {
      let held = unsaved.get(s);
      if (!held) unsaved.set(s, (held = new Map()));
      held.set(n, { ...full, n });
    },
  });
  if (mark) mark.stored = p;
  s.writes = s.writes.then(() => p, () => p);
  if (s.detachedAt === 0) account.transmit(resource, full, n);
  const { maxQueue, ackRequestSeconds } = account.server.config.streamManagement;
  if (s.out - s.acked > maxQueue) {
    account.later(0, 'sm-overflow', { resource, smid: s.smid });
  } else if (!s.checking && s.detachedAt === 0) {
    // The c2s repairs gaps it sees; this covers the last stanzas before a loss on the bus.
    s.checking = true;
    account.later(ackRequestSeconds * 2000, 'sm-check', { resource, smid: s.smid, out: s.out });
  }
}

function flushHeld(account: AccountContext, resource: string, s: SmSession): void {
  if (s.held.length === 0) return;
  const held = s.held;
  s.held = [];
  for (const d of held) number(account, resource, s, d);
}

/**
 * The queue of an ended session, handled once: each message or request routed as if to a resource that just left.
 * A message the client fetches from the account's archive by itself (`retrievable`) is not offered again: it would
 * reach that client twice.
 */
async function release(account: AccountContext, resource: string, s: SmSession): Promise<void> {
  const left = [...(await readQueue(account, s)), ...s.held];
  s.held = [];
  let kept = 0;
  for (const d of left) {
    // Presence and results describe a state the next session learns again; messages and requests must not vanish.
    if (d.kind === 'message' && account.retrievable(resource, typeof d.xml === 'string' ? d.xml : Buffer.from(d.xml).toString('utf8'))) {
      kept++;
      continue;
    }
    if (d.kind === 'message' || (d.kind === 'iq' && (d.type === 'get' || d.type === 'set'))) await account.reroute(withSender(d));
  }
  if (kept) log.debug('unacknowledged messages left to the archive', { account: account.bare, resource, messages: kept });
  const b = account.server.store.batch(account.bare);
  b.del(queueOf(s.smid));
  await b.exec();
  if (left.length) log.debug('released a managed session', { account: account.bare, stanzas: left.length });
}

/** Stanzas delivered with an empty `from` (offline storage) name their sender in the XML; a bounce needs it. */
function withSender(d: Delivery): Delivery {
  if (d.from !== '' && d.type !== '') return d;
  const a = parseFragment(d.xml).attrs;
  return { ...d, from: d.from || (a.from ?? ''), type: d.type || (a.type ?? '') };
}

// ---------------------------------------------------------------- the layer

export const streamManagement = defineAccountState<SmSessions>({
  name: 'stream-management',
  collections: [SM_STATE],
  load,
  layer: {
    active: (state) => state.size > 0,

    sent(state, account, resource, sid, n) {
      const s = state.get(resource);
      if (!s) return true;
      // From a connection the session has left (resumed elsewhere): `h` did not count it, the client sends it again.
      if (s.sid !== sid) return false;
      if (n === undefined) {
        s.handled++;
        s.confirmed = s.stored = s.handled;
        return true;
      }
      return admit(account, resource, s, n, persist);
    },

    routed(state, _account, resource, sid, n, env, to) {
      const s = state.get(resource);
      if (s && s.sid === sid) routed(s, n, env, to);
    },

    deliver(state, account, resource, d) {
      const s = state.get(resource);
      if (!s) return false;
      if (hold(s, d)) return true;
      flushHeld(account, resource, s);
      number(account, resource, s, d);
      return true;
    },

    detached(state, account, resource, sid, reason: DetachReason) {
      const s = state.get(resource);
      if (!s || s.sid !== sid) return false;
      if (reason === 'closed' || !s.resumable) return false;
      if (s.detachedAt === 0) {
        s.detachedAt = Date.now();
        void persist(account, resource, s);
        void waiting(account, state);
        account.later(s.max * 1000, 'sm-expire', { resource, smid: s.smid });
        if (account.server.config.streamManagement.presenceWhileWaiting === 'unavailable') {
          for (const to of account.presenceAudience()) account.sendUnavailable(to, resource);
        }
      }
      return true;
    },
  },

  hooks: {
    async ended(state, account, resource) {
      const s = state.get(resource);
      if (!s) return;
      state.delete(resource);
      account.rulesChanged();
      await release(account, resource, s);
      await account.server.store.hdel(account.bare, SM_STATE, resource);
      if (s.detachedAt > 0) await waiting(account, state);
    },
  },

  async activated(state, account) {
    for (const [resource, s] of [...state]) {
      const c = account.connection(resource);
      if (!c || c.sid !== s.sid) {
        // The session is gone (the embedded process restarted, or it ended while its queue was being written).
        state.delete(resource);
        await release(account, resource, s);
        await account.server.store.hdel(account.bare, SM_STATE, resource);
        continue;
      }
      const [last] = await account.server.store.logRange(account.bare, queueOf(s.smid), { reverse: true, limit: 1 });
      if (last) s.out = Math.max(s.out, last.id);
      if (s.detachedAt > 0) account.later(Math.max(0, s.detachedAt + s.max * 1000 - Date.now()), 'sm-expire', { resource, smid: s.smid });
    }
    account.rulesChanged();
  },
});

// ---------------------------------------------------------------- requests from c2s nodes and timers

async function enable(req: ControlRequest): Promise<void> {
  const { account } = req;
  const d = req.data as EnableRequest;
  const state = account.state(streamManagement);
  const c = account.connection(d.resource);
  const cfg = account.server.config.streamManagement;
  if (!c || c.sid !== req.sid || state.get(d.resource)?.sid === req.sid) {
    return account.controlConnection(d.node, req.sid, 'sm-failed', { condition: 'unexpected-request' });
  }
  const resumable = d.resume && cfg.maxResumeTimeoutSeconds > 0;
  const asked = d.max !== undefined && d.max > 0 ? d.max : cfg.resumeTimeoutSeconds;
  const s = newSession(req.sid, req.sid, d.node, resumable, resumable ? Math.min(asked, cfg.maxResumeTimeoutSeconds) : 0);
  s.inactive = d.inactive === true;
  const old = state.get(d.resource);
  try {
    if (old) await release(account, d.resource, old);
    state.set(d.resource, s);
    account.rulesChanged();
    if (!(await persist(account, d.resource, s))) throw new Error('the session record could not be stored');
    const id = resumable ? makeResumptionId(await resumptionSecret(account.server.store), account.bare, s.smid) : undefined;
    account.controlConnection(d.node, req.sid, 'sm-enabled', { id, max: resumable ? s.max : undefined });
  } catch (e) {
    log.error('enabling stream management failed', { account: account.bare, resource: d.resource, error: e });
    if (state.get(d.resource) === s) {
      state.delete(d.resource);
      account.rulesChanged();
    }
    account.controlConnection(d.node, req.sid, 'sm-failed', { condition: 'internal-server-error', text: 'the session could not be stored; try again later' });
  }
}

/** <r/>: everything the client sent before it has been handled here (this envelope comes after them). */
/** The c2s asks for a confirmation up to `h` (its client's <r/>, or stanzas unconfirmed for a while); it comes behind them. */
function barrier(req: ControlRequest): void {
  const { account } = req;
  const found = ownResource(account.state(streamManagement), req.sid);
  if (!found) return;
  const [resource, s] = found;
  confirmRequested(account, resource, s, (req.data as { h: number }).h, persist);
}

/** The connection's own count of what was confirmed to it (the answer to a gap it cannot fill). */
function confirmedSync(req: ControlRequest): void {
  const { account } = req;
  const found = ownResource(account.state(streamManagement), req.sid);
  if (!found) return;
  confirmedBefore(account, found[0], found[1], (req.data as { h: number }).h, persist);
}

/**
 * A new owner of the account asked the connection what it already wrote (services/session/tracked.ts): number on
 * from there. What the previous owner numbered and sent but could not store in a failover is with the client; a
 * number given again would be dropped by the connection as one it wrote, and its stanza lost.
 */
function writtenBefore(req: ControlRequest): void {
  const found = ownResource(req.account.state(streamManagement), req.sid);
  if (!found) return;
  const [resource, s] = found;
  const written = Number((req.data as { written?: number }).written ?? 0);
  if (written <= s.out) return;
  log.info('the connection had stanzas its account\'s previous owner numbered but did not store; numbering on after them', { account: req.account.bare, resource, stored: s.out, written });
  s.out = written;
}

/** A message this session routed was applied (and stored) by its recipient's actor. */
function routeOk(req: ControlRequest): void {
  const { src, n } = req.data as { src: string; n: number };
  for (const [resource, s] of req.account.state(streamManagement)) {
    if (s.smid === src) return routeConfirmed(req.account, resource, s, n, persist);
  }
}

/** The client acknowledged up to `n`: true when that is news. Unless `trim` is false (the caller's record write trims), the queue is trimmed now. */
function acknowledge(account: AccountContext, s: SmSession, n: number, trim = true): boolean {
  if (n <= s.acked || n > s.out) return false;
  s.acked = n;
  const held = unsaved.get(s);
  if (held) for (const k of held.keys()) if (k <= n) held.delete(k);
  if (!trim) return true;
  // Not retried: reads skip what is acknowledged, and the next trim or the session's end removes it.
  const p = account.server.store.logTrim(account.bare, queueOf(s.smid), { below: n + 1 })
    .catch((e: unknown) => log.warn('trimming a managed queue failed', { account: account.bare, error: e }));
  s.writes = s.writes.then(() => p, () => p);
  return true;
}

function ack(req: ControlRequest): void {
  const { account } = req;
  const found = ownResource(account.state(streamManagement), req.sid);
  if (!found) return;
  const [resource, s] = found;
  // The record and the trim in one write: an acknowledgement costs the store one round trip.
  void persist(account, resource, s, acknowledge(account, s, (req.data as { h: number }).h, false));
}

function csi(req: ControlRequest): void {
  const { account } = req;
  const found = ownResource(account.state(streamManagement), req.sid);
  if (!found) return;
  const [resource, s] = found;
  s.inactive = (req.data as { inactive: boolean }).inactive;
  if (!s.inactive) flushHeld(account, resource, s);
}

function relay(req: ControlRequest): void {
  const { account } = req;
  const found = ownResource(account.state(streamManagement), req.sid);
  if (!found) return;
  const [resource, s] = found;
  const r = req.data as RelayRequest;
  if (r.counted) {
    const n = req.track?.[1];
    if (n === undefined) s.handled++;
    else if (!admit(account, resource, s, n, persist)) return; // had it already, or one before it is missing
  }
  if (r.kind === '') return; // a client stanza the c2s dropped: counted, nothing to send
  const d: Delivery = { kind: r.kind, from: r.from, to: r.to, type: r.type, xml: req.xml, t: 0 };
  if (r.seq === undefined) return relayed(account, resource, s, d);
  for (const x of s.relays.admit(req.sid, r.seq, d)) relayed(account, resource, s, x);
  if (s.relays.size > 0 && !s.relays.timer) {
    s.relays.timer = true;
    account.later(RELAY_GAP_MS, 'sm-relay-gap', { resource, smid: s.smid, next: s.relays.expected });
  }
}

function relayed(account: AccountContext, resource: string, s: SmSession, d: Delivery): void {
  if (hold(s, d)) return;
  flushHeld(account, resource, s);
  number(account, resource, s, d);
}

function relayGap(req: ControlRequest): void {
  const t = timerTarget(req);
  if (!t) return;
  const [resource, s] = t;
  s.relays.timer = false;
  // Still stuck at the same place: give up on the gap.
  if (s.relays.expected === (req.data as { next: number }).next) for (const x of s.relays.giveUp()) relayed(req.account, resource, s, x);
  if (s.relays.size > 0) {
    s.relays.timer = true;
    req.account.later(RELAY_GAP_MS, 'sm-relay-gap', { resource, smid: s.smid, next: s.relays.expected });
  }
}

async function resend(req: ControlRequest): Promise<void> {
  const { account } = req;
  const found = ownResource(account.state(streamManagement), req.sid);
  if (!found) return;
  const [resource, s] = found;
  const from = (req.data as { from: number }).from;
  let queued: QueuedStanza[];
  try {
    queued = await readQueue(account, s);
  } catch (e) {
    // The c2s waits for this resend; the check timer sends it once the store answers again.
    log.warn('reading a managed queue for a resend failed', { account: account.bare, error: e });
    return recheck(account, resource, s);
  }
  for (const e of queued) if (e.n >= from && s.sid === req.sid) account.transmit(resource, e, e.n);
}

/** Make sure a retransmission check is scheduled (what a failed read of the queue leaves to it). */
function recheck(account: AccountContext, resource: string, s: SmSession): void {
  if (s.checking) return;
  s.checking = true;
  account.later(account.server.config.streamManagement.ackRequestSeconds * 2000, 'sm-check', { resource, smid: s.smid, out: s.out });
}

async function resume(req: ControlRequest): Promise<void> {
  const { account } = req;
  const d = req.data as ResumeRequest;
  const fail = (condition: string, text?: string) => account.controlConnection(d.node, req.sid, 'sm-resume-failed', { condition, text });
  const state = account.state(streamManagement);
  const secret = await resumptionSecret(account.server.store).catch((e: unknown) => {
    log.error('reading the resumption key failed', { account: account.bare, error: e });
  });
  if (!secret) return fail('internal-server-error', 'the session could not be read; try again later');
  const smid = checkResumptionId(secret, account.bare, d.previd);
  let found: [string, SmSession] | undefined;
  for (const e of state) if (e[1].smid === smid) found = e;
  if (!smid || !found || !found[1].resumable) return fail('item-not-found');
  const [resource, s] = found;
  if (s.detachedAt > 0 && Date.now() >= s.detachedAt + s.max * 1000) {
    await account.terminateSession(resource);
    return fail('item-not-found');
  }
  const n = unwrapCount(d.h, s.acked);
  if (n > s.out) return fail('undefined-condition');
  acknowledge(account, s, n);
  const old = account.connection(resource);
  if (old && old.sid !== req.sid && s.detachedAt === 0) {
    account.controlConnection(old.node, old.sid, 'kick', { condition: 'conflict', text: 'the session was resumed on another connection' });
  }
  const wasWaiting = s.detachedAt > 0;
  // The actor moved the session in memory before writing it: a failed write leaves the store behind, not the session.
  await account.moveSession(resource, d.node, req.sid)
    .catch((e: unknown) => log.error('storing where a resumed session is failed', { account: account.bare, resource, error: e }));
  for (const x of s.relays.giveUp()) relayed(account, resource, s, x);
  s.sid = req.sid;
  s.relays = new RelayOrder(req.sid);
  s.node = d.node;
  s.detachedAt = 0;
  s.inactive = false;
  s.checking = false;
  await persist(account, resource, s);
  if (wasWaiting) await waiting(account, state);
  // What is safe and stored, not what was applied: the client sends the rest again and what was applied is dropped here.
  const answer: ResumedAnswer = { bare: account.bare, resource, h: s.stored, acked: s.acked, previd: d.previd };
  account.controlConnection(d.node, req.sid, 'sm-resumed', answer);
  try {
    for (const e of await readQueue(account, s)) account.transmit(resource, e, e.n);
  } catch (e) {
    log.warn('reading a managed queue for a resumption failed', { account: account.bare, error: e });
    recheck(account, resource, s);
  }
  flushHeld(account, resource, s);
  if (wasWaiting && account.server.config.streamManagement.presenceWhileWaiting === 'unavailable') {
    for (const to of account.presenceAudience()) account.sendPresence(to, resource);
  }
}

/** Keep the shard's index of accounts with a waiting session right (what a new owner of the shard wakes); retried, never rejects. */
function waiting(account: AccountContext, state: SmSessions): Promise<unknown> {
  return retriedWrite(account, {
    what: 'writing the waiting-session index',
    write: () => {
      let any = false;
      for (const s of state.values()) if (s.detachedAt > 0) any = true;
      return markWaiting(account.server.store, account.server.config.cluster.shards, account.bare, any);
    },
  });
}

/** A new owner of the shard woke this account: activation re-armed the timers; close windows that closed meanwhile. */
async function wake(req: ControlRequest): Promise<void> {
  const state = req.account.state(streamManagement);
  for (const [resource, s] of [...state]) {
    if (s.detachedAt > 0 && Date.now() >= s.detachedAt + s.max * 1000) await req.account.terminateSession(resource);
  }
  await waiting(req.account, state);
}

function timerTarget(req: ControlRequest): [string, SmSession] | undefined {
  const { resource, smid } = req.data as { resource: string; smid: string };
  const s = req.account.state(streamManagement).get(resource);
  return s && s.smid === smid ? [resource, s] : undefined;
}

async function expire(req: ControlRequest): Promise<void> {
  const t = timerTarget(req);
  if (!t || t[1].detachedAt === 0) return;
  const [resource, s] = t;
  const left = s.detachedAt + s.max * 1000 - Date.now();
  if (left > 0) return req.account.later(left, 'sm-expire', { resource, smid: s.smid });
  log.debug('resumption window closed', { account: req.account.bare, resource });
  await req.account.terminateSession(resource);
}

async function overflow(req: ControlRequest): Promise<void> {
  const t = timerTarget(req);
  if (!t) return;
  const [resource, s] = t;
  if (s.out - s.acked <= req.account.server.config.streamManagement.maxQueue) return;
  if (s.detachedAt === 0) req.account.controlConnection(s.node, s.sid, 'kick', { condition: 'policy-violation', text: 'too many unacknowledged stanzas' });
  await req.account.terminateSession(resource);
}

/** Stanzas still unacknowledged a while after they went out: send them again (the c2s drops what it already wrote). */
async function check(req: ControlRequest): Promise<void> {
  const t = timerTarget(req);
  if (!t) return;
  const [resource, s] = t;
  s.checking = false;
  if (s.detachedAt > 0 || s.acked >= s.out) return;
  const upTo = (req.data as { out: number }).out;
  try {
    if (s.acked < upTo) {
      for (const e of await readQueue(req.account, s)) if (e.n <= upTo) req.account.transmit(resource, e, e.n);
    }
  } finally {
    // Re-armed even when the read failed: the next check tries again.
    s.checking = true;
    req.account.later(req.account.server.config.streamManagement.ackRequestSeconds * 2000, 'sm-check', { resource, smid: s.smid, out: s.out });
  }
}

export default defineModule({
  name: 'stream-management',
  enabled: (config) => config.streamManagement.enabled,
  state: [streamManagement],
  control: {
    'sm-enable': enable,
    'sm-r': barrier,
    'sm-confirmed': confirmedSync,
    'sm-delivered': writtenBefore,
    [OP_ROUTED]: routeOk,
    'sm-ack': ack,
    'sm-csi': csi,
    'sm-relay': relay,
    'sm-relay-gap': relayGap,
    'sm-resend': resend,
    'sm-resume': resume,
    'sm-expire': expire,
    'sm-overflow': overflow,
    'sm-check': check,
    [OP_WAKE]: wake,
  },
});
