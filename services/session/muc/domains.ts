// Which domains are multi-user chat services: `<subdomain>.<hosted domain>`
// for every hosted domain, those added at run time included. A service domain
// is not a hosted domain (nobody logs in there); routing asks this first.
import type { HostedDomains } from '../../../libs/accounts/hosts.ts';
import type { Config } from '../../../libs/config/schema.ts';

export class MucDomains {
  private readonly prefix: string;

  constructor(private readonly config: Config['muc'], private readonly hosts: HostedDomains) {
    this.prefix = `${config.subdomain}.`;
  }

  /** The hosted domain a MUC service belongs to, or '' when the domain is no MUC service. */
  hostOf(domain: string): string {
    if (!this.config.enabled || !domain.startsWith(this.prefix)) return '';
    const host = domain.slice(this.prefix.length);
    return this.hosts.has(host) ? host : '';
  }

  has(domain: string): boolean {
    return this.hostOf(domain) !== '';
  }

  serviceOf(host: string): string {
    return this.prefix + host;
  }
}
