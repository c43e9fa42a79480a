// Bare JIDs hash into a fixed number of shards; shards go to live session
// processes by rendezvous hashing, so every process computes the same owner
// from the same membership with no coordinator.

/** FNV-1a over UTF-16 code units: cheap, stable, and well spread for JIDs. */
export function hash32(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // final avalanche (murmur3 fmix) so nearby inputs spread over all shards
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function shardOf(bareJid: string, shards: number): number {
  return hash32(bareJid) % shards;
}

/** Highest-random-weight owner of a shard among the members. */
export function ownerOf(shard: number, members: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1;
  for (const m of members) {
    const w = hash32(`${m}#${shard}`);
    if (w > bestWeight || (w === bestWeight && best !== undefined && m < best)) {
      best = m;
      bestWeight = w;
    }
  }
  return best;
}

export function owners(shards: number, members: readonly string[]): string[] {
  const out = new Array<string>(shards);
  for (let s = 0; s < shards; s++) out[s] = ownerOf(s, members) ?? '';
  return out;
}
