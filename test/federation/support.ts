// What the federation tests share: Parley servers with federation on, XMPP
// clients for any domain on any server, a test PKI (openssl), /etc/hosts
// entries that are added and removed again, and waiting for what a user sees.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { xml, type Client } from '@xmpp/client';
import type { Element as XElement } from '@xmpp/xml';
import { inbox, testClient } from '../support/clients.ts';
import { startEmbedded } from '../support/parley.ts';
import { tempDir } from '../support/servers.ts';
import type { RunningServer } from '../../services/server.ts';
import type { S2sStreamInfo } from '../../services/s2s/s2s-node.ts';

export { xml };
export type Stanza = XElement;
export const PASSWORD = 'secret';

// ---------------------------------------------------------------- Parley

export interface Parley {
  domain: string;
  server: RunningServer;
  /** c2s port on 127.0.0.1 */
  port: number;
  addUser(local: string): Promise<string>;
  streams(): S2sStreamInfo[];
  stop(): Promise<void>;
}

/** An embedded Parley serving `domain`, federation on; `s2s` adds to (and overrides) the defaults. */
export async function startParley(domain: string, s2s: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Parley> {
  const d = await startEmbedded({ domains: [domain], s2s: { enabled: true, ...s2s }, ...extra });
  const server = d.server;
  return {
    domain,
    server,
    port: d.ports[0],
    addUser: async (local) => {
      await server.accounts.add(`${local}@${domain}`, PASSWORD);
      return `${local}@${domain}`;
    },
    streams: () => server.s2s?.streams() ?? [],
    stop: () => d.stop(),
  };
}

/** A port that was free a moment ago on this address. */
export function freePortOn(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export async function waitUntil(what: string, pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until the port accepts connections (a server started as a child process). */
export async function waitForPort(host: string, port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host, port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => { s.destroy(); resolve(false); });
    });
    if (ok) return;
    if (!alive()) throw new Error(`the server exited before listening on ${host}:${port}`);
    if (Date.now() > deadline) throw new Error(`${host}:${port} not listening after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Loopback addresses and domain names of this run's own (127.b.c.n and
 * `<name>.<run>.test`): peers listen on the standard ports of their own
 * address, so concurrent runs of the same test must not share them.
 */
export function testNetwork(): { ip(n: number): string; domain(name: string): string } {
  const b = 100 + Math.floor(Math.random() * 150);
  const c = 1 + Math.floor(Math.random() * 250);
  const run = Math.random().toString(36).slice(2, 8);
  return { ip: (n) => `127.${b}.${c}.${n}`, domain: (name) => `${name}.${run}.test` };
}

// ---------------------------------------------------------------- clients

export interface User {
  xmpp: Client;
  jid: string;
  received: Stanza[];
  /** The first stanza received at index `since` or later (past or future) that matches. */
  waitFor(pred: (s: Stanza) => boolean, timeoutMs?: number, since?: number): Promise<Stanza>;
  send(s: Stanza): Promise<void>;
  stop(): Promise<void>;
}

/** A real client (@xmpp/client) for `bare` on the server at host:port, whatever its domain. */
export async function login(host: string, port: number, bare: string, resource = 'test'): Promise<User> {
  const [local, domain] = bare.split('@');
  const xmpp = testClient({ service: `xmpp://${host}:${port}`, domain, username: local, password: PASSWORD, resource });
  const box = inbox(xmpp, bare, 15_000);
  const address = await xmpp.start();
  return {
    xmpp,
    jid: address.toString(),
    received: box.received,
    waitFor: box.waitFor,
    send: (s) => xmpp.send(s),
    stop: async () => { await xmpp.stop().catch(() => {}); },
  };
}

export const presenceFrom = (from: string, type?: string) => (s: Stanza) =>
  s.is('presence') && (s.attrs.from === from || s.attrs.from?.startsWith(`${from}/`) === true) && s.attrs.type === type;

export const messageWithBody = (body: string) => (s: Stanza) => s.is('message') && s.getChildText('body') === body;

export const errorCondition = (s: Stanza) => s.getChild('error')?.getChildElements().find((c) => c.name !== 'text')?.name;

export const rosterPush = (contact: string, subscription: string) => (s: Stanza) => {
  if (!s.is('iq') || s.attrs.type !== 'set') return false;
  const item = s.getChild('query', 'jabber:iq:roster')?.getChild('item');
  return item?.attrs.jid === contact && item.attrs.subscription === subscription;
};

/** Available presence, and the roster fetched (which makes the client an interested resource). */
export async function goOnline(u: User): Promise<void> {
  await u.xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })), 15_000);
  await u.send(xml('presence'));
}

