// HTTP file upload (XEP-0363) in the embedded mode: how many slots a second
// one service grants (requests from one client, many in flight), and the
// memory a large PUT and GET cost the process (the bytes are streamed to and
// from disk, never held whole; the client here is in the same process and
// streams too, so the peak RSS above the baseline bounds both).
//   node --import tsx bench/upload.ts [--slots 2000] [--inflight 64] [--mib 200]
import { request } from 'node:http';
import { parseArgs } from 'node:util';
import { loadConfig } from '../libs/config/index.ts';
import { startServer } from '../services/server.ts';
import { connect, xml } from '../test/support/clients.ts';
import { freePort, tempDir } from '../test/support/servers.ts';

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
const { values } = parseArgs({ options: { slots: { type: 'string', default: '2000' }, inflight: { type: 'string', default: '64' }, mib: { type: 'string', default: '200' } } });
const SLOTS = Number(values.slots);
const INFLIGHT = Number(values.inflight);
const BYTES = Number(values.mib) * 1024 * 1024;
const NS = 'urn:xmpp:http:upload:0';

const httpPort = await freePort();
const config = loadConfig(undefined, {}, {
  dataDir: tempDir('parley-upload-bench'), log: { level: 'warn' }, metrics: { enabled: false },
  c2s: { tcp: { host: '127.0.0.1', port: 0 }, http: { enabled: true, host: '127.0.0.1', port: httpPort } },
  upload: { maxFileBytes: BYTES, quotaBytes: Number.MAX_SAFE_INTEGER },
});
const server = await startServer(config);
await server.accounts.add('bench@localhost', 'secret');
const c = await connect(server.c2s!.tcpPort(), 'bench');
const ask = (size: number) => c.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'upload.localhost' },
  xml('request', { xmlns: NS, filename: 'f.bin', size: String(size), 'content-type': 'application/octet-stream' })), 30_000);

// Slots.
let next = 0;
const t0 = performance.now();
await Promise.all(Array.from({ length: INFLIGHT }, async () => {
  while (next < SLOTS) {
    next++;
    await ask(1000);
  }
}));
const slotMs = performance.now() - t0;
console.log(`slots: ${SLOTS} in ${slotMs.toFixed(0)} ms = ${Math.round(SLOTS / (slotMs / 1000))} slots/s (${INFLIGHT} in flight)`);

// One large file, up and down.
global.gc?.();
const base = process.memoryUsage().rss;
let peak = base;
const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
const slot = (await ask(BYTES)).getChild('slot', NS)!;
const putUrl = new URL(slot.getChild('put')!.attrs.url as string);
const chunk = Buffer.alloc(1024 * 1024, 7);
const t1 = performance.now();
const status = await new Promise<number>((resolve, reject) => {
  const req = request({ host: putUrl.hostname, port: putUrl.port, method: 'PUT', path: putUrl.pathname + putUrl.search,
    headers: { 'content-length': String(BYTES), 'content-type': 'application/octet-stream' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
  req.on('error', reject);
  let sent = 0;
  const pump = () => {
    while (sent < BYTES) {
      sent += chunk.length;
      if (!req.write(chunk)) return void req.once('drain', pump);
    }
    req.end();
  };
  pump();
});
const putMs = performance.now() - t1;
const t2 = performance.now();
let got = 0;
const res = await fetch(slot.getChild('get')!.attrs.url as string);
for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) got += part.byteLength;
const getMs = performance.now() - t2;
clearInterval(sampler);
const mib = (n: number) => (n / 1024 / 1024).toFixed(0);
console.log(`PUT ${mib(BYTES)} MiB: HTTP ${status} in ${putMs.toFixed(0)} ms; GET ${mib(got)} MiB in ${getMs.toFixed(0)} ms; RSS ${mib(base)} MiB before, peak ${mib(peak)} MiB (+${mib(peak - base)} MiB)`);
await c.stop();
await server.stop(false);
process.exit(0);
