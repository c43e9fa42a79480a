// What the stream state machines need from the s2s node, and nothing more:
// configuration, the domains served here, certificates, dialback keys, where
// a domain's server is, the two ways out (a remote stanza to the actors, a
// dialback check), and the counters operators watch.
import type { ServedDomains } from '../../libs/accounts/served.ts';
import type { Config } from '../../libs/config/schema.ts';
import type { ServiceTarget } from '../../libs/dns/index.ts';
import type { StanzaErrorCondition, StreamError } from '../../libs/errors/index.ts';
import type { DomainCertificates } from '../../libs/tls/index.ts';
import type { Element } from '../../libs/xml/element.ts';
import type { ConnectionLimits } from './connection.ts';
import type { DialbackKeys } from './dialback.ts';

/** The authoritative server's answer to "did you issue this key?", or why there is none. */
export type DialbackVerdict = 'valid' | 'invalid' | { error: StanzaErrorCondition; text: string };

/** May `remote` send stanzas to `local` on this stream? */
export type PairCheck = (local: string, remote: string) => boolean;

export interface S2sContext {
  readonly config: Config;
  /** Hosted domains and service domains (conference.<domain>, …): everything a peer may address here and we may send from. */
  readonly served: ServedDomains;
  readonly certs: DomainCertificates;
  readonly keys: DialbackKeys;
  readonly limits: ConnectionLimits;
  /** Where a remote domain's server listens: its static route, or DNS. */
  targets(domain: string): Promise<ServiceTarget[]>;
  /**
   * A stanza a remote server sent; the stream error to close the stream with,
   * if it must be closed. `localFor`: a domain of ours a remote domain is
   * authenticated to on this stream (where an error for a stanza astray comes from).
   */
  inbound(el: Element, allowed: PairCheck, localFor: (remote: string) => string | undefined): StreamError | undefined;
  /** Ask the authoritative server of `remote` whether it issued a key for a stream to `local`. */
  verifyDialback(local: string, remote: string, streamId: string, key: string): Promise<DialbackVerdict>;
  readonly counters: S2sCounters;
}

/** What the streams count for the metrics endpoint (libs/metrics). */
export interface S2sCounters {
  /** A stanza crossed a server stream: received from a peer ('in') or written to one ('out'). */
  stanza(direction: 'in' | 'out', kind: string): void;
  /** Dialback that did not authenticate: a peer's key we refused ('in'), or ours a peer refused ('out'). */
  dialbackFailed(side: 'in' | 'out'): void;
}

/** Counters that count nothing (tests, and processes with metrics off). */
export const NO_COUNTERS: S2sCounters = { stanza: () => {}, dialbackFailed: () => {} };
