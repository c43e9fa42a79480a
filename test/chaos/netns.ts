// A Linux network namespace for one Parley process, so a test can cut it off
// the network and heal it (`ip link set … down/up` on the host end of its veth
// pair). Only loopback and this namespace carry traffic: the namespace gets a
// /30 of 10.213.x.0 on the veth pair, and two relays (relay.ts) carry its
// connections to the engines' ports on the host's 127.0.0.1, so the process
// inside uses the same addresses as every other process.
//
// Needs root and iproute2; `createNamespace` says why not when it can't, and
// the caller falls back to something else.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startRelay, type Relay } from './relay.ts';

export interface Namespace {
  readonly name: string;
  /** The host's end of the veth pair (where the host relay listens) and the namespace's end. */
  readonly hostAddress: string;
  readonly innerAddress: string;
  /** The argv that runs `argv` inside the namespace (`ip netns exec` execs it: the pid is the program's own). */
  wrap(argv: string[]): string[];
  /** Cut the link: packets both ways are dropped, connections stall (nothing is reset). */
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

const IP = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => existsSync(p));
const ip = (...args: string[]): string => execFileSync(IP!, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const PREFIX = 'parley-chaos-';
const live = new Set<{ sync(): void }>();

const cleanup = () => { for (const n of live) n.sync(); live.clear(); };
process.on('exit', cleanup);
// A signal ends the process without 'exit': clean up, then let the signal take its course.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    cleanup();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

/** Namespaces (and their veth pairs) left by runs whose process is gone. */
function removeLeftovers(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0];
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length));
    let alive = false;
    try { process.kill(pid, 0); alive = true; } catch { /* gone */ }
    if (alive) continue;
    try { ip('link', 'del', `pc${pid}h`); } catch { /* already gone with the namespace */ }
    try { ip('netns', 'del', name); } catch { /* raced with another cleaner */ }
  }
}

/** A /30 in 10.213.0.0/16 that no address on the host uses yet. */
function freeSubnet(): number {
  const used = ip('-o', '-4', 'addr', 'show');
  for (let i = 0; i < 256; i++) {
    const x = (process.pid + i) % 256;
    if (!used.includes(`10.213.${x}.`)) return x;
  }
  throw new Error('no free /30 in 10.213.0.0/16');
}

/** The namespace, or why there can't be one here (not root, no iproute2, no permission). */
export async function createNamespace(enginePorts: readonly number[]): Promise<Namespace | { unavailable: string }> {
  if (process.platform !== 'linux') return { unavailable: 'not Linux' };
  if (process.getuid?.() !== 0) return { unavailable: 'not root' };
  if (!IP) return { unavailable: 'iproute2 (ip) is not installed' };
  const name = `${PREFIX}${process.pid}`;
  const hostIf = `pc${process.pid}h`;
  const innerIf = `pc${process.pid}n`;
  let x: number;
  try {
    removeLeftovers();
    x = freeSubnet();
    ip('netns', 'add', name);
  } catch (e) {
    return { unavailable: `ip netns add failed: ${(e as Error).message.split('\n')[0]}` };
  }
  const hostAddress = `10.213.${x}.1`;
  const innerAddress = `10.213.${x}.2`;
  let hostRelay: Relay | undefined;
  let innerRelay: ChildProcess | undefined;
  const entry = {
    sync() {
      innerRelay?.kill('SIGKILL');
      try { ip('link', 'del', hostIf); } catch { /* not made yet, or gone */ }
      try { ip('netns', 'del', name); } catch { /* gone */ }
    },
  };
  live.add(entry);
  try {
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', innerIf);
    ip('link', 'set', innerIf, 'netns', name);
    ip('addr', 'add', `${hostAddress}/30`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    ip('-n', name, 'addr', 'add', `${innerAddress}/30`, 'dev', innerIf);
    ip('-n', name, 'link', 'set', innerIf, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    hostRelay = await startRelay(hostAddress, '127.0.0.1', enginePorts);
    const relayPath = fileURLToPath(new URL('./relay.ts', import.meta.url));
    const child = spawn(IP!, ['netns', 'exec', name, process.execPath, '--import', 'tsx', relayPath, '127.0.0.1', hostAddress, enginePorts.join(',')],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    innerRelay = child;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`the relay in ${name} did not start within 20 s: ${out}`)), 20_000);
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready')) { clearTimeout(t); resolve(); }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => { clearTimeout(t); reject(new Error(`the relay in ${name} exited with ${code}: ${out}`)); });
    });
  } catch (e) {
    await hostRelay?.close();
    entry.sync();
    live.delete(entry);
    return { unavailable: `setting up ${name} failed: ${(e as Error).message.split('\n')[0]}` };
  }
  return {
    name, hostAddress, innerAddress,
    wrap: (argv) => [IP!, 'netns', 'exec', name, ...argv],
    cut: () => { ip('link', 'set', hostIf, 'down'); },
    heal: () => { ip('link', 'set', hostIf, 'up'); },
    async close() {
      innerRelay?.stdin?.end();
      await hostRelay?.close();
      entry.sync();
      live.delete(entry);
    },
  };
}
