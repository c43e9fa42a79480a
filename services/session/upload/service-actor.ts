// The HTTP file upload service (XEP-0363) of one served domain,
// upload.example.com: an actor keyed by the service domain, so that slot
// requests of the domain are taken one at a time and a quota cannot be
// overrun by requests racing each other. It grants slots (records in the
// store, URLs from the file store) and answers disco and ping; the bytes go
// to the HTTP listener (disk) or to object storage, never through here.
import { envelope, type Envelope } from '../../../libs/bus/envelope.ts';
import { errorReply, StanzaError } from '../../../libs/errors/index.ts';
import { bareJid, domainPart, hasLocalpart } from '../../../libs/jid/split.ts';
import { logger } from '../../../libs/log/index.ts';
import { Slots, unguessable, uploadFiles, type Slot } from '../../../libs/upload/index.ts';
import { el, firstElement, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { Actor } from '../actor.ts';
import type { SessionServices } from '../services.ts';
import { checkRequest, NS_UPLOAD, uploadInfo } from './request.ts';

const log = logger('upload');
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const NS_DISCO_ITEMS = 'http://jabber.org/protocol/disco#items';
const NS_PING = 'urn:xmpp:ping';

/** When files held expire enough to free `needed` bytes (oldest first); the sweep may take up to one period more. */
function roomAt(held: { size: number; expires: number }[], needed: number): number {
  let freed = 0;
  for (const h of [...held].sort((a, b) => a.expires - b.expires)) {
    freed += h.size;
    if (freed >= needed) return h.expires;
  }
  return held.reduce((t, h) => Math.max(t, h.expires), 0);
}

export class UploadServiceActor extends Actor {
  private readonly slots: Slots;
  /** The served domain this service belongs to (upload.example.com → example.com). */
  private readonly host: string;

  constructor(readonly jid: string, shard: number, private readonly svc: SessionServices) {
    super(jid, shard, svc.config.session.maxMailbox);
    this.slots = new Slots(svc.store, domainPart(jid));
    this.host = domainPart(jid).slice(svc.config.upload.subdomain.length + 1);
  }

  get hasSessions(): boolean {
    return false;
  }

  protected async load(): Promise<void> {}

  protected handle(env: Envelope): void | Promise<void> {
    if (env.kind === 'ctl' || env.kind === 'presence') return;
    if (env.kind === 'message') return this.bounce(env, new StanzaError('service-unavailable', 'the upload service takes no messages'));
    if (env.type !== 'get' && env.type !== 'set') return;
    return this.answer(env, async () => {
      const q = firstElement(parseFragment(env.xml));
      if (!q) throw new StanzaError('bad-request', 'an iq get/set carries one payload element');
      if (hasLocalpart(this.jid)) throw new StanzaError('item-not-found', `${this.jid} does not exist; ask ${domainPart(this.jid)}`);
      const ns = q.attrs.xmlns ?? '';
      if (env.type === 'get' && ns === NS_UPLOAD && q.name === 'request') return this.grant(env, q);
      if (env.type === 'get' && ns === NS_DISCO_INFO && q.name === 'query') {
        if (q.attrs.node) throw new StanzaError('item-not-found', `no node '${q.attrs.node}'`);
        return uploadInfo(this.svc.config.upload);
      }
      if (env.type === 'get' && ns === NS_DISCO_ITEMS && q.name === 'query') {
        if (q.attrs.node) throw new StanzaError('item-not-found', `no node '${q.attrs.node}'`);
        return el('query', { xmlns: NS_DISCO_ITEMS });
      }
      if (env.type === 'get' && ns === NS_PING && q.name === 'ping') return undefined;
      throw new StanzaError('service-unavailable', `${ns} ${q.name} is not supported by the upload service`);
    });
  }

  /** XEP-0363 §4: a slot for one file, or the error that says why not (nothing is stored then). */
  private async grant(env: Envelope, q: Element): Promise<Element> {
    const u = this.svc.config.upload;
    const owner = bareJid(env.from);
    if (domainPart(owner) !== this.host || !hasLocalpart(owner)) throw new StanzaError('not-allowed', `only users of ${this.host} may upload here`);
    const want = checkRequest(q, u);
    const now = Date.now();
    const held = await this.slots.held(owner, now);
    const used = held.reduce((n, h) => n + h.size, 0);
    if (used + want.size > u.quotaBytes) {
      // The file alone fits (checkRequest saw to that); what is held now leaves room once enough of it expires.
      const at = new Date(roomAt(held, used + want.size - u.quotaBytes)).toISOString().replace(/\.\d{3}Z$/, 'Z');
      throw new StanzaError('resource-constraint', `quota reached: ${used} of ${u.quotaBytes} bytes held; there is room for this file from ${at}`, 'wait', undefined,
        el('retry', { xmlns: NS_UPLOAD, stamp: at }));
    }
    const slot: Slot = {
      id: unguessable(), owner, size: want.size, contentType: want.contentType, fileName: want.fileName,
      created: now, putUntil: now + u.slotSeconds * 1000, expires: now + u.fileLifetimeSeconds * 1000,
    };
    const files = await uploadFiles(this.svc.config);
    const urls = await files.urls(domainPart(this.jid), slot);
    await this.slots.grant(slot);
    log.info('slot granted', { service: domainPart(this.jid), owner, size: slot.size, type: slot.contentType });
    return el('slot', { xmlns: NS_UPLOAD },
      el('put', { url: urls.put }, ...Object.entries(urls.headers ?? {}).map(([name, value]) => el('header', { name }, value))),
      el('get', { url: urls.get }));
  }

  /**
   * Answers go to the requester's account, which delivers them to the session through the session layer; an
   * entity of another server (which may ask, and is refused) is answered through federation.
   */
  private send(env: Envelope): void {
    const domain = domainPart(env.to);
    if (this.svc.hosts.has(domain)) this.svc.router.toActor(bareJid(env.to), env);
    else this.svc.router.toRemote(domain, { ...env, dir: 'out' });
  }

  private bounce(env: Envelope, error: StanzaError): void {
    if (env.type === 'error' || env.from === '') return;
    const r = errorReply(parseFragment(env.xml), error);
    r.attrs.from = this.jid;
    r.attrs.to = env.from;
    this.send(envelope({ kind: env.kind, dir: 'in', from: this.jid, to: env.from, type: 'error', id: env.id, xml: serialize(r) }));
  }

  private async answer(env: Envelope, handler: () => Promise<Element | undefined>): Promise<void> {
    let r: Element | undefined;
    try {
      r = await handler();
    } catch (e) {
      if (!(e instanceof StanzaError)) log.error('upload request failed', { service: this.jid, from: env.from, error: e });
      return this.bounce(env, e instanceof StanzaError ? e : new StanzaError('internal-server-error', 'the upload service could not complete this; try again later'));
    }
    const xml = serialize(el('iq', { type: 'result', id: env.id || undefined, from: this.jid, to: env.from }, r));
    this.send(envelope({ kind: 'iq', dir: 'in', from: this.jid, to: env.from, type: 'result', id: env.id, xml }));
  }

  protected refuse(env: Envelope, reason: 'overflow' | 'unavailable' | 'failed'): void {
    if (env.kind === 'ctl' || (env.kind === 'iq' && env.type === 'result')) return;
    this.bounce(env, reason === 'overflow' ? new StanzaError('resource-constraint', 'the upload service is busy; try again')
      : new StanzaError('internal-server-error', 'the upload service could not complete this (a storage error); try again later'));
  }
}
