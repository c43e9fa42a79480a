// XEP-0049 private XML storage: an account keeps elements (bookmarks,
// preferences) by name and namespace, readable and writable by itself only.
import { StanzaError } from '../../../libs/errors/index.ts';
import { children, el, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { serialize } from '../../../libs/xml/serialize.ts';
import { defineModule, requireOwner, type IqRequest, type ServerContext } from '../module.ts';

export const NS_PRIVATE = 'jabber:iq:private';
const PRIVATE = 'private';
// §3: these namespaces are not the client's to store.
const RESERVED = new Set([NS_PRIVATE, 'jabber:client', 'jabber:server', '']);

function keyOf(e: Element): string {
  const ns = e.attrs.xmlns ?? '';
  if (RESERVED.has(ns)) throw new StanzaError('not-acceptable', `elements in namespace '${ns}' cannot be stored`);
  return `${e.name} ${ns}`;
}

async function get(req: IqRequest, ctx: ServerContext): Promise<Element> {
  requireOwner(req);
  const kids = children(req.payload);
  if (kids.length !== 1) throw new StanzaError('bad-request', 'ask for one element at a time');
  const raw = await ctx.store.hget(req.account.bare, PRIVATE, keyOf(kids[0]));
  // Nothing stored: the empty element asked for comes back.
  return el('query', { xmlns: NS_PRIVATE }, raw ? parseFragment(raw) : el(kids[0].name, { xmlns: kids[0].attrs.xmlns }));
}

async function set(req: IqRequest, ctx: ServerContext): Promise<undefined> {
  requireOwner(req);
  const kids = children(req.payload);
  if (kids.length === 0) throw new StanzaError('bad-request', 'store at least one element');
  const { maxBytes, maxElements } = ctx.config.privateStorage;
  const bare = req.account.bare;
  const stored = await ctx.store.hgetall(bare, PRIVATE);
  const b = ctx.store.batch(bare);
  const fresh = new Set<string>();
  for (const e of kids) {
    const key = keyOf(e);
    const xml = serialize(e);
    const size = Buffer.byteLength(xml);
    if (size > maxBytes) throw new StanzaError('not-acceptable', `<${e.name} xmlns='${e.attrs.xmlns}'/> is ${size} bytes; at most ${maxBytes} are kept per element`);
    if (!stored.has(key)) fresh.add(key);
    b.hset(PRIVATE, key, Buffer.from(xml));
  }
  if (stored.size + fresh.size > maxElements) throw new StanzaError('not-acceptable', `an account keeps at most ${maxElements} private elements`);
  await b.exec();
  return undefined;
}

export default defineModule({
  name: 'private',
  disco: { host: [NS_PRIVATE] },
  stored: [PRIVATE],
  iq: {
    'get/account/jabber:iq:private:query': get,
    'set/account/jabber:iq:private:query': set,
  },
});
