// The actor of one bare JID: it owns the account's session directory and
// applies the outbound rules to what the account's clients send and the
// inbound rules to what is sent to the account (RFC 6120 §10, RFC 6121 §8).
import { pack, unpack } from 'msgpackr';
import { envelope, type Envelope, type StanzaKind } from '../../libs/bus/envelope.ts';
import { errorReply, StanzaError, type StanzaErrorCondition } from '../../libs/errors/index.ts';
import { bareJid, domainPart, hasLocalpart, resourcePart } from '../../libs/jid/split.ts';
import { logger } from '../../libs/log/index.ts';
import { firstElement, type Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { Actor } from './actor.ts';
import type { SessionServices } from './services.ts';

const log = logger('user');

export interface SessionEntry {
  sid: string;
  node: string;
  priority: number;
  /** Sent initial presence and not since gone unavailable (RFC 6121 §4.2). */
  available: boolean;
  since: number;
}

function encodeSession(s: SessionEntry): Uint8Array {
  return pack([s.sid, s.node, s.priority, s.available, s.since]);
}

function decodeSession(b: Uint8Array): SessionEntry {
  const [sid, node, priority, available, since] = unpack(b) as [string, string, number, boolean, number];
  return { sid, node, priority, available, since };
}

export interface BindRequest {
  node: string;
  resource: string;
}

export class UserActor extends Actor {
  private exists = false;
  readonly sessions = new Map<string, SessionEntry>();

  constructor(readonly bare: string, shard: number, private readonly svc: SessionServices) {
    super(bare, shard, svc.config.session.maxMailbox);
  }

  get hasSessions(): boolean {
    return this.sessions.size > 0;
  }

  protected async load(): Promise<void> {
    const data = await this.svc.store.load(this.bare, ['account', 'sessions']);
    this.exists = data.get('account')?.has('creds') === true;
    const stale: string[] = [];
    for (const [resource, raw] of data.get('sessions') ?? []) {
      const s = decodeSession(raw);
      if (this.svc.c2sAlive(s.node)) this.sessions.set(resource, s);
      else stale.push(resource);
    }
    if (stale.length) {
      const b = this.svc.store.batch(this.bare);
      for (const r of stale) b.hdel('sessions', r);
      await b.exec();
    }
  }

  protected handle(env: Envelope): void | Promise<void> {
    if (env.kind === 'ctl') return this.control(env);
    if (env.dir === 'out') return this.outbound(env);
    return this.inbound(env);
  }

  protected refuse(env: Envelope, reason: 'overflow' | 'unavailable'): void {
    if (env.kind === 'ctl') {
      if (env.op === 'bind') {
        const { node } = env.data as BindRequest;
        this.svc.router.control(node, env.sid, 'bind-failed', { condition: 'resource-constraint', text: 'the account is busy; try again' });
      }
      return;
    }
    this.bounce(env, new StanzaError(reason === 'overflow' ? 'resource-constraint' : 'internal-server-error',
      reason === 'overflow' ? 'too many stanzas queued for this account' : 'the account is temporarily unavailable'));
  }

  // ---- control from the connection managers ----

  private control(env: Envelope): void | Promise<void> {
    switch (env.op) {
      case 'bind': return this.bind(env.sid, env.data as BindRequest);
      case 'unbind': return this.unbind(env.sid, String((env.data as { resource: string }).resource));
      case 'undeliverable': return this.undeliverable(env);
      default: log.warn('unknown control op', { op: env.op });
    }
  }

  private async bind(sid: string, req: BindRequest): Promise<void> {
    if (!this.exists) {
      // The account may have been created after this actor loaded.
      this.exists = (await this.svc.store.hget(this.bare, 'account', 'creds')) !== undefined;
      if (!this.exists) return this.svc.router.control(req.node, sid, 'bind-failed', { condition: 'not-authorized', text: 'no such account' });
    }
    let resource = req.resource || this.svc.newResource();
    const existing = this.sessions.get(resource);
    if (existing && existing.sid !== sid) {
      switch (this.svc.config.c2s.resourceConflict) {
        case 'reject':
          return this.svc.router.control(req.node, sid, 'bind-failed', { condition: 'conflict', text: `resource '${resource}' is in use` });
        case 'rename':
          resource = `${resource}.${this.svc.newResource().slice(0, 6)}`;
          break;
        case 'override':
          this.svc.router.control(existing.node, existing.sid, 'kick', { condition: 'conflict', text: 'replaced by a new connection with the same resource' });
          await this.removeSession(resource, existing);
          break;
      }
    }
    const entry: SessionEntry = { sid, node: req.node, priority: 0, available: false, since: Date.now() };
    this.sessions.set(resource, entry);
    await Promise.all([
      this.svc.store.hset(this.bare, 'sessions', resource, encodeSession(entry)),
      this.svc.store.hset(`$node:${req.node}`, 'sessions', `${this.bare}/${resource}`, pack(sid)),
    ]);
    this.svc.router.control(req.node, sid, 'bound', { resource });
  }

  private async unbind(sid: string, resource: string): Promise<void> {
    const s = this.sessions.get(resource);
    if (s && s.sid === sid) await this.removeSession(resource, s);
  }

  private async removeSession(resource: string, s: SessionEntry): Promise<void> {
    this.sessions.delete(resource);
    await Promise.all([
      this.svc.store.hdel(this.bare, 'sessions', resource),
      this.svc.store.hdel(`$node:${s.node}`, 'sessions', `${this.bare}/${resource}`),
    ]);
  }

  /** A c2s found the target session gone: forget it and route the stanza again. */
  private async undeliverable(env: Envelope): Promise<void> {
    const resource = resourcePart(env.to);
    const s = this.sessions.get(resource);
    if (s && s.sid === env.sid) await this.removeSession(resource, s);
    const kind = (env.data as { kind: StanzaKind }).kind;
    return this.inbound({ ...env, kind, dir: 'in', op: '', data: undefined });
  }

  // ---- outbound: what one of this account's clients sent ----

  private outbound(env: Envelope): void | Promise<void> {
    const to = env.to;
    if (env.kind === 'presence' && to === '') return this.ownPresence(env);
    if (to === '' || to === this.bare) {
      if (env.kind === 'iq') return this.accountIq(env, this.bare);
      // RFC 6120 §10.3.1: a message without 'to' is for the sender's own bare JID.
      return this.inbound({ ...env, to: this.bare, dir: 'in' });
    }
    return this.route(env);
  }

  /** Broadcast presence from one of our resources (RFC 6121 §4.2, §4.4). */
  private async ownPresence(env: Envelope): Promise<void> {
    const resource = resourcePart(env.from);
    const s = this.sessions.get(resource);
    if (!s || s.sid !== env.sid) return;
    if (env.type === '') {
      s.available = true;
      s.priority = typeof env.data === 'object' && env.data !== null ? Number((env.data as { priority?: number }).priority ?? 0) : 0;
    } else if (env.type === 'unavailable') {
      s.available = false;
    } else {
      return;
    }
    await this.svc.store.hset(this.bare, 'sessions', resource, encodeSession(s));
  }

  /** Send a stanza on to its addressee, wherever it lives. */
  private route(env: Envelope): void | Promise<void> {
    const toBare = bareJid(env.to);
    if (toBare === this.bare) return this.inbound({ ...env, dir: 'in' });
    const domain = domainPart(toBare);
    if (!this.svc.hosts.has(domain)) return this.bounce(env, new StanzaError('remote-server-not-found', `no route to ${domain}`));
    if (!hasLocalpart(toBare)) {
      if (env.kind === 'iq') return this.hostIq(env, domain);
      return; // messages and presence to a served domain itself have no recipient here
    }
    this.svc.router.toActor(toBare, { ...env, dir: 'in', origin: '', seq: 0 });
  }

  // ---- inbound: what is addressed to this account ----

  private inbound(env: Envelope): void | Promise<void> {
    if (!this.exists) return this.noSuchAccount(env);
    const resource = resourcePart(env.to);
    if (resource !== '') {
      const s = this.sessions.get(resource);
      if (s) return this.deliverTo(resource, s, env);
      return this.fullJidUnavailable(env);
    }
    switch (env.kind) {
      case 'message': return this.bareMessage(env);
      case 'presence': return this.barePresence(env);
      case 'iq': return this.accountIq(env, this.bare);
    }
  }

  private deliverTo(resource: string, s: SessionEntry, env: Envelope): void {
    this.svc.router.deliver(s.node, s.sid, env.kind as StanzaKind, env.from, env.to, env.type, env.xml);
  }

  /** RFC 6121 §8.5.3.2: the full JID has no session. */
  private fullJidUnavailable(env: Envelope): void | Promise<void> {
    switch (env.kind) {
      case 'message':
        if (env.type === 'groupchat') return this.bounce(env, new StanzaError('service-unavailable'));
        if (env.type === 'headline' || env.type === 'error') return;
        return this.bareMessage(env);
      case 'iq':
        if (env.type === 'get' || env.type === 'set') return this.bounce(env, new StanzaError('service-unavailable'));
        return;
      case 'presence':
        return; // presence to an offline resource is dropped (subscription handling is RFC 6121 §3)
    }
  }

  /** RFC 6121 §8.5.2: a message to the bare JID. */
  private bareMessage(env: Envelope): void | Promise<void> {
    if (env.type === 'error') return;
    let best = -129;
    for (const s of this.sessions.values()) if (s.available && s.priority >= 0 && s.priority > best) best = s.priority;
    if (best < 0) {
      if (env.type === 'headline') return;
      return this.bounce(env, new StanzaError('service-unavailable', 'the recipient is not online'));
    }
    if (env.type === 'headline') {
      for (const [r, s] of this.sessions) if (s.available && s.priority >= 0) this.deliverTo(r, s, env);
      return;
    }
    const all = this.svc.config.routing.bareMessageTies === 'all';
    let newest: [string, SessionEntry] | undefined;
    for (const [r, s] of this.sessions) {
      if (!s.available || s.priority !== best) continue;
      if (all) this.deliverTo(r, s, env);
      else if (!newest || s.since > newest[1].since) newest = [r, s];
    }
    if (newest) this.deliverTo(newest[0], newest[1], env);
  }

  private barePresence(env: Envelope): void {
    // Presence to the bare JID goes to every available resource (RFC 6121 §4.3, §8.5.2.1.2).
    for (const [r, s] of this.sessions) if (s.available) this.deliverTo(r, s, env);
  }

  /** RFC 6121 §8.5.1 (no such user). */
  private noSuchAccount(env: Envelope): void {
    if (env.kind === 'presence') return;
    if (env.kind === 'message' && (env.type === 'error' || env.type === 'groupchat' || env.type === 'headline')) return;
    if (env.kind === 'iq' && env.type !== 'get' && env.type !== 'set') return;
    this.bounce(env, new StanzaError('service-unavailable'));
  }

  // ---- iq answered by the server ----

  private accountIq(env: Envelope, account: string): void | Promise<void> {
    return this.serverIq(env, 'account', account);
  }

  private hostIq(env: Envelope, domain: string): void | Promise<void> {
    return this.serverIq(env, 'host', domain);
  }

  private async serverIq(env: Envelope, target: 'host' | 'account', addressed: string): Promise<void> {
    if (env.type !== 'get' && env.type !== 'set') return; // results and errors to the server end here
    const stanza = parseFragment(env.xml);
    const payload = firstElement(stanza);
    let reply: Element;
    try {
      if (!payload || stanza.children.filter((c) => typeof c !== 'string').length !== 1) {
        throw new StanzaError('bad-request', 'an iq get/set carries exactly one payload element');
      }
      const handler = this.svc.modules.iqHandler(env.type, target, payload);
      if (!handler) throw new StanzaError('service-unavailable', `${payload.attrs.xmlns ?? ''} ${payload.name} is not supported here`);
      if (target === 'account' && bareJid(env.from) !== this.bare && env.type === 'set') {
        throw new StanzaError('forbidden', 'only the account itself may change its data');
      }
      const result = await handler({ stanza, payload, from: env.from, to: addressed }, this.svc.context);
      const attrs: Record<string, string> = { type: 'result', id: stanza.attrs.id ?? '', to: env.from };
      if (env.to) attrs.from = env.to; // an iq without 'to' gets a reply without 'from' (RFC 6120 §10.3.3)
      reply = { name: 'iq', attrs, children: result ? [result] : [] };
    } catch (e) {
      const err = e instanceof StanzaError ? e : new StanzaError('internal-server-error');
      if (!(e instanceof StanzaError)) log.error('iq handler failed', { error: e });
      reply = errorReply(stanza, err);
    }
    this.sendFromServer('iq', reply);
  }

  // ---- answers and errors ----

  private sendFromServer(kind: StanzaKind, stanza: Element): void | Promise<void> {
    const to = stanza.attrs.to ?? '';
    const env = envelope({ kind, dir: 'in', from: stanza.attrs.from ?? '', to, type: stanza.attrs.type ?? '', id: stanza.attrs.id ?? '', xml: serialize(stanza) });
    return this.route(env);
  }

  /** Return a stanza to its sender with an error (never an error for an error). */
  private bounce(env: Envelope, error: StanzaError): void | Promise<void> {
    if (env.type === 'error' || env.from === '') return;
    const stanza = parseFragment(env.xml);
    return this.sendFromServer(env.kind as StanzaKind, errorReply(stanza, error));
  }
}

export type { StanzaErrorCondition };
