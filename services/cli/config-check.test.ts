// `parley config check` run as an operator runs it: real certificate files,
// a DNS server of the test's own (asked through --resolver), ports held by
// this process, and real or absent NATS and Redis servers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { freePort, startNats, startRedis, tempDir } from '../../test/support/servers.ts';
import { createDatabase } from '../../test/support/postgres.ts';

const BIN = join(import.meta.dirname, '../../bin/parley.mjs');
const DAY = 86_400_000;
/** example.com and the names of its MUC and upload services. */
const SERVICE_NAMES = ['example.com', 'conference.example.com', 'upload.example.com'];

interface Run { status: number | null; stdout: string; stderr: string; ms: number }

function parley(args: string[]): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 60_000, encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** A certificate and its key as PEM files, for `names`, valid from `from` to `to`. */
async function certificate(dir: string, names: string[], from: Date, to: Date): Promise<{ cert: string; key: string }> {
  const pems = await generate([{ name: 'commonName', value: names[0] }], {
    keyType: 'ec', curve: 'P-256', algorithm: 'sha256', notBeforeDate: from, notAfterDate: to,
    extensions: [{ name: 'subjectAltName', altNames: names.map((value) => ({ type: 2 as const, value })) }],
  });
  const cert = join(dir, `${names[0]}-${to.getTime()}.crt`);
  const key = join(dir, `${names[0]}-${to.getTime()}.key`);
  writeFileSync(cert, pems.cert);
  writeFileSync(key, pems.private);
  return { cert, key };
}

