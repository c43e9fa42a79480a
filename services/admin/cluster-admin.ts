// The administration operations (operations.ts) as any process runs them: it
// checks the input, then asks the processes concerned over the bus and
// gathers their answers — every live process by the membership lists, itself
// included, embedded or in a cluster alike.
import { randomBytes } from 'node:crypto';
import type { Accounts } from '../../libs/accounts/index.ts';
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { Bus, Subjects, Subscription } from '../../libs/bus/bus.ts';
import { envelope, type Envelope } from '../../libs/bus/envelope.ts';
import { shardOf } from '../../libs/cluster/shards.ts';
import type { Config } from '../../libs/config/schema.ts';
import { parseJid, type Jid } from '../../libs/jid/index.ts';
import type { LogLevel } from '../../libs/log/index.ts';
import { el } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { removeAccountOverBus } from '../session/admin.ts';
import { ADMIN_KICK_TEXT } from './kick.ts';
import { OP_ADMIN_ANSWER, OP_ADMIN_REQUEST, type AdminAnswerData, type AdminRequestData, type NodeAnswers, type NodeRequest } from './node-admin.ts';
import {
  AdminError, type AdminOperations, type AnnounceRequest, type AnnounceResult, type KickResult, type LogLevelResult, type NodeInfo,
  type ReloadResult, type SessionInfo, type Stats,
} from './operations.ts';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export interface ClusterAdminOptions {
  nodeId: string;
  config: Config;
  bus: Bus;
  subjects: Subjects;
  hosts: HostedDomains;
  accounts: Accounts;
  /** Every live process of the deployment (this one included). */
  members(): string[];
}

interface Gathering {
  expected: Set<string>;
  answers: Map<string, AdminAnswerData>;
  done(): void;
}

export class ClusterAdmin implements AdminOperations {
  private sub: Subscription | undefined;
  private readonly pending = new Map<string, Gathering>();
  /** Where answers come: a subject of this process's own, apart from the requests it answers. */
  private readonly self: string;

  constructor(private readonly o: ClusterAdminOptions) {
    this.self = `${o.nodeId}-ask`;
  }

  async start(): Promise<void> {
    this.sub = this.o.bus.subscribe(this.o.subjects.admin(this.self), (env) => this.onAnswer(env));
    await this.o.bus.flush();
  }

  stop(): void {
    this.sub?.unsubscribe();
    for (const g of this.pending.values()) g.done();
  }

  private onAnswer(env: Envelope): void {
    if (env.op !== OP_ADMIN_ANSWER) return;
    const g = this.pending.get(env.sid);
    if (!g) return;
    const a = env.data as AdminAnswerData;
    g.answers.set(a.node, a);
    if ([...g.expected].every((n) => g.answers.has(n))) g.done();
  }

  private members(): string[] {
    const all = new Set(this.o.members());
    all.add(this.o.nodeId);
    return [...all].sort();
  }

  /** A node named by the operator must be live; otherwise not-found, naming the live ones. */
  private checkNode(node: string | undefined): void {
    if (node === undefined) return;
    const live = this.members();
    if (!live.includes(node)) throw new AdminError('not-found', `no live node '${node}' (live: ${live.join(', ')})`);
  }

