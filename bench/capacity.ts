// A capacity plan from measured unit costs: reads bench result files (a
// `scale` result is required, a second one with another roster size is
// optional; `login`, `chat` and `presence` results are printed beside it as
// cross-checks) and sizes a deployment for a number of concurrent users
// under a traffic model.
//
//   node --import tsx bench/capacity.ts bench/results/scale-parley-cluster-*.json [more results…] [--users 1000000,10000000] [--json]
//
// Every cost comes from the scale result (one cluster, every process counted
// per role); the model only multiplies and adds:
//   CPU per role  = idle·users·(measured ping interval ÷ planned) + msg·rate + presence(fan-out)·rate + login(contacts)·rate
//   memory        = bytes per connection (c2s), per user (session), Redis per account + per roster item + per online user
// A presence change's and a login's cost grow with the online contacts they
// reach: the slope per notification comes from two measured points, a chat
// message (one delivery) and a presence change (its measured fan-out).
// docs/capacity.md explains each input and assumption.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export type Role = 'c2s' | 'session' | 'nats' | 'redis';
export const ROLES: readonly Role[] = ['c2s', 'session', 'nats', 'redis'];

/** What one user does, on average. */
export interface TrafficModel {
  messageEverySeconds: number;
  presenceEverySeconds: number;
  reconnectEverySeconds: number;
  contacts: number;
  /** Of the contacts, the share online at any time. */
  onlineShare: number;
  /** Archived message size; each message is archived for its sender and its recipient. */
  messageBytes: number;
  /**
   * The c2s keepalive (c2s.pingIntervalSeconds, 60 by default). A held connection's own cost is its pings (through
   * the actor on a managed stream), so the idle figures measured at a shorter interval are scaled by the ratio.
   */
  pingIntervalSeconds: number;
}

export const TRAFFIC: TrafficModel = { messageEverySeconds: 60, presenceEverySeconds: 600, reconnectEverySeconds: 1800, contacts: 100, onlineShare: 0.5, messageBytes: 300, pingIntervalSeconds: 60 };

/** How the plan is packed onto machines. */
export interface Sizing {
  /** Share of a core a Node process (single-threaded) or a Redis shard may use at peak average; the rest is headroom for bursts. */
  coreUtilization: number;
  /** Connections one c2s process may hold (c2s.maxConnections' default). */
  connectionsPerC2s: number;
  /** Heap one Node process is given (--max-old-space-size); RSS is planned to stay under it. */
  processMemoryGiB: number;
  /** Data one Redis shard holds (a primary; a replica doubles the memory). */
  redisShardGiB: number;
  /** Cores of one NATS server; a cluster has at least 3. */
  natsCores: number;
}

export const SIZING: Sizing = { coreUtilization: 0.6, connectionsPerC2s: 100_000, processMemoryGiB: 8, redisShardGiB: 25, natsCores: 8 };

/** Unit costs taken from one scale result. */
export interface UnitCosts {
  source: string;
  measuredConnections: number;
  measuredContacts: number;
  pingIntervalSeconds: number;
  /** Per role: RSS per connection (bytes), CPU µs per connection·s held, per chat message, per presence change, ms per reconnect. */
  roles: Record<Role, { bytesPerConnection: number; idleCpuUsPerConnSec: number; cpuUsPerMessage: number; cpuUsPerPresence: number; cpuMsPerLogin: number }>;
  /** Online contacts a measured presence change reached (own copy included) and a measured reconnect saw. */
  presenceFanOut: number;
  loginOnlineContacts: number;
  redisBytesPerAccountAlone: number;
  redisBytesPerRosterItem: number;
  /**
   * What a session's memory grows by per roster contact, from a second scale result with another roster size;
   * null with one result, and then a session's memory is taken to grow in proportion to its contacts (an upper bound).
   */
  sessionBytesPerContact: number | null;
  redisBytesPerOnlineUser: number;
  busPerMessage: number; busPerPresence: number; busPerLogin: number; idleBusPerConnSec: number;
  redisCommandsPerMessage: number; redisCommandsPerPresence: number; redisCommandsPerLogin: number; idleRedisPerConnSec: number;
}

