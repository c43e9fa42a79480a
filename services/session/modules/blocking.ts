// XEP-0191 blocking command: block, unblock, unblock all, the block list, and
// block pushes to every resource that asked for the list. Enforcement is the
// shared privacy rule set's (privacy-rules.ts): a blocked JID is checked there
// before any privacy list, on both paths of the actor.
import { pack } from 'msgpackr';
import { StanzaError } from '../../../libs/errors/index.ts';
import { parseJid } from '../../../libs/jid/index.ts';
import { logger } from '../../../libs/log/index.ts';
import { resourcePart } from '../../../libs/jid/split.ts';
import type { Store } from '../../../libs/store/store.ts';
import { children, el, type Element } from '../../../libs/xml/element.ts';
import { defineModule, requireOwner, type AccountContext, type IqRequest, type ServerContext } from '../module.ts';
import { BLOCKLIST, changeRules, PRIVACY, privacyRules, type PrivacyRules } from './privacy-rules.ts';
import { blockReports, storeReports } from './reporting.ts';

export const NS_BLOCKING = 'urn:xmpp:blocking';
const EMPTY = new Uint8Array(0);
const log = logger('blocking');

/** The JIDs of a block/unblock request, normalized and deduplicated. */
function requestedJids(payload: Element): string[] {
  const out = new Set<string>();
  for (const item of children(payload, 'item')) {
    const raw = item.attrs.jid;
    if (raw === undefined) throw new StanzaError('bad-request', 'an item needs a jid');
    try {
      out.add(parseJid(raw).full);
    } catch {
      throw new StanzaError('jid-malformed', `'${raw}' is not a valid JID`);
    }
  }
  return [...out];
}

function itemList(name: string, jids: Iterable<string>): Element {
  const items: Element[] = [];
  for (const jid of jids) items.push(el('item', { jid }));
  return el(name, { xmlns: NS_BLOCKING }, ...items);
}

/** XEP-0191 §3.3, §3.4: every resource that asked for the list hears of each change. */
function pushToInterested(account: AccountContext, rules: PrivacyRules, payload: Element): void {
  for (const resource of rules.blockInterest.keys()) account.sendPush(resource, payload);
}

async function blocklist(req: IqRequest): Promise<Element> {
  requireOwner(req);
  const { account } = req;
  const rules = account.state(privacyRules);
  const resource = resourcePart(req.from);
  const sid = account.sessionId(resource);
  if (sid !== undefined && rules.blockInterest.get(resource) !== sid) {
    rules.blockInterestForWrite().set(resource, sid);
    await account.server.store.hset(account.bare, PRIVACY, `blockpush:${resource}`, pack(sid));
  }
  return itemList('blocklist', rules.blocked);
}

async function block(req: IqRequest, ctx: ServerContext): Promise<undefined> {
  requireOwner(req);
  const { account } = req;
  const rules = account.state(privacyRules);
  const jids = requestedJids(req.payload);
  if (jids.length === 0) throw new StanzaError('bad-request', 'a block request names at least one JID');
  // XEP-0377 reports in the items: checked before anything is blocked, kept once the block is.
  const reports = blockReports(req.payload, ctx.config, (j) => parseJid(j).full);
  const added = jids.filter((j) => !rules.blocked.has(j));
  const max = ctx.config.privacy.maxBlockedJids;
  if (rules.blocked.size + added.length > max) {
    throw new StanzaError('not-acceptable', `the block list is limited to ${max} JIDs; it holds ${rules.blocked.size} and this request adds ${added.length}`);
  }
  if (added.length) {
    await changeRules(account, rules, async () => {
      const b = ctx.store.batch(account.bare);
      for (const j of added) b.hset(BLOCKLIST, j, EMPTY);
      await b.exec();
      for (const j of added) rules.blockedForWrite().add(j);
    });
  }
  pushToInterested(account, rules, itemList('block', jids));
  // The block stands whatever happens to the reports: a failure to keep them is the operator's to see in the log.
  await storeReports(ctx.store, ctx.config, req.from, reports).catch((e: unknown) => log.error('storing spam reports failed', { account: account.bare, error: e }));
  return undefined;
}

async function unblock(req: IqRequest, ctx: ServerContext): Promise<undefined> {
  requireOwner(req);
  const { account } = req;
  const rules = account.state(privacyRules);
  const jids = requestedJids(req.payload);
  // No item: unblock everyone (§3.5).
  const removed = jids.length === 0 ? [...rules.blocked] : jids.filter((j) => rules.blocked.has(j));
  if (removed.length) {
    await changeRules(account, rules, async () => {
      const b = ctx.store.batch(account.bare);
      if (jids.length === 0) b.del(BLOCKLIST);
      else for (const j of removed) b.hdel(BLOCKLIST, j);
      await b.exec();
      for (const j of removed) rules.blockedForWrite().delete(j);
    });
  }
  pushToInterested(account, rules, itemList('unblock', jids));
  return undefined;
}

/** The block list as stored, for the CLI (no actor involved: the store is the truth). */
export async function storedBlocklist(store: Store, bare: string): Promise<string[]> {
  return [...(await store.hgetall(bare, BLOCKLIST)).keys()].sort();
}

export default defineModule({
  name: 'blocking',
  disco: { host: [NS_BLOCKING] },
  state: [privacyRules],
  iq: {
    'get/account/urn:xmpp:blocking:blocklist': blocklist,
    'set/account/urn:xmpp:blocking:block': block,
    'set/account/urn:xmpp:blocking:unblock': unblock,
  },
});
