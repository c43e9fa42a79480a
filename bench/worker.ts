// A load-generating worker (a worker_thread, or a child process when one
// process would exceed the descriptor limit). It owns a slice of the users,
// binds its own source address, and executes the orchestrator's commands.
import { parentPort } from 'node:worker_threads';
import { XmppConn } from './lib/client.ts';
import { nowUs, type Command, type Counters, type Reply, type StepReply, type WorkerInit } from './lib/protocol.ts';
import { encodeHist, newHist, record } from './lib/stats.ts';
import { TOKEN } from './lib/client.ts';

const post = (m: Reply): void => { if (parentPort) parentPort.postMessage(m); else process.send?.(m); };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let init: WorkerInit | null = null;
const conns: XmppConn[] = [];
const counters: Counters = { online: 0, failed: 0, sent: 0, received: 0, disconnects: 0, pings: 0 };
/** Pings answered by streams already logged out, so the total never goes down. */
let pingsOfClosed = 0;
setInterval(() => post({ type: 'progress', counters: { ...counters, pings: pingsOfClosed + conns.reduce((n, c) => n + c.pingsAnswered, 0) } }), 1000);

const live = (): XmppConn[] => conns.filter((c) => !c.closed);

async function login(cmd: Extract<Command, { type: 'login' }>): Promise<Reply> {
  const cfg = init!;
  const hist = newHist();
  const errors = new Set<string>();
  let ok = 0, failed = 0, next = 0;
  const one = async (index: number): Promise<void> => {
    const c = new XmppConn(index, {
      endpoint: cfg.endpoint, domain: cfg.domain, user: `${cfg.prefix}${index}`, password: cfg.password,
      resource: `b${index}`, mech: cfg.mech, roster: cmd.roster, presence: cmd.presence, timeoutMs: cmd.timeoutMs, smRequestEvery: cmd.smRequestEvery,
    });
    const t0 = performance.now();
    try {
      if (cmd.saltOnly) {
        await c.login(true);
        ok++;
        return;
      }
      await c.login();
      record(hist, (performance.now() - t0) * 1000);
      ok++; counters.online++;
      c.onClose = () => {
        counters.online--; counters.disconnects++;
        // The first few say why (the scale bench asserts there are none).
        if (counters.disconnects <= 5) console.error(`bench worker ${cfg.endpoint.localAddress ?? ''}: ${c.jid} disconnected: ${c.closeReason || 'closed'}`);
      };
      conns.push(c);
    } catch (e) {
      failed++; counters.failed++;
      if (errors.size < 5) errors.add((e as Error).message.slice(0, 300));
      c.destroy();
    }
  };
  await Promise.all(Array.from({ length: Math.min(cmd.concurrency, cmd.users.length) }, async () => {
    while (next < cmd.users.length) await one(cmd.users[next++]);
  }));
  return { type: 'login', ok, failed, errors: [...errors], hist: encodeHist(hist) };
}

/**
 * Sends `rate` stanzas/s for `durationMs`, then waits for stragglers up to the loss timeout. On streams with stream
 * management every stanza is timed until the server's <a h/> covers it; at the end each of them asks for an ack of
 * its last stanzas, and the step also waits for those acks.
 */
async function step(
  rate: number, durationMs: number, timeoutMs: number,
  senders: Array<{ conn: XmppConn; make: (ts: number) => string }>,
  onToken: (conn: XmppConn, token: string, st: StepReply, hist: ReturnType<typeof newHist>) => void,
  settled: (st: StepReply) => boolean = (st) => st.received + st.late >= st.sent,
): Promise<StepReply> {
  const st: StepReply = { type: 'step', sent: 0, skipped: 0, received: 0, late: 0, misrouted: 0, self: 0, sendMs: 0, spanMs: 0, hist: '', smSent: 0, acked: 0, ackHist: '', requestHist: '' };
  const hist = newHist();
  const ackHist = newHist();
  const requestHist = newHist();
  const done = (): StepReply => ({ ...st, hist: encodeHist(hist), ackHist: encodeHist(ackHist), requestHist: encodeHist(requestHist) });
  const t0 = performance.now();
  const t0Us = nowUs();
  for (const c of live()) {
    c.onToken = (conn, token) => {
      const before = st.received;
      onToken(conn, token, st, hist);
      if (st.received !== before) st.spanMs = Math.round(performance.now() - t0);
    };
    if (c.managed) {
      // Acks of an earlier step's stanzas (it timed out waiting for them) are not this step's.
      c.onAcked = (sentUs, now) => { if (sentUs >= t0Us) { st.acked++; record(ackHist, now - sentUs); } };
      c.onRequestAcked = (us) => record(requestHist, us);
    }
  }
  if (!senders.length || rate <= 0) return done();
  let attempted = 0, rr = 0;
  for (;;) {
    const elapsed = performance.now() - t0;
    if (elapsed >= durationMs) break;
    const due = Math.floor((elapsed / 1000) * rate) - attempted;
    for (let k = 0; k < due; k++, attempted++) {
      const s = senders[rr++ % senders.length];
      if (s.conn.closed || s.conn.backlog() > 1 << 20) { st.skipped++; continue; }
      const ts = nowUs();
      s.conn.sendTracked(s.make(ts), ts);
      if (s.conn.managed) st.smSent++;
      st.sent++; counters.sent++;
    }
    await sleep(1);
  }
  st.sendMs = Math.round(performance.now() - t0);
  const sendEnd = performance.now();
  for (const c of live()) c.requestAck();
  while (!(settled(st) && st.acked >= st.smSent) && performance.now() - sendEnd < timeoutMs) await sleep(10);
  return done();
}

