// A room's writes, in the order it issued them, without waiting for each:
// the actor hands them over and goes on; one batch is in flight at a time,
// and what queued up meanwhile goes together in the next (one MULTI, one
// lmdb transaction). Order matters — a nick that leaves and comes back is an
// hdel then an hset of one field — and the Store does not promise it across
// separate calls (the lmdb store's puts and transactions may commit out of
// issue order), so the room never has two writes of one scope in flight.
import type { Store, StoreBatch } from '../../../libs/store/store.ts';

type Op = { batch: (b: StoreBatch) => void } | { run: () => Promise<unknown> };

export class WriteQueue {
  private ops: Op[] = [];
  private draining = false;
  private waiters: (() => void)[] = [];
  /** Writes that failed so far (each also went to onError): a caller compares before and after. */
  failures = 0;

  constructor(private readonly store: Store, private readonly scope: string, private readonly onError: (e: unknown) => void) {}

  /** Writes issued and not yet applied. */
  get pending(): boolean {
    return this.draining || this.ops.length > 0;
  }

  /** Operations that fit a batch (hset, hdel, del, rpush). */
  batch(op: (b: StoreBatch) => void): void {
    this.ops.push({ batch: op });
    this.kick();
  }

  /** Anything else (ltrim), still in order with the rest. */
  run(op: () => Promise<unknown>): void {
    this.ops.push({ run: op });
    this.kick();
  }

  /** Resolves once everything issued so far is applied. */
  done(): Promise<void> {
    return this.pending ? new Promise((r) => this.waiters.push(r)) : Promise.resolve();
  }

  private kick(): void {
    if (this.draining) return;
    this.draining = true;
    // What one handler issues in one turn goes in one batch.
    queueMicrotask(() => void this.drain().catch(this.failed));
  }

  private async drain(): Promise<void> {
    try {
      while (this.ops.length > 0) {
        const ops = this.ops;
        this.ops = [];
        let b: StoreBatch | undefined;
        for (const op of ops) {
          if ('batch' in op) {
            op.batch((b ??= this.store.batch(this.scope)));
            continue;
          }
          if (b) await this.exec(b);
          b = undefined;
          await op.run().catch(this.failed);
        }
        if (b) await this.exec(b);
      }
    } finally {
      this.draining = false;
      for (const w of this.waiters.splice(0)) w();
    }
  }

  private exec(b: StoreBatch): Promise<void> {
    return b.exec().catch(this.failed);
  }

  private readonly failed = (e: unknown): void => {
    this.failures++;
    this.onError(e);
  };
}
