// Helpers of the administration tests: a Parley process started from a
// configuration file like an operator's, the `parley` command, the admin API
// called directly, and raw logins over each transport.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { PASSWORD } from './parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from './raw.ts';
import { rawWs, type RawWs } from './ws-raw.ts';

const BIN = join(import.meta.dirname, '../../bin/parley.mjs');

export interface Run { status: number | null; stdout: string; stderr: string }

/** The real command, with none of the caller's PARLEY_* variables. */
export function parleyCommand(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...base, ...env }, timeout: 60_000, encoding: 'utf8' }, (e, stdout, stderr) => {
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : null) : 0, stdout, stderr });
    });
  });
}

export interface ParleyProcess {
  child: ChildProcess;
  /** Every line it wrote (stdout and stderr). */
  log: string[];
  /** The admin API's base URL, from its start line. */
  adminUrl: string;
  /** Resolves with the first line at index `since` or later that matches. */
  waitForLine(re: RegExp, since?: number, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** `parley start --config FILE`, resolved once it has started. */
export async function startParleyProcess(configFile: string): Promise<ParleyProcess> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PARLEY_')));
  const child = spawn(process.execPath, [BIN, 'start', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, NODE_TLS_REJECT_UNAUTHORIZED: '0' } });
  const log: string[] = [];
  const watchers: Array<() => void> = [];
  let partial = '';
  const onData = (buf: Buffer) => {
    const lines = (partial + buf.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      log.push(l);
      if (process.env.PARLEY_TEST_VERBOSE) process.stderr.write(`[parley] ${l}\n`);
    }
    for (const w of [...watchers]) w();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const waitForLine = (re: RegExp, since = 0, timeoutMs = 15_000) => new Promise<string>((resolve, reject) => {
    const check = () => {
      const hit = log.slice(since).find((l) => re.test(l));
      if (hit === undefined) return;
      clearTimeout(timer);
      watchers.splice(watchers.indexOf(check), 1);
      resolve(hit);
    };
    const timer = setTimeout(() => {
      watchers.splice(watchers.indexOf(check), 1);
      reject(new Error(`no line ${re} within ${timeoutMs} ms:\n${log.slice(-30).join('\n')}`));
    }, timeoutMs);
    watchers.push(check);
    check();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const started = await Promise.race([
    waitForLine(/server: started/, 0, 30_000),
    exited.then(() => { throw new Error(`parley exited:\n${log.join('\n')}`); }),
  ]);
  const adminUrl = /admin=(\S+)/.exec(started)?.[1] ?? '';
  return {
    child, log, adminUrl, waitForLine,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

export function tokenOf(dataDir: string): string {
  return readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
}

export interface ApiAnswer { status: number; body: Record<string, unknown> }

export async function adminApi(url: string, token: string | undefined, method: string, path: string, body?: unknown): Promise<ApiAnswer> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

/** Authenticate (PLAIN), restart the stream and bind `resource`, on a raw connection at the stream's start. */
async function loginOn(c: RawClient, user: string, resource: string): Promise<void> {
  c.send(plainAuth(user, PASSWORD));
  await c.waitFor(/<success/);
  c.send(STREAM_OPEN());
  await c.waitFor(/urn:ietf:params:xml:ns:xmpp-bind/);
  c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
  await c.waitFor(/<jid>/);
}

/** A raw login over STARTTLS; the certificate the server presented is on `certificate`. */
export async function rawTlsLogin(port: number, user: string, resource: string): Promise<RawClient & { commonName: string }> {
  const c = await rawConnect(port);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
  await c.waitFor(/<proceed/);
  await c.startTls();
  const commonName = String((c.socket as TLSSocket).getPeerCertificate().subject.CN);
  c.send(STREAM_OPEN());
  await c.waitFor(/<\/stream:features>/);
  await loginOn(c, user, resource);
  return Object.assign(c, { commonName });
}

/** The certificate's common name a new STARTTLS connection is shown (no login). */
export async function starttlsCommonName(port: number): Promise<string> {
  const c = await rawConnect(port);
  try {
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await c.waitFor(/<proceed/);
    await c.startTls();
    return String((c.socket as TLSSocket).getPeerCertificate().subject.CN);
  } finally {
    c.close();
  }
}

/** A raw login over WebSocket (RFC 7395), PLAIN, bound to `resource`. */
export async function rawWsLogin(url: string, user: string, resource: string): Promise<RawWs> {
  const open = `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`;
  const ws = await rawWs(url);
  ws.sendText(open);
  await ws.waitFor(/<mechanism>PLAIN<\/mechanism>/);
  ws.sendText(plainAuth(user, PASSWORD));
  await ws.waitFor(/<success/);
  ws.sendText(open);
  await ws.waitFor(/urn:ietf:params:xml:ns:xmpp-bind/);
  ws.sendText(`<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`);
  await ws.waitFor(/<jid>/);
  return ws;
}
