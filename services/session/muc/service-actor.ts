// The MUC service itself (conference.example.com): an actor keyed by the
// service domain, answering disco (§6.1, §6.2: identity, features, the list
// of public rooms) and ping. Rooms keep the listing up to date in the store
// (state.ts), so the service holds no state of its own.
import { unpack } from 'msgpackr';
import type { Envelope } from '../../../libs/bus/envelope.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { child, el, firstElement, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { MucActor, viaOf } from './muc-actor.ts';
import { listingScope } from './state.ts';
import { NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_PING, NS_RSM } from './stanzas.ts';

/** Rooms in one disco#items answer without RSM paging. */
const MAX_LISTED = 1000;

/** The iq gets the service answers, by the payload's namespace. disco#info announces each. */
const SERVICE_IQ: Readonly<Record<string, (service: MucServiceActor, q: Element) => Element | undefined | Promise<Element>>> = {
  [NS_DISCO_INFO]: (service, q) => service.info(q),
  [NS_DISCO_ITEMS]: (service, q) => service.items(q),
  [NS_PING]: () => undefined,
};

/** Namespaces the service answers iq gets of (what its disco#info must announce, at least). */
export const MUC_SERVICE_IQ_NAMESPACES: readonly string[] = Object.keys(SERVICE_IQ);

/** disco#info of the service (§6.1): the iqs it answers, MUC itself, and RSM paging of its room list (§6.2). */
const SERVICE_FEATURES = [...MUC_SERVICE_IQ_NAMESPACES, NS_MUC, NS_RSM].sort();

export class MucServiceActor extends MucActor {
  get hasSessions(): boolean {
    return false;
  }

  protected async load(): Promise<void> {}

  protected handle(env: Envelope): void | Promise<void> {
    if (env.kind === 'ctl') return;
    const via = viaOf(env);
    if (env.kind === 'presence') return; // nothing to enter here
    if (env.kind === 'message') return this.bounce(env, via, new StanzaError('service-unavailable', 'send messages to a room, not to the service'));
    if (env.type !== 'get' && env.type !== 'set') return;
    const q = firstElement(parseFragment(env.xml));
    return this.answer(env, via, async () => {
      if (!q) throw new StanzaError('bad-request', 'an iq get/set carries one payload element');
      const ns = q.attrs.xmlns ?? '';
      const answer = env.type === 'get' && Object.hasOwn(SERVICE_IQ, ns) ? SERVICE_IQ[ns] : undefined;
      if (answer && (ns === NS_PING || q.name === 'query')) return answer(this, q);
      throw new StanzaError('service-unavailable', `${ns} ${q.name} is not supported by the MUC service`);
    });
  }

  info(q: Element): Element {
    if (q.attrs.node) throw new StanzaError('item-not-found', `no node '${q.attrs.node}'`);
    return el('query', { xmlns: NS_DISCO_INFO },
      el('identity', { category: 'conference', type: 'text', name: this.svc.config.muc.name }),
      ...SERVICE_FEATURES.map((f) => el('feature', { var: f })));
  }

  /** §6.2: the public rooms, sorted by JID; RSM <max/> and <after/> page through a long list. */
  async items(q: Element): Promise<Element> {
    if (q.attrs.node) throw new StanzaError('item-not-found', `no node '${q.attrs.node}'`);
    const rooms = [...(await this.svc.store.hgetall(listingScope(this.jid), 'rooms'))].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const set = child(q, 'set', NS_RSM);
    const max = Math.min(MAX_LISTED, Number(text(set ? child(set, 'max') : undefined)) || MAX_LISTED);
    const after = set ? text(child(set, 'after')) : '';
    const from = after ? rooms.findIndex(([jid]) => jid > after) : 0;
    const start = from < 0 ? rooms.length : from;
    const slice = rooms.slice(start, start + max);
    const items = slice.map(([jid, raw]) => el('item', { jid, name: (unpack(raw) as [string])[0] || jid.slice(0, jid.indexOf('@')) }));
    const paged = set || rooms.length > max;
    return el('query', { xmlns: NS_DISCO_ITEMS }, ...items,
      paged ? el('set', { xmlns: NS_RSM },
        slice.length ? el('first', { index: String(start) }, slice[0][0]) : undefined,
        slice.length ? el('last', {}, slice[slice.length - 1][0]) : undefined,
        el('count', {}, String(rooms.length))) : undefined);
  }
}
