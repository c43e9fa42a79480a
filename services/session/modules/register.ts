// XEP-0077 for logged-in users: what they are registered as, password change
// and account removal. (Creating accounts happens before authentication, on
// the client stream: libs/accounts/registration.ts.) Removal deletes every
// piece of the account's data and cancels its subscriptions, telling each
// contact; the actor does it once the iq is answered.
import { Accounts } from '../../../libs/accounts/index.ts';
import { NS_REGISTER } from '../../../libs/accounts/registration.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { normalizeLocal } from '../../../libs/jid/index.ts';
import { child, el, text, type Element } from '../../../libs/xml/element.ts';
import { defineModule, requireOwner, type HostIqRequest, type ServerContext } from '../module.ts';

const local = (bare: string) => bare.slice(0, bare.indexOf('@'));

function get(req: HostIqRequest): Element {
  requireOwner(req);
  return el('query', { xmlns: NS_REGISTER }, el('registered'), el('username', {}, local(req.account.bare)), el('password'));
}

async function set(req: HostIqRequest, ctx: ServerContext): Promise<undefined> {
  requireOwner(req);
  const { registration, auth } = ctx.config;
  if (child(req.payload, 'remove')) {
    if (!registration.accountRemoval) throw new StanzaError('not-allowed', 'accounts are not removed in-band on this server');
    req.account.removeAfterReply();
    return undefined;
  }
  if (!registration.passwordChange) throw new StanzaError('not-allowed', 'passwords are not changed in-band on this server');
  const username = text(child(req.payload, 'username')).trim();
  const password = text(child(req.payload, 'password'));
  if (!password) throw new StanzaError('bad-request', 'give a new password (and your username)');
  let same = username === '';
  try {
    same ||= normalizeLocal(username) === local(req.account.bare);
  } catch {
    same = false;
  }
  if (!same) throw new StanzaError('not-allowed', 'you may change your own password only');
  if ([...password].length < registration.minPasswordLength) {
    throw new StanzaError('not-acceptable', `the password must have at least ${registration.minPasswordLength} characters`);
  }
  await new Accounts(ctx.store, auth.scramIterations).setPassword(req.account.bare, password);
  return undefined;
}

export default defineModule({
  name: 'register',
  enabled: (config) => config.registration.passwordChange || config.registration.accountRemoval || config.registration.open,
  disco: { host: [NS_REGISTER] },
  iq: {
    'get/host/jabber:iq:register:query': get,
    'set/host/jabber:iq:register:query': set,
    'get/account/jabber:iq:register:query': get,
    'set/account/jabber:iq:register:query': set,
  },
});
