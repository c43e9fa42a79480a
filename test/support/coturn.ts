// Debian's coturn for tests: `turnserver` as the current user on free
// loopback ports with a configuration of its own (TURN REST shared secret, no
// TLS, no CLI, no database outside its temp dir), and `turnutils_uclient` to
// allocate a relay with given credentials.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, tempDir } from './servers.ts';

const run = promisify(execFile);

export interface Coturn {
  port: number;
  /** Output so far (refusals are logged as 'check_stun_auth: Cannot find credentials…' or '401'). */
  readonly log: string;
  stop(): Promise<void>;
}

export async function startCoturn(opts: { secret: string; realm: string }): Promise<Coturn> {
  const port = await freePort();
  // Relay endpoints: a few UDP ports above a free one, inside the tests' range.
  const relayBase = await freePort();
  const dir = tempDir('parley-coturn');
  const conf = join(dir, 'turnserver.conf');
  writeFileSync(conf, [
    `listening-port=${port}`, 'listening-ip=127.0.0.1', 'relay-ip=127.0.0.1',
    `min-port=${relayBase}`, `max-port=${Math.min(relayBase + 20, 31999)}`,
    'use-auth-secret', `static-auth-secret=${opts.secret}`, `realm=${opts.realm}`,
    'no-tls', 'no-dtls', 'no-cli', 'no-rfc5780', 'allow-loopback-peers', 'fingerprint',
    `userdb=${join(dir, 'turndb')}`, `pidfile=${join(dir, 'turnserver.pid')}`, 'log-file=stdout', 'simple-log',
  ].join('\n') + '\n');
  const child: ChildProcess = spawn('turnserver', ['-c', conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => { out = (out + d.toString()).slice(-20_000); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready once its TCP listener accepts (it listens on TCP and UDP on the same port).
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`turnserver exited during startup:\n${out}`);
    }
    if (await accepts(port)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`turnserver not listening on ${port} after 10 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, get log() { return out; }, stop };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/**
 * Allocate a relay on the TURN server with these credentials and send a few packets through it (two clients
 * talking through their relays, over UDP). True when the allocation succeeded and the packets came back.
 */
export async function allocateRelay(port: number, username: string, password: string): Promise<{ ok: boolean; output: string }> {
  const { stdout, stderr } = await run('turnutils_uclient', ['-p', String(port), '-u', username, '-w', password, '-y', '-n', '2', '-m', '1', '-l', '100', '127.0.0.1'],
    { timeout: 15_000 }).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: e.stdout ?? '', stderr: e.stderr ?? '' }));
  const output = `${stdout}${stderr}`;
  const ok = !/Cannot complete Allocation/.test(output) && /Total lost packets 0 /.test(output) && /tot_recv_msgs=[1-9]/.test(output);
  return { ok, output };
}
