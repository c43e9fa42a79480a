// Which accounts have a session waiting for resumption, per shard:
//   {$smwait:<shard>}:waiting   hash   bare JID → ''
// A waiting session's window is a timer in the process that serves its
// account; when a shard moves (that process died, left, or the embedded
// process restarted), the new owner wakes these accounts so their actors
// re-arm the timers — or, after a restart, route what the sessions left.
import { envelope, type Envelope } from '../../../libs/bus/envelope.ts';
import { shardOf } from '../../../libs/cluster/shards.ts';
import type { Store } from '../../../libs/store/store.ts';

export const OP_WAKE = 'sm-wake';
const WAITING = 'waiting';
const scope = (shard: number) => `$smwait:${shard}`;
const EMPTY = new Uint8Array(0);

export function markWaiting(store: Store, shards: number, bare: string, waiting: boolean): Promise<unknown> {
  const s = scope(shardOf(bare, shards));
  return waiting ? store.hset(s, WAITING, bare, EMPTY) : store.hdel(s, WAITING, bare);
}

export async function wakeWaiting(store: Store, shard: number, toActor: (bare: string, env: Envelope) => void): Promise<void> {
  for (const bare of (await store.hgetall(scope(shard), WAITING)).keys()) {
    toActor(bare, envelope({ kind: 'ctl', dir: 'in', op: OP_WAKE, to: bare }));
  }
}
