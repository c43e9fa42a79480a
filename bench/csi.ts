// How many bytes an inactive phone with 100 contacts receives in an hour, with
// and without Client State Indication (XEP-0352). The hour is compressed: each
// contact changes presence every 5 minutes on average (1,200 changes) and 20
// chat messages arrive, in a seeded random order; the phone's received bytes
// are counted on its socket.
//   node --import tsx bench/csi.ts [--contacts 100] [--changes 12] [--messages 20]
import { parseArgs } from 'node:util';
import { loadConfig } from '../libs/config/index.ts';
import { startServer } from '../services/server.ts';
import { encodeItem, emptyItem } from '../services/session/im/roster.ts';
import { rawLogin } from '../test/support/im.ts';
import type { RawClient } from '../test/support/raw.ts';
import { tempDir } from '../test/support/servers.ts';

const { values } = parseArgs({ options: { contacts: { type: 'string', default: '100' }, changes: { type: 'string', default: '12' }, messages: { type: 'string', default: '20' } } });
const CONTACTS = Number(values.contacts);
const CHANGES = Number(values.changes);
const MESSAGES = Number(values.messages);

let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);

async function run(csi: boolean): Promise<{ bytes: number; presences: number }> {
  const config = loadConfig(undefined, {}, { dataDir: tempDir('parley-csi'), log: { level: 'warn' }, c2s: { tcp: { host: '127.0.0.1', port: 0, allowPlainOnLoopback: true } }, metrics: { enabled: false } });
  const server = await startServer(config);
  const port = server.c2s!.tcpPort();
  const phone = 'phone@localhost';
  await server.accounts.add(phone, 'secret');
  const pb = server.store.batch(phone);
  for (let i = 0; i < CONTACTS; i++) {
    const c = `c${i}@localhost`;
    await server.accounts.add(c, 'secret');
    pb.hset('roster', c, encodeItem({ ...emptyItem(), subscription: 'both', inRoster: true }));
    await server.store.batch(c).hset('roster', phone, encodeItem({ ...emptyItem(), subscription: 'both', inRoster: true })).exec();
  }
  await pb.exec();
  const contacts: RawClient[] = [];
  for (let i = 0; i < CONTACTS; i++) {
    const c = await rawLogin(port, `c${i}`, 'r');
    c.send('<presence/>');
    contacts.push(c);
  }
  const ph = await rawLogin(port, 'phone', 'p');
  ph.send(`<presence/>${csi ? "<inactive xmlns='urn:xmpp:csi:0'/>" : ''}`);
  await new Promise((r) => setTimeout(r, 500));
  const start = ph.output.length;
  seed = 42;
  const events: (() => void)[] = [];
  for (let i = 0; i < CONTACTS; i++) for (let k = 0; k < CHANGES; k++) events.push(() => contacts[i].send(`<presence><show>${['away', 'xa', 'dnd', 'chat'][k % 4]}</show><status>status ${k}</status></presence>`));
  for (let m = 0; m < MESSAGES; m++) events.push(() => contacts[m % CONTACTS].send(`<message to='${phone}' type='chat'><body>message ${m}</body></message>`));
  for (let i = events.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [events[i], events[j]] = [events[j], events[i]];
  }
  for (const e of events) {
    e();
    await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 1000));
  const received = ph.output.slice(start);
  const result = { bytes: Buffer.byteLength(received), presences: (received.match(/<presence/g) ?? []).length };
  for (const c of [...contacts, ph]) c.close();
  await server.stop(false);
  return result;
}

const without = await run(false);
const withCsi = await run(true);
console.log(`contacts ${CONTACTS}, presence changes ${CONTACTS * CHANGES}, messages ${MESSAGES} (one compressed hour)`);
console.log(`without CSI: ${without.bytes} bytes, ${without.presences} presence stanzas`);
console.log(`with CSI (inactive): ${withCsi.bytes} bytes, ${withCsi.presences} presence stanzas`);
console.log(`saved: ${(100 * (1 - withCsi.bytes / without.bytes)).toFixed(1)}% of the bytes`);
process.exit(0);
