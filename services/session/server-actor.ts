// A served domain itself (example.com) as an actor on the shards, for what
// other servers' entities address to it. A local user's iq to its server is
// answered in that user's own actor; a remote entity has no actor here, so
// its iq comes to this one and meets the same module handlers (the host
// target), asked with no account: a handler that needs the sender to be one
// of ours refuses (requireOwner). Messages and presence to the domain itself
// have no recipient here, as for local senders.
import type { Envelope } from '../../libs/bus/envelope.ts';
import { envelope } from '../../libs/bus/envelope.ts';
import { errorReply, StanzaError } from '../../libs/errors/index.ts';
import { bareJid, domainPart, hasLocalpart } from '../../libs/jid/split.ts';
import { logger } from '../../libs/log/index.ts';
import { firstElement, type Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { Actor } from './actor.ts';
import type { SessionServices } from './services.ts';

const log = logger('session');

export class ServerActor extends Actor {
  constructor(readonly domain: string, shard: number, private readonly svc: SessionServices) {
    super(domain, shard, svc.config.session.maxMailbox);
  }

  get hasSessions(): boolean {
    return false;
  }

  protected async load(): Promise<void> {}

  protected async handle(env: Envelope): Promise<void> {
    // Results and errors to the server end here (it asks remote entities nothing from this actor).
    if (env.kind !== 'iq' || (env.type !== 'get' && env.type !== 'set')) return;
    const stanza = parseFragment(env.xml);
    let reply: Element;
    try {
      const payload = firstElement(stanza);
      if (!payload || stanza.children.filter((c) => typeof c !== 'string').length !== 1) {
        throw new StanzaError('bad-request', 'an iq get/set carries exactly one payload element');
      }
      const handler = this.svc.modules.hostIqHandler(env.type, payload);
      if (!handler) throw new StanzaError('service-unavailable', `${payload.attrs.xmlns ?? ''} ${payload.name} is not supported here`);
      const result = await handler({ stanza, payload, from: env.from, to: this.domain, account: undefined }, this.svc.context);
      reply = { name: 'iq', attrs: { type: 'result', id: stanza.attrs.id ?? '', from: this.domain, to: env.from }, children: result ? [result] : [] };
    } catch (e) {
      if (!(e instanceof StanzaError)) log.error('iq handler failed', { domain: this.domain, from: env.from, error: e });
      reply = errorReply(stanza, e instanceof StanzaError ? e : new StanzaError('internal-server-error', 'the server could not complete this request; try again later'));
      reply.attrs.from = this.domain;
      reply.attrs.to = env.from;
    }
    this.send(reply);
  }

  protected refuse(env: Envelope, reason: 'overflow' | 'unavailable' | 'failed'): void {
    if (env.kind !== 'iq' || (env.type !== 'get' && env.type !== 'set')) return;
    const reply = errorReply(parseFragment(env.xml), reason === 'overflow'
      ? new StanzaError('resource-constraint', 'the server is busy; try again')
      : new StanzaError('internal-server-error', 'the server could not complete this request; try again later'));
    reply.attrs.from = this.domain;
    reply.attrs.to = env.from;
    this.send(reply);
  }

  /** To the asker: another server's entity through federation, a local account through its actor. */
  private send(reply: Element): void {
    const to = reply.attrs.to ?? '';
    const env = envelope({ kind: 'iq', dir: 'in', from: this.domain, to, type: reply.attrs.type ?? '', id: reply.attrs.id ?? '', xml: serialize(reply) });
    const domain = domainPart(to);
    if (this.svc.hosts.has(domain) || this.svc.services.has(domain)) {
      if (hasLocalpart(to) || this.svc.services.has(domain)) this.svc.router.toActor(bareJid(to), env);
      return;
    }
    this.svc.router.toRemote(domain, { ...env, dir: 'out' });
  }
}
