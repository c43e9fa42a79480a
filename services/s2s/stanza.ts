// Namespaces of server-to-server streams, and the two conversions between an
// envelope on the bus and a stanza on the wire. The stream parser does not
// resolve namespaces, so elements are matched by (namespace, local name)
// with the prefixes the peer bound in its stream header.
import type { Envelope } from '../../libs/bus/envelope.ts';
import { bareJid } from '../../libs/jid/split.ts';
import type { Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { serialize } from '../../libs/xml/serialize.ts';

export const NS_SERVER = 'jabber:server';
export const NS_STREAM = 'http://etherx.jabber.org/streams';
export const NS_DIALBACK = 'jabber:server:dialback';
export const NS_DIALBACK_FEATURE = 'urn:xmpp:features:dialback';
export const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_BIDI = 'urn:xmpp:bidi';
export const NS_BIDI_FEATURE = 'urn:xmpp:features:bidi';

/** The header we open every s2s stream with: the `db` prefix is what peers expect for dialback. */
export function streamHeader(attrs: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = { xmlns: NS_SERVER, 'xmlns:stream': NS_STREAM, 'xmlns:db': NS_DIALBACK };
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== '') out[k] = v;
  out.version = '1.0';
  return out;
}

/** An element's namespace and local name, resolving its prefix against itself and the stream header. */
export function qname(e: Element, header: Record<string, string>): { ns: string; local: string } {
  const colon = e.name.indexOf(':');
  if (colon < 0) return { ns: e.attrs.xmlns ?? header.xmlns ?? '', local: e.name };
  const prefix = e.name.slice(0, colon);
  return { ns: e.attrs[`xmlns:${prefix}`] ?? header[`xmlns:${prefix}`] ?? '', local: e.name.slice(colon + 1) };
}

export function isStanza(e: Element): boolean {
  return e.name === 'message' || e.name === 'presence' || e.name === 'iq';
}

/**
 * An outbound envelope's stanza as an element. Stanzas reach the s2s layer
 * without their addresses in some cases (broadcast presence carries no 'to',
 * probes travel as bare metadata), so both addresses come from the envelope,
 * and the client namespace the c2s may have left is dropped: the s2s stream
 * supplies `jabber:server`.
 */
export function envelopeStanza(env: Envelope): Element {
  const el: Element = env.xml.length === 0 ? { name: env.kind, attrs: {}, children: [] } : parseFragment(env.xml);
  delete el.attrs.xmlns;
  el.attrs.from = env.from;
  el.attrs.to = env.to;
  if (env.type && el.attrs.type === undefined) el.attrs.type = env.type;
  if (env.id && el.attrs.id === undefined) el.attrs.id = env.id;
  return el;
}

/** The bytes an outbound envelope becomes on the stream. */
export function wireStanza(env: Envelope): string {
  const el = envelopeStanza(env);
  // RFC 6121 §4.3.1: probes come from the bare JID.
  if (env.kind === 'presence' && env.type === 'probe') el.attrs.from = bareJid(env.from);
  return serialize(el);
}
