// XEP-0045 multi-user chat: the service `<muc.subdomain>.<domain>` of every
// served domain, its rooms actors on the shards (services/session/muc/), and
// its entry in the served domain's disco#items (§6.1).
import { mucService } from '../muc/index.ts';
import { defineModule } from '../module.ts';

export default defineModule({
  name: 'muc',
  enabled: (config) => config.muc.enabled,
  service: mucService,
  disco: { hostItems: (config, domain) => [{ jid: `${config.muc.subdomain}.${domain}`, name: config.muc.name }] },
});