/** A DNS server on UDP that answers SRV questions from `records` and NXDOMAIN for any other name. */
async function dnsServer(records: Record<string, { port: number; target: string }>): Promise<{ address: string; close(): void }> {
  const socket: Socket = createSocket('udp4');
  const encodeName = (name: string) => Buffer.concat([...name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
  socket.on('message', (q, peer) => {
    let p = 12;
    const labels: string[] = [];
    while (q[p] !== 0) {
      labels.push(q.subarray(p + 1, p + 1 + q[p]).toString());
      p += q[p] + 1;
    }
    const question = q.subarray(12, p + 5);
    const name = labels.join('.').toLowerCase();
    const hit = q.readUInt16BE(p + 1) === 33 ? records[name] : undefined;
    const header = Buffer.alloc(12);
    header.writeUInt16BE(q.readUInt16BE(0), 0);
    header.writeUInt16BE(hit ? 0x8180 : 0x8183, 2); // a response, recursion available; NXDOMAIN without a record
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(hit ? 1 : 0, 6);
    let answer = Buffer.alloc(0);
    if (hit) {
      const target = encodeName(hit.target);
      const rdata = Buffer.alloc(6);
      rdata.writeUInt16BE(5, 0);
      rdata.writeUInt16BE(0, 2);
      rdata.writeUInt16BE(hit.port, 4);
      const fixed = Buffer.alloc(12);
      fixed.writeUInt16BE(0xc00c, 0); // the question's name
      fixed.writeUInt16BE(33, 2);
      fixed.writeUInt16BE(1, 4);
      fixed.writeUInt32BE(300, 6);
      fixed.writeUInt16BE(6 + target.length, 10);
      answer = Buffer.concat([fixed, rdata, target]);
    }
    socket.send(Buffer.concat([header, question, answer]), peer.port, peer.address);
  });
  const port = await freePort();
  await new Promise<void>((r) => socket.bind(port, '127.0.0.1', () => r()));
  return { address: `127.0.0.1:${port}`, close: () => socket.close() };
}

interface Ports { c2s: number; s2s: number; metrics: number }

/** A configuration serving example.com with federation on, every listener on a free port (or those given). */
async function configFile(extra: string, o: { ports?: Ports; tls?: { cert: string; key: string } } = {}): Promise<string> {
  const dir = tempDir('parley-check');
  const p = o.ports ?? { c2s: await freePort(), s2s: await freePort(), metrics: await freePort() };
  const file = join(dir, 'parley.yaml');
  const tls = o.tls ? `tls: { cert: ${JSON.stringify(o.tls.cert)}, key: ${JSON.stringify(o.tls.key)} }, ` : '';
  writeFileSync(file, `domains: [example.com]
dataDir: ${JSON.stringify(join(dir, 'data'))}
c2s: { ${tls}tcp: { port: ${p.c2s} } }
s2s: { enabled: true, listen: { port: ${p.s2s} } }
metrics: { port: ${p.metrics} }
${extra}`);
  return file;
}

/** The configuration of `configFile` with a certificate for `names`, valid from `from` to `to`. */
async function configWithCertificate(names: string[], to: Date, from = new Date(Date.now() - DAY), ports?: Ports): Promise<string> {
  return configFile('', { tls: await certificate(tempDir('parley-check-certs'), names, from, to), ports });
}

const lines = (r: Run, level: string) => r.stdout.split('\n').filter((l) => l.startsWith(`${level.padEnd(5)} `));

async function withDns<T>(fn: (resolver: string) => Promise<T>): Promise<T> {
  const dns = await dnsServer({
    '_xmpp-client._tcp.example.com': { port: 5222, target: 'xmpp.example.com' },
    '_xmpp-server._tcp.example.com': { port: 5269, target: 'xmpp.example.com' },
  });
  try {
    return await fn(dns.address);
  } finally {
    dns.close();
  }
}

test('a good configuration: every finding ok, exit status 0', async () => {
  const file = await configWithCertificate(SERVICE_NAMES, new Date(Date.now() + 90 * DAY));
  const r = await withDns((resolver) => parley(['config', 'check', '--config', file, '--resolver', resolver]));
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.deepEqual([...lines(r, 'error'), ...lines(r, 'warn')], []);
  assert.match(r.stdout, /^ok {4}c2s\.tls\.cert: .* valid until \d{4}-\d\d-\d\d$/m);
  assert.match(r.stdout, /^ok {4}c2s\.tls\.cert: covers example\.com$/m);
  assert.match(r.stdout, /^ok {4}c2s\.tls\.cert: covers conference\.example\.com$/m);
  assert.match(r.stdout, /^ok {4}c2s\.tls\.cert: covers upload\.example\.com$/m);
  assert.match(r.stdout, /^ok {4}DNS: _xmpp-client\._tcp\.example\.com → xmpp\.example\.com:5222$/m);
  assert.match(r.stdout, /^ok {4}DNS: _xmpp-server\._tcp\.example\.com → xmpp\.example\.com:5269$/m);
  assert.match(r.stdout, /^ok {4}c2s\.tcp\.port: 127\.0\.0\.1:\d+ is free$/m);
  assert.match(r.stdout, /^ok {4}s2s\.listen\.port: 127\.0\.0\.1:\d+ is free$/m);
  assert.match(r.stdout, /^0 errors, 0 warnings$/m);
});

test('an expired certificate is an error naming its key and date; one expiring within 30 days a warning', async () => {
  const expired = await configWithCertificate(SERVICE_NAMES, new Date('2021-03-04T00:00:00Z'), new Date('2020-03-04T00:00:00Z'));
  const r = await withDns((resolver) => parley(['config', 'check', '--config', expired, '--resolver', resolver]));
  assert.equal(r.status, 1, r.stdout);
  assert.match(lines(r, 'error').join('\n'), /^error c2s\.tls\.cert: \S+\.crt expired on 2021-03-04$/m);
  assert.match(r.stdout, /^1 error, 0 warnings$/m);

  const soon = await configWithCertificate(SERVICE_NAMES, new Date(Date.now() + 10 * DAY + 3_600_000));
  const s = await withDns((resolver) => parley(['config', 'check', '--config', soon, '--resolver', resolver]));
  assert.equal(s.status, 0, s.stdout);
  assert.match(lines(s, 'warn').join('\n'), /^warn {2}c2s\.tls\.cert: \S+\.crt expires on \d{4}-\d\d-\d\d, in 10 days$/m);
});

test('a certificate for another name is an error naming the names it covers; a missing MUC or upload name a warning', async () => {
  const other = await configWithCertificate(['other.example'], new Date(Date.now() + 90 * DAY));
  const r = await withDns((resolver) => parley(['config', 'check', '--config', other, '--resolver', resolver]));
  assert.equal(r.status, 1, r.stdout);
  assert.match(lines(r, 'error').join('\n'), /^error c2s\.tls\.cert: \S+\.crt is for other\.example, not example\.com$/m);
  assert.match(lines(r, 'warn').join('\n'), /^warn {2}c2s\.tls\.cert: \S+\.crt does not cover conference\.example\.com \(muc\.subdomain\): other servers cannot verify it/m);
  assert.match(lines(r, 'warn').join('\n'), /^warn {2}c2s\.tls\.cert: \S+\.crt does not cover upload\.example\.com \(upload\.subdomain\)/m);
});

test('a missing SRV record is a warning with the record to add', async () => {
  const s2s = await freePort();
  const file = await configWithCertificate(SERVICE_NAMES, new Date(Date.now() + 90 * DAY), undefined, { c2s: await freePort(), s2s, metrics: await freePort() });
  const dns = await dnsServer({ '_xmpp-client._tcp.example.com': { port: 5222, target: 'xmpp.example.com' } });
  try {
    const r = await parley(['config', 'check', '--config', file, '--resolver', dns.address]);
    assert.equal(r.status, 0, r.stdout);
    assert.deepEqual(lines(r, 'warn'), [`warn  DNS: no _xmpp-server._tcp.example.com record (other servers find this one); add: _xmpp-server._tcp.example.com. 3600 IN SRV 5 0 ${s2s} example.com.`]);
  } finally {
    dns.close();
  }
});

test('a listener port in use is an error naming the key and the process that holds it', async () => {
  const held = createServer();
  const port = await freePort();
  await new Promise<void>((r) => held.listen(port, '127.0.0.1', () => r()));
  try {
    const file = await configFile('', { ports: { c2s: port, s2s: await freePort(), metrics: await freePort() } });
    const r = await withDns((resolver) => parley(['config', 'check', '--config', file, '--resolver', resolver]));
    assert.equal(r.status, 1, r.stdout);
    const [line] = lines(r, 'error');
    assert.ok(line?.startsWith(`error c2s.tcp.port: 127.0.0.1:${port} is in use by pid ${process.pid} (${process.execPath}`), line);
    assert.ok(line.endsWith('; stop it or set c2s.tcp.port'), line);
  } finally {
    held.close();
  }
});

test('NATS and Redis of a cluster configuration: unreachable ones are errors naming the URL, after one short attempt', async () => {
  const [nats, redis] = [await freePort(), await freePort()]; // nothing listens there
  const file = await configFile(`role: session\nbus: { kind: nats, url: "nats://127.0.0.1:${nats}" }\nstore: { kind: redis, url: "redis://127.0.0.1:${redis}" }\n`);
  const r = await parley(['config', 'check', '--config', file]);
  assert.equal(r.status, 1, r.stdout);
  assert.deepEqual(lines(r, 'error'), [
    `error bus.url: NATS at nats://127.0.0.1:${nats} is not reachable: connection refused`,
    `error store.url: Redis at redis://127.0.0.1:${redis} is not reachable: connect ECONNREFUSED 127.0.0.1:${redis}`,
  ]);
  assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
});

test('NATS and Redis that run answer', async () => {
  const [nats, redis] = await Promise.all([startNats(), startRedis()]);
  try {
    const file = await configFile(`role: session\nbus: { kind: nats, url: "${nats.url}" }\nstore: { kind: redis, url: "${redis.url}" }\n`);
    const r = await parley(['config', 'check', '--config', file]);
    assert.equal(r.status, 0, r.stdout);
    assert.match(r.stdout, new RegExp(`^ok {4}bus\\.url: NATS at ${nats.url} answers$`, 'm'));
    assert.match(r.stdout, new RegExp(`^ok {4}store\\.url: Redis at ${redis.url} answers$`, 'm'));
    assert.deepEqual(lines(r, 'error'), []);
  } finally {
    await Promise.all([nats.stop(), redis.stop()]);
  }
});

test('a configuration that does not load is reported as an error line, exit status 1', async () => {
  const file = await configFile('logg: { level: debug }\n');
  const r = await parley(['config', 'check', '--config', file]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, `error invalid configuration in ${file}: unknown key 'logg' (did you mean 'log'?)\n1 error, 0 warnings\n`);
});

test("the archive's PostgreSQL: one that answers is ok, one that does not is an error naming the URL without its password", async () => {
  const db = await createDatabase();
  const closed = await freePort(); // nothing listens there
  try {
    const up = await configFile(`role: session\narchive: { postgres: { url: "${db.url}" } }\n`);
    const ok = await parley(['config', 'check', '--config', up]);
    assert.match(ok.stdout, new RegExp(`^ok {4}archive\\.postgres\\.url: PostgreSQL at ${db.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} answers$`, 'm'));
    const down = await configFile(`role: session\narchive: { postgres: { url: "postgres://parley:secret@127.0.0.1:${closed}/parley" } }\n`);
    const r = await parley(['config', 'check', '--config', down]);
    assert.equal(r.status, 1, r.stdout);
    assert.deepEqual(lines(r, 'error').filter((l) => l.includes('archive')), [
      `error archive.postgres.url: PostgreSQL at postgres://parley:***@127.0.0.1:${closed}/parley is not reachable: connect ECONNREFUSED 127.0.0.1:${closed}`,
    ]);
  } finally {
    await db.drop();
  }
});