/**
 * RFC 6121 §3: a asks b, b approves and asks back, a approves. Both end with
 * a subscription of 'both' and see each other's available presence.
 */
export async function subscribeBothWays(a: User, aJid: string, b: User, bJid: string): Promise<void> {
  await a.send(xml('presence', { to: bJid, type: 'subscribe' }));
  await b.waitFor(presenceFrom(aJid, 'subscribe'));
  await b.send(xml('presence', { to: aJid, type: 'subscribed' }));
  await a.waitFor(rosterPush(bJid, 'to'));
  await b.send(xml('presence', { to: aJid, type: 'subscribe' }));
  await a.waitFor(presenceFrom(bJid, 'subscribe'));
  await a.send(xml('presence', { to: bJid, type: 'subscribed' }));
  await a.waitFor(rosterPush(bJid, 'both'));
  await b.waitFor(rosterPush(aJid, 'both'));
  await a.waitFor(presenceFrom(bJid, undefined));
  await b.waitFor(presenceFrom(aJid, undefined));
}

export async function chatBothWays(a: User, aJid: string, b: User, bJid: string, tag: string): Promise<void> {
  await a.send(xml('message', { to: bJid, type: 'chat', id: `${tag}-1` }, xml('body', {}, `hello from ${aJid} (${tag})`)));
  const m1 = await b.waitFor(messageWithBody(`hello from ${aJid} (${tag})`));
  if (!m1.attrs.from?.startsWith(`${aJid}/`)) throw new Error(`unexpected from ${m1.attrs.from}`);
  await b.send(xml('message', { to: m1.attrs.from, type: 'chat', id: `${tag}-2` }, xml('body', {}, `hello back from ${bJid} (${tag})`)));
  const m2 = await a.waitFor(messageWithBody(`hello back from ${bJid} (${tag})`));
  if (!m2.attrs.from?.startsWith(`${bJid}/`)) throw new Error(`unexpected from ${m2.attrs.from}`);
}

// ---------------------------------------------------------------- PKI

export interface Pki {
  dir: string;
  caCert: string;
  /** A certificate for `domain` signed by the test CA: [cert, key] paths. */
  issue(domain: string): { cert: string; key: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A throwaway CA in a temp dir. */
export function testCa(): Pki {
  const dir = tempDir('parley-pki');
  openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Parley Federation Test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    issue(domain) {
      const ext = join(dir, `${domain}.ext`);
      writeFileSync(ext, `subjectAltName=DNS:${domain}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n`);
      openssl(['req', ...EC, '-keyout', `${domain}.key`, '-out', `${domain}.csr`, '-subj', `/CN=${domain}`], dir);
      openssl(['x509', '-req', '-in', `${domain}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${domain}.crt`, '-days', '2', '-extfile', ext], dir);
      return { cert: join(dir, `${domain}.crt`), key: join(dir, `${domain}.key`) };
    },
  };
}

/** A self-signed certificate for `domain` (what dialback is for). */
export function selfSigned(dir: string, domain: string): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  openssl(['req', '-x509', ...EC, '-keyout', `${domain}.key`, '-out', `${domain}.crt`, '-days', '2', '-subj', `/CN=${domain}`,
    '-addext', `subjectAltName=DNS:${domain}`], dir);
  return { cert: join(dir, `${domain}.crt`), key: join(dir, `${domain}.key`) };
}

// ---------------------------------------------------------------- /etc/hosts

const HOSTS = '/etc/hosts';
const LOCK = '/tmp/parley-federation-hosts.lock';

