// `parley config check`: what a configuration will meet when it starts, each
// finding one line with its level. Certificates and keys (readable, matching,
// in date, covering each served domain), the DNS SRV records clients and
// servers look up, the listeners' ports, and — for a cluster — NATS and Redis
// answering, and the archive's PostgreSQL when one is configured. Every
// network probe is one attempt with a short timeout.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect as connectNats } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { natsServers, withoutCredentials } from '../../libs/bus/nats.ts';
import type { Config } from '../../libs/config/schema.ts';
import { redactUrl } from '../../libs/log/index.ts';
import { parseRedisAddress } from '../../libs/store/redis-target.ts';

export type Level = 'ok' | 'warn' | 'error';

export interface Finding {
  level: Level;
  text: string;
}

export interface CheckOptions {
  /** DNS servers to ask ('IP' or 'IP:PORT'); the system's when absent. */
  resolvers?: string[];
  /** How long one probe (a DNS query, a connection to NATS or Redis) may take. */
  timeoutMs?: number;
  now?: Date;
}

/** A certificate expiring sooner than this is a warning. */
const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export async function checkConfig(cfg: Config, o: CheckOptions = {}): Promise<Finding[]> {
  const timeoutMs = o.timeoutMs ?? 2000;
  const [dns, ports, engines] = await Promise.all([checkDns(cfg, o.resolvers, timeoutMs), checkPorts(cfg), checkEngines(cfg, timeoutMs)]);
  // A session process serves no TLS.
  const certificates = cfg.role === 'session' ? [] : checkCertificates(cfg, o.now ?? new Date());
  return [...certificates, ...dns, ...ports, ...engines];
}

// ---------------------------------------------------------------- certificates

interface CertificateUse {
  /** The configuration keys that name it, e.g. 'c2s.tls.cert'. */
  certKey: string;
  keyKey: string;
  cert: string;
  key: string;
  /** Domains this certificate is presented for. */
  domains: string[];
  /** Also check the names of the services under each domain (a server-to-server certificate). */
  forFederation: boolean;
}

function certificateUses(cfg: Config): { uses: CertificateUse[]; findings: Finding[] } {
  const findings: Finding[] = [];
  const uses: CertificateUse[] = [];
  const own = (map: Record<string, unknown>) => cfg.domains.filter((d) => map[d] === undefined);
  const { cert, key } = cfg.c2s.tls;
  const fallbackDomains = own(cfg.c2s.certificates);
  if (cert && key) {
    uses.push({ certKey: 'c2s.tls.cert', keyKey: 'c2s.tls.key', cert, key, domains: fallbackDomains, forFederation: cfg.s2s.enabled });
  } else if (cert || key) {
    findings.push({ level: 'error', text: `c2s.tls: ${cert ? 'cert' : 'key'} is set without ${cert ? 'key' : 'cert'}; set both (with one missing a self-signed certificate is used)` });
  } else {
    const dir = join(cfg.dataDir, 'certs');
    const generated = join(dir, 'self-signed.crt');
    if (existsSync(generated)) {
      uses.push({ certKey: `the self-signed certificate ${generated}`, keyKey: 'its key', cert: generated, key: join(dir, 'self-signed.key'), domains: fallbackDomains, forFederation: false });
    }
    if (fallbackDomains.length) {
      findings.push({ level: 'warn', text: `c2s.tls: no certificate configured; ${fallbackDomains.join(', ')} ${existsSync(generated) ? 'use' : 'will use'} a self-signed one in ${dir}, which clients warn about (set c2s.tls.cert and c2s.tls.key)` });
    }
  }
  for (const [d, files] of Object.entries(cfg.c2s.certificates)) {
    uses.push({ certKey: `c2s.certificates.${d}.cert`, keyKey: `c2s.certificates.${d}.key`, ...files, domains: [d], forFederation: cfg.s2s.enabled && !cfg.s2s.certificates[d] });
  }
  if (cfg.s2s.enabled) {
    for (const [d, files] of Object.entries(cfg.s2s.certificates)) {
      uses.push({ certKey: `s2s.certificates.${d}.cert`, keyKey: `s2s.certificates.${d}.key`, ...files, domains: [d], forFederation: true });
    }
    const dir = cfg.s2s.certificateDir;
    if (dir) {
      for (const d of cfg.domains.filter((x) => !cfg.s2s.certificates[x])) {
        const pair = [[`${d}.crt`, `${d}.key`], [join(d, 'fullchain.pem'), join(d, 'privkey.pem')]].find(([c]) => existsSync(join(dir, c)));
        if (pair) uses.push({ certKey: `s2s.certificateDir (${join(dir, pair[0])})`, keyKey: `s2s.certificateDir (${join(dir, pair[1])})`, cert: join(dir, pair[0]), key: join(dir, pair[1]), domains: [d], forFederation: true });
      }
    }
  }
  return { uses, findings };
}

