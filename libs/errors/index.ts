// Errors are values: one StreamError and one StanzaError type, built here and
// serialized here, each carrying its RFC 6120 condition and a human text.
import { el, type Element } from '../xml/element.ts';

export const NS_STREAMS = 'urn:ietf:params:xml:ns:xmpp-streams';
export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

/** RFC 6120 §4.9.3 */
export type StreamErrorCondition =
  | 'bad-format' | 'bad-namespace-prefix' | 'conflict' | 'connection-timeout' | 'host-gone'
  | 'host-unknown' | 'improper-addressing' | 'internal-server-error' | 'invalid-from'
  | 'invalid-namespace' | 'invalid-xml' | 'not-authorized' | 'not-well-formed' | 'policy-violation'
  | 'remote-connection-failed' | 'reset' | 'resource-constraint' | 'restricted-xml' | 'see-other-host'
  | 'system-shutdown' | 'undefined-condition' | 'unsupported-encoding' | 'unsupported-feature'
  | 'unsupported-stanza-type' | 'unsupported-version';

/** RFC 6120 §8.3.3 */
export type StanzaErrorCondition =
  | 'bad-request' | 'conflict' | 'feature-not-implemented' | 'forbidden' | 'gone'
  | 'internal-server-error' | 'item-not-found' | 'jid-malformed' | 'not-acceptable' | 'not-allowed'
  | 'not-authorized' | 'policy-violation' | 'recipient-unavailable' | 'redirect'
  | 'registration-required' | 'remote-server-not-found' | 'remote-server-timeout'
  | 'resource-constraint' | 'service-unavailable' | 'subscription-required'
  | 'undefined-condition' | 'unexpected-request';

export type StanzaErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** The error type RFC 6120 §8.3.3 gives each condition by default. */
const DEFAULT_TYPE: Record<StanzaErrorCondition, StanzaErrorType> = {
  'bad-request': 'modify', conflict: 'cancel', 'feature-not-implemented': 'cancel', forbidden: 'auth',
  gone: 'cancel', 'internal-server-error': 'cancel', 'item-not-found': 'cancel', 'jid-malformed': 'modify',
  'not-acceptable': 'modify', 'not-allowed': 'cancel', 'not-authorized': 'auth', 'policy-violation': 'modify',
  'recipient-unavailable': 'wait', redirect: 'modify', 'registration-required': 'auth',
  'remote-server-not-found': 'cancel', 'remote-server-timeout': 'wait', 'resource-constraint': 'wait',
  'service-unavailable': 'cancel', 'subscription-required': 'auth', 'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
};

export class StreamError extends Error {
  /** `detail`: an application-specific condition (RFC 6120 §4.9.4), e.g. XEP-0198's handled-count-too-high. */
  constructor(readonly condition: StreamErrorCondition, readonly text?: string, readonly detail?: Element) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'StreamError';
  }

  /** see-other-host carries its address as the condition's own text (RFC 6120 §4.9.3.19), not as a <text/>. */
  toElement(): Element {
    const seeOther = this.condition === 'see-other-host';
    return el('stream:error', {},
      el(this.condition, { xmlns: NS_STREAMS }, seeOther ? this.text : undefined),
      this.text && !seeOther ? el('text', { xmlns: NS_STREAMS, 'xml:lang': 'en' }, this.text) : undefined,
      this.detail);
  }
}

export class StanzaError extends Error {
  readonly type: StanzaErrorType;
  /** `appCondition`: an application-specific condition element beside the defined one (RFC 6120 §8.4). */
  constructor(readonly condition: StanzaErrorCondition, readonly text?: string, type?: StanzaErrorType, readonly by?: string, readonly appCondition?: Element) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'StanzaError';
    this.type = type ?? DEFAULT_TYPE[condition];
  }

  toElement(): Element {
    return el('error', { type: this.type, by: this.by },
      el(this.condition, { xmlns: NS_STANZAS }),
      this.text ? el('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, this.text) : undefined,
      this.appCondition);
  }
}

/** Stanza error replies built in this process, by condition (read at scrape time as parley_stanza_errors_total). */
const repliesByCondition = new Map<string, number>();

export function stanzaErrorReplies(): ReadonlyMap<string, number> {
  return repliesByCondition;
}

/**
 * The error reply to a stanza (RFC 6120 §8.3.1): same name and id, addresses
 * swapped, type='error', the original payload kept for context.
 */
export function errorReply(stanza: Element, error: StanzaError, keepPayload = true): Element {
  repliesByCondition.set(error.condition, (repliesByCondition.get(error.condition) ?? 0) + 1);
  const attrs: Record<string, string> = { type: 'error' };
  if (stanza.attrs.id !== undefined) attrs.id = stanza.attrs.id;
  if (stanza.attrs.from !== undefined) attrs.to = stanza.attrs.from;
  if (stanza.attrs.to !== undefined) attrs.from = stanza.attrs.to;
  if (stanza.attrs.xmlns !== undefined) attrs.xmlns = stanza.attrs.xmlns;
  const kids = keepPayload ? stanza.children.filter((c) => typeof c !== 'string' && c.name !== 'error') : [];
  return { name: stanza.name, attrs, children: [...kids, error.toElement()] };
}
