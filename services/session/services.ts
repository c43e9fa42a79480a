// What an actor needs from its process, in one object.
import { randomBytes } from 'node:crypto';
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { Envelope } from '../../libs/bus/envelope.ts';
import type { Config } from '../../libs/config/schema.ts';
import type { Store } from '../../libs/store/store.ts';
import type { ModuleRegistry, ServerContext } from './module.ts';
import type { Router } from './router.ts';
import type { ServiceDomains } from './service-domains.ts';

export interface SessionServices {
  config: Config;
  store: Store;
  router: Router;
  hosts: HostedDomains;
  modules: ModuleRegistry;
  context: ServerContext;
  /** False once a c2s node's heartbeat has expired: its sessions are gone. */
  c2sAlive(node: string): boolean;
  /** Counts for the metrics endpoint (offline storage). */
  counters?: { offline(event: 'stored' | 'delivered', n: number): void };
  newResource(): string;
  /** Service domains (`<subdomain>.<domain>`): routing sends their stanzas to the service's actors. */
  services: ServiceDomains;
  /** Publish to a connection manager's subject (room fan-out batches). */
  toC2s(node: string, env: Envelope): void;
  /** May this process still act for a shard (it holds a lease it can trust)? Absent: always. */
  serving?: (shard: number) => boolean;
  /** The fencing token this process holds for a shard (logged when an actor starts). */
  tokenOf?: (shard: number) => number | undefined;
}

export function newResource(): string {
  return randomBytes(9).toString('base64url');
}
