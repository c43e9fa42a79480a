// XEP-0054 vcard-temp: an account sets its own vCard; anyone may fetch anyone's,
// answered by the owner's actor from the store whether or not the owner is
// online. XEP-0153 avatar hashes travel in presence, which the server carries
// through untouched.
import { StanzaError } from '../../../libs/errors/index.ts';
import type { Store } from '../../../libs/store/store.ts';
import { el, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { defineModule, requireOwner, type IqRequest, type ServerContext } from '../module.ts';

export const NS_VCARD = 'vcard-temp';
/** Where an account's vCard is kept: one field of one collection of its scope. */
export const VCARD = 'vcard';
export const FIELD = 'v';

/** The stored vCard's XML, for the CLI and the handler. */
export async function storedVcard(store: Store, bare: string): Promise<string | undefined> {
  const raw = await store.hget(bare, VCARD, FIELD);
  return raw ? Buffer.from(raw).toString('utf8') : undefined;
}

async function get(req: IqRequest, ctx: ServerContext): Promise<Element> {
  const xml = await storedVcard(ctx.store, req.account.bare);
  // §3.1: no vCard yet is an empty one.
  return xml ? parseFragment(xml) : el('vCard', { xmlns: NS_VCARD });
}

async function set(req: IqRequest, ctx: ServerContext): Promise<undefined> {
  requireOwner(req);
  const xml = serialize(req.payload);
  const size = Buffer.byteLength(xml);
  const max = ctx.config.vcard.maxBytes;
  if (size > max) throw new StanzaError('not-acceptable', `the vCard is ${size} bytes; this server keeps vCards of at most ${max} bytes (a smaller photo helps)`);
  await ctx.store.hset(req.account.bare, VCARD, FIELD, Buffer.from(xml));
  return undefined;
}

export default defineModule({
  name: 'vcard',
  disco: { host: [NS_VCARD], account: [NS_VCARD] },
  stored: [VCARD],
  iq: {
    'get/account/vcard-temp:vCard': get,
    'set/account/vcard-temp:vCard': set,
  },
});
