// Every domain this server answers for: the hosted domains (accounts live
// there) and the domains of the services beside them — the MUC service of
// each hosted domain, and whatever else declares a domain of its own (a
// module's service on a subdomain, an external component). Federation asks
// this one object whether a domain is local, so a new service becomes
// reachable from other servers, and may send to them, by being declared where
// its own kind of service is declared, with nothing added to federation.
import type { Envelope } from '../bus/envelope.ts';
import type { HostedDomains } from './hosts.ts';

/** Domains some service answers for (asked per stanza: a lookup, not a scan of every domain). */
export interface DomainSet {
  has(domain: string): boolean;
  /**
   * For a service whose stanzas do not go to actors on the shards (an
   * external component's connection): hand one on; false when it cannot now.
   */
  send?(domain: string, env: Envelope): boolean;
}

export class ServedDomains {
  private readonly services: readonly DomainSet[];

  constructor(readonly hosts: HostedDomains, ...services: DomainSet[]) {
    this.services = services;
  }

  /** Hosted, or answered for by a service. */
  has(domain: string): boolean {
    return this.hosts.has(domain) || this.isService(domain);
  }

  /**
   * Hand a stanza for a served domain to the service that takes its own
   * (true, or false when it cannot now); undefined when actors on the shards
   * serve the domain (accounts, rooms, the domain itself).
   */
  send(domain: string, env: Envelope): boolean | undefined {
    for (const s of this.services) if (s.send && s.has(domain)) return s.send(domain, env);
    return undefined;
  }

  /** A service's domain (no accounts live there). */
  isService(domain: string): boolean {
    for (const s of this.services) if (s.has(domain)) return true;
    return false;
  }
}
