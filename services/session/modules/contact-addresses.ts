// XEP-0157 contact addresses: the operator's addresses (abuse, admin,
// security…) as a XEP-0128 form in the server's disco#info.
import type { Config } from '../../../libs/config/schema.ts';
import { el, type Element } from '../../../libs/xml/element.ts';
import { defineModule } from '../module.ts';

const NS_DATA = 'jabber:x:data';
const FORM_TYPE = 'http://jabber.org/network/serverinfo';

function form(config: Config): Element[] {
  const fields = Object.entries(config.contactAddresses).filter(([, uris]) => uris.length > 0);
  if (fields.length === 0) return [];
  return [el('x', { xmlns: NS_DATA, type: 'result' },
    el('field', { var: 'FORM_TYPE', type: 'hidden' }, el('value', {}, FORM_TYPE)),
    ...fields.map(([kind, uris]) => el('field', { var: `${kind}-addresses`, type: 'list-multi' }, ...uris.map((u) => el('value', {}, u)))))];
}

export default defineModule({
  name: 'contact-addresses',
  disco: { hostForms: form },
});
