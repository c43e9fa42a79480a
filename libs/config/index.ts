// Loading: defaults ← YAML file ← environment (PARLEY_C2S__TCP__PORT=5300 sets c2s.tcp.port).
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { configSchema, type Config } from './schema.ts';
import { unknownKeys } from './unknown-keys.ts';

export { configSchema, type Config } from './schema.ts';

type Tree = Record<string, unknown>;

/**
 * PARLEY_* variables that are not keys: the file, the password of the administration commands, the logger's level
 * before the configuration is read, and the variables of the test suites.
 */
const NOT_KEYS = new Set(['PARLEY_CONFIG', 'PARLEY_PASSWORD', 'PARLEY_LOG_LEVEL', 'PARLEY_SOAK_MS']);
const NOT_KEY_PREFIXES = ['PARLEY_TEST_', 'PARLEY_CHAOS_'];

/** The variables of `env` that set keys, each with the key's path. */
function envKeys(env: NodeJS.ProcessEnv): Array<{ name: string; path: string[]; raw: string }> {
  const out: Array<{ name: string; path: string[]; raw: string }> = [];
  for (const [k, raw] of Object.entries(env)) {
    if (!k.startsWith('PARLEY_') || raw === undefined || NOT_KEYS.has(k) || NOT_KEY_PREFIXES.some((p) => k.startsWith(p))) continue;
    out.push({ name: k, raw, path: k.slice(7).split('__').map((p) => p.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())) });
  }
  return out;
}

/** Apply PARLEY_* variables: `__` separates levels, names are camelCased from snake_case. */
export function applyEnv(tree: Tree, env: NodeJS.ProcessEnv): Tree {
  for (const { path, raw } of envKeys(env)) {
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
  if (path) tree = readYaml(path);
  tree = applyEnv(tree, env);
  tree = deepMerge(tree, overrides);
  // A key the schema does not know is an error, named with the nearest known key beside it.
  const unknown = unknownKeys(configSchema, tree);
  if (unknown.length > 0) {
    const vars = envKeys(env);
    throw new ConfigError(unknown.map(({ path: key, suggestion }) => {
      const name = key.join('.');
      const fromEnv = vars.find((v) => key.every((p, i) => v.path[i] === p));
      const hint = suggestion === undefined ? '' : ` (did you mean '${[...key.slice(0, -1), suggestion].join('.')}'?)`;
      return `invalid configuration in ${fromEnv ? fromEnv.name : path ?? 'the command line'}: unknown key '${name}'${hint}`;
    }).join('\n'));
  }
  const r = configSchema.safeParse(tree);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration${path ? ` in ${path}` : ''}:\n${lines.join('\n')}`);
  }
  return r.data;
}

/** The top-level mapping of a YAML file; a file that cannot be read or parsed is a ConfigError. */
function readYaml(path: string): Tree {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message;
    throw new ConfigError(`cannot read configuration ${path}: ${why}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`invalid YAML in ${path}: ${(e as Error).message.split('\n')[0]}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`invalid configuration in ${path}: expected keys and values at the top, found ${Array.isArray(parsed) ? 'a list' : 'a single value'}`);
  return parsed as Tree;
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
