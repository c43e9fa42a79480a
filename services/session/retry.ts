// Store writes an actor must not lose (a managed session's queue and record,
// the message archive) but does not wait for: the first try goes out at once;
// one that fails is tried again, `session.storeRetries` times with a delay of
// `session.storeRetryDelayMs` doubled each time, as background work of the
// actor (a shard handoff or a passivation waits for it). The writes retried
// this way are idempotent: the same value under the same key or id.
import { setTimeout as sleep } from 'node:timers/promises';
import { logger, throttledWarn } from '../../libs/log/index.ts';
import { StaleFenceError } from '../../libs/store/store.ts';
import type { AccountContext } from './module.ts';

const log = logger('store-retry');
// During an outage every write fails alike: one warning per 10 s, with how many were held back.
const warnRetrying = throttledWarn(log, 10_000);

export interface RetriedWrite {
  /** Names the write in the log ('queueing a stanza for a managed session'). */
  what: string;
  /** Issues the write; called again for each retry (so it may write what is current by then). */
  write: () => Promise<unknown>;
  /** Asked before each retry: false when the write no longer means anything (the session ended meanwhile). */
  wanted?: () => boolean;
  /** Every try failed. */
  gaveUp?: (error: unknown) => void;
}

/** Resolves true once the write is done (or no longer wanted), false when every try failed (logged); never rejects. */
export function retriedWrite(account: AccountContext, w: RetriedWrite): Promise<boolean> {
  let first: Promise<unknown>;
  try {
    first = w.write();
  } catch (e) {
    first = Promise.reject(e);
  }
  return first.then(() => true, (e: unknown) => {
    const again = retry(account, w, e);
    account.background(again, w.what);
    return again;
  });
}

async function retry(account: AccountContext, w: RetriedWrite, firstError: unknown): Promise<boolean> {
  const { storeRetries, storeRetryDelayMs } = account.server.config.session;
  let error = firstError;
  // The account has a newer owner: it writes now, never this process again.
  if (error instanceof StaleFenceError) return false;
  if (storeRetries > 0) warnRetrying('a store write failed; trying again', { what: w.what, account: account.bare, retries: storeRetries, error });
  for (let i = 0; i < storeRetries; i++) {
    await sleep(storeRetryDelayMs * 2 ** i);
    if (w.wanted && !w.wanted()) return true;
    try {
      await w.write();
      log.info(`${w.what} succeeded on retry`, { account: account.bare, retry: i + 1 });
      return true;
    } catch (e) {
      error = e;
      if (e instanceof StaleFenceError) return false;
    }
  }
  log.error(`${w.what} failed for good`, { account: account.bare, tries: storeRetries + 1, error });
  try {
    w.gaveUp?.(error);
  } catch (e) {
    log.error('handling a failed write failed', { account: account.bare, error: e });
  }
  return false;
}