async function chat(cmd: Extract<Command, { type: 'chat' }>): Promise<Reply> {
  // Pairs of neighbouring users, not of logins that happened to finish together: rosters seeded by index stay meaningful.
  const l = live().sort((a, b) => a.index - b.index);
  const pad = 'x'.repeat(cmd.payload);
  const senders: Array<{ conn: XmppConn; make: (ts: number) => string }> = [];
  for (let j = 0; j + 1 < l.length; j += 2) {
    for (const [a, b] of [[l[j], l[j + 1]], [l[j + 1], l[j]]]) {
      // Pre-serialized: only the timestamp is concatenated per message.
      const head = `<message${a.ns} to='${b.jid}' type='chat'><body>${TOKEN}${cmd.step}.${b.index}.`;
      const tail = `~${pad}</body></message>`;
      senders.push({ conn: a, make: (ts) => head + ts + tail });
    }
  }
  const timeoutUs = cmd.timeoutMs * 1000;
  return step(cmd.rate, cmd.durationMs, cmd.timeoutMs, senders, (conn, token, st, hist) => {
    const [s, to, ts] = token.split('.');
    if (Number(to) !== conn.index) { st.misrouted++; return; }
    if (Number(s) !== cmd.step) return; // a straggler from an earlier step, already counted lost there
    counters.received++;
    const lat = nowUs() - Number(ts);
    if (lat > timeoutUs) st.late++;
    else { st.received++; record(hist, lat); }
  });
}

async function presence(cmd: Extract<Command, { type: 'presence' }>): Promise<Reply> {
  const senders = live().map((c) => {
    const head = `<presence${c.ns}><show>chat</show><status>${TOKEN}${cmd.step}.${c.index}.`;
    return { conn: c, make: (ts: number) => `${head}${ts}~</status></presence>` };
  });
  const timeoutUs = cmd.timeoutMs * 1000;
  // Fan-out is unknown (self echo plus roster contacts): settle once the stream of notifications goes quiet.
  let last = performance.now();
  return step(cmd.rate, cmd.durationMs, cmd.timeoutMs, senders, (conn, token, st, hist) => {
    const [s, from, ts] = token.split('.');
    if (Number(s) !== cmd.step) return;
    last = performance.now();
    counters.received++;
    const lat = nowUs() - Number(ts);
    if (lat > timeoutUs) { st.late++; return; }
    st.received++;
    if (Number(from) === conn.index) st.self++;
    record(hist, lat);
  }, () => performance.now() - last > 1000);
}

async function logout(count?: number): Promise<Reply> {
  let closed = 0;
  // A part is taken evenly over the streams (every k-th), so that its users' contacts stay online.
  const all = live();
  const every = count === undefined ? 1 : Math.max(1, Math.floor(all.length / Math.max(1, count)));
  const l = count === undefined ? all : all.filter((_, i) => i % every === 0).slice(0, count);
  for (let i = 0; i < l.length; i += 500) {
    await Promise.all(l.slice(i, i + 500).map(async (c) => { c.onClose = null; await c.logout(); closed++; }));
  }
  const gone = new Set(l);
  for (const c of l) pingsOfClosed += c.pingsAnswered;
  const kept = count === undefined ? [] : conns.filter((c) => !gone.has(c));
  conns.length = 0;
  conns.push(...kept);
  counters.online = live().length;
  return { type: 'logout', closed, users: l.map((c) => c.index) };
}

async function handle(msg: WorkerInit | Command): Promise<void> {
  try {
    if (msg.type === 'init') { init = msg; post({ type: 'ready' }); return; }
    const reply = msg.type === 'login' ? await login(msg) : msg.type === 'chat' ? await chat(msg) : msg.type === 'presence' ? await presence(msg) : await logout(msg.count);
    post(reply);
  } catch (e) {
    post({ type: 'fatal', message: (e as Error).stack ?? String(e) });
  }
}

if (parentPort) parentPort.on('message', (m: WorkerInit | Command) => void handle(m));
else process.on('message', (m: WorkerInit | Command) => void handle(m));
