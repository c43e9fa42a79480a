// Empty collections shared by every holder that has not put anything in yet. V8 gives each new Map or Set a hash
// table of its own (about 180 bytes with the object); state that most accounts and streams never fill (privacy
// lists, queued presence, pending queries) holds one of these until its first entry instead. A holder types the
// field as ReadonlyMap / ReadonlySet, so the compiler finds every write, and writes through filled(): the shared
// ones refuse entries, so a write that slips past is an error, never a change seen by everyone.

class NeverFilledMap extends Map<never, never> {
  override set(): this {
    throw new Error('the shared empty Map takes no entries');
  }
}

class NeverFilledSet extends Set<never> {
  override add(): this {
    throw new Error('the shared empty Set takes no entries');
  }
}

const EMPTY_MAP: ReadonlyMap<never, never> = new NeverFilledMap();
const EMPTY_SET: ReadonlySet<never> = new NeverFilledSet();

/** The shared empty Map, as the type of the field that holds it. */
export function emptyMap<K, V>(): ReadonlyMap<K, V> {
  return EMPTY_MAP;
}

/** The shared empty Set, as the type of the field that holds it. */
export function emptySet<T>(): ReadonlySet<T> {
  return EMPTY_SET;
}

/** `m` itself to write into, or a new Map where `m` is the shared empty one (store it back). */
export function filledMap<K, V>(m: ReadonlyMap<K, V>): Map<K, V> {
  return m === EMPTY_MAP ? new Map<K, V>() : (m as Map<K, V>);
}

/** `s` itself to write into, or a new Set where `s` is the shared empty one (store it back). */
export function filledSet<T>(s: ReadonlySet<T>): Set<T> {
  return s === EMPTY_SET ? new Set<T>() : (s as Set<T>);
}

/** Deletes `key` from `m`, which may be the shared empty Map (then there is nothing to delete). */
export function deleteFrom<K>(m: ReadonlyMap<K, unknown>, key: K): boolean {
  return m.size !== 0 && (m as Map<K, unknown>).delete(key);
}
