// How Parley's Redis commands ride out a short outage (a restart, a failover):
// a command issued while the connection is down waits in the client's queue
// for the reconnection, up to `commandTimeoutMs` from when it was issued, and
// then fails with "Command timed out" — cleanly, to a caller that handles it
// (docs/architecture.md, "Faults"). Reconnection attempts never fail commands
// by themselves: `maxRetriesPerRequest: 3`, the setting before this, failed
// every queued command after three attempts, 300 ms of ioredis' backoff,
// shorter than a Redis restart.
//
// ioredis keeps a command that timed out in its queue and still sends it once
// the connection is back. The writes Parley retries are idempotent (the same
// value under the same key or id); a message its sender was told could not be
// stored offline may still arrive.
import type { RedisOptions } from 'ioredis';

/** What `store.commandTimeoutMs` defaults to. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 5_000;

/** The options for every Redis connection Parley makes (a single server, Sentinel, or each node of a Cluster). */
export function outageOptions(commandTimeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Pick<RedisOptions, 'maxRetriesPerRequest' | 'commandTimeout'> {
  return { maxRetriesPerRequest: null, commandTimeout: commandTimeoutMs };
}
