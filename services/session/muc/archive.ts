// XEP-0313 on a room JID, the simple version: the room's kept messages
// queried by time, by occupant nick, and paged with XEP-0059 RSM. Archive ids
// increase and carry their millisecond stamp, so every filter but 'with' is
// a binary search over the ids; only the page itself is read from the store.
import { StanzaError } from '../../../libs/errors/index.ts';
import { child, el, text, type Element } from '../../../libs/xml/element.ts';
import { escapeAttr } from '../../../libs/xml/serialize.ts';
import { formElement, hidden, parseSubmitted } from './forms.ts';
import { NS_DELAY, type ArchivedMessage } from './history.ts';
import { NS_RSM, parseRsm } from '../rsm.ts';
import { NS_FORWARD, NS_MAM } from './stanzas.ts';

export interface ArchiveQuery {
  queryId: string;
  start?: number;
  end?: number;
  /** Only messages of this occupant nick (a 'with' of room@service/nick). */
  withNick?: string;
  max: number;
  after?: string;
  /** Page backwards from this id; '' asks for the last page. */
  before?: string;
}

/** The search form a client may fetch first (XEP-0313 §5.1). */
export function archiveForm(): Element {
  return el('query', { xmlns: NS_MAM }, formElement('form', [
    hidden('FORM_TYPE', NS_MAM),
    { var: 'with', type: 'jid-single' },
    { var: 'start', type: 'text-single' },
    { var: 'end', type: 'text-single' },
  ]));
}

function stamp(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new StanzaError('bad-request', `${name} is not an XEP-0082 date-time`);
  return t;
}

export function parseArchiveQuery(q: Element, room: string, maxPage: number): ArchiveQuery {
  const out: ArchiveQuery = { queryId: q.attrs.queryid ?? '', max: maxPage };
  const x = child(q, 'x', 'jabber:x:data');
  if (x) {
    const form = parseSubmitted(x);
    if (form.formType !== undefined && form.formType !== NS_MAM) throw new StanzaError('bad-request', `expected a ${NS_MAM} form`);
    for (const [name, values] of form.fields) {
      const v = values[0];
      if (name === 'start') out.start = stamp(name, v);
      else if (name === 'end') out.end = stamp(name, v);
      else if (name === 'with' && v) {
        if (!v.startsWith(`${room}/`)) throw new StanzaError('not-acceptable', 'this archive filters by occupant JID (room@service/nick) only');
        out.withNick = v.slice(room.length + 1);
      } else if (name === 'after-id' && v) {
        out.after = v; // urn:xmpp:mam:2#extended
      } else if (name === 'before-id' && v) {
        out.before = v;
      } else if (name !== 'with' && name !== 'after-id' && name !== 'before-id') {
        throw new StanzaError('feature-not-implemented', `the archive does not filter by ${name}`);
      }
    }
  }
  const rsm = parseRsm(q, maxPage);
  if (rsm.max !== undefined) out.max = rsm.max;
  if (rsm.after !== undefined) out.after = rsm.after;
  if (rsm.before !== undefined) out.before = rsm.before;
  return out;
}

export const idStamp = (id: string): number => Number.parseInt(id.slice(0, 9), 36);

/** First index whose value is not below `key` (ids and their stamps are both ascending). */
function lowerBound(n: number, below: (i: number) => boolean): number {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (below(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The index range of the archive (list positions) that the query's filters leave, before paging. */
export function queryRange(ids: readonly string[], q: ArchiveQuery): { lo: number; hi: number } {
  let lo = 0;
  let hi = ids.length;
  if (q.start !== undefined) lo = Math.max(lo, lowerBound(ids.length, (i) => idStamp(ids[i]) < q.start!));
  if (q.end !== undefined) hi = Math.min(hi, lowerBound(ids.length, (i) => idStamp(ids[i]) <= q.end!));
  const find = (id: string): number => {
    const i = lowerBound(ids.length, (k) => ids[k] < id);
    if (ids[i] !== id) throw new StanzaError('item-not-found', `no archived message with id ${id}`);
    return i;
  };
  if (q.after) lo = Math.max(lo, find(q.after) + 1);
  if (q.before) hi = Math.min(hi, find(q.before));
  return { lo, hi: Math.max(lo, hi) };
}

export interface Page {
  messages: ArchivedMessage[];
  /** Index of the first message among all that matched. */
  firstIndex: number;
  count: number;
  complete: boolean;
}

/** One page of the matching messages: from the start, or from the end when paging backwards. */
export function page(matching: readonly ArchivedMessage[], q: ArchiveQuery): Page {
  const backwards = q.before !== undefined;
  const n = matching.length;
  const from = backwards ? Math.max(0, n - q.max) : 0;
  const to = backwards ? n : Math.min(n, q.max);
  return { messages: matching.slice(from, to), firstIndex: from, count: n, complete: backwards ? from === 0 : to === n };
}

/** One archived message as a result (XEP-0313 §4.2), without `to`. */
export function resultMessage(room: string, queryId: string, m: ArchivedMessage): string {
  // The kept stanza has no namespace of its own; inside <forwarded/> it must say jabber:client.
  const inner = `<message xmlns="jabber:client"${m.xml.slice('<message'.length)}`;
  const qid = queryId ? ` queryid="${escapeAttr(queryId)}"` : '';
  return `<message from="${escapeAttr(room)}"><result xmlns="${NS_MAM}"${qid} id="${escapeAttr(m.id)}"><forwarded xmlns="${NS_FORWARD}"><delay xmlns="${NS_DELAY}" stamp="${new Date(m.stamp).toISOString()}"/>${inner}</forwarded></result></message>`;
}

export function finElement(p: Page): Element {
  const first = p.messages[0];
  const last = p.messages[p.messages.length - 1];
  return el('fin', { xmlns: NS_MAM, complete: p.complete ? 'true' : undefined },
    el('set', { xmlns: NS_RSM },
      first ? el('first', { index: String(p.firstIndex) }, first.id) : undefined,
      last ? el('last', {}, last.id) : undefined,
      el('count', {}, String(p.count))));
}