interface ResultFile { scenario: string; target?: string; summary: Record<string, unknown>; details?: Record<string, unknown>; options?: Record<string, unknown> }

const num = (x: unknown, what: string): number => {
  if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`${what}: not measured in the scale result`);
  return x;
};

/** Unit costs from a `scale` result (bench/scale.ts). Reconnect figures are preferred to cold logins: they see every online contact. */
export function unitCosts(r: ResultFile, source = 'scale result'): UnitCosts {
  if (r.scenario !== 'scale') throw new Error(`${source}: a scale result is needed, got ${r.scenario}`);
  const s = r.summary;
  const roles = (r.details as { roles: Record<Role, Record<string, number | null>> }).roles;
  const relogin = s.busPerRelogin !== null && s.busPerRelogin !== undefined;
  const contacts = num(s.contacts, 'contacts');
  return {
    source,
    measuredConnections: num(s.connections, 'connections'),
    measuredContacts: contacts,
    pingIntervalSeconds: num(s.pingIntervalSeconds, 'pingIntervalSeconds'),
    roles: Object.fromEntries(ROLES.map((role) => {
      const f = roles[role];
      return [role, {
        bytesPerConnection: Math.max(0, num(f.bytesPerConnection, `${role} bytesPerConnection`)),
        idleCpuUsPerConnSec: num(f.idleCpuUsPerConnSec, `${role} idleCpuUsPerConnSec`),
        cpuUsPerMessage: num(f.cpuUsPerMessage, `${role} cpuUsPerMessage`),
        cpuUsPerPresence: num(f.cpuUsPerPresence, `${role} cpuUsPerPresence`),
        cpuMsPerLogin: num(relogin ? f.cpuMsPerRelogin : f.cpuMsPerLogin, `${role} cpuMsPerLogin`),
      }];
    })) as UnitCosts['roles'],
    presenceFanOut: num(s.presenceFanOut, 'presenceFanOut'),
    // A reconnect's contacts are all online (its neighbours stayed); a cold login sees about half of them come later.
    loginOnlineContacts: relogin ? contacts / 2 : contacts / 4,
    redisBytesPerAccountAlone: num(s.redisBytesPerAccountAlone, 'redisBytesPerAccountAlone'),
    sessionBytesPerContact: null,
    redisBytesPerRosterItem: num(s.redisBytesPerRosterItem, 'redisBytesPerRosterItem'),
    redisBytesPerOnlineUser: Math.max(0, num(s.redisBytesPerOnlineUser, 'redisBytesPerOnlineUser')),
    busPerMessage: num(s.busPerMessage, 'busPerMessage'), busPerPresence: num(s.busPerPresence, 'busPerPresence'),
    busPerLogin: num(relogin ? s.busPerRelogin : s.busPerLogin, 'busPerLogin'), idleBusPerConnSec: num(s.idleBusPerConnSec, 'idleBusPerConnSec'),
    redisCommandsPerMessage: num(s.redisCommandsPerMessage, 'redisCommandsPerMessage'), redisCommandsPerPresence: num(s.redisCommandsPerPresence, 'redisCommandsPerPresence'),
    redisCommandsPerLogin: num(relogin ? s.redisCommandsPerRelogin : s.redisCommandsPerLogin, 'redisCommandsPerLogin'), idleRedisPerConnSec: num(s.idleRedisPerConnSec, 'idleRedisPerConnSec'),
  };
}

/** A second scale result with another roster size: the session's memory per contact, the slope between the two. */
export function withContactSlope(u: UnitCosts, other: ResultFile): UnitCosts {
  const o = unitCosts(other);
  if (o.measuredContacts === u.measuredContacts) return u;
  const slope = (o.roles.session.bytesPerConnection - u.roles.session.bytesPerConnection) / (o.measuredContacts - u.measuredContacts);
  return { ...u, sessionBytesPerContact: Math.max(0, Math.round(slope)) };
}

/**
 * An operation reaching `reach` online contacts, from two measured points: a chat message (1 delivery) costs m, a
 * presence change with fan-out F costs p; per extra delivery (p − m)/(F − 1), never below zero.
 */
