// What a stream-managed client sends is acknowledged (`<a h/>`) only once it
// is safe: applied by the account's actor, and a message for another account
// applied by that account's actor, which has stored it (a managed session's
// queue, offline storage) before it confirms. Each hop keeps what it sent
// until the next one confirms, and sends it again when the bus lost it:
//
//   client ──n──▶ c2s (keeps n until sm-h ≥ n) ──n──▶ sender's actor
//     (drops n ≤ handled; keeps a routed message until its recipient confirms)
//     ──[smid, n, prev]──▶ recipient's actor (applies once, in order; stores a
//     mark with what it wrote) ──sm-routed──▶ sender's actor ──sm-h──▶ c2s ──<a h/>──▶ client
//
// Order per sender and recipient is kept by `prev`: the recipient applies a
// message only if the one before it from the same session to the same account
// was applied, so a lost message stops those after it until it comes again.
// What a client without stream management sends is not tracked: it travels
// once (at most once, in order).
import { deleteFrom, emptyMap, filledMap } from '../../../libs/lazy/index.ts';
import type { Envelope } from '../../../libs/bus/envelope.ts';
import { logger } from '../../../libs/log/index.ts';
import type { AccountContext } from '../module.ts';
import type { SmSession } from './state.ts';

const log = logger('sm');

/** Writes the session's record; false when the store would not keep it. */
export type PersistSession = (account: AccountContext, resource: string, s: SmSession) => Promise<boolean>;

/** A routed message unconfirmed this long is sent again when the c2s asks for a confirmation. */
const ROUTE_RESEND_MS = 1000;
/** At most one request to the c2s per this long for a gap in its numbering. */
const GAP_ASK_MS = 500;

/** Highest number such that everything up to it is safe. */
function safe(s: SmSession): number {
  for (const n of s.pending.keys()) return n - 1; // a Map keeps insertion order: the first is the oldest
  return s.handled;
}

/**
 * A client stanza numbered `n` reached the actor: true to apply it. What was applied already is dropped (the c2s
 * sent it again), and one that skips a number waits: the c2s is asked to send again from the first missing one.
 */
export function admit(account: AccountContext, resource: string, s: SmSession, n: number, persist: PersistSession): boolean {
  // Applied already: the c2s sent it again, with an sm-r behind it that the confirmation answers.
  if (n <= s.handled) return false;
  if (n > s.handled + 1) {
    const now = Date.now();
    if (now - s.gapAskedAt >= GAP_ASK_MS) {
      s.gapAskedAt = now;
      log.debug('a gap in a client\'s stanzas; asking for them again', { account: account.bare, resource, expected: s.handled + 1, got: n });
      account.controlConnection(s.node, s.sid, 'sm-resend-in', { from: s.handled + 1 });
    }
    return false;
  }
  // Everything before this stanza has been handled (the mailbox runs one at a time): confirm it if it is time to.
  confirm(account, resource, s, false, persist);
  s.handled = n;
  return true;
}

/** A message of stanza `n` goes to account `to` as `env`: number it in the session's chain to that account and keep it. */
export function routed(s: SmSession, n: number, env: Envelope, to: string): void {
  const prev = s.chains.get(to) ?? (s.chainsKnown ? 0 : -1);
  (s.chains = filledMap(s.chains)).set(to, n);
  env.track = [s.smid, n, prev];
  (s.pending = filledMap(s.pending)).set(n, { to, env, sentAt: Date.now() });
}

/** The recipient's actor applied (and stored) message `n`. */
export function routeConfirmed(account: AccountContext, resource: string, s: SmSession, n: number, persist: PersistSession): void {
  const p = s.pending.get(n);
  if (p === undefined) return;
  deleteFrom(s.pending, n);
  (s.heard = filledMap(s.heard)).set(p.to, Date.now());
  confirm(account, resource, s, false, persist);
}

/**
 * The c2s says everything up to `h` was confirmed to it before (by this actor or a previous owner of the account):
 * applied and safe, even if the record here says less (a write the store lost in a failover). Count it so.
 */
export function confirmedBefore(account: AccountContext, resource: string, s: SmSession, h: number, persist: PersistSession): void {
  if (h <= s.handled) return;
  log.warn('the session\'s record was behind what its connection had confirmed; counting on from there', { account: account.bare, resource, record: s.handled, confirmed: h });
  s.handled = h;
  confirm(account, resource, s, true, persist);
}

/** The c2s asks (its client's <r/>, or stanzas unconfirmed too long): confirm what is safe, send again what waits on a recipient. */
export function confirmRequested(account: AccountContext, resource: string, s: SmSession, h: number, persist: PersistSession): void {
  if (h > s.barrier) s.barrier = h;
  resendRoutes(account, s, ROUTE_RESEND_MS);
  confirm(account, resource, s, true, persist);
}

/**
 * Send again what a recipient has not confirmed for `olderThanMs` — unless that recipient confirmed something
 * within that time: it applies a session's messages in order and says nothing after one that went missing, so a
 * recipient still confirming is late, not missing one, and more copies would only add to its load.
 */
function resendRoutes(account: AccountContext, s: SmSession, olderThanMs: number): void {
  if (s.pending.size === 0) {
    s.heard = emptyMap();
    return;
  }
  const now = Date.now();
  // The oldest first: when it is recent, nothing is due (asked at every <r/>, so no walk of a long list each time).
  for (const p of s.pending.values()) {
    if (now - p.sentAt < olderThanMs) return;
    break;
  }
  let again = 0;
  for (const p of s.pending.values()) {
    if (now - p.sentAt < olderThanMs || now - (s.heard.get(p.to) ?? 0) < olderThanMs) continue;
    p.sentAt = now;
    account.toAccount(p.to, p.env);
    again++;
  }
  if (again) log.debug('sending unconfirmed messages again', { account: account.bare, count: again });
}

/**
 * Tell the c2s what is safe, once the session's record says so (a new owner of the account must not start below
 * what the client was told). `always`: answer even with nothing new (the c2s may have lost the last answer).
 */
function confirm(account: AccountContext, resource: string, s: SmSession, always: boolean, persist: PersistSession): void {
  const upTo = safe(s);
  const every = account.server.config.streamManagement.confirmEvery;
  if (upTo > s.confirmed && (always || upTo - s.confirmed >= every || s.barrier > s.confirmed)) {
    s.confirmed = upTo;
    // persist() never rejects; the catch is for the answer to the connection (a bus publish that throws).
    // With replicas the record must be on one before the client hears `h`: a failover must not take the count back.
    persist(account, resource, s).then(async (ok) => {
      // Not stored, or in doubt after a failing primary: the next confirmation tries again from what is.
      if (!ok || (await account.server.store.replicated?.(account.bare)) === false) {
        if (s.confirmed === upTo) s.confirmed = s.stored;
        return;
      }
      // The account moved meanwhile: its new owner confirms from the record it read.
      if (!account.acting) return;
      if (upTo > s.stored) s.stored = upTo;
      account.controlConnection(s.node, s.sid, 'sm-h', { h: s.stored });
    }).catch((e: unknown) => log.error('confirming to the connection failed', { account: account.bare, error: e }));
    return;
  }
  if (always) account.controlConnection(s.node, s.sid, 'sm-h', { h: s.stored });
}
