// XEP-0199: the server answers pings addressed to it or to an account.
import { defineModule } from '../module.ts';

const NS_PING = 'urn:xmpp:ping';

export default defineModule({
  name: 'ping',
  disco: { host: [NS_PING], account: [NS_PING] },
  iq: {
    'get/host/urn:xmpp:ping:ping': () => undefined,
    'get/account/urn:xmpp:ping:ping': () => undefined,
  },
});
