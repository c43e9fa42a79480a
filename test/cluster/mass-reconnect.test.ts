// A mass reconnect: hundreds of stream-managed clients on one connection manager, which is SIGKILLed; they all
// reconnect and resume at once (no jitter) on the two others, whose admission control (c2s.admission) refuses
// part of the wave and has it retried. Every session resumes, every acknowledged message sent to them before and
// during the storm arrives exactly once, and the latency of clients that stayed connected on the survivors is
// measured and bounded meanwhile. A newer resumption of a live session takes it over; one of an ended session is
// item-not-found.
//
// MASS_RECONNECT_P99_MS (default 1000) bounds the steady clients' p99 latency during the storm, over the second before
// it. MASS_RECONNECT_TRACE=1 prints the slowest deliveries and when they came. MASS_RECONNECT_CLIENTS (default 500) sets
// the number of clients, spread over one load-generator process per 5,000,
// each on its own source address in 127.0.0.0/8 (docs/performance.md, *Mass reconnect*, for runs with 3,000).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { Accounts } from '../../libs/accounts/index.ts';
import { startCluster, DOMAIN, PASSWORD, type Cluster, type ClusterProcess } from '../support/parley.ts';
import { rawLogin } from '../support/im.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import type { StormClientReport, StormInit, StormReply } from '../support/storm-generator.ts';

const CLIENTS = Number(process.env.MASS_RECONNECT_CLIENTS ?? 500);
const PER_GENERATOR = 5000;
const PAIRS = 4;
/** New streams, logins and resumptions per survivor: 40 at once, then 100 a second. */
const PACE = { burst: 40, ratePerSecond: 100 };
const NS_SM = 'urn:xmpp:sm:3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Generator {
  private readonly child: ChildProcess;
  private waiting: ((r: StormReply) => void) | undefined;
  constructor() {
    this.child = fork(new URL('../support/storm-generator.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: 'inherit' });
    this.child.on('message', (m) => this.waiting?.(m as StormReply));
  }
  ask(m: StormInit | { type: 'report' }, timeoutMs: number): Promise<StormReply> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer to ${m.type} within ${timeoutMs} ms`)), timeoutMs);
      this.waiting = (r) => { clearTimeout(t); resolve(r); };
      this.child.send(m);
    });
  }
  stop(): void { this.child.kill('SIGKILL'); }
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

/** A stream-managed sender: what it sends counts as acknowledged once the server's <a h/> covers it. */
async function managed(port: number, user: string): Promise<RawClient & { sent: number; acked(): Promise<void> }> {
  const c = await rawLogin(port, user, 'sender');
  c.send(`<enable xmlns='${NS_SM}'/>`);
  await c.waitFor(/<enabled /);
  const x = Object.assign(c, {
    sent: 0,
    /** Asked again every second: an <r/> is answered with what is confirmed then, and nothing more comes unasked. */
    async acked() {
      const want = new RegExp(`<a xmlns=["']${NS_SM}["'] h=["']${x.sent}["']/>`);
      for (let i = 0; i < 60 && !want.test(c.output); i++) {
        c.send(`<r xmlns='${NS_SM}'/>`);
        await c.waitFor(want, 1000).catch(() => {});
      }
      await c.waitFor(want, 1);
    },
  });
  return x;
}

