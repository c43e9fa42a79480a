// External components (XEP-0114) in the disco#items of the served domain they
// are a subdomain of (XEP-0030 §4): clients find a gateway or a bot the way
// they find the MUC service. A component on a domain of its own is listed
// nowhere. Their stanzas are routed by the Router, not by this module.
import type { Config } from '../../../libs/config/schema.ts';
import { defineModule, type DiscoItem } from '../module.ts';

function subdomainComponents(config: Config, domain: string): DiscoItem[] {
  const suffix = `.${domain}`;
  return config.components.services
    .filter((c) => c.domain.endsWith(suffix))
    .map((c) => (c.name === undefined ? { jid: c.domain } : { jid: c.domain, name: c.name }));
}

export default defineModule({
  name: 'components',
  enabled: (config) => config.components.services.length > 0,
  disco: { hostItems: subdomainComponents },
});
