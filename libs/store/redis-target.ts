// Where Redis is: one server, a Redis Cluster, or a primary watched by
// Sentinel. Kept apart from the client so the configuration schema can check
// addresses without loading ioredis.
import { redactUrl } from '../log/index.ts';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export interface SentinelTarget {
  /** The name the sentinels monitor the primary under (`sentinel monitor <name> …`). */
  masterName: string;
  /** Sentinel addresses, `host:port` or `redis://[user:password@]host:port` (the sentinels' own credentials). */
  sentinels: readonly string[];
  /** Credentials of the Redis servers themselves. */
  username?: string;
  password?: string;
}

/** Exactly one of the three; none at all means `DEFAULT_REDIS_URL`. */
export interface RedisTarget {
  /** One server: `redis://[user:password@]host:port[/db]` (`rediss://` for TLS). */
  url?: string;
  /** Redis Cluster seed nodes (any few of its nodes); the client learns the rest from them. */
  cluster?: readonly string[];
  sentinel?: SentinelTarget;
}

export interface RedisAddress {
  host: string;
  port: number;
  username?: string;
  password?: string;
  tls: boolean;
}

/** `host:port`, `redis://…` or `rediss://…`; throws an Error that names the address. */
export function parseRedisAddress(address: string, defaultPort = 6379): RedisAddress {
  let u: URL;
  try {
    u = new URL(address.includes('://') ? address : `redis://${address}`);
  } catch {
    throw new Error(`'${redactUrl(address)}' is not a Redis address (host:port or redis://host:port)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`'${redactUrl(address)}' is not a Redis address: use redis:// or rediss://`);
  if (!u.hostname) throw new Error(`'${redactUrl(address)}' has no host`);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port ? Number(u.port) : defaultPort,
    username: decodeURIComponent(u.username) || undefined,
    password: decodeURIComponent(u.password) || undefined,
    tls: u.protocol === 'rediss:',
  };
}

/** Which of the three a target names; throws when it names more than one. */
export function redisMode(t: RedisTarget): 'url' | 'cluster' | 'sentinel' {
  const set = (['url', 'cluster', 'sentinel'] as const).filter((k) => t[k] !== undefined);
  if (set.length > 1) throw new Error(`give one of store.url, store.cluster and store.sentinel, not ${set.map((k) => `store.${k}`).join(' and ')}`);
  return set[0] ?? 'url';
}

/** The engine and its addresses, credentials hidden: what a log line or a start-up error names. */
export function describeRedisTarget(t: RedisTarget): string {
  switch (redisMode(t)) {
    case 'cluster': return `Redis Cluster at ${t.cluster!.map(redactUrl).join(', ')}`;
    case 'sentinel': return `Redis (Sentinel master '${t.sentinel!.masterName}') via sentinels ${t.sentinel!.sentinels.map(redactUrl).join(', ')}`;
    default: return `Redis at ${redactUrl(t.url ?? DEFAULT_REDIS_URL)}`;
  }
}