function readable(path: string): string | Error {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return new Error(code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message);
  }
}

const day = (d: Date): string => d.toISOString().slice(0, 10);

function checkCertificates(cfg: Config, now: Date): Finding[] {
  const { uses, findings } = certificateUses(cfg);
  for (const u of uses) {
    const certPem = readable(u.cert);
    if (certPem instanceof Error) {
      findings.push({ level: 'error', text: `${u.certKey}: cannot read ${u.cert}: ${certPem.message}` });
      continue;
    }
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(certPem);
    } catch {
      findings.push({ level: 'error', text: `${u.certKey}: ${u.cert} holds no PEM certificate` });
      continue;
    }
    const keyPem = readable(u.key);
    if (keyPem instanceof Error) findings.push({ level: 'error', text: `${u.keyKey}: cannot read ${u.key}: ${keyPem.message}` });
    else {
      try {
        if (!x509.checkPrivateKey(createPrivateKey(keyPem))) findings.push({ level: 'error', text: `${u.keyKey}: ${u.key} is not the key of ${u.cert}` });
      } catch {
        findings.push({ level: 'error', text: `${u.keyKey}: ${u.key} holds no PEM private key` });
      }
    }
    const from = new Date(x509.validFrom);
    const to = new Date(x509.validTo);
    const left = Math.floor((to.getTime() - now.getTime()) / DAY_MS);
    if (to <= now) findings.push({ level: 'error', text: `${u.certKey}: ${u.cert} expired on ${day(to)}` });
    else if (from > now) findings.push({ level: 'error', text: `${u.certKey}: ${u.cert} is not valid before ${day(from)}` });
    else if (left < EXPIRY_WARNING_DAYS) findings.push({ level: 'warn', text: `${u.certKey}: ${u.cert} expires on ${day(to)}, in ${left} days` });
    else findings.push({ level: 'ok', text: `${u.certKey}: ${u.cert} valid until ${day(to)}` });
    const names = coveredNames(x509);
    for (const d of u.domains) {
      if (x509.checkHost(d) === undefined) findings.push({ level: 'error', text: `${u.certKey}: ${u.cert} is for ${names}, not ${d}` });
      else findings.push({ level: 'ok', text: `${u.certKey}: covers ${d}` });
      if (!u.forFederation) continue;
      for (const { name, key } of serviceNames(cfg, d)) {
        if (x509.checkHost(name) === undefined) findings.push({ level: 'warn', text: `${u.certKey}: ${u.cert} does not cover ${name} (${key}): other servers cannot verify it (dialback still works unless s2s.dialback is refuse)` });
        else findings.push({ level: 'ok', text: `${u.certKey}: covers ${name}` });
      }
    }
  }
  return findings;
}

/** The services under a served domain that other servers reach by name: MUC, upload, external components. */
function serviceNames(cfg: Config, domain: string): Array<{ name: string; key: string }> {
  const out: Array<{ name: string; key: string }> = [];
  if (cfg.muc.enabled) out.push({ name: `${cfg.muc.subdomain}.${domain}`, key: 'muc.subdomain' });
  if (cfg.upload.enabled) out.push({ name: `${cfg.upload.subdomain}.${domain}`, key: 'upload.subdomain' });
  for (const c of cfg.components.services) if (c.domain.endsWith(`.${domain}`)) out.push({ name: c.domain, key: 'components.services' });
  return out;
}

function coveredNames(x509: X509Certificate): string {
  const dns = (x509.subjectAltName ?? '').split(/,\s*/).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4));
  if (dns.length) return dns.join(', ');
  return /CN=([^\n]+)/.exec(x509.subject)?.[1] ?? '(no name)';
}

// ---------------------------------------------------------------- DNS

interface SrvRecordSpec {
  service: string;
  port: number;
  /** What the record is for, when it is missing. */
  why: string;
}

function srvRecords(cfg: Config): SrvRecordSpec[] {
  const out: SrvRecordSpec[] = [];
  const c2s = cfg.role === 'all' || cfg.role === 'c2s';
  const s2s = cfg.s2s.enabled && (cfg.role === 'all' || cfg.role === 's2s');
  if (c2s) out.push({ service: '_xmpp-client._tcp', port: cfg.c2s.tcp.port, why: 'clients find the server' });
  if (c2s && cfg.c2s.directTls.enabled) out.push({ service: '_xmpps-client._tcp', port: cfg.c2s.directTls.port, why: 'clients find direct TLS (XEP-0368)' });
  if (s2s) out.push({ service: '_xmpp-server._tcp', port: cfg.s2s.listen.port, why: 'other servers find this one' });
  if (s2s && cfg.s2s.directTls.enabled) out.push({ service: '_xmpps-server._tcp', port: cfg.s2s.directTls.port, why: 'other servers find direct TLS (XEP-0368)' });
  return out;
}

