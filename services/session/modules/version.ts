// XEP-0092 software version. Off unless `version.enabled`: telling everyone
// what runs here helps attackers more than users.
import { readFileSync } from 'node:fs';
import { release, type } from 'node:os';
import { el } from '../../../libs/xml/element.ts';
import { defineModule } from '../module.ts';

export const NS_VERSION = 'jabber:iq:version';
const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

export default defineModule({
  name: 'version',
  enabled: (config) => config.version.enabled,
  disco: { host: [NS_VERSION] },
  iq: {
    'get/host/jabber:iq:version:query': (_req, ctx) => el('query', { xmlns: NS_VERSION },
      el('name', {}, 'Parley'), el('version', {}, pkg.version), ctx.config.version.os ? el('os', {}, `${type()} ${release()}`) : undefined),
  },
});
