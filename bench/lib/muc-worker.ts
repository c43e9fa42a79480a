// A MUC load worker: a child process (one process holds fewer than 20k
// sockets) that logs in a block of occupants with the lean client, joins them
// to one room, sends groupchat messages from a few of them at a fixed rate,
// and times every message each occupant receives. Driven by bench/lib/muc.ts.
import { attr, findElement, TOKEN, XmppConn, type Matcher } from './client.ts';
import { encodeHist, newHist, record } from './stats.ts';
import { nowUs } from './protocol.ts';
import type { MucCmd, MucCounters, MucReply } from './muc.ts';

const post = (m: MucReply): void => { process.send?.(m); };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');

const SELF = /code=['"]110['"]/g;
const ERROR = /type=['"]error['"]/g;

/** The <error/> of an error stanza, else its start. */
const errorOf = (xml: string): string => xml.slice(Math.max(0, xml.indexOf('<error')), Math.max(0, xml.indexOf('<error')) + 400);

/**
 * Matches the occupant's own presence (status 110), which XEP-0045 sends after
 * everyone else's. In a large room the other occupants' presence comes first,
 * so every complete stanza before it is dropped as it arrives.
 */
function selfPresence(): Matcher {
  return (buf) => {
    ERROR.lastIndex = 0;
    const e = ERROR.exec(buf);
    if (e) throw new Error(`join refused: ${errorOf(buf.slice(Math.max(0, buf.lastIndexOf('<presence', e.index))))}`);
    SELF.lastIndex = 0;
    const m = SELF.exec(buf);
    const end = m ? buf.indexOf('</presence>', m.index) : -1;
    if (m && end >= 0) return { start: m.index, end: end + 11, name: 'presence', text: '' };
    const done = buf.lastIndexOf('</presence>', m ? m.index : buf.length);
    return done >= 0 ? done + 11 : null;
  };
}

/** The reply to an iq of ours, by id (other stanzas keep arriving meanwhile). */
function iqReply(id: string): Matcher {
  let from = 0;
  return (buf) => {
    for (;;) {
      const f = findElement(buf, ['iq'], from);
      if (!f) return null;
      from = f.end;
      const head = f.text.slice(0, f.text.indexOf('>') + 1);
      if (attr(head, 'id') !== id) continue;
      if (attr(head, 'type') !== 'result') throw new Error(`iq ${id} refused: ${errorOf(f.text)}`);
      return f;
    }
  };
}

export function configForm(fields: Record<string, string | string[]>): string {
  let s = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`;
  for (const [k, v] of Object.entries(fields)) s += `<field var='${k}'>${(Array.isArray(v) ? v : [v]).map((x) => `<value>${esc(x)}</value>`).join('')}</field>`;
  return `${s}</x>`;
}

const hist = newHist();
const occupants: XmppConn[] = [];
const c: MucCounters = { joined: 0, failed: 0, received: 0, sent: 0, skipped: 0, disconnects: 0, lastAt: 0 };
setInterval(() => post({ type: 'progress', counters: { ...c } }), 1000).unref();

function onToken(_conn: XmppConn, token: string): void {
  // m.<send time µs>: everything else (presence, subject) carries no token.
  if (token.charCodeAt(0) !== 109) return;
  const t = nowUs();
  c.received++;
  c.lastAt = t / 1000;
  record(hist, t - Number(token.slice(2)));
}

async function join(cmd: Extract<MucCmd, { type: 'join' }>): Promise<MucReply> {
  let next = 0;
  let joined = 0;
  let failed = 0;
  const errors = new Set<string>();
  const one = async (i: number): Promise<void> => {
    const conn = new XmppConn(i, {
      endpoint: { host: cmd.host, port: cmd.ports[i % cmd.ports.length], localAddress: cmd.source },
      domain: cmd.domain, user: `${cmd.prefix}${i}`, password: cmd.password, resource: 'b', mech: 'auto',
      roster: false, presence: false, timeoutMs: Math.max(1000, cmd.deadline - Date.now()),
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await conn.login();
      const join = `<presence to='${esc(cmd.room)}/o${i}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => { conn.destroy(); reject(new Error(`no join within the deadline`)); }, Math.max(0, cmd.deadline - Date.now()));
      });
      await Promise.race([conn.exchange(join, selfPresence()), timeout]);
      // The owner configures the new (locked) room before anyone else joins.
      if (cmd.form) await Promise.race([conn.exchange(`<iq type='set' id='cfg' to='${esc(cmd.room)}'><query xmlns='http://jabber.org/protocol/muc#owner'>${configForm(cmd.form)}</query></iq>`, iqReply('cfg')), timeout]);
      conn.onToken = onToken;
      conn.onClose = () => { c.disconnects++; };
      occupants.push(conn);
      c.joined++;
      joined++;
    } catch (e) {
      c.failed++;
      failed++;
      if (errors.size < 3) errors.add(`${cmd.prefix}${i}: ${(e as Error).message.slice(0, 400)}`);
      conn.destroy();
    } finally {
      clearTimeout(timer);
    }
  };
  await Promise.all(Array.from({ length: Math.min(cmd.concurrency, cmd.users.length) }, async () => {
    while (next < cmd.users.length && Date.now() < cmd.deadline) await one(cmd.users[next++]);
  }));
  return { type: 'joined', joined, failed: failed + (cmd.users.length - next), errors: [...errors] };
}

/** `rate` groupchat messages a second for `seconds`, round-robin over the first `senders` occupants. */
async function send(cmd: Extract<MucCmd, { type: 'send' }>): Promise<MucReply> {
  const senders = occupants.slice(0, Math.max(1, cmd.senders));
  const head = `<message to='${esc(cmd.room)}' type='groupchat'><body>${TOKEN}m.`;
  const total = Math.round(cmd.rate * cmd.seconds);
  const t0 = performance.now();
  const firstAt = nowUs() / 1000;
  let attempted = 0;
  while (attempted < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * cmd.rate));
    for (; attempted < due; attempted++) {
      const s = senders[attempted % senders.length];
      // A server that stopped reading a sender's socket: do not queue without bound.
      if (s.closed || s.backlog() > 1 << 20) { c.skipped++; continue; }
      s.send(`${head}${nowUs()}~</body></message>`);
      c.sent++;
    }
    await sleep(2);
  }
  return { type: 'sent', sent: c.sent, skipped: c.skipped, firstAt };
}

post({ type: 'ready' });
// The orchestrator is gone (killed, or crashed): so are its connections.
process.on('disconnect', () => process.exit(0));
process.on('message', (m: MucCmd) => {
  const run = m.type === 'join' ? join(m) : m.type === 'send' ? send(m) : Promise.resolve<MucReply>({ type: 'report', counters: { ...c }, hist: encodeHist(hist) });
  run.then(post, (e: unknown) => post({ type: 'fatal', message: e instanceof Error ? e.stack ?? e.message : String(e) }));
});