export function scaledByReach(m: number, p: number, fanOut: number, reach: number): number {
  const slope = fanOut > 1 ? Math.max(0, (p - m) / (fanOut - 1)) : 0;
  return m + slope * Math.max(0, reach - 1);
}

export interface RolePlan {
  /** CPU cores used on average (not yet divided by the utilization target), and by what. */
  cores: number;
  coresBy: { idle: number; messages: number; presence: number; reconnects: number };
  memoryGiB: number;
  processes: number;
  /** What set the process count: cpu, memory or connections. */
  limitedBy: 'cpu' | 'memory' | 'connections' | 'minimum';
}

export interface Plan {
  users: number;
  traffic: TrafficModel;
  sizing: Sizing;
  rates: { messagesPerSec: number; presencePerSec: number; loginsPerSec: number };
  perOp: { presenceFanOut: number; loginReach: number };
  roles: Record<Role, RolePlan>;
  bus: { messagesPerSec: number };
  redis: { commandsPerSec: number; dataGiB: number; shards: number; shardGiB: number };
  archive: { bytesPerUserPerDay: number; gibPerDay: number };
  totals: { cores: number; memoryGiB: number };
}

const GiB = 2 ** 30;
const r2 = (x: number): number => Math.round(x * 100) / 100;

/** Sizes a deployment for `users` concurrent users from measured unit costs. */
export function plan(u: UnitCosts, users: number, traffic: TrafficModel = TRAFFIC, sizing: Sizing = SIZING): Plan {
  const rates = { messagesPerSec: users / traffic.messageEverySeconds, presencePerSec: users / traffic.presenceEverySeconds, loginsPerSec: users / traffic.reconnectEverySeconds };
  const online = traffic.contacts * traffic.onlineShare;
  // A presence change reaches its online contacts and the sender's own session; a login probes and is answered by
  // the online contacts and broadcasts to them: twice the reach, measured at loginOnlineContacts.
  const presenceFanOut = online + 1;
  const idleScale = u.pingIntervalSeconds / traffic.pingIntervalSeconds;
  const roles = {} as Record<Role, RolePlan>;
  for (const role of ROLES) {
    const c = u.roles[role];
    const presenceUs = scaledByReach(c.cpuUsPerMessage, c.cpuUsPerPresence, u.presenceFanOut, presenceFanOut);
    const perDelivery = u.presenceFanOut > 1 ? Math.max(0, (c.cpuUsPerPresence - c.cpuUsPerMessage) / (u.presenceFanOut - 1)) : 0;
    const loginUs = c.cpuMsPerLogin * 1000 + perDelivery * 2 * Math.max(0, online - u.loginOnlineContacts);
    const coresBy = {
      idle: (c.idleCpuUsPerConnSec * idleScale * users) / 1e6,
      messages: (c.cpuUsPerMessage * rates.messagesPerSec) / 1e6,
      presence: (presenceUs * rates.presencePerSec) / 1e6,
      reconnects: (loginUs * rates.loginsPerSec) / 1e6,
    };
    const cores = coresBy.idle + coresBy.messages + coresBy.presence + coresBy.reconnects;
    // Memory that grows with the roster: the session holds it, Redis stores it; c2s and NATS hold none of it.
    let bytesPerUser = c.bytesPerConnection;
    if (role === 'session') {
      bytesPerUser = u.sessionBytesPerContact === null
        ? bytesPerUser * Math.max(1, traffic.contacts / u.measuredContacts)
        : bytesPerUser + u.sessionBytesPerContact * (traffic.contacts - u.measuredContacts);
    }
    if (role === 'redis') bytesPerUser = u.redisBytesPerAccountAlone + traffic.contacts * u.redisBytesPerRosterItem + u.redisBytesPerOnlineUser;
    const memoryGiB = (bytesPerUser * users) / GiB;
    roles[role] = { cores: r2(cores), coresBy: { idle: r2(coresBy.idle), messages: r2(coresBy.messages), presence: r2(coresBy.presence), reconnects: r2(coresBy.reconnects) }, memoryGiB: r2(memoryGiB), processes: 0, limitedBy: 'cpu' };
  }
  // Node processes: one core each at most, a heap cap, and for c2s a connection cap.
  for (const role of ['c2s', 'session'] as const) {
    const p = roles[role];
    const byCpu = Math.ceil(p.cores / sizing.coreUtilization);
    const byMemory = Math.ceil(p.memoryGiB / sizing.processMemoryGiB);
    const byConnections = role === 'c2s' ? Math.ceil(users / sizing.connectionsPerC2s) : 0;
    const n = Math.max(2, byCpu, byMemory, byConnections);
    p.processes = n;
    p.limitedBy = n === byCpu ? 'cpu' : n === byConnections ? 'connections' : n === byMemory ? 'memory' : 'minimum';
  }
  const nats = roles.nats;
  nats.processes = Math.max(3, Math.ceil(nats.cores / (sizing.natsCores * sizing.coreUtilization)));
  nats.limitedBy = nats.processes === 3 ? 'minimum' : 'cpu';
  // Redis: one core per shard; the data spread over shards of redisShardGiB.
  const rd = roles.redis;
  const shardsByCpu = Math.ceil(rd.cores / sizing.coreUtilization);
  const shardsByMemory = Math.ceil(rd.memoryGiB / sizing.redisShardGiB);
  rd.processes = Math.max(3, shardsByCpu, shardsByMemory);
  rd.limitedBy = rd.processes === 3 && shardsByCpu < 3 && shardsByMemory < 3 ? 'minimum' : shardsByCpu >= shardsByMemory ? 'cpu' : 'memory';
  const busPerSec = u.idleBusPerConnSec * idleScale * users + u.busPerMessage * rates.messagesPerSec
    + u.busPerPresence * (presenceFanOut / u.presenceFanOut) * rates.presencePerSec + u.busPerLogin * rates.loginsPerSec;
  const redisPerSec = u.idleRedisPerConnSec * idleScale * users + u.redisCommandsPerMessage * rates.messagesPerSec
    + u.redisCommandsPerPresence * rates.presencePerSec + u.redisCommandsPerLogin * rates.loginsPerSec;
  // Every message is kept twice, in the sender's archive and the recipient's.
  const archivePerUserDay = (86_400 / traffic.messageEverySeconds) * 2 * traffic.messageBytes;
  const cores = ROLES.reduce((n, role) => n + roles[role].cores, 0);
  const memoryGiB = ROLES.reduce((n, role) => n + roles[role].memoryGiB, 0);
  return {
    users, traffic, sizing,
    rates: { messagesPerSec: Math.round(rates.messagesPerSec), presencePerSec: Math.round(rates.presencePerSec), loginsPerSec: Math.round(rates.loginsPerSec) },
    perOp: { presenceFanOut, loginReach: online },
    roles,
    bus: { messagesPerSec: Math.round(busPerSec) },
    redis: { commandsPerSec: Math.round(redisPerSec), dataGiB: rd.memoryGiB, shards: rd.processes, shardGiB: r2(rd.memoryGiB / rd.processes) },
    archive: { bytesPerUserPerDay: Math.round(archivePerUserDay), gibPerDay: r2((archivePerUserDay * users) / GiB) },
    totals: { cores: r2(cores / sizing.coreUtilization), memoryGiB: r2(memoryGiB) },
  };
}

