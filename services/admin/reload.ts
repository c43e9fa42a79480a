// `parley reload` and SIGHUP: re-read this process's configuration file and
// apply what can change while it runs. The live Config object is shared by
// every service of the process, so a key read at use time takes effect by
// being written into it; everything else waits for a restart and is named.
import type { Config } from '../../libs/config/schema.ts';
import { setLogFormat, setLogLevel } from '../../libs/log/index.ts';
import type { NodeReload } from './operations.ts';

/**
 * Keys applied at run time: the log settings, the certificates (the c2s
 * listeners read them at each connection), and limits read at each use.
 * A key is listed by itself or by a prefix ending in '.'.
 */
export const RELOADABLE_KEYS: readonly string[] = [
  'log.level',
  'log.format',
  'c2s.tls',
  'c2s.certificates',
  'c2s.maxAuthFailures',
  'limits.bytesPerSecond',
  'limits.maxOutboundBufferBytes',
  'roster.maxItems',
  'roster.maxPendingRequests',
  'admin.statsIntervalSeconds',
  'admin.maxAnnounceLength',
  'admin.requestTimeoutMs',
];

/** Subtrees compared as one value: a change anywhere in them is one key. */
const WHOLE = new Set(['c2s.tls', 'c2s.certificates', 'domains']);

function reloadable(key: string): boolean {
  return RELOADABLE_KEYS.some((k) => k.endsWith('.') ? key.startsWith(k) : key === k);
}

type Tree = Record<string, unknown>;
const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The keys whose values differ between two configurations, as dotted paths. */
export function changedKeys(before: unknown, after: unknown, prefix = ''): string[] {
  if (!WHOLE.has(prefix) && isTree(before) && isTree(after)) {
    const out: string[] = [];
    for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
      out.push(...changedKeys(before[k], after[k], prefix ? `${prefix}.${k}` : k));
    }
    return out;
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix];
}

function setPath(tree: Tree, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = tree;
  for (const p of parts.slice(0, -1)) {
    if (!isTree(node[p])) node[p] = {};
    node = node[p] as Tree;
  }
  node[parts[parts.length - 1]] = value;
}

function getPath(tree: Tree, key: string): unknown {
  let node: unknown = tree;
  for (const p of key.split('.')) node = isTree(node) ? node[p] : undefined;
  return node;
}

export interface ReloadHooks {
  /** Read and validate the configuration file again (throws a ConfigError when it is bad). */
  read(): Config;
  /**
   * Prepare new certificates from the fresh configuration (read every file,
   * throw if one is bad) and return what installs them; undefined when this
   * process serves no TLS of its own.
   */
  prepareCertificates?(fresh: Config): Promise<() => void>;
}

/**
 * Re-read and apply. Everything that can fail (reading, validation, the
 * certificate files) happens before anything is changed, so a bad
 * configuration changes nothing and says why.
 */
export async function reloadConfiguration(node: string, live: Config, hooks: ReloadHooks): Promise<NodeReload> {
  let fresh: Config;
  let install: (() => void) | undefined;
  try {
    fresh = hooks.read();
    install = hooks.prepareCertificates ? await hooks.prepareCertificates(fresh) : undefined;
  } catch (e) {
    return { node, applied: [], notApplied: [], certificatesReloaded: false, error: e instanceof Error ? e.message : String(e) };
  }
  const changed = changedKeys(live, fresh);
  const applied = changed.filter(reloadable);
  const notApplied = changed.filter((k) => !reloadable(k));
  for (const key of applied) setPath(live as unknown as Tree, key, getPath(fresh as unknown as Tree, key));
  // `parley log-level` writes live.log.level too: a reload puts back what the file says.
  if (applied.includes('log.level')) setLogLevel(live.log.level);
  if (applied.includes('log.format')) setLogFormat(live.log.format);
  install?.();
  // The HTTPS listener loads its certificate files once, at start.
  if (install && live.c2s.http.enabled && live.c2s.http.tls && applied.some((k) => k === 'c2s.tls' || k === 'c2s.certificates')) {
    notApplied.push('c2s.http.tls (the HTTPS listener keeps the certificate it started with)');
  }
  return { node, applied, notApplied, certificatesReloaded: install !== undefined };
}
