// Services on a subdomain of every served domain (`<subdomain>.<domain>`):
// each is served by actors on the same shards as accounts, keyed by the JIDs
// of its domain. A module declares one (XmppModule.service); routing asks here
// whether a domain is such a service and which actor serves a JID on it.
// A service domain is not a hosted domain: nobody logs in there.
import type { HostedDomains } from '../../libs/accounts/hosts.ts';
import type { Config } from '../../libs/config/schema.ts';
import { domainPart } from '../../libs/jid/split.ts';
import type { Actor } from './actor.ts';
import type { SessionServices } from './services.ts';

/** An actor serving a JID of a service domain. */
export type ServiceActor = Actor & { readonly hasSessions: boolean };

export interface DomainService {
  /** The service of example.com is `<subdomain(config)>.example.com`. */
  subdomain(config: Config): string;
  /** The actor for a bare JID on one of the service's domains. */
  actor(key: string, shard: number, svc: SessionServices): ServiceActor;
}

export class ServiceDomains {
  private readonly byPrefix: { prefix: string; service: DomainService }[];

  constructor(services: readonly DomainService[], config: Config, private readonly hosts: HostedDomains) {
    this.byPrefix = services.map((service) => ({ prefix: `${service.subdomain(config)}.`, service }));
  }

  /** The service a domain belongs to, or undefined when it is none (its hosted domain may be added at run time). */
  serviceOf(domain: string): DomainService | undefined {
    for (const { prefix, service } of this.byPrefix) {
      if (domain.startsWith(prefix) && this.hosts.has(domain.slice(prefix.length))) return service;
    }
    return undefined;
  }

  has(domain: string): boolean {
    return this.serviceOf(domain) !== undefined;
  }

  /** The actor for a bare JID on a service domain, or undefined when the JID is an account's. */
  actor(key: string, shard: number, svc: SessionServices): ServiceActor | undefined {
    return this.byPrefix.length === 0 ? undefined : this.serviceOf(domainPart(key))?.actor(key, shard, svc);
  }
}
