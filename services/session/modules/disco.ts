// XEP-0030: the server's and each account's identity and the features every
// enabled module declares for that target; XEP-0128 forms on the server; the
// services beside the server in its disco#items (each module that runs a
// service on a subdomain lists it: hostItems).
import { el, type Element } from '../../../libs/xml/element.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { defineModule, type DiscoTarget, type HostIqRequest, type ServerContext } from '../module.ts';

const NS_INFO = 'http://jabber.org/protocol/disco#info';
const NS_ITEMS = 'http://jabber.org/protocol/disco#items';

function info(target: DiscoTarget, identity: Element) {
  return (req: HostIqRequest, ctx: ServerContext): Element => {
    if (req.payload.attrs.node) throw new StanzaError('item-not-found', `no node '${req.payload.attrs.node}'`);
    return el('query', { xmlns: NS_INFO }, identity,
      ...ctx.disco.identities(target).map((i) => el('identity', { category: i.category, type: i.type, name: i.name })),
      ...ctx.disco.features(target).map((f) => el('feature', { var: f })),
      ...ctx.disco.forms(target));
  };
}

function items(target: DiscoTarget) {
  return (req: HostIqRequest, ctx: ServerContext): Element => {
    const node = req.payload.attrs.node;
    const listed = node === undefined ? (target === 'host' ? ctx.disco.hostItems(req.to) : []) : target === 'host' ? ctx.disco.nodeItems(node, req, ctx) : undefined;
    if (!listed) throw new StanzaError('item-not-found', `no node '${node}'`);
    return el('query', { xmlns: NS_ITEMS, node }, ...listed.map((i) => el('item', { jid: i.jid, node: i.node, name: i.name })));
  };
}

export default defineModule({
  name: 'disco',
  disco: { host: [NS_INFO, NS_ITEMS], account: [NS_INFO, NS_ITEMS] },
  iq: {
    'get/host/http://jabber.org/protocol/disco#info:query': info('host', el('identity', { category: 'server', type: 'im', name: 'Parley' })),
    'get/host/http://jabber.org/protocol/disco#items:query': items('host'),
    'get/account/http://jabber.org/protocol/disco#info:query': info('account', el('identity', { category: 'account', type: 'registered' })),
    'get/account/http://jabber.org/protocol/disco#items:query': items('account'),
  },
});
