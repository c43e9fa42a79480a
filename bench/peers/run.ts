// Starts one baseline server in the foreground for manual runs of bench/cli.ts:
//   node --import tsx bench/peers/run.ts prosody|ejabberd|parley|parley-cluster [--users 2000] [--port 15222] [--http-port 15280] [--seconds 1800] [--keep]
//     [--root DIR (Parley: run that checkout's server)] [--metrics (Parley: serve /metrics on free ports)]
//     [--node-args='--cpu-prof --cpu-prof-dir=DIR' (Parley: node flags for every server process)]
// Prints the options to pass on to bench/cli.ts (--pids, and --metrics-urls / --redis when there are any),
// stops on Ctrl-C or after --seconds (bounded by design).
import { parseArgs } from 'node:util';
import { PEERS } from './index.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    users: { type: 'string', default: '2000' }, port: { type: 'string', default: '15222' }, 'http-port': { type: 'string', default: '15280' },
    seconds: { type: 'string', default: '1800' }, keep: { type: 'boolean', default: false }, 'users-prefix': { type: 'string', default: 'user' },
    password: { type: 'string', default: 'secret' }, domain: { type: 'string', default: 'localhost' },
    root: { type: 'string', default: '' }, metrics: { type: 'boolean', default: false }, 'node-args': { type: 'string', default: '' },
  },
});
const make = PEERS[positionals[0] ?? ''];
if (!make) { console.error(`usage: run.ts ${Object.keys(PEERS).join('|')} [--users N] [--port P] [--http-port P] [--seconds S] [--keep] [--root DIR] [--metrics] [--node-args FLAGS]`); process.exit(2); }
const peer = make({ users: Number(values.users), port: Number(values.port), httpPort: Number(values['http-port']), keep: values.keep, prefix: values['users-prefix'], password: values.password, domain: values.domain, root: values.root, metrics: values.metrics, nodeArgs: values['node-args'].split(/\s+/).filter(Boolean) });
const t0 = Date.now();
const s = await peer.start().catch(async (e: Error) => { await peer.stop(); console.error(e.message); process.exit(1); });
console.log(`${peer.name} up in ${Date.now() - t0} ms: port ${s.port} ws ${s.wsUrl ?? '-'} dir ${s.dir}`);
console.log(`--pids ${s.pids.join(',')}${s.metricsUrls ? ` --metrics-urls ${s.metricsUrls.join(',')}` : ''}${s.redis ? ` --redis ${s.redis}` : ''}`);
let stopping = false;
const stop = async (): Promise<void> => { if (stopping) return; stopping = true; await peer.stop(); console.log(`${peer.name} stopped`); process.exit(0); };
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
setTimeout(() => void stop(), Number(values.seconds) * 1000);
