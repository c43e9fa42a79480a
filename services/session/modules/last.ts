// XEP-0012 last activity: when an account's last resource goes unavailable the
// time and status are kept; a contact subscribed to its presence may ask how
// long ago that was. Asked of the server, the answer is its uptime.
import { pack, unpack } from 'msgpackr';
import { StanzaError } from '../../../libs/errors/index.ts';
import { bareJid } from '../../../libs/jid/split.ts';
import { child, el, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { hasFrom } from '../im/subscription.ts';
import { defineAccountState, defineModule, type IqRequest, type ServerContext } from '../module.ts';

export const NS_LAST = 'jabber:iq:last';
const LAST = 'last';
const started = Date.now();

/** Nothing loaded: the hook writes, queries read the store. */
const lastActivity = defineAccountState<null>({
  name: 'last activity',
  collections: [],
  load: () => null,
  hooks: {
    async unavailable(_state, account, event) {
      if (!event.last) return;
      const status = text(child(parseFragment(event.presence), 'status'));
      await account.server.store.hset(account.bare, LAST, 'gone', pack([Date.now(), status]));
    },
  },
});

const seconds = (since: number) => String(Math.max(0, Math.floor((Date.now() - since) / 1000)));

async function account(req: IqRequest, ctx: ServerContext): Promise<Element> {
  const asker = bareJid(req.from);
  const { account: user } = req;
  if (asker !== user.bare) {
    // §3: only those allowed to see the user's presence learn when it was last seen.
    const c = user.contact(asker);
    if (!c || !hasFrom(c.subscription)) throw new StanzaError('forbidden', 'you are not subscribed to this user\'s presence');
  }
  if (user.available()) return el('query', { xmlns: NS_LAST, seconds: '0' });
  const raw = await ctx.store.hget(user.bare, LAST, 'gone');
  if (!raw) throw new StanzaError('item-not-found', 'no activity recorded for this account');
  const [at, status] = unpack(raw) as [number, string];
  return el('query', { xmlns: NS_LAST, seconds: seconds(at) }, status || undefined);
}

export default defineModule({
  name: 'last',
  disco: { host: [NS_LAST], account: [NS_LAST] },
  state: [lastActivity],
  stored: [LAST],
  iq: {
    'get/host/jabber:iq:last:query': () => el('query', { xmlns: NS_LAST, seconds: seconds(started) }),
    'get/account/jabber:iq:last:query': account,
  },
});
