// What a room and the MUC service share: an actor keyed by its JID on the
// same shards as accounts, answering straight to the sender's session when
// routing told it where that session is, and routing everything else.
import { envelope, type Envelope } from '../../../libs/bus/envelope.ts';
import { errorReply, StanzaError } from '../../../libs/errors/index.ts';
import { bareJid, domainPart, hasLocalpart } from '../../../libs/jid/split.ts';
import { el, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { logger } from '../../../libs/log/index.ts';
import { Actor } from '../actor.ts';
import type { SessionServices } from '../services.ts';
import { kindOf, RoomFanout, type Target } from './fanout.ts';
import { NS_MUC } from './stanzas.ts';

/** Where the sender's session is: what user-actor.ts `route()` attaches to stanzas for a MUC domain. */
export interface Via {
  node: string;
  sid: string;
}

const log = logger('muc');

export function viaOf(env: Envelope): Via | undefined {
  const d = env.data as { node?: unknown; sid?: unknown } | undefined;
  if (!d || typeof d.node !== 'string' || typeof d.sid !== 'string' || d.node === '' || d.sid === '') return undefined;
  return { node: d.node, sid: d.sid };
}

const ATTR: Record<'from' | 'type' | 'id', RegExp> = { from: / from="([^"]*)"/, type: / type="([^"]*)"/, id: / id="([^"]*)"/ };

/** An attribute of a stanza's start tag, entities decoded (routing metadata of a stanza we serialized: double quotes). */
export function startTagAttr(xml: string, name: 'from' | 'type' | 'id'): string {
  const end = xml.indexOf('>');
  const head = end < 0 ? xml : xml.slice(0, end);
  const m = ATTR[name].exec(head);
  if (!m) return '';
  const v = m[1];
  return v.includes('&') ? v.replace(/&(lt|gt|amp|quot|apos|#\d+);/g, (_, e: string) =>
    e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'amp' ? '&' : e === 'quot' ? '"' : e === 'apos' ? "'" : String.fromCodePoint(Number(e.slice(1)))) : v;
}

export abstract class MucActor extends Actor {
  protected readonly fanout: RoomFanout;

  constructor(readonly jid: string, shard: number, protected readonly svc: SessionServices) {
    super(jid, shard, svc.config.session.maxMailbox);
    this.fanout = new RoomFanout(jid, (node, env) => svc.toC2s(node, env), (to, _kind, xml) => this.route(to, xml, this.locating(to)));
  }

  /** An actor with occupants stays in memory (ActorSystem's sweeper asks). */
  abstract get hasSessions(): boolean;

  /** What a stanza routed to an occupant's account carries to have the account say where the occupant's session is. */
  protected locating(_to: string): unknown {
    return undefined;
  }

  /** A complete stanza (with `to`) to any address: an account, a room, or another server. */
  protected route(to: string, xml: string, data?: unknown): void {
    const domain = domainPart(to);
    const env = envelope({ kind: kindOf(xml), dir: 'in', from: startTagAttr(xml, 'from'), to, type: startTagAttr(xml, 'type'), id: startTagAttr(xml, 'id'), xml, data });
    if (this.svc.hosts.has(domain)) {
      if (hasLocalpart(to)) this.svc.router.toActor(bareJid(to), env);
    } else if (this.svc.services.has(domain)) {
      this.svc.router.toActor(bareJid(to), env);
    } else {
      this.svc.router.toRemote(domain, { ...env, dir: 'out' });
    }
  }

  /** The sender of an envelope as a target: its session when known, else by routing. */
  protected senderOf(env: Envelope, via: Via | undefined): Target {
    return { node: via?.node ?? '', sid: via?.sid ?? '', jid: env.from };
  }

  /** Stanzas (without `to`) back to the sender, in order. */
  protected reply(env: Envelope, via: Via | undefined, ...xml: string[]): void {
    this.fanout.toOne(this.senderOf(env, via), xml);
  }

  protected iqResult(env: Envelope, via: Via | undefined, payload?: Element): void {
    this.reply(env, via, serialize(el('iq', { type: 'result', id: env.id || undefined, from: env.to || this.jid }, payload)));
  }

  /** Return a stanza with an error (never an error for an error). A presence error names MUC and drops the payload (it may hold a password). */
  protected bounce(env: Envelope, via: Via | undefined, error: StanzaError): void {
    if (env.type === 'error' || env.from === '') return;
    const stanza = parseFragment(env.xml);
    const r = errorReply(stanza, error, env.kind !== 'presence');
    if (env.kind === 'presence') r.children.unshift(el('x', { xmlns: NS_MUC }));
    delete r.attrs.to;
    if (!r.attrs.from) r.attrs.from = this.jid;
    this.reply(env, via, serialize(r));
  }

  protected refuse(env: Envelope, reason: 'overflow' | 'unavailable' | 'failed'): void {
    if (env.kind === 'ctl' || (env.kind === 'iq' && env.type === 'result')) return;
    this.bounce(env, viaOf(env), reason === 'overflow' ? new StanzaError('resource-constraint', 'the room is busy; try again')
      : reason === 'unavailable' ? new StanzaError('internal-server-error', 'the room is temporarily unavailable')
        : new StanzaError('internal-server-error', 'the room could not complete this (a storage error); try again later'));
  }

  /** Run an iq get/set handler; what it throws becomes the error reply (anything but a StanzaError is logged too). */
  protected async answer(env: Envelope, via: Via | undefined, handler: () => Element | undefined | void | Promise<Element | undefined | void>): Promise<void> {
    let r: Element | undefined | void;
    try {
      r = await handler();
    } catch (e) {
      if (!(e instanceof StanzaError)) log.error('iq handler failed', { room: this.jid, from: env.from, error: e });
      return this.bounce(env, via, e instanceof StanzaError ? e : new StanzaError('internal-server-error', 'the room could not complete this; try again later'));
    }
    this.iqResult(env, via, r ?? undefined);
  }
}
