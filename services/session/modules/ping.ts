// XEP-0199: the server answers pings addressed to it or to an account.
import { defineModule } from '../module.ts';

export default defineModule({
  name: 'ping',
  features: ['urn:xmpp:ping'],
  iq: {
    'get/host/urn:xmpp:ping:ping': () => undefined,
    'get/account/urn:xmpp:ping:ping': () => undefined,
  },
});
