// One bus interface, two implementations: in-process (embedded mode) and NATS (cluster).
import type { Envelope } from './envelope.ts';

export interface Subscription {
  unsubscribe(): void;
}

export interface Bus {
  readonly kind: 'inprocess' | 'nats';
  /** Stamped into every published envelope; unique per process. */
  readonly origin: string;
  /**
   * Fire and forget. Envelopes one process publishes to one subject arrive in
   * the order published; nothing is promised across subjects or publishers.
   */
  publish(subject: string, env: Envelope): void;
  /** The handler runs synchronously in arrival order; it must not block. */
  subscribe(subject: string, handler: (env: Envelope) => void): Subscription;
  /** Resolves once every subscription made so far is registered with the server. */
  flush(): Promise<void>;
  /** Envelopes published since start (the architecture's cost, counted). */
  readonly published: number;
  /** Round trip to the bus server in seconds (0 in-process). */
  rtt(): Promise<number>;
  /** True while the bus can carry messages (readiness). */
  healthy(): boolean;
  close(): Promise<void>;
}

/** Subject names, in one place: docs/architecture.md describes the scheme. */
export class Subjects {
  constructor(readonly prefix = 'parley') {}
  shard(n: number): string { return `${this.prefix}.shard.${n}`; }
  c2s(node: string): string { return `${this.prefix}.c2s.${node}`; }
  /** Batches for the actors a session process serves (fan-out). */
  session(node: string): string { return `${this.prefix}.session.${node}`; }
  /** Stanzas for remote domains, sharded by domain over the s2s processes. */
  s2s(shard: number): string { return `${this.prefix}.s2s.${shard}`; }
  control(node: string): string { return `${this.prefix}.ctl.${node}`; }
  /** Administration requests (services/admin): to every process, or to one; answers come on the asker's own. */
  admin(node?: string): string { return node === undefined ? `${this.prefix}.admin` : `${this.prefix}.admin.${node}`; }
  /** Stanzas for an external component's domain: the process holding its connection subscribes. */
  component(domain: string): string { return `${this.prefix}.component.${domain}`; }
  /** Where the holders of component connections announce them (libs/components). */
  components(): string { return `${this.prefix}.components`; }
  /** Where connection managers announce their public address and whether they have room (services/c2s/admission). */
  admission(): string { return `${this.prefix}.admission`; }
}
