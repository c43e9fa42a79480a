// The engines under a chaos run: NATS and Redis as large deployments run
// them (a 3-node NATS cluster, a Redis Cluster of 3 masters + 3 replicas),
// behind one small interface so a case can kill a node without knowing how
// the engine was started. `startEngines({ clustered: false })` gives single
// servers instead (the same interface; killing the only node is then an
// outage rather than a failover).
import {
  startNats, startNatsCluster, startRedis, startRedisCluster,
  type NatsClusterHandle,
} from '../support/servers.ts';

/** What a Parley process's configuration names: its `bus` and `store` sections. */
export interface EngineConfig {
  bus: { kind: 'nats'; servers: string[] };
  store: { kind: 'redis'; cluster: string[] } | { kind: 'redis'; url: string };
}

export interface Engines {
  readonly clustered: boolean;
  readonly config: EngineConfig;
  /** Every TCP port a Parley process connects to (NATS clients, Redis clients): what a network namespace must reach. */
  clientPorts(): number[];
  /** SIGKILL the NATS server carrying the most Parley connections; resolves with its name. */
  killNats(): Promise<string>;
  /**
   * SIGKILL the Redis master that serves `key` (its replica takes over after the cluster's node timeout);
   * resolves with a description, once a live node names another master for the key's slot.
   */
  killRedisMaster(key: string): Promise<string>;
  stop(): Promise<void>;
}

/** Parley's NATS connection is named by its nodeId; the node with the most of them. */
async function busiestNats(nats: NatsClusterHandle): Promise<NatsClusterHandle['nodes'][number]> {
  let best = nats.nodes[0];
  let most = -1;
  for (const n of nats.nodes) {
    try {
      const res = await fetch(`http://127.0.0.1:${n.monitorPort}/connz?limit=1024`, { signal: AbortSignal.timeout(1000) });
      const count = ((await res.json()) as { num_connections?: number }).num_connections ?? 0;
      if (count > most) { most = count; best = n; }
    } catch { /* a dead node carries nothing */ }
  }
  return best;
}

/** Both, or neither: one that started is stopped when the other fails. */
async function both<A extends { stop(): Promise<void> }, B extends { stop(): Promise<void> }>(a: Promise<A>, b: Promise<B>): Promise<[A, B]> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === 'fulfilled' && rb.status === 'fulfilled') return [ra.value, rb.value];
  if (ra.status === 'fulfilled') await ra.value.stop();
  if (rb.status === 'fulfilled') await rb.value.stop();
  throw ra.status === 'rejected' ? ra.reason : (rb as PromiseRejectedResult).reason;
}

async function clustered(): Promise<Engines> {
  const [nats, redis] = await both(startNatsCluster(), startRedisCluster());
  return {
    clustered: true,
    config: { bus: { kind: 'nats', servers: nats.servers }, store: { kind: 'redis', cluster: redis.seeds } },
    clientPorts: () => [...nats.nodes.map((n) => n.port), ...redis.nodes.map((n) => n.port)],
    async killNats() {
      const victim = await busiestNats(nats);
      await victim.kill();
      return victim.name;
    },
    async killRedisMaster(key) {
      const victim = await redis.masterOf(key);
      const slot = await redis.slotOf(key);
      await victim.kill();
      // Until a live node names a live master for the slot (the replica's promotion).
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          const next = await redis.masterOf(key);
          if (next !== victim) return `master of slot ${slot} on port ${victim.port}; replica on port ${next.port} took over`;
        } catch { /* no node answers for the slot yet */ }
        if (Date.now() > deadline) throw new Error(`no replica took over slot ${slot} within 30 s of killing its master (port ${victim.port})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: async () => { await Promise.all([nats.stop(), redis.stop()]); },
  };
}

async function single(): Promise<Engines> {
  const [nats, redis] = await both(startNats(), startRedis());
  return {
    clustered: false,
    config: { bus: { kind: 'nats', servers: [nats.url] }, store: { kind: 'redis', url: redis.url } },
    clientPorts: () => [nats.port, redis.port],
    async killNats() { await nats.kill(); return 'nats (the only server)'; },
    async killRedisMaster() {
      await redis.kill();
      return `redis on port ${redis.port} (the only server; no replica)`;
    },
    stop: async () => { await Promise.all([nats.stop(), redis.stop()]); },
  };
}

/**
 * The engines; a start that fails because a port taken a moment ago by someone else (the helpers pick free
 * ports, then the servers bind them) is tried again, twice at most.
 */
export async function startEngines(opts: { clustered: boolean }): Promise<Engines> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await (opts.clustered ? clustered() : single());
    } catch (e) {
      if (attempt >= 3 || !/address already in use|EADDRINUSE/.test(String((e as Error).message))) throw e;
    }
  }
}
