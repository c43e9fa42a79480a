// Command-line options shared by cli.ts and compare.ts.
import { parseArgs } from 'node:util';
import { MECHANISMS, type Mechanism } from './scram.ts';
import type { WorkerMode } from './pool.ts';

export interface BenchOptions {
  host: string;
  port: number;
  domain: string;
  usersPrefix: string;
  password: string;
  transport: 'tcp' | 'ws';
  wsUrl: string;
  users: number;
  userOffset: number;
  concurrency: number;
  workers: number;
  workerMode: WorkerMode;
  sourceBase: number;
  mech: Mechanism | 'auto';
  roster: boolean;
  presence: boolean;
  /** XEP-0198 stream management on every stream (enabled after bind). */
  sm: boolean;
  /** With --sm: an <r/> after every this many messages sent. */
  smRequestEvery: number;
  loginTimeoutMs: number;
  pids: number[];
  target: string;
  out: string;
  quiet: boolean;
  // chat
  rates: number[];
  /** After the rates: bisect until the highest passing and the lowest failing rate are within this fraction (0: off). */
  precision: number;
  stepSeconds: number;
  lossTimeoutMs: number;
  p99LimitMs: number;
  payload: number;
  /** Server counters read around every chat step: Parley /metrics URLs (bus messages), a Redis host:port (commands). */
  metricsUrls: string[];
  redis: string;
  // idle
  settleSeconds: number;
  holdSeconds: number;
  // presence
  rate: number;
  seconds: number;
  rosterSetup: string;
  // muc
  /** Room sizes, one room (and, in compare.ts, one fresh server) each. */
  mucSizes: number[];
  /** Every c2s listener occupants spread over (cli.ts; compare.ts takes them from the peer). */
  ports: number[];
  mucRate: number;
  mucSeconds: number;
  mucSenders: number;
  mucDrainSeconds: number;
  mucJoinTimeoutSeconds: number;
  mucBroadcast: 'auto' | 'all' | 'moderators';
}

export const OPTION_SPEC = {
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '5222' },
  domain: { type: 'string', default: 'localhost' },
  'users-prefix': { type: 'string', default: 'user' },
  password: { type: 'string', default: 'secret' },
  transport: { type: 'string', default: 'tcp' },
  'ws-url': { type: 'string', default: 'ws://127.0.0.1:5280/xmpp-websocket' },
  users: { type: 'string' },
  connections: { type: 'string' },
  'user-offset': { type: 'string', default: '1' },
  concurrency: { type: 'string' },
  workers: { type: 'string', default: '2' },
  'worker-mode': { type: 'string', default: 'thread' },
  'source-base': { type: 'string', default: '2' },
  mech: { type: 'string', default: 'auto' },
  'no-roster': { type: 'boolean', default: false },
  'no-presence': { type: 'boolean', default: false },
  sm: { type: 'boolean', default: false },
  'sm-request-every': { type: 'string', default: '5' },
  'login-timeout-ms': { type: 'string', default: '30000' },
  pids: { type: 'string', default: '' },
  target: { type: 'string' },
  out: { type: 'string', default: 'bench/results' },
  quiet: { type: 'boolean', default: false },
  rates: { type: 'string', default: '1000,2000,4000,8000,16000,32000,64000' },
  precision: { type: 'string', default: '0.1' },
  'step-seconds': { type: 'string', default: '10' },
  'loss-timeout-ms': { type: 'string', default: '5000' },
  'p99-limit-ms': { type: 'string', default: '100' },
  payload: { type: 'string', default: '0' },
  'metrics-urls': { type: 'string', default: '' },
  redis: { type: 'string', default: '' },
  'settle-seconds': { type: 'string', default: '5' },
  'hold-seconds': { type: 'string', default: '10' },
  rate: { type: 'string', default: '500' },
  seconds: { type: 'string', default: '10' },
  'roster-setup': { type: 'string', default: '' },
  'muc-sizes': { type: 'string', default: '10,1000' },
  ports: { type: 'string', default: '' },
  'muc-rate': { type: 'string', default: '0' },
  'muc-seconds': { type: 'string', default: '10' },
  'muc-senders': { type: 'string', default: '10' },
  'muc-drain-seconds': { type: 'string', default: '30' },
  'muc-join-timeout': { type: 'string', default: '300' },
  'muc-broadcast': { type: 'string', default: 'auto' },
  help: { type: 'boolean', default: false },
} as const;

export const DEFAULT_USERS: Record<string, number> = { login: 500, idle: 2000, chat: 200, presence: 200 };

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTION_SPEC; allowPositionals: true }>>['values'];

function int(v: string | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: expected a non-negative number, got ${v}`);
  return n;
}

function positive(v: string | undefined, name: string): number {
  const n = int(v, name);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: expected a whole number of at least 1, got ${v}`);
  return n;
}

function url(v: string, name: string): string {
  try {
    return new URL(v).href;
  } catch {
    throw new Error(`--${name}: not a URL: ${v}`);
  }
}

function hostPort(v: string): string {
  if (v && !/^[^:\s]+:\d{1,5}$/.test(v)) throw new Error(`--redis: expected host:port, got ${v}`);
  return v;
}

export function parseCommandLine(argv: string[]): { positionals: string[]; values: Values } {
  const { values, positionals } = parseArgs({ args: argv, options: OPTION_SPEC, allowPositionals: true, strict: true });
  return { values, positionals };
}

