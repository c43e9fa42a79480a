// Starts one baseline server in the foreground for manual runs of bench/cli.ts:
//   node --import tsx bench/peers/run.ts prosody|ejabberd|parley [--users 2000] [--port 15222] [--http-port 15280] [--seconds 1800] [--keep]
// Prints the pids to pass as --pids, stops on Ctrl-C or after --seconds (bounded by design).
import { parseArgs } from 'node:util';
import { PEERS } from './index.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    users: { type: 'string', default: '2000' }, port: { type: 'string', default: '15222' }, 'http-port': { type: 'string', default: '15280' },
    seconds: { type: 'string', default: '1800' }, keep: { type: 'boolean', default: false }, 'users-prefix': { type: 'string', default: 'user' },
    password: { type: 'string', default: 'secret' }, domain: { type: 'string', default: 'localhost' },
  },
});
const make = PEERS[positionals[0] ?? ''];
if (!make) { console.error(`usage: run.ts ${Object.keys(PEERS).join('|')} [--users N] [--port P] [--http-port P] [--seconds S] [--keep]`); process.exit(2); }
const peer = make({ users: Number(values.users), port: Number(values.port), httpPort: Number(values['http-port']), keep: values.keep, prefix: values['users-prefix'], password: values.password, domain: values.domain });
const t0 = Date.now();
const s = await peer.start().catch(async (e: Error) => { await peer.stop(); console.error(e.message); process.exit(1); });
console.log(`${peer.name} up in ${Date.now() - t0} ms: port ${s.port} ws ${s.wsUrl ?? '-'} dir ${s.dir}`);
console.log(`--pids ${s.pids.join(',')}`);
let stopping = false;
const stop = async (): Promise<void> => { if (stopping) return; stopping = true; await peer.stop(); console.log(`${peer.name} stopped`); process.exit(0); };
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
setTimeout(() => void stop(), Number(values.seconds) * 1000);
