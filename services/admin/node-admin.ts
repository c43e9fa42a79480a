// This process's part of the administration operations: it answers the
// requests every process receives on the bus (subjects.admin()) and those
// addressed to it alone (subjects.admin(node)), each for what it holds — a
// c2s process for its connections, a session process for its actors.
import type { Bus, Subjects, Subscription } from '../../libs/bus/bus.ts';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import type { Config } from '../../libs/config/schema.ts';
import { logger, logSettings, setLogLevel, type LogLevel } from '../../libs/log/index.ts';
import type { C2sNode } from '../c2s/c2s-node.ts';
import type { SessionNode } from '../session/session-node.ts';
import type { NodeInfo, NodeReload, NodeStats, SessionInfo, SessionTransport } from './operations.ts';
import { reloadConfiguration, type ReloadHooks } from './reload.ts';

const log = logger('admin');

/** A request as it travels on the bus: the operation, its arguments, and where the asker listens. */
export type NodeRequest =
  | { op: 'describe' }
  | { op: 'sessions'; domain?: string }
  | { op: 'kick'; jid: string; text: string }
  | { op: 'stats' }
  | { op: 'log-level'; level: LogLevel }
  | { op: 'reload' };

/** What each request answers with. */
export interface NodeAnswers {
  describe: NodeInfo;
  sessions: SessionInfo[];
  kick: SessionInfo[];
  stats: NodeStats;
  'log-level': { node: string; previous: LogLevel; level: LogLevel };
  reload: NodeReload;
}

export const OP_ADMIN_REQUEST = 'admin';
export const OP_ADMIN_ANSWER = 'admin-answer';

export interface AdminRequestData {
  request: NodeRequest;
  reply: string;
}

export interface AdminAnswerData {
  node: string;
  result?: unknown;
  error?: string;
}

/** Counts the c2s side bumps on each login and client stanza (one increment each on the hot path). */
export class ActivityCounters {
  logins = 0;
  stanzas = 0;
}

/** Rates over a sliding interval, from samples taken a tenth of the interval apart. */
class RateWindow {
  private readonly samples: Array<{ t: number; logins: number; stanzas: number }> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly counters: ActivityCounters, private readonly intervalMs: () => number) {}

  start(): void {
    this.sample();
    const tick = () => {
      this.sample();
      this.timer = setTimeout(tick, Math.max(100, this.intervalMs() / 10));
      this.timer.unref();
    };
    this.timer = setTimeout(tick, Math.max(100, this.intervalMs() / 10));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private sample(): void {
    const now = Date.now();
    this.samples.push({ t: now, logins: this.counters.logins, stanzas: this.counters.stanzas });
    while (this.samples.length > 1 && now - this.samples[1].t >= this.intervalMs()) this.samples.shift();
  }

  /** Per second since the oldest sample still within the interval (a fresh process: since it started). */
  rates(): { logins: number; stanzas: number } {
    const now = Date.now();
    const oldest = this.samples[0];
    const seconds = (now - oldest.t) / 1000;
    if (seconds <= 0) return { logins: 0, stanzas: 0 };
    const round = (n: number) => Math.round(n * 100) / 100;
    return { logins: round((this.counters.logins - oldest.logins) / seconds), stanzas: round((this.counters.stanzas - oldest.stanzas) / seconds) };
  }
}

export interface NodeAdminOptions {
  nodeId: string;
  role: string;
  /** The process's live configuration (a reload writes into it). */
  config: Config;
  bus: Bus;
  subjects: Subjects;
  c2s?: C2sNode;
  session?: SessionNode;
  counters: ActivityCounters;
  reload: ReloadHooks;
}

const NO_CONNECTIONS: Record<SessionTransport, number> = { tcp: 0, tls: 0, ws: 0, bosh: 0 };