/** Serializes edits of /etc/hosts between test files running at once. */
async function withHostsLock<T>(fn: () => T): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      closeSync(openSync(LOCK, 'wx'));
      break;
    } catch {
      // A lock older than a minute was left by a killed run.
      try { if (Date.now() - statSync(LOCK).mtimeMs > 60_000) rmSync(LOCK, { force: true }); } catch { /* gone meanwhile */ }
      if (Date.now() > deadline) throw new Error(`cannot lock ${LOCK}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { force: true });
  }
}

/**
 * Name → address lines in /etc/hosts, marked with `tag` so exactly these are
 * removed again (also at exit, should the test die first).
 */
export async function addHosts(tag: string, entries: Record<string, string>): Promise<() => Promise<void>> {
  const marker = `# parley-federation-test ${tag} ${process.pid}`;
  const strip = () => {
    const kept = readFileSync(HOSTS, 'utf8').split('\n').filter((l) => !l.endsWith(marker));
    writeFileSync(HOSTS, kept.join('\n'));
  };
  await withHostsLock(() => {
    const lines = Object.entries(entries).map(([name, addr]) => `${addr} ${name} ${marker}`);
    const cur = readFileSync(HOSTS, 'utf8');
    writeFileSync(HOSTS, `${cur}${cur.endsWith('\n') ? '' : '\n'}${lines.join('\n')}\n`);
  });
  const onExit = () => { try { strip(); } catch { /* best effort */ } };
  process.once('exit', onExit);
  return async () => {
    process.removeListener('exit', onExit);
    await withHostsLock(strip);
  };
}

// ---------------------------------------------------------------- rooms (XEP-0045)

export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';

export const mucCodes = (s: Stanza): string[] => (s.getChild('x', NS_MUC_USER)?.getChildren('status') ?? []).map((c) => String(c.attrs.code)).sort();

/** Enter a room; resolves with the self-presence (status 110), or throws with the error presence. */
export async function enterRoom(u: User, room: string, nick: string): Promise<Stanza> {
  const since = u.received.length;
  await u.send(xml('presence', { to: `${room}/${nick}` }, xml('x', { xmlns: NS_MUC })));
  const p = await u.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/${nick}` && (s.attrs.type === 'error' || mucCodes(s).includes('110')), 15_000, since);
  if (p.attrs.type === 'error') throw new Error(`${u.jid} could not enter ${room}: ${p.toString()}`);
  return p;
}

/** Create a room as an instant room (XEP-0045 §10.1.2): enter, then accept the default configuration. */
export async function createInstantRoom(u: User, room: string, nick: string): Promise<void> {
  await enterRoom(u, room, nick);
  await u.xmpp.iqCaller.request(xml('iq', { type: 'set', to: room }, xml('query', { xmlns: NS_MUC_OWNER }, xml('x', { xmlns: 'jabber:x:data', type: 'submit' }))), 15_000);
}

export const groupchatFrom = (from: string, body: string) => (s: Stanza) =>
  s.is('message') && s.attrs.type === 'groupchat' && s.attrs.from === from && s.getChildText('body') === body;

/**
 * The owner is in `room` already; the guest (another server's user, or ours
 * in another server's room) enters, both talk and see each other's message,
 * the guest leaves and the owner sees it go.
 */
export async function visitRoom(owner: User, ownerNick: string, guest: User, guestNick: string, room: string, tag: string): Promise<void> {
  const self = await enterRoom(guest, room, guestNick);
  if (self.attrs.to !== guest.jid) throw new Error(`self-presence to ${self.attrs.to}, not ${guest.jid}`);
  // Each sees the other in the room.
  await guest.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/${ownerNick}` && s.attrs.type === undefined, 15_000);
  await owner.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/${guestNick}` && s.attrs.type === undefined, 15_000);
  await guest.send(xml('message', { to: room, type: 'groupchat', id: `${tag}-g` }, xml('body', {}, `hello from ${guestNick} (${tag})`)));
  await owner.waitFor(groupchatFrom(`${room}/${guestNick}`, `hello from ${guestNick} (${tag})`), 15_000);
  // The guest gets its own message reflected, as every occupant does.
  await guest.waitFor(groupchatFrom(`${room}/${guestNick}`, `hello from ${guestNick} (${tag})`), 15_000);
  await owner.send(xml('message', { to: room, type: 'groupchat', id: `${tag}-o` }, xml('body', {}, `welcome, ${guestNick} (${tag})`)));
  await guest.waitFor(groupchatFrom(`${room}/${ownerNick}`, `welcome, ${guestNick} (${tag})`), 15_000);
  const since = guest.received.length;
  await guest.send(xml('presence', { to: `${room}/${guestNick}`, type: 'unavailable' }));
  await guest.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/${guestNick}` && s.attrs.type === 'unavailable', 15_000, since);
  await owner.waitFor((s) => s.is('presence') && s.attrs.from === `${room}/${guestNick}` && s.attrs.type === 'unavailable', 15_000);
}
