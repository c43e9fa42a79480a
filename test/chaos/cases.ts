// The chaos cases, one test file each (a-…f-*.test.ts), so that each runs
// alone and within the test runner's per-file time limit. Each case runs on
// a real cluster: 3 NATS servers, a Redis Cluster (3 masters + 3 replicas),
// 2 c2s and 3 session processes, 20 clients with stream management
// (XEP-0198) and 20 without chatting across the two c2s nodes, and one fault:
//   (a) SIGKILL a session process;       (b) SIGKILL a c2s process;
//   (c) SIGSTOP a session process for 3 × memberTtlMs, then SIGCONT;
//   (d) cut a session process off the network for 3 × memberTtlMs, then heal;
//   (e) SIGKILL a NATS server;           (f) SIGKILL a Redis master.
// Each case prints one block of figures for both groups. Asserted for the
// managed group (what XEP-0198 promises a user): no message the server
// acknowledged is lost, none reaches a client twice after it acknowledged it,
// each sender's order is kept, chat flows again within the bound (every pair
// delivering, every managed client's stanzas acknowledged by the end), and
// the session logs never show two actors for one account. The group without
// stream management is only reported: it shows what a fault costs a client
// that has no acknowledgements (its losses are expected).
//
// PARLEY_CHAOS_LONG=1: 60 clients per group and 30 s of chat after each fault
// (longer than the test runner's per-file limit in `npm test`: run the files
// alone). PARLEY_CHAOS_KEEP=1 keeps the logs. PARLEY_CHAOS_VERBOSE=1 prints
// each phase as it happens. Case (d) needs root and iproute2; without them
// (or with PARLEY_CHAOS_NO_NETNS=1) it pauses the process instead, and says
// so in its figures.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER, countedOut, LONG, runCase, sleep, stopAll, TIMING, type CaseSpec } from './harness.ts';

const PAUSE_MS = 3 * CLUSTER.memberTtlMs;

/**
 * How soon chat must flow again after the fault starts, in every managed pair. The slowest path is a
 * session process that stops answering: its members' entry expires after memberTtlMs (1.5 s) and its
 * shard leases (same TTL) must run out before another process may take them (≤ 3 s in all); a client
 * whose <r/> went to the dead process hears nothing and gives up on its connection after its ack timeout
 * (4 s), then resumes (one login, < 1 s on loopback). A Redis master's failover takes the cluster's
 * node timeout (2 s) and an election; a NATS client reconnects within 250 ms. That is 8–9 s at worst on
 * an idle machine; 15 s leaves room for a loaded 2-core CI runner.
 */
const FLOW_BOUND_MS = 15_000;

const cases: (CaseSpec & { key: Case })[] = [
  {
    key: 'a', title: '(a) SIGKILL a session process', flowBoundMs: FLOW_BOUND_MS,
    async fault(c, chatting) {
      const victim = c.busiestSession(chatting);
      await victim.kill();
      return `killed ${victim.nodeId}`;
    },
  },
  {
    key: 'b', title: '(b) SIGKILL a c2s process', flowBoundMs: FLOW_BOUND_MS,
    async fault(c) {
      await c.c2s[0].kill();
      return `killed ${c.c2s[0].nodeId} (half of each group was on it; they reconnect to ${c.c2s[1].nodeId})`;
    },
  },
  {
    key: 'c', title: '(c) SIGSTOP a session process for 3 × memberTtlMs, then SIGCONT', flowBoundMs: FLOW_BOUND_MS,
    async fault(c, chatting) {
      const victim = c.busiestSession(chatting);
      const at = Date.now();
      victim.signal('SIGSTOP');
      await sleep(PAUSE_MS);
      victim.signal('SIGCONT');
      assert.ok(countedOut(c, victim, at), `the others never counted ${victim.nodeId} out during its pause`);
      return `stopped ${victim.nodeId} for ${PAUSE_MS} ms`;
    },
  },
  {
    key: 'd', title: '(d) cut a session process off the network for 3 × memberTtlMs, then heal', flowBoundMs: FLOW_BOUND_MS, namespace: true,
    async fault(c) {
      const victim = c.sessions[2];
      const at = Date.now();
      if (!c.ns) {
        // No namespace to be had here (not root, no iproute2): a pause is the nearest fault.
        victim.signal('SIGSTOP');
        await sleep(PAUSE_MS);
        victim.signal('SIGCONT');
        assert.ok(countedOut(c, victim, at), `the others never counted ${victim.nodeId} out during its pause`);
        return `no network namespace (${c.nsUnavailable}): stopped ${victim.nodeId} for ${PAUSE_MS} ms instead`;
      }
      c.ns.cut();
      await sleep(PAUSE_MS);
      c.ns.heal();
      assert.ok(countedOut(c, victim, at), `the others never counted ${victim.nodeId} out while it was cut off`);
      return `cut ${victim.nodeId} (in namespace ${c.ns.name}) off for ${PAUSE_MS} ms`;
    },
  },
  {
    key: 'e', title: '(e) SIGKILL a NATS server', flowBoundMs: FLOW_BOUND_MS,
    async fault(c) {
      return `killed ${await c.engines.killNats()} (the one carrying the most Parley connections)`;
    },
  },
  {
    key: 'f', title: '(f) SIGKILL a Redis master', flowBoundMs: FLOW_BOUND_MS,
    async fault(c) {
      // The master of the session processes' lease table: every process loses its leases until the replica takes over.
      return `killed the ${await c.engines.killRedisMaster('parley:{leases:session}')}`;
    },
  },
];

export type Case = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';

/** Register the case as this file's test. */
export function chaosTest(key: Case): void {
  const spec = cases.find((c) => c.key === key)!;
  after(stopAll);
  test(`chaos ${spec.title} (${TIMING.clients} clients with stream management, ${TIMING.clients} without${LONG ? ', long' : ''})`,
    { timeout: LONG ? 900_000 : 170_000 }, async () => {
      const r = await runCase(spec);
      console.log(r.lines.map((l) => `# chaos ${l}`).join('\n'));
      assert.deepEqual(r.violations, [], `${spec.title}: the managed clients saw the server break its promises`);
    });
}
