// XEP-0059 result set management: the <set/> of a request, as both archives
// (an account's and a room's) page with it.
import { StanzaError } from '../../libs/errors/index.ts';
import { child, text, type Element } from '../../libs/xml/element.ts';

export const NS_RSM = 'http://jabber.org/protocol/rsm';

export interface RsmRequest {
  /** <max/>, capped at the largest page. */
  max?: number;
  after?: string;
  /** '' (an empty <before/>) asks for the last page. */
  before?: string;
}

/** The <set/> child of `q`, if any; a <max/> that is not a whole number is refused. */
export function parseRsm(q: Element, maxPage: number): RsmRequest {
  const out: RsmRequest = {};
  const set = child(q, 'set', NS_RSM);
  if (!set) return out;
  const max = child(set, 'max');
  if (max) {
    const n = text(max);
    if (!/^\d{1,6}$/.test(n)) throw new StanzaError('bad-request', 'RSM <max/> must be a whole number');
    out.max = Math.min(Number(n), maxPage);
  }
  const after = child(set, 'after');
  if (after) out.after = text(after);
  const before = child(set, 'before');
  if (before) out.before = text(before);
  return out;
}
