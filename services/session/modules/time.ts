// XEP-0202 entity time: the server's clock, in UTC.
import { el } from '../../../libs/xml/element.ts';
import { defineModule } from '../module.ts';

export const NS_TIME = 'urn:xmpp:time';

export default defineModule({
  name: 'time',
  disco: { host: [NS_TIME] },
  iq: {
    'get/host/urn:xmpp:time:time': () => el('time', { xmlns: NS_TIME }, el('tzo', {}, '+00:00'), el('utc', {}, new Date().toISOString())),
  },
});
