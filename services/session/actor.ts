// An actor's mailbox: envelopes for one bare JID are handled one at a time, in
// arrival order. A handler that needs no I/O runs synchronously, so a chat
// message costs no promise; one that awaits holds the mailbox until it is done.
import type { Envelope } from '../../libs/bus/envelope.ts';
import { logger } from '../../libs/log/index.ts';
import { StaleFenceError } from '../../libs/store/store.ts';

const log = logger('actor');

export abstract class Actor {
  private readonly mailbox: Envelope[] = [];
  private head = 0;
  private running = false;
  private loaded = false;
  private idleWaiters: (() => void)[] = [];
  lastActive = Date.now();
  /** May this process still act for the shard (its lease)? Asked before each envelope. */
  gate: ((shard: number) => boolean) | undefined;
  private discarded = false;

  constructor(readonly key: string, readonly shard: number, readonly maxMailbox: number) {}

  /** Read state from the store on activation. */
  protected abstract load(): Promise<void>;
  protected abstract handle(env: Envelope): void | Promise<void>;
  /** An envelope this actor cannot take (mailbox full, state unreadable) or whose handler failed: answer its sender. */
  protected abstract refuse(env: Envelope, reason: 'overflow' | 'unavailable' | 'failed'): void;

  get depth(): number {
    return this.mailbox.length - this.head;
  }

  get busy(): boolean {
    return this.running || this.depth > 0;
  }

  push(env: Envelope): void {
    if (this.discarded) return;
    if (this.depth >= this.maxMailbox) {
      this.answerRefused(env, 'overflow');
      return;
    }
    this.mailbox.push(env);
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      if (!this.loaded) {
        await this.load();
        this.loaded = true;
      }
      while (this.head < this.mailbox.length) {
        if (this.discarded) break;
        // The shard's lease lapsed: stop here and keep the mailbox; resume() goes on, discard() drops it.
        if (this.gate !== undefined && !this.gate(this.shard)) break;
        const env = this.mailbox[this.head];
        this.mailbox[this.head++] = undefined as unknown as Envelope;
        if (this.head > 1024 && this.head * 2 > this.mailbox.length) {
          this.mailbox.splice(0, this.head);
          this.head = 0;
        }
        try {
          const r = this.handle(env);
          if (r !== undefined) await r;
        } catch (e) {
          if (e instanceof StaleFenceError) {
            // The account has a newer owner (the shard moved): that process handles the envelope and answers.
            log.warn('handler stopped: a newer owner of the account wrote first', { actor: this.key, op: env.op || env.kind });
            continue;
          }
          // A store or bus call failed under it: the sender hears so (a stanza error with its text), never silence.
          log.error('handler failed', { actor: this.key, op: env.op || env.kind, from: env.from, error: e });
          this.answerRefused(env, 'failed');
        }
      }
    } catch (e) {
      log.error('activation failed', { actor: this.key, error: e });
      // Nothing queued is dropped silently: each sender hears that we could not take it.
      for (let i = this.head; i < this.mailbox.length; i++) this.answerRefused(this.mailbox[i], 'unavailable');
      this.head = this.mailbox.length;
    } finally {
      if (this.discarded || this.head >= this.mailbox.length) {
        this.mailbox.length = 0;
        this.head = 0;
      }
      this.running = false;
      this.lastActive = Date.now();
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * This process still acts for the key: not discarded, its shard's lease trusted. Work begun before a lease was
   * lost (a write's completion, a wait for replicas) asks before it tells anyone anything: the next owner answers.
   */
  get acting(): boolean {
    return !this.discarded && (this.gate === undefined || this.gate(this.shard));
  }

  /** Stopped by its gate with envelopes left (a lapsed lease). */
  get paused(): boolean {
    return !this.running && this.depth > 0 && this.gate !== undefined && !this.gate(this.shard);
  }

  /** The gate opened again: go on with the mailbox. */
  resume(): void {
    if (!this.running && this.depth > 0 && !this.discarded) void this.run();
  }

  /**
   * The shard's lease is gone: stop before the next envelope and answer no one
   * (every envelope also reached the shard's next owner, or its sender holds it).
   */
  discard(): void {
    this.discarded = true;
    for (let i = this.head; i < this.mailbox.length; i++) this.mailbox[i] = undefined as unknown as Envelope;
    this.head = this.mailbox.length;
  }

  /** refuse(), whose own failure (a stanza that cannot be parsed) costs only that envelope. */
  private answerRefused(env: Envelope, reason: 'overflow' | 'unavailable' | 'failed'): void {
    try {
      this.refuse(env, reason);
    } catch (e) {
      log.error('could not answer a refused envelope', { actor: this.key, op: env.op || env.kind, reason, error: e });
    }
  }

  /** Resolves once the mailbox is empty and nothing runs. */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}