const fmt = (n: number): string => n.toLocaleString('en-US');

export function formatPlan(p: Plan): string {
  const lines = [
    `${fmt(p.users)} concurrent users: ${fmt(p.rates.messagesPerSec)} msgs/s, ${fmt(p.rates.presencePerSec)} presence changes/s (fan-out ${p.perOp.presenceFanOut}), ${fmt(p.rates.loginsPerSec)} reconnects/s`,
    'role      processes  limited by   cores used (idle/msg/presence/login)        memory GiB',
  ];
  for (const role of ROLES) {
    const r = p.roles[role];
    const by = `${r.coresBy.idle}/${r.coresBy.messages}/${r.coresBy.presence}/${r.coresBy.reconnects}`;
    lines.push(`${role.padEnd(8)}  ${String(r.processes).padStart(9)}  ${r.limitedBy.padEnd(11)}  ${String(r.cores).padStart(7)} (${by})`.padEnd(72) + String(r.memoryGiB).padStart(10));
  }
  lines.push(`NATS: ${p.roles.nats.processes} servers of ${p.sizing.natsCores} cores, ${fmt(p.bus.messagesPerSec)} bus msgs/s`);
  lines.push(`Redis Cluster: ${p.redis.shards} primary shards of ${p.redis.shardGiB} GiB (×2 with a replica each), ${fmt(p.redis.commandsPerSec)} commands/s`);
  lines.push(`archive: ${fmt(p.archive.bytesPerUserPerDay)} B per user per day, ${fmt(p.archive.gibPerDay)} GiB per day (message bodies only)`);
  lines.push(`total: ${p.totals.cores} cores at ${p.sizing.coreUtilization * 100}% utilization, ${p.totals.memoryGiB} GiB of RAM (Redis replicas not included)`);
  return lines.join('\n');
}

