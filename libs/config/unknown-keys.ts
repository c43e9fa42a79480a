// Keys the schema does not know: a misspelt key would otherwise be dropped by
// zod and its default used in silence. The walk follows the schema's shape
// (objects, the `kind` of the bus and the store, records, arrays) over the
// parsed tree and names each unknown key with its nearest sibling.
import { z } from 'zod';

export interface UnknownKey {
  /** Path of the unknown key, e.g. ['c2s', 'tpc']. */
  path: string[];
  /** The known key at the same level nearest by edit distance, when one is near enough. */
  suggestion?: string;
}

/** Every key of `tree` that `schema` has no place for. */
export function unknownKeys(schema: z.ZodTypeAny, tree: unknown, path: string[] = []): UnknownKey[] {
  const s = unwrap(schema);
  if (tree === null || typeof tree !== 'object') return [];
  if (s instanceof z.ZodObject) {
    if (Array.isArray(tree)) return [];
    const shape = s.shape as Record<string, z.ZodTypeAny>;
    const out: UnknownKey[] = [];
    for (const [k, v] of Object.entries(tree as Record<string, unknown>)) {
      const child = shape[k];
      if (child) out.push(...unknownKeys(child, v, [...path, k]));
      else out.push({ path: [...path, k], ...suggest(k, Object.keys(shape)) });
    }
    return out;
  }
  if (s instanceof z.ZodDiscriminatedUnion) {
    // Only the keys of the branch `kind` names; an unknown kind is the schema's own error.
    const kind = (tree as Record<string, unknown>)[s.discriminator as string];
    const branch = (s.optionsMap as Map<unknown, z.ZodTypeAny>).get(kind);
    return branch ? unknownKeys(branch, tree, path) : [];
  }
  if (s instanceof z.ZodRecord) {
    if (Array.isArray(tree)) return [];
    return Object.entries(tree as Record<string, unknown>).flatMap(([k, v]) => unknownKeys(s.valueSchema as z.ZodTypeAny, v, [...path, k]));
  }
  if (s instanceof z.ZodArray) {
    if (!Array.isArray(tree)) return [];
    return tree.flatMap((v, i) => unknownKeys(s.element as z.ZodTypeAny, v, [...path, String(i)]));
  }
  return [];
}

function unwrap(s: z.ZodTypeAny): z.ZodTypeAny {
  for (;;) {
    if (s instanceof z.ZodDefault) s = s._def.innerType as z.ZodTypeAny;
    else if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodTypeAny;
    else if (s instanceof z.ZodEffects) s = s.innerType() as z.ZodTypeAny;
    else return s;
  }
}

/** The nearest of `known` to `key` (case ignored), if it is at most a third of the key's length away (at least 2). */
function suggest(key: string, known: string[]): { suggestion?: string } {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? { suggestion: best } : {};
}

/** Levenshtein distance, an adjacent transposition counting as one edit. */
export function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
