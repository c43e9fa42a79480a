// What the stream state machines need from the s2s node, and nothing more:
// configuration, certificates, dialback keys, where a domain's server is,
// and the two ways out (a remote stanza to the actors, a dialback check).
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
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
  readonly hosts: HostedDomains;
  readonly certs: DomainCertificates;
  readonly keys: DialbackKeys;
  readonly limits: ConnectionLimits;
  /** Where a remote domain's server listens: its static route, or DNS. */
  targets(domain: string): Promise<ServiceTarget[]>;
  /** A stanza a remote server sent; the stream error to close the stream with, if it must be closed. */
  inbound(el: Element, allowed: PairCheck): StreamError | undefined;
  /** Ask the authoritative server of `remote` whether it issued a key for a stream to `local`. */
  verifyDialback(local: string, remote: string, streamId: string, key: string): Promise<DialbackVerdict>;
}