export class NodeAdmin {
  private subs: Subscription[] = [];
  private readonly rates: RateWindow;
  /** One reload at a time: SIGHUP twice, or a signal during an API reload, must not interleave. */
  private reloading: Promise<NodeReload> | undefined;

  constructor(private readonly o: NodeAdminOptions) {
    this.rates = new RateWindow(o.counters, () => o.config.admin.statsIntervalSeconds * 1000);
  }

  async start(): Promise<void> {
    const handler = (env: Envelope) => {
      if (env.op === OP_ADMIN_REQUEST) this.answer(env);
    };
    this.subs.push(this.o.bus.subscribe(this.o.subjects.admin(), handler));
    this.subs.push(this.o.bus.subscribe(this.o.subjects.admin(this.o.nodeId), handler));
    await this.o.bus.flush();
    this.rates.start();
  }

  stop(): void {
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    this.rates.stop();
  }

  private answer(env: Envelope): void {
    const { request, reply } = env.data as AdminRequestData;
    const send = (data: AdminAnswerData) => this.o.bus.publish(this.o.subjects.admin(reply),
      envelope({ kind: 'ctl', dir: 'deliver', op: OP_ADMIN_ANSWER, sid: env.sid, data }));
    this.run(request).then(
      (result) => send({ node: this.o.nodeId, result }),
      (e: unknown) => {
        log.warn('admin request failed', { op: request.op, error: e });
        send({ node: this.o.nodeId, error: e instanceof Error ? e.message : String(e) });
      },
    );
  }

  /** Runs one request on this process. */
  async run(request: NodeRequest): Promise<NodeAnswers[NodeRequest['op']]> {
    switch (request.op) {
      case 'describe':
        return this.describe();
      case 'sessions':
        return this.o.c2s?.sessions(request.domain) ?? [];
      case 'kick':
        return this.o.c2s?.endSessions(request.jid, request.text) ?? [];
      case 'stats':
        return this.stats();
      case 'log-level': {
        const previous = logSettings().level;
        setLogLevel(request.level);
        // Kept in the live configuration, so that a reload puts back what the file says.
        this.o.config.log.level = request.level;
        log.warn('log level changed', { previous, level: request.level });
        return { node: this.o.nodeId, previous, level: request.level };
      }
      case 'reload':
        return this.reload();
    }
  }

  describe(): NodeInfo {
    const { level, format } = logSettings();
    return { node: this.o.nodeId, role: this.o.role, logLevel: level, logFormat: format };
  }

  /** Re-read the configuration file (SIGHUP comes here too). */
  reload(): Promise<NodeReload> {
    this.reloading ??= reloadConfiguration(this.o.nodeId, this.o.config, this.o.reload).then((r) => {
      if (r.error) log.warn('configuration reload refused: nothing changed', { error: r.error });
      else log.info('configuration reloaded', { applied: r.applied.join(',') || 'none', restartNeeded: r.notApplied.join(',') || 'none', certificates: r.certificatesReloaded ? 'reloaded' : 'none' });
      return r;
    }).finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private stats(): NodeStats {
    const byKind = this.o.c2s?.connectionsByTransport();
    const connections = byKind ? { tcp: byKind.tcp, tls: byKind.tls, ws: byKind.websocket, bosh: byKind.bosh } : { ...NO_CONNECTIONS };
    const rates = this.rates.rates();
    const sessions = this.o.c2s?.sessions() ?? [];
    const sessionsByTransport = { ...NO_CONNECTIONS };
    for (const s of sessions) sessionsByTransport[s.transport]++;
    return {
      node: this.o.nodeId,
      role: this.o.role,
      sessions: sessions.length,
      sessionsByTransport,
      connections,
      usersOnline: this.o.session?.actors.accountsOnline() ?? 0,
      logins: { total: this.o.counters.logins, perSecond: rates.logins },
      stanzas: { total: this.o.counters.stanzas, perSecond: rates.stanzas },
      intervalSeconds: this.o.config.admin.statsIntervalSeconds,
    };
  }
}