/** The unit cost that needs the most cores per user, and the role that pays it. */
export function firstLimit(p: Plan): { role: Role; by: keyof RolePlan['coresBy']; cores: number } {
  let best = { role: 'c2s' as Role, by: 'idle' as keyof RolePlan['coresBy'], cores: -1 };
  for (const role of ROLES) for (const [by, cores] of Object.entries(p.roles[role].coresBy)) if (cores > best.cores) best = { role, by: by as keyof RolePlan['coresBy'], cores };
  return best;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { users: { type: 'string', default: '1000000,10000000' }, json: { type: 'boolean', default: false } } });
  if (!positionals.length) throw new Error('usage: node --import tsx bench/capacity.ts SCALE.json [LOGIN.json CHAT.json PRESENCE.json] [--users 1000000,10000000] [--json]');
  const files = positionals.map((f) => ({ f, r: JSON.parse(readFileSync(f, 'utf8')) as ResultFile }));
  // The first scale result gives the unit costs; a second with another roster size gives the session's memory per contact.
  const scales = files.filter((x) => x.r.scenario === 'scale');
  if (!scales.length) throw new Error('no scale result among the files (bench/scale.ts writes one)');
  let u = unitCosts(scales[0].r, scales[0].f);
  for (const other of scales.slice(1)) u = withContactSlope(u, other.r);
  const plans = values.users!.split(',').map((x) => plan(u, Number(x)));
  if (values.json) { console.log(JSON.stringify({ unitCosts: u, plans }, null, 2)); return; }
  console.log(`unit costs from ${u.source} (${fmt(u.measuredConnections)} connections, ${u.measuredContacts} contacts, pings every ${u.pingIntervalSeconds} s)`);
  for (const role of ROLES) {
    const c = u.roles[role];
    console.log(`  ${role.padEnd(8)} ${fmt(c.bytesPerConnection)} B/conn, idle ${c.idleCpuUsPerConnSec} µs/conn·s, ${c.cpuUsPerMessage} µs/msg, ${c.cpuUsPerPresence} µs/presence (fan-out ${u.presenceFanOut}), ${c.cpuMsPerLogin} ms/login`);
  }
  if (u.sessionBytesPerContact !== null) console.log(`  session memory per roster contact: ${u.sessionBytesPerContact} B (from ${scales.map((x) => x.f).join(' and ')})`);
  for (const { f, r } of files) {
    if (r.scenario === 'scale') continue;
    const s = r.summary;
    const pick = (keys: string[]): string => keys.filter((k) => s[k] !== undefined && s[k] !== null).map((k) => `${k}=${String(s[k])}`).join(' ');
    console.log(`  beside it, ${r.scenario} on ${r.target ?? '?'} (${f}): ${pick(['loginsPerSec', 'serverCpuMsPerLogin', 'maxSustainedRate', 'serverCpuUsPerMsgAtFirst', 'busPerMsgAtFirst', 'redisPerMsgAtFirst', 'fanOut', 'p99Ms'])}`);
  }
  for (const p of plans) {
    console.log('');
    console.log(formatPlan(p));
    const first = firstLimit(p);
    console.log(`largest single cost: ${first.role} ${first.by} (${first.cores} cores)`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) main().then(() => process.exit(0), (e: unknown) => { console.error((e as Error).message); process.exit(1); });
