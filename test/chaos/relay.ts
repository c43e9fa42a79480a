// A plain TCP relay: listen on host A at each of a list of ports, forward
// every connection to the same port on host B. Two of them let a process in
// a network namespace reach the engines (which listen on the host's
// 127.0.0.1 only) at the very addresses every other process uses, Redis
// Cluster redirects and NATS' gossiped server list included:
//
//   process in the namespace ─▶ relay in the namespace (127.0.0.1:p)
//     ─veth─▶ relay on the host (veth address:p) ─▶ engine (127.0.0.1:p)
//
// Cutting the veth then stalls those connections the way a partition does:
// nothing is reset, bytes wait in buffers (pipe() pauses the reading side
// when the writing side is full) and flow again once the link is back.
//
// Run as a program (inside the namespace): `relay.ts LISTEN_HOST TARGET_HOST PORT,PORT,…`;
// it prints `ready` once every port listens and exits when its stdin closes
// (the test process that started it is gone).
import { createServer, connect, type Server, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';

export interface Relay {
  /** Connections currently relayed. */
  readonly open: number;
  close(): Promise<void>;
}

export async function startRelay(listenHost: string, targetHost: string, ports: readonly number[]): Promise<Relay> {
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const track = (s: Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); };
  for (const port of ports) {
    const server = createServer({ noDelay: true }, (down) => {
      const up = connect({ host: targetHost, port, noDelay: true });
      track(down);
      track(up);
      // Either side ending or failing ends the other: a refused or reset engine connection shows as one to the relayed client.
      const end = () => { down.destroy(); up.destroy(); };
      down.on('error', end).on('close', end);
      up.on('error', end).on('close', end);
      down.pipe(up);
      up.pipe(down);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, listenHost, () => { server.off('error', reject); resolve(); });
    });
    servers.push(server);
  }
  return {
    get open() { return sockets.size / 2; },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [listenHost, targetHost, list] = process.argv.slice(2);
  if (!listenHost || !targetHost || !list) {
    process.stderr.write('usage: relay.ts LISTEN_HOST TARGET_HOST PORT,PORT,…\n');
    process.exit(2);
  }
  const relay = await startRelay(listenHost, targetHost, list.split(',').map(Number));
  process.stdout.write('ready\n');
  process.stdin.resume();
  process.stdin.on('end', () => { void relay.close().then(() => process.exit(0)); });
  process.stdin.on('error', () => process.exit(0));
}
