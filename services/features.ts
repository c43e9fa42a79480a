// What the server implements outside the feature modules — on the client
// stream (services/c2s) and in the account's actor core — and where each is
// advertised: as a stream feature after authentication, in disco#info, or
// both. The c2s builds its post-authentication features from this table and
// the session's disco#info adds its disco entries to what the modules declare
// (services/session/module.ts), so a protocol is announced from one place.
// test/integration/features-advertised.test.ts walks both against the code.
import type { Config } from '../libs/config/schema.ts';
import { el, type Element } from '../libs/xml/element.ts';

export interface CoreFeature {
  /** The protocol, as its specification names it. */
  readonly name: string;
  /** The stream feature offered once authenticated (in table order). */
  readonly stream?: Element;
  /** Offered only on a stream that offers stream management. */
  readonly needsStreamManagement?: true;
  /** disco#info features of a served domain (`host`) or of an account (`account`). */
  readonly disco?: { readonly host?: readonly string[]; readonly account?: readonly string[] };
  /** Off in this configuration: advertised nowhere. */
  readonly enabled?: (config: Config) => boolean;
}

export const CORE_FEATURES: readonly CoreFeature[] = [
  { name: 'RFC 6120 §7 resource binding', stream: el('bind', { xmlns: 'urn:ietf:params:xml:ns:xmpp-bind' }) },
  // RFC 3921 §3, for clients that still ask.
  { name: 'RFC 3921 session establishment', stream: el('session', { xmlns: 'urn:ietf:params:xml:ns:xmpp-session' }, el('optional')) },
  // The account's actor answers these two (RFC 6121 §2.6.1, §3.4.1: a server that implements them MUST say so here).
  { name: 'RFC 6121 roster versioning', stream: el('ver', { xmlns: 'urn:xmpp:features:rosterver' }) },
  { name: 'RFC 6121 subscription pre-approval', stream: el('sub', { xmlns: 'urn:xmpp:features:pre-approval' }) },
  { name: 'XEP-0352 client state indication', stream: el('csi', { xmlns: 'urn:xmpp:csi:0' }) },
  {
    name: 'XEP-0198 stream management', stream: el('sm', { xmlns: 'urn:xmpp:sm:3' }), needsStreamManagement: true,
    enabled: (c) => c.streamManagement.enabled,
  },
  // XEP-0160 §3 (the feature XEP-0013 named): messages to an account with no available resource are kept for it.
  { name: 'XEP-0160 offline storage', disco: { host: ['msgoffline'] }, enabled: (c) => c.offline.enabled },
];

const on = (f: CoreFeature, config: Config): boolean => f.enabled?.(config) ?? true;

/** The stream features after authentication, in order; `streamManagement`: the stream offers it. */
export function postAuthStreamFeatures(config: Config, streamManagement: boolean): Element[] {
  return CORE_FEATURES.flatMap((f) => (f.stream && on(f, config) && (streamManagement || !f.needsStreamManagement) ? [f.stream] : []));
}

/** The disco#info features of a served domain or an account that no module declares. */
export function coreDiscoFeatures(config: Config, target: 'host' | 'account'): string[] {
  return CORE_FEATURES.flatMap((f) => (on(f, config) ? [...(f.disco?.[target] ?? [])] : []));
}