export function toOptions(v: Values, scenario: string): BenchOptions {
  const transport = v.transport === 'ws' ? 'ws' : v.transport === 'tcp' ? 'tcp' : null;
  if (!transport) throw new Error(`--transport must be tcp or ws`);
  const mech = v.mech.toUpperCase();
  if (mech !== 'AUTO' && !MECHANISMS.includes(mech as Mechanism)) throw new Error(`--mech must be auto or one of ${MECHANISMS.join(', ')}`);
  const workerMode = v['worker-mode'] === 'process' ? 'process' : 'thread';
  const users = int(v.users ?? v.connections ?? String(DEFAULT_USERS[scenario] ?? 100), 'users');
  return {
    host: v.host, port: int(v.port, 'port'), domain: v.domain, usersPrefix: v['users-prefix'], password: v.password,
    transport, wsUrl: v['ws-url'], users, userOffset: int(v['user-offset'], 'user-offset'),
    concurrency: int(v.concurrency ?? (scenario === 'idle' ? '200' : '50'), 'concurrency') || 1,
    workers: Math.max(1, int(v.workers, 'workers')), workerMode, sourceBase: int(v['source-base'], 'source-base'),
    mech: mech === 'AUTO' ? 'auto' : (mech as Mechanism), roster: !v['no-roster'], presence: !v['no-presence'],
    sm: v.sm, smRequestEvery: positive(v['sm-request-every'], 'sm-request-every'),
    loginTimeoutMs: int(v['login-timeout-ms'], 'login-timeout-ms'),
    pids: v.pids ? v.pids.split(',').map((p) => int(p, 'pids')) : [],
    target: v.target ?? `${v.host}-${transport === 'ws' ? new URL(v['ws-url']).port : v.port}`,
    out: v.out, quiet: v.quiet,
    rates: v.rates.split(',').map((r) => int(r, 'rates')).filter((r) => r > 0), precision: fraction(v.precision, 'precision'),
    stepSeconds: int(v['step-seconds'], 'step-seconds'), lossTimeoutMs: int(v['loss-timeout-ms'], 'loss-timeout-ms'),
    p99LimitMs: int(v['p99-limit-ms'], 'p99-limit-ms'), payload: int(v.payload, 'payload'),
    metricsUrls: v['metrics-urls'] ? v['metrics-urls'].split(',').map((u) => url(u, 'metrics-urls')) : [], redis: hostPort(v.redis),
    settleSeconds: int(v['settle-seconds'], 'settle-seconds'), holdSeconds: int(v['hold-seconds'], 'hold-seconds'),
    rate: int(v.rate, 'rate'), seconds: int(v.seconds, 'seconds'), rosterSetup: v['roster-setup'],
    mucSizes: v['muc-sizes'].split(',').map((x) => int(x, 'muc-sizes')).filter((x) => x > 0),
    ports: v.ports ? v.ports.split(',').map((x) => int(x, 'ports')) : [],
    mucRate: int(v['muc-rate'], 'muc-rate'), mucSeconds: int(v['muc-seconds'], 'muc-seconds'), mucSenders: Math.max(1, int(v['muc-senders'], 'muc-senders')),
    mucDrainSeconds: int(v['muc-drain-seconds'], 'muc-drain-seconds'), mucJoinTimeoutSeconds: int(v['muc-join-timeout'], 'muc-join-timeout'),
    mucBroadcast: mucBroadcast(v['muc-broadcast']),
  };
}

function fraction(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n >= 1) throw new Error(`--${name} must be a fraction from 0 to below 1, not '${v}'`);
  return n;
}

function mucBroadcast(v: string): BenchOptions['mucBroadcast'] {
  if (v !== 'auto' && v !== 'all' && v !== 'moderators') throw new Error('--muc-broadcast must be auto, all or moderators');
  return v;
}

export const USAGE = `usage: node --import tsx bench/cli.ts login|idle|chat|presence|muc [options]
target:   --host 127.0.0.1 --port 5222 --domain localhost --users-prefix user --password secret
          --transport tcp|ws [--ws-url ws://127.0.0.1:5280/xmpp-websocket] --mech auto|SCRAM-SHA-256|SCRAM-SHA-1|PLAIN
          --pids 123,456 (server processes: RSS and CPU are sampled from /proc) --target NAME (for file names)
load:     --users N (users userOFFSET..userOFFSET+N-1; --connections is an alias) --user-offset 1
          --concurrency 50 (logins in flight) --workers 2 --worker-mode thread|process --source-base 2 (127.0.0.2, .3, ...)
          --no-roster --no-presence --login-timeout-ms 30000 --quiet --out bench/results
          --sm (XEP-0198 on every stream: answer the server's <r/>, time its <a h/>) --sm-request-every 5 (an <r/> after that many messages)
chat:     --rates 1000,2000,4000,... (aggregate msgs/s per step) --precision 0.1 (then bisect to within 10 %; 0: off)
          --step-seconds 10 --loss-timeout-ms 5000
          --p99-limit-ms 100 --payload 0 (extra body bytes)
          --metrics-urls http://127.0.0.1:9464/metrics,... (Parley: bus messages per message) --redis 127.0.0.1:6379 (Redis commands per message)
idle:     --settle-seconds 5 --hold-seconds 10
presence: --rate 500 (presence changes/s) --seconds 10 --roster-setup module.ts (default export run before login)
muc:      --muc-sizes 10,1000 (one room per size; occupants are users OFFSET… and need accounts) --ports 5222,5223 (every c2s listener)
          --muc-rate 0 (room msgs/s; 0 = 40,000 deliveries/s, at most 2,000 msgs/s) --muc-seconds 10 --muc-senders 10
          --muc-drain-seconds 30 --muc-join-timeout 300 --muc-broadcast auto|all|moderators (auto: moderators only above 2,000)`;
