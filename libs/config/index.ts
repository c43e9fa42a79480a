// Loading: defaults ← YAML file ← environment (PARLEY_C2S__TCP__PORT=5300 sets c2s.tcp.port).
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { configSchema, type Config } from './schema.ts';

export { configSchema, type Config } from './schema.ts';

type Tree = Record<string, unknown>;

/** Apply PARLEY_* variables: `__` separates levels, names are camelCased from snake_case. */
export function applyEnv(tree: Tree, env: NodeJS.ProcessEnv): Tree {
  for (const [k, raw] of Object.entries(env)) {
    if (!k.startsWith('PARLEY_') || raw === undefined || k === 'PARLEY_CONFIG') continue;
    const path = k.slice(7).split('__').map((p) => p.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()));
    let node = tree;
    for (let i = 0; i < path.length - 1; i++) {
      const next = node[path[i]];
      if (typeof next !== 'object' || next === null) node[path[i]] = {};
      node = node[path[i]] as Tree;
    }
    node[path[path.length - 1]] = parseValue(raw);
  }
  return tree;
}

function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw.includes(',') ? raw.split(',') : raw;
  }
}

export class ConfigError extends Error {}

export function loadConfig(file?: string, env: NodeJS.ProcessEnv = process.env, overrides: Tree = {}): Config {
  let tree: Tree = {};
  const path = file ?? env.PARLEY_CONFIG;
  if (path) {
    const parsed: unknown = parseYaml(readFileSync(path, 'utf8'));
    if (parsed !== null && typeof parsed === 'object') tree = parsed as Tree;
  }
  tree = applyEnv(tree, env);
  tree = deepMerge(tree, overrides);
  const r = configSchema.safeParse(tree);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration${path ? ` in ${path}` : ''}:\n${lines.join('\n')}`);
  }
  return r.data;
}

function deepMerge(a: Tree, b: Tree): Tree {
  const out: Tree = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object' && !Array.isArray(prev)
      ? deepMerge(prev as Tree, v as Tree) : v;
  }
  return out;
}