  /**
   * Ask every live process (or one) and wait for all of them or for
   * admin.requestTimeoutMs; a process that failed answers with its error.
   */
  private async gather<R extends NodeRequest>(request: R, node?: string): Promise<{ results: Array<{ node: string; result: NodeAnswers[R['op']] }>; unreachable: string[]; failed: Array<{ node: string; error: string }> }> {
    const expected = new Set(node === undefined ? this.members() : [node]);
    const sid = randomBytes(9).toString('base64url');
    const answers = new Map<string, AdminAnswerData>();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, this.o.config.admin.requestTimeoutMs);
      function finish() {
        clearTimeout(timer);
        resolve();
      }
      const g: Gathering = { expected, answers, done: finish };
      this.pending.set(sid, g);
      const data: AdminRequestData = { request, reply: this.self };
      this.o.bus.publish(this.o.subjects.admin(node), envelope({ kind: 'ctl', dir: 'deliver', op: OP_ADMIN_REQUEST, sid, data }));
    });
    this.pending.delete(sid);
    const results: Array<{ node: string; result: NodeAnswers[R['op']] }> = [];
    const failed: Array<{ node: string; error: string }> = [];
    for (const [n, a] of [...answers].sort(([x], [y]) => x.localeCompare(y))) {
      if (a.error !== undefined) failed.push({ node: n, error: a.error });
      else results.push({ node: n, result: a.result as NodeAnswers[R['op']] });
    }
    const unreachable = [...expected].filter((n) => !answers.has(n));
    return { results, unreachable, failed };
  }

  private static throwFailures(failed: Array<{ node: string; error: string }>): void {
    if (failed.length) throw new AdminError('unavailable', failed.map((f) => `${f.node}: ${f.error}`).join('; '));
  }

  private served(domain: string): string {
    let d: string;
    try {
      d = parseJid(domain).domain;
    } catch {
      throw new AdminError('bad-request', `'${domain}' is not a valid domain`);
    }
    if (domain.includes('@') || domain.includes('/')) throw new AdminError('bad-request', `'${domain}' is a JID, not a domain`);
    if (!this.o.hosts.has(d)) throw new AdminError('not-found', `${d} is not a served domain (served: ${this.o.hosts.list().join(', ')})`);
    return d;
  }

  private static jid(s: unknown, what = 'JID'): Jid {
    if (typeof s !== 'string' || s === '') throw new AdminError('bad-request', `give a ${what}`);
    try {
      return parseJid(s);
    } catch (e) {
      throw new AdminError('bad-request', `malformed JID '${s}': ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private static account(s: unknown): Jid {
    const j = ClusterAdmin.jid(s, 'JID of an account');
    if (!j.local || j.resource) throw new AdminError('bad-request', `'${String(s)}' is not the bare JID of an account (local@domain)`);
    return j;
  }

  async nodes(): Promise<NodeInfo[]> {
    const { results } = await this.gather({ op: 'describe' });
    return results.map((r) => r.result);
  }

  logLevels(): Promise<NodeInfo[]> {
    return this.nodes();
  }

  async listSessions(filter: { domain?: string } = {}): Promise<{ sessions: SessionInfo[]; unreachable: string[] }> {
    const domain = filter.domain === undefined ? undefined : this.served(filter.domain);
    const { results, unreachable, failed } = await this.gather({ op: 'sessions', domain });
    ClusterAdmin.throwFailures(failed);
    const sessions = results.flatMap((r) => r.result).sort((a, b) => a.jid.localeCompare(b.jid) || a.since.localeCompare(b.since));
    return { sessions, unreachable };
  }

  async kickSession(jid: string, text?: string): Promise<KickResult> {
    const j = ClusterAdmin.jid(jid);
    if (!j.local) throw new AdminError('bad-request', `'${jid}' names a server, not a user's session`);
    // The text's length is bounded by the request's (admin.maxRequestBytes).
    const reason = text === undefined || text === '' ? ADMIN_KICK_TEXT : String(text);
    // Every connection manager ends what it holds of this JID (a bare JID: every resource).
    const { results, unreachable, failed } = await this.gather({ op: 'kick', jid: j.full, text: reason });
    ClusterAdmin.throwFailures(failed);
    const kicked = results.flatMap((r) => r.result);
    if (kicked.length === 0) {
      const where = unreachable.length ? ` (not answering: ${unreachable.join(', ')})` : '';
      throw new AdminError('not-found', `no session of ${j.full}${where}`);
    }
    return { kicked, unreachable };
  }

  async stats(): Promise<Stats> {
    const { results, unreachable } = await this.gather({ op: 'stats' });
    const nodes = results.map((r) => r.result);
    const sum = (f: (n: (typeof nodes)[number]) => number) => Math.round(nodes.reduce((a, n) => a + f(n), 0) * 100) / 100;
    return {
      usersOnline: sum((n) => n.usersOnline),
      sessions: sum((n) => n.sessions),
      loginsPerSecond: sum((n) => n.logins.perSecond),
      stanzasPerSecond: sum((n) => n.stanzas.perSecond),
      nodes,
      unreachable,
    };
  }

  async announce(req: AnnounceRequest): Promise<AnnounceResult> {
    if (typeof req !== 'object' || req === null) throw new AdminError('bad-request', 'give domain and body');
    if (typeof req.domain !== 'string' || req.domain === '') throw new AdminError('bad-request', 'give the domain');
    const domain = this.served(req.domain);
    if (typeof req.body !== 'string' || req.body.trim() === '') throw new AdminError('bad-request', 'give a body: the announcement cannot be empty');
    const max = this.o.config.admin.maxAnnounceLength;
    if (req.body.length > max) throw new AdminError('bad-request', `the body is ${req.body.length} characters, more than admin.maxAnnounceLength (${max})`);
    if (req.subject !== undefined && typeof req.subject !== 'string') throw new AdminError('bad-request', 'the subject must be text');
    const type = req.type ?? 'headline';
    if (type !== 'headline' && type !== 'normal') throw new AdminError('bad-request', `type must be headline or normal, not '${String(type)}'`);
    const { sessions, unreachable } = await this.listSessions({ domain });
    const id = `announce-${randomBytes(6).toString('hex')}`;
    // From the domain to each session, through the recipient's actor like any inbound message (its rules apply).
    for (const s of sessions) {
      const bare = s.jid.slice(0, s.jid.indexOf('/'));
      const xml = serialize(el('message', { from: domain, to: s.jid, type, id, xmlns: 'jabber:client' },
        req.subject ? el('subject', {}, req.subject) : undefined, el('body', {}, req.body)));
      this.o.bus.publish(this.o.subjects.shard(shardOf(bare, this.o.config.cluster.shards)),
        envelope({ kind: 'message', dir: 'in', from: domain, to: s.jid, type, id, xml }));
    }
    return { sessions: sessions.length, users: new Set(sessions.map((s) => s.jid.slice(0, s.jid.indexOf('/')))).size, unreachable };
  }

  async setLogLevel(level: LogLevel, node?: string): Promise<LogLevelResult> {
    if (!LOG_LEVELS.includes(level)) throw new AdminError('bad-request', `unknown log level '${String(level)}' (one of ${LOG_LEVELS.join(', ')})`);
    this.checkNode(node);
    const { results, unreachable, failed } = await this.gather({ op: 'log-level', level }, node);
    ClusterAdmin.throwFailures(failed);
    if (node !== undefined && results.length === 0) throw new AdminError('unavailable', `node '${node}' did not answer within ${this.o.config.admin.requestTimeoutMs} ms`);
    return { nodes: results.map((r) => r.result), unreachable };
  }

  async reload(node?: string): Promise<ReloadResult> {
    this.checkNode(node);
    const { results, unreachable, failed } = await this.gather({ op: 'reload' }, node);
    ClusterAdmin.throwFailures(failed);
    if (node !== undefined && results.length === 0) throw new AdminError('unavailable', `node '${node}' did not answer within ${this.o.config.admin.requestTimeoutMs} ms`);
    const nodes = results.map((r) => r.result);
    // A process whose file is bad changed nothing; the others applied theirs. The answer is an error naming the first.
    const refused = nodes.filter((n) => n.error !== undefined);
    if (refused.length) {
      const why = refused.map((n) => `${n.node}: ${n.error!.replace(/\n\s*/g, '; ')}`).join('; ');
      throw new AdminError('bad-request', `configuration not reloaded, nothing changed there: ${why}`, { nodes, unreachable });
    }
    return { nodes, unreachable };
  }

  async listUsers(domain: string): Promise<string[]> {
    return this.o.accounts.list(this.served(domain));
  }

  private static password(password: unknown): string {
    if (typeof password !== 'string' || password === '') throw new AdminError('bad-request', 'give a password');
    return password;
  }

  async addUser(jid: string, password: string): Promise<void> {
    const j = ClusterAdmin.account(jid);
    this.served(j.domain);
    if (!(await this.o.accounts.add(j.bare, ClusterAdmin.password(password)))) throw new AdminError('conflict', `${j.bare} exists already`);
  }

  async setPassword(jid: string, password: string): Promise<void> {
    const j = ClusterAdmin.account(jid);
    const pw = ClusterAdmin.password(password);
    if (!(await this.o.accounts.exists(j.bare))) throw new AdminError('not-found', `no account ${j.bare}`);
    await this.o.accounts.setPassword(j.bare, pw);
  }

  async disableUser(jid: string, disabled: boolean): Promise<void> {
    const j = ClusterAdmin.account(jid);
    if (!(await this.o.accounts.setDisabled(j.bare, disabled))) throw new AdminError('not-found', `no account ${j.bare}`);
    if (!disabled) return;
    // A kick finds nothing when the account is offline: that is fine, it is disabled all the same.
    await this.kickSession(j.bare, 'this account has been disabled by an administrator').catch((e: unknown) => {
      if (!(e instanceof AdminError && e.code === 'not-found')) throw e;
    });
  }

  async removeUser(jid: string): Promise<void> {
    const j = ClusterAdmin.account(jid);
    if (!(await this.o.accounts.exists(j.bare))) throw new AdminError('not-found', `no account ${j.bare}`);
    try {
      const { existed } = await removeAccountOverBus(this.o.bus, this.o.subjects, this.self, this.o.config, j.bare);
      if (!existed) throw new AdminError('not-found', `no account ${j.bare}`);
    } catch (e) {
      if (e instanceof AdminError) throw e;
      throw new AdminError('unavailable', e instanceof Error ? e.message : String(e));
    }
  }
}