/** Names no public DNS has: a single label (localhost), an address. */
const localName = (d: string): boolean => !d.includes('.') || d.endsWith('.localhost') || /^[\d.]+$/.test(d) || d.includes(':');

async function checkDns(cfg: Config, servers: string[] | undefined, timeoutMs: number): Promise<Finding[]> {
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  if (servers?.length) resolver.setServers(servers);
  const findings: Finding[] = [];
  const specs = srvRecords(cfg);
  if (!specs.length) return findings;
  await Promise.all(cfg.domains.map(async (d) => {
    if (localName(d)) {
      findings.push({ level: 'ok', text: `DNS: ${d} is a local name; no SRV records looked up` });
      return;
    }
    for (const s of specs) {
      const name = `${s.service}.${d}`;
      try {
        const records = await resolver.resolveSrv(name);
        findings.push({ level: 'ok', text: `DNS: ${name} → ${records.map((r) => `${r.name}:${r.port}`).join(', ')}` });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const wanted = `${name}. 3600 IN SRV 5 0 ${s.port || '<port>'} ${d}.`;
        if (code === 'ENOTFOUND' || code === 'ENODATA') findings.push({ level: 'warn', text: `DNS: no ${name} record (${s.why}); add: ${wanted}` });
        else findings.push({ level: 'warn', text: `DNS: could not look up ${name} (${code ?? (e as Error).message}); it should read: ${wanted}` });
      }
    }
  }));
  return findings.sort((a, b) => a.text.localeCompare(b.text));
}

// ---------------------------------------------------------------- listeners

interface ListenerSpec {
  key: string;
  host: string;
  port: number;
}

function listeners(cfg: Config): ListenerSpec[] {
  const out: ListenerSpec[] = [];
  const c2s = cfg.role === 'all' || cfg.role === 'c2s';
  const s2s = cfg.s2s.enabled && (cfg.role === 'all' || cfg.role === 's2s');
  if (c2s) {
    out.push({ key: 'c2s.tcp.port', host: cfg.c2s.tcp.host, port: cfg.c2s.tcp.port });
    if (cfg.c2s.directTls.enabled) out.push({ key: 'c2s.directTls.port', host: cfg.c2s.directTls.host, port: cfg.c2s.directTls.port });
    if (cfg.c2s.http.enabled) out.push({ key: 'c2s.http.port', host: cfg.c2s.http.host, port: cfg.c2s.http.port });
    if (cfg.components.services.length) out.push({ key: 'components.listen.port', host: cfg.components.listen.host, port: cfg.components.listen.port });
  }
  if (s2s) {
    out.push({ key: 's2s.listen.port', host: cfg.s2s.listen.host, port: cfg.s2s.listen.port });
    if (cfg.s2s.directTls.enabled) out.push({ key: 's2s.directTls.port', host: cfg.s2s.directTls.host, port: cfg.s2s.directTls.port });
  }
  if (cfg.metrics.enabled) out.push({ key: 'metrics.port', host: cfg.metrics.host, port: cfg.metrics.port });
  if (cfg.admin.enabled) out.push({ key: 'admin.port', host: cfg.admin.host, port: cfg.admin.port });
  return out;
}

function tryBind(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(undefined)));
  });
}

async function checkPorts(cfg: Config): Promise<Finding[]> {
  const findings: Finding[] = [];
  const specs = listeners(cfg);
  const seen = new Map<number, string>();
  for (const l of specs) {
    const where = `${l.host}:${l.port}`;
    if (l.port === 0) {
      findings.push({ level: 'ok', text: `${l.key}: 0, any free port on ${l.host}` });
      continue;
    }
    const twice = seen.get(l.port);
    if (twice) {
      findings.push({ level: 'error', text: `${l.key}: port ${l.port} is also ${twice}; give each listener its own port` });
      continue;
    }
    seen.set(l.port, l.key);
    const e = await tryBind(l.host, l.port);
    if (!e) findings.push({ level: 'ok', text: `${l.key}: ${where} is free` });
    else if (e.code === 'EADDRINUSE') findings.push({ level: 'error', text: `${l.key}: ${where} is in use by ${portHolder(l.port) ?? 'another process'}; stop it or set ${l.key}` });
    else if (e.code === 'EACCES') findings.push({ level: 'error', text: `${l.key}: ${where} needs privileges (a port below 1024): run with CAP_NET_BIND_SERVICE or set ${l.key}` });
    else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') findings.push({ level: 'error', text: `${l.key}: ${l.host} is not an address of this machine; set ${l.key.replace(/port$/, 'host')}` });
    else findings.push({ level: 'error', text: `${l.key}: cannot bind ${where}: ${e.code ?? e.message}` });
  }
  return findings;
}

