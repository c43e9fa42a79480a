// Operator requests that must run in an account's actor (so its in-memory
// state, its contacts' rosters and its live sessions stay right), sent from a
// process that is not part of the deployment: the `parley` CLI.
//  - cluster: the request goes over NATS to whichever session process owns
//    the account's shard, like any envelope; the answer comes back on a
//    subject of the caller's own.
//  - embedded: the server's bus is inside the server process, so the caller
//    runs the actors itself over the same store (stop the server first: a
//    running one would keep its contacts' old rosters in memory).
import { randomBytes } from 'node:crypto';
import { Domains } from '../../libs/accounts/index.ts';
import { HostedDomains } from '../../libs/accounts/hosts.ts';
import { Subjects, type Bus } from '../../libs/bus/bus.ts';
import { envelope } from '../../libs/bus/envelope.ts';
import { InProcessBus } from '../../libs/bus/inprocess.ts';
import { NatsBus, natsServers } from '../../libs/bus/nats.ts';
import { MemoryLeaseTable } from '../../libs/cluster/lease.ts';
import { StaticMembership } from '../../libs/cluster/membership.ts';
import { shardOf } from '../../libs/cluster/shards.ts';
import type { Config } from '../../libs/config/schema.ts';
import type { Store } from '../../libs/store/store.ts';
import { SessionNode } from './session-node.ts';
import type { RemoveAccountRequest } from './user-actor.ts';

export interface RemovalResult {
  existed: boolean;
}

/** Ask the account's actor over `bus` to remove it; `self` names the subject (subjects.c2s(self)) the answer comes on. */
export async function removeAccountOverBus(bus: Bus, subjects: Subjects, self: string, config: Config, bare: string): Promise<RemovalResult> {
  const sid = randomBytes(9).toString('base64url');
  return new Promise<RemovalResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`no session process answered within ${config.session.requestTimeoutMs} ms; is the deployment running?`));
    }, config.session.requestTimeoutMs);
    const sub = bus.subscribe(subjects.c2s(self), (env) => {
      if (env.op !== 'account-removed' || env.sid !== sid) return;
      clearTimeout(timer);
      sub.unsubscribe();
      const d = env.data as { existed: boolean; error?: string };
      if (d.error) reject(new Error(d.error));
      else resolve({ existed: d.existed });
    });
    bus.flush().then(() => {
      const data: RemoveAccountRequest = { node: self };
      bus.publish(subjects.shard(shardOf(bare, config.cluster.shards)), envelope({ kind: 'ctl', dir: 'in', op: 'remove-account', to: bare, sid, data }));
    }).catch((e: unknown) => {
      clearTimeout(timer);
      sub.unsubscribe();
      reject(e instanceof Error ? e : new Error(String(e)));
    });
  });
}

/** Remove an account with all its data through its actor, telling its contacts. */
export async function removeAccountThroughActor(config: Config, bare: string, openStore: () => Promise<Store>): Promise<RemovalResult> {
  const self = `admin-${randomBytes(4).toString('hex')}`;
  if (config.bus.kind === 'nats') {
    const bus = await NatsBus.connect(natsServers(config.bus), self, undefined, { timeoutMs: config.bus.connectTimeoutMs });
    try {
      return await removeAccountOverBus(bus, new Subjects(config.bus.subjectPrefix), self, config, bare);
    } finally {
      await bus.close();
    }
  }
  const store = await openStore();
  const bus = new InProcessBus(self);
  const subjects = new Subjects();
  const hosts = new HostedDomains(config.domains, new Domains(store));
  await hosts.refresh();
  // Sessions the store lists are left alone: this process has no connections to judge them by.
  const node = new SessionNode({ config, bus, subjects, store, hosts, membership: new StaticMembership(self), c2sMembers: () => [], c2sAlive: () => true,
    leases: new MemoryLeaseTable(), leaseTtlMs: Infinity });
  await node.start();
  try {
    return await removeAccountOverBus(bus, subjects, self, config, bare);
  } finally {
    await node.stop(false);
    await store.close();
  }
}