describe(`mass reconnect: ${CLIENTS} clients lose their connection manager at once`, () => {
  let c: Cluster;
  const generators: Generator[] = [];
  const open: RawClient[] = [];
  let victim: ClusterProcess;
  let survivors: ClusterProcess[];
  let pinger: NodeJS.Timeout | undefined;

  before(async () => {
    c = await startCluster({
      c2s: 3, session: 2,
      // The production membership TTL: a survivor busy with the wave on this shared 2-core machine must not be counted
      // dead (the resumptions do not wait for the killed one to be noticed: a newer resumption takes a session over).
      cluster: { memberTtlMs: 5000 },
      config: {
        log: { level: 'warn' },
        // Buckets far smaller than the wave (a survivor takes half of it): most of it is refused and retried, paced so
        // that the survivors keep serving their own clients on this 2-core machine.
        c2s: { admission: { streams: PACE, logins: PACE, resumptions: PACE } },
        streamManagement: { resumeTimeoutSeconds: 300 },
        // One sender writes to every storm client, none of them its contact.
        spam: { strangerRate: { perAccount: 1_000_000 } },
      },
    });
    [victim, ...survivors] = c.processes.filter((p) => p.role === 'c2s');
    // Few SCRAM iterations: thousands of accounts are made in seconds (logins here are PLAIN over loopback).
    const accounts = new Accounts(c.store, 16);
    const users = [...Array.from({ length: CLIENTS }, (_, i) => `storm${i}`), ...Array.from({ length: 2 * PAIRS }, (_, i) => `steady${i}`), 'sender'];
    for (let i = 0; i < users.length; i += 200) await Promise.all(users.slice(i, i + 200).map((u) => accounts.add(`${u}@${DOMAIN}`, PASSWORD)));
  });
  after(async () => {
    clearInterval(pinger);
    for (const g of generators) g.stop();
    for (const x of open) x.close();
    await c?.stop();
  });

  test('every session resumes on the survivors, no acknowledged message is lost or doubled, steady clients keep their latency', async () => {
    const users = Array.from({ length: CLIENTS }, (_, i) => `storm${i}`);
    const shares: string[][] = [];
    for (let i = 0; i < users.length; i += PER_GENERATOR) shares.push(users.slice(i, i + PER_GENERATOR));
    const t0 = Date.now();
    const ready = await Promise.all(shares.map((share, g) => {
      const gen = new Generator();
      generators.push(gen);
      return gen.ask({
        type: 'login', users: share, password: PASSWORD, domain: DOMAIN, port: victim.port, survivors: survivors.map((s) => s.port),
        localAddress: `127.0.${10 + g}.1`, retryMs: 250,
      }, 120_000 + CLIENTS * 20);
    }));
    for (const r of ready) assert.deepEqual(r.type === 'ready' && r.failed, []);
    console.log(`# ${CLIENTS} stream-managed clients logged in on ${victim.nodeId} in ${Date.now() - t0} ms`);

    // Steady pairs across the two survivors, and a stream-managed sender.
    const steady: RawClient[] = [];
    for (let i = 0; i < 2 * PAIRS; i++) steady.push(await rawLogin(survivors[i % 2].port, `steady${i}`, 'r'));
    open.push(...steady);
    const sender = await managed(survivors[0].port, 'sender');
    open.push(sender);
    const latencies: { at: number; ms: number }[] = [];
    for (let i = 0; i < PAIRS; i++) {
      let carry = '';
      steady[2 * i + 1].socket.on('data', (d: Buffer) => {
        const now = Date.now();
        carry += d.toString();
        for (const m of carry.matchAll(/<body>lat-(\d+)<\/body>/g)) latencies.push({ at: now, ms: now - Number(m[1]) });
        carry = carry.slice(Math.max(0, carry.lastIndexOf('</message>') + 10));
      });
    }
    let n = 0;
    pinger = setInterval(() => {
      for (let i = 0; i < PAIRS; i++) steady[2 * i].send(`<message to='steady${2 * i + 1}@${DOMAIN}/r' type='chat' id='l${n++}'><body>lat-${Date.now()}</body></message>`);
    }, 20);

    // Before the storm: one message to every storm client, acknowledged.
    const expected = new Map<string, string[]>();
    const send = (phase: string, only: string[] = users) => {
      for (const u of only) {
        const body = `${phase}-${u}`;
        sender.send(`<message to='${u}@${DOMAIN}/storm' type='chat' id='${body}'><body>${body}</body></message>`);
        sender.sent++;
        expected.set(u, [...(expected.get(u) ?? []), body]);
      }
    };
    send('before');
    await sender.acked();
    await sleep(1000);
    // The steady latency before the storm: what this (shared) machine gives anyway.
    const baseline = latencies.filter((l) => l.at >= Date.now() - 1000).map((l) => l.ms);

    // The storm: SIGKILL, and one more message to each while they reconnect.
    const killedAt = Date.now();
    await c.kill(victim, 'SIGKILL');
    // One message to each while they reconnect, 600 a second as a sender's traffic would be spread.
    const batches = 10 * Math.max(1, Math.round(CLIENTS / 600));
    for (let i = 0; i < batches; i++) {
      send('during', users.filter((_, j) => j % batches === i));
      await sleep(100);
    }
    const ackedDuring = sender.acked().then(() => Date.now(), (e: unknown) => e as Error);

    // Until every client resumed (or failed for good).
    let reports: StormClientReport[] = [];
    const deadline = Date.now() + 60_000 + CLIENTS * 10;
    for (;;) {
      reports = (await Promise.all(generators.map((g) => g.ask({ type: 'report' }, 30_000)))).flatMap((r) => (r.type === 'report' ? r.clients : []));
      if (reports.every((r) => r.resumedAt > 0 || r.failure) || Date.now() > deadline) break;
      await sleep(250);
    }
    const lastResumed = Math.max(...reports.map((r) => r.resumedAt));
    const failures = reports.filter((r) => r.failure || !r.resumedAt);
    assert.deepEqual(failures.map((r) => `${r.user}: ${r.failure ?? 'not resumed'}`), []);
    const allResumedMs = lastResumed - killedAt;
    const retried = reports.filter((r) => r.retries > 0).length;

    // Every message exactly once (those sent during the storm may still be on their way: a moment more).
    const missing = () => reports.filter((r) => (expected.get(r.user) ?? []).some((b) => !r.bodies.includes(b)));
    for (let i = 0; i < 40 && missing().length; i++) {
      await sleep(250);
      reports = (await Promise.all(generators.map((g) => g.ask({ type: 'report' }, 30_000)))).flatMap((r) => (r.type === 'report' ? r.clients : []));
    }
    clearInterval(pinger);
    const ackedDuringAt = await ackedDuring;
    assert.ok(typeof ackedDuringAt === 'number', `the messages sent during the storm were not acknowledged to their sender: ${String(ackedDuringAt)}`);
    for (const r of reports) {
      const want = expected.get(r.user)!;
      assert.deepEqual([...r.bodies].sort(), [...want].sort(), `${r.user} received ${JSON.stringify(r.bodies)}`);
    }

    // The steady clients' latency during the storm: from the kill until the last session resumed.
    const during = latencies.filter((l) => l.at >= killedAt && l.at <= lastResumed + 100).map((l) => l.ms);
    const p99 = percentile(during, 99);
    const before = percentile(baseline, 99);
    if (process.env.MASS_RECONNECT_TRACE) console.log(`# slowest: ${latencies.filter((l) => l.at >= killedAt).sort((x, y) => y.ms - x.ms).slice(0, 12).map((l) => `${l.ms} ms at +${l.at - killedAt}`).join(', ')}`);
    console.log(`# storm: all ${CLIENTS} resumed ${allResumedMs} ms after the kill (${retried} retried after a refusal); `
      + `steady p50 ${percentile(during, 50)} ms, p99 ${p99} ms, max ${Math.max(...during)} ms over ${during.length} messages `
      + `(the second before the kill: p50 ${percentile(baseline, 50)} ms, p99 ${before} ms)`);
    assert.ok(during.length >= PAIRS, `too few latency samples during the storm (${during.length})`);
    // The bound is over what the machine already gave in the second before the storm (it is shared). The target is
    // 100 ms (MASS_RECONNECT_P99_MS=100); the suite holds it to 1 s, since a stall of 200–500 ms right after the kill
    // is still seen on this machine (docs/performance.md, *Mass reconnect*).
    const bound = Number(process.env.MASS_RECONNECT_P99_MS ?? 1000);
    assert.ok(p99 < bound + before, `steady clients' p99 latency during the storm: ${p99} ms (before it: ${before} ms; bound ${bound} ms over it)`);
    assert.ok(allResumedMs < 30_000 + CLIENTS * 5, `all resumed only after ${allResumedMs} ms`);
    if (CLIENTS >= 300) assert.ok(retried > 0, 'the wave was smaller than the admission bucket: no retry was exercised');

  });

  test('a session resumed elsewhere: resuming it again from a live stream takes it over (<conflict/> on the old one); once its client closed it, item-not-found', async () => {
    const [a, b] = survivors;
    const first = await rawLogin(a.port, 'steady0', 'phone');
    open.push(first);
    first.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const previd = /<enabled [^>]*id="([^"]+)"/.exec(await first.waitFor(/<enabled [^>]*id="[^"]+"/))![1];
    first.socket.destroy();
    const resume = async (port: number) => {
      const x = await rawConnect(port);
      open.push(x);
      x.send(STREAM_OPEN());
      await x.waitFor(/<\/stream:features>/);
      x.send(plainAuth('steady0', PASSWORD));
      await x.waitFor(/<success/);
      x.send(STREAM_OPEN());
      await x.waitFor(/xmpp-bind/);
      x.send(`<resume xmlns='${NS_SM}' previd='${previd}' h='0'/>`);
      return x;
    };
    const second = await resume(b.port);
    await second.waitFor(/<resumed [^>]*previd=/);
    // A half-open connection must not lock a client out of its session: a newer resumption wins.
    const third = await resume(a.port);
    await third.waitFor(/<resumed [^>]*previd=/);
    await second.closed;
    assert.match(second.output, /<stream:error><conflict [^>]*\/><text [^>]*>the session was resumed on another connection<\/text>/);
    // The client ends the session properly: nothing is left to resume.
    third.send(`<a xmlns='${NS_SM}' h='0'/></stream:stream>`);
    await third.closed;
    const fourth = await resume(b.port);
    const out = await fourth.waitFor(/<failed[\s\S]*?<\/failed>|<failed[^>]*\/>/);
    assert.match(out, /<failed xmlns="urn:xmpp:sm:3"[^>]*><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
  });
});
