// Random bytes for ids and nonces, from the CSPRNG in batches: one
// randomFillSync per 4 KiB instead of one per session id, stream id and SCRAM
// nonce (each call costs ~25 µs of a login's path). The pool is never reused:
// every byte handed out is fresh.
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let offset = POOL_SIZE;

/** `n` (≤ 256) fresh random bytes, copied out of the pool. */
export function randomBytesPooled(n: number): Buffer {
  if (n > 256) throw new RangeError('randomBytesPooled is for short ids and nonces');
  if (offset + n > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  offset += n;
  return out;
}