/** Who listens on a TCP port, from /proc (Linux): 'pid 123 (nats-server -p 4222)', or undefined when unknown. */
function portHolder(port: number): string | undefined {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; the inode is the tenth field.
      if (f.length > 9 && f[3] === '0A' && Number.parseInt(f[1].split(':')[1], 16) === port) inodes.add(f[9]);
    }
  }
  if (!inodes.size) return undefined;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // another user's process, or gone
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1])) {
        let cmd = '';
        try {
          cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
        } catch { /* gone */ }
        return `pid ${pid}${cmd ? ` (${cmd.length > 80 ? `${cmd.slice(0, 77)}...` : cmd})` : ''}`;
      }
    }
  }
  return 'a process this user cannot see';
}

// ---------------------------------------------------------------- NATS and Redis

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

async function probeNats(server: string, timeoutMs: number): Promise<string | undefined> {
  const { servers, auth } = withoutCredentials([server]);
  try {
    const nc = await withTimeout(connectNats({ servers, ...auth, timeout: timeoutMs, reconnect: false, maxReconnectAttempts: 0, name: 'parley-config-check' }), timeoutMs + 500);
    await nc.close();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

async function probeRedis(address: string, defaultPort: number, timeoutMs: number, sentinel: boolean): Promise<string | undefined> {
  const a = parseRedisAddress(address, defaultPort);
  const client = new Redis({
    host: a.host, port: a.port, username: a.username, password: a.password, ...(a.tls ? { tls: {} } : {}),
    lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, enableOfflineQueue: false,
    retryStrategy: () => null, enableReadyCheck: !sentinel,
  });
  let failure: Error | undefined;
  client.on('error', (e: Error) => { failure ??= e; }); // the one attempt's error is the answer, below
  try {
    await withTimeout(client.connect().then(() => client.ping()), timeoutMs + 500);
    return undefined;
  } catch (e) {
    return (failure ?? (e as Error)).message;
  } finally {
    client.disconnect();
  }
}

/** One connection to the archive's PostgreSQL and a `SELECT 1`; undefined when it answers, else why not. */
async function probePostgres(url: string, timeoutMs: number): Promise<string | undefined> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, application_name: 'parley-config-check' });
  client.on('error', () => undefined); // the query's own rejection is the answer
  try {
    await withTimeout(client.connect().then(() => client.query('SELECT 1')), timeoutMs + 500);
    return undefined;
  } catch (e) {
    const err = e as Error & { code?: string };
    return err.message || err.code || String(e);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkEngines(cfg: Config, timeoutMs: number): Promise<Finding[]> {
  const probes: Array<Promise<Finding>> = [];
  if (cfg.bus.kind === 'nats') {
    const key = cfg.bus.servers ? 'bus.servers' : 'bus.url';
    for (const s of natsServers(cfg.bus)) {
      probes.push(probeNats(s, timeoutMs).then((why) => why
        ? { level: 'error', text: `${key}: NATS at ${redactUrl(s)} is not reachable: ${why}` }
        : { level: 'ok', text: `${key}: NATS at ${redactUrl(s)} answers` }));
    }
  }
  if (cfg.store.kind === 'redis') {
    const st = cfg.store;
    const targets: Array<{ key: string; address: string; port: number; sentinel: boolean }> = st.cluster
      ? st.cluster.map((address) => ({ key: 'store.cluster', address, port: 6379, sentinel: false }))
      : st.sentinel
        ? st.sentinel.sentinels.map((address) => ({ key: 'store.sentinel.sentinels', address, port: 26379, sentinel: true }))
        : [{ key: 'store.url', address: st.url ?? 'redis://127.0.0.1:6379', port: 6379, sentinel: false }];
    for (const t of targets) {
      probes.push(probeRedis(t.address, t.port, timeoutMs, t.sentinel).then((why) => why
        ? { level: 'error', text: `${t.key}: Redis at ${redactUrl(t.address)} is not reachable: ${why}` }
        : { level: 'ok', text: `${t.key}: Redis at ${redactUrl(t.address)} answers` }));
    }
  }
  const archive = cfg.archive.postgres;
  if (archive && cfg.role !== 'c2s' && cfg.role !== 's2s') {
    probes.push(probePostgres(archive.url, timeoutMs).then((why) => why
      ? { level: 'error', text: `archive.postgres.url: PostgreSQL at ${redactUrl(archive.url)} is not reachable: ${why}` }
      : { level: 'ok', text: `archive.postgres.url: PostgreSQL at ${redactUrl(archive.url)} answers` }));
  }
  return Promise.all(probes);
}
