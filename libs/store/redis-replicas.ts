// Waiting for replicas: Redis replicates asynchronously, so a write its
// primary acknowledged can vanish in a failover. Before a message is
// confirmed to its sender (services/session/tracked.ts), the store asks the
// primary that holds the account's slot to `WAIT` until a replica has
// everything this connection wrote before — the account's writes included,
// since one scope's keys share a slot and so a connection. A primary with no
// replica in time is logged and the confirmation goes ahead: the wait is
// bounded, like Redis' own min-replicas-max-lag.
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from './redis-store.ts';

/** CRC16/XMODEM, Redis Cluster's key hash. */
function crc16(s: Buffer): number {
  let crc = 0;
  for (const byte of s) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The Redis Cluster slot of a key (its hash tag's, when it has one). */
export function slotOf(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key)) % 16384;
}

/** The connection to the primary that serves a key: the one the store's writes for it went over. */
function primaryFor(client: RedisClient, key: string): Redis | undefined {
  if (!(client instanceof Cluster)) return client;
  const node = client.slots[slotOf(key)]?.[0];
  if (!node) return undefined;
  return client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === node);
}

/**
 * Waits for replicas, per primary: every caller whose writes are done before a WAIT goes out shares that WAIT (one
 * per primary and turn), and a primary that lacked the replicas (its own replica died, or was promoted in a
 * failover) is not asked again for `degradedMs`: WAIT holds the connection it is sent on, and every command behind it.
 */
export class ReplicaWaiter {
  private readonly next = new Map<Redis, Promise<boolean>>();
  private readonly degradedUntil = new Map<Redis, number>();

  constructor(
    private readonly client: RedisClient,
    private readonly replicas: number,
    private readonly timeoutMs: number,
    private readonly onShort: (got: number) => void,
    private readonly degradedMs = 5_000,
  ) {}

  /**
   * Resolves once the writes this client made for `key` so far are on the replicas (true), or it is known they
   * cannot be (true: the replicas lag, a bounded degradation); false when WAIT itself failed (the connection to the
   * primary broke: what it acknowledged last is in doubt). Never rejects.
   */
  wait(key: string): Promise<boolean> {
    const primary = primaryFor(this.client, key);
    // No connection to the primary (down, failing over): nothing it acknowledged lately can be vouched for.
    if (!primary || primary.status !== 'ready') return Promise.resolve(false);
    if ((this.degradedUntil.get(primary) ?? 0) > Date.now()) return Promise.resolve(true);
    let p = this.next.get(primary);
    if (!p) {
      p = new Promise<boolean>((resolve) => setImmediate(() => {
        this.next.delete(primary);
        primary.wait(this.replicas, this.timeoutMs).then((got) => {
          if (got < this.replicas) {
            this.degradedUntil.set(primary, Date.now() + this.degradedMs);
            this.onShort(got);
          }
          resolve(true);
        }, () => resolve(false));
      }));
      this.next.set(primary, p);
    }
    return p;
  }
}
