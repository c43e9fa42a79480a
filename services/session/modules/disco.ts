// XEP-0030: the server's identity and the features of every enabled module.
import { el } from '../../../libs/xml/element.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { defineModule } from '../module.ts';

const NS_INFO = 'http://jabber.org/protocol/disco#info';
const NS_ITEMS = 'http://jabber.org/protocol/disco#items';

export default defineModule({
  name: 'disco',
  features: [NS_INFO, NS_ITEMS],
  iq: {
    'get/host/http://jabber.org/protocol/disco#info:query': (req, ctx) => {
      if (req.payload.attrs.node) throw new StanzaError('item-not-found', `no node '${req.payload.attrs.node}'`);
      return el('query', { xmlns: NS_INFO },
        el('identity', { category: 'server', type: 'im', name: 'Parley' }),
        ...ctx.features.map((f) => el('feature', { var: f })));
    },
    'get/host/http://jabber.org/protocol/disco#items:query': () => el('query', { xmlns: NS_ITEMS }),
    'get/account/http://jabber.org/protocol/disco#info:query': (req) => {
      if (req.payload.attrs.node) throw new StanzaError('item-not-found', `no node '${req.payload.attrs.node}'`);
      return el('query', { xmlns: NS_INFO }, el('identity', { category: 'account', type: 'registered' }));
    },
    'get/account/http://jabber.org/protocol/disco#items:query': () => el('query', { xmlns: NS_ITEMS }),
  },
});
