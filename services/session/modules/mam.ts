// XEP-0313 message archive management for each account, with XEP-0059 result
// set paging and XEP-0359 stanza ids. A message is archived at the one point
// it passes through the account's actor — when it is routed out, or when it
// arrives and before it is delivered, stored offline or queued for a waiting
// session — so a delivery from offline storage, a resend after a resumption or
// a reroute when a session's window closes never archives it again.
//
// Storage: a MessageArchive (libs/archive) — the store's ordered log
// `{bare}:mam` (a sorted set in Redis, a key range in lmdb), or PostgreSQL
// when `archive.postgres` is configured — keyed by the archive id: a
// microsecond timestamp, bumped to stay increasing. So `start`/`end`,
// `after-id`/`before-id` and RSM paging are all id bounds, a page is one range
// read and a count one range count; a `with` filter is an index in PostgreSQL
// and a scan of the log in the store. An append reads nothing and is not
// awaited (writes apply in the order issued; a query waits for them): a chat
// message does not hold the account's mailbox for a disk commit.
import { setTimeout as sleep } from 'node:timers/promises';
import { pack, unpack } from 'msgpackr';
import { ARCHIVE_LOG, storeArchive, type ArchivedMessage, type ArchiveTrim, type MessageArchive } from '../../../libs/archive/index.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { NS_RSM, parseRsm } from '../rsm.ts';
import { retriedWrite } from '../retry.ts';
import { tryParseJid } from '../../../libs/jid/index.ts';
import { bareJid, resourcePart } from '../../../libs/jid/split.ts';
import { child, children, el, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';
import { escapeAttr, serialize } from '../../../libs/xml/serialize.ts';
import type { Config } from '../../../libs/config/schema.ts';
import { logger } from '../../../libs/log/index.ts';

/** Archive appends between two enforcements of the retention limits. */
const TRIM_STEP = 50;
import { defineAccountState, defineModule, requireOwner, type AccountContext, type IqRequest, type MessageEvent, type ServerContext } from '../module.ts';

export const NS_MAM = 'urn:xmpp:mam:2';
export const NS_SID = 'urn:xmpp:sid:0';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_DELAY = 'urn:xmpp:delay';
const NS_DATA = 'jabber:x:data';
const NS_HINTS = 'urn:xmpp:hints';
const log = logger('mam');
/** The account's archive in the store: a log keyed by archive id (also read by export and import). */
export const ARCHIVE = ARCHIVE_LOG;
export { decodeArchived, encodeArchived, type ArchivedMessage } from '../../../libs/archive/index.ts';
const PREFS = 'mamprefs';
const SCAN_CHUNK = 200;

type Default = Config['mam']['default'];

export interface ArchivePrefs {
  default: Default;
  always: Set<string>;
  never: Set<string>;
}

export interface ArchiveState {
  prefs: ArchivePrefs;
  /** The last archive id given; -1 until read from the archive. */
  last: number;
  /** Messages in the archive as far as this actor knows (read with `last`); keeps trimming from counting the log. */
  count: number;
  /** Appends since the age limit was last enforced. */
  sinceTrim: number;
  /** The last archive write issued (queries wait for it). */
  writes: Promise<void>;
  /** Resources whose current session queried the archive: their clients catch up from it (`retrievable`). */
  queriedBy: Set<string>;
}

export const archiveId = (id: number): string => id.toString(36);

export function parseArchiveId(id: string): number {
  const n = /^[0-9a-z]{1,11}$/.test(id) ? Number.parseInt(id, 36) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new StanzaError('item-not-found', `no archived message with id ${id}`);
  return n;
}

/** Where the deployment's archives live: PostgreSQL once opened (`archive.postgres`), else the store. */
export const archiveOf = (server: ServerContext): MessageArchive => server.archive ?? storeArchive(server.store);

export const archive = defineAccountState<ArchiveState>({
  name: 'mam',
  collections: [PREFS],
  load(data, ctx) {
    const h = data.get(PREFS);
    const set = (k: string) => new Set<string>(h?.get(k) ? (unpack(h.get(k)!) as string[]) : []);
    const d = h?.get('default');
    return { prefs: { default: d ? (unpack(d) as Default) : ctx.config.mam.default, always: set('always'), never: set('never') }, last: -1, count: 0, sinceTrim: 0, writes: Promise.resolve(), queriedBy: new Set() };
  },
  messages: {
    routing: (state, account, msg) => archiveMessage(state, account, msg),
    // What a session ended without acknowledging is offered again only to a client that does not read the archive:
    // one that queried it during that session fetches the message from there (it carries our stanza id: archived).
    retrievable: (state, account, resource, xml) => state.queriedBy.has(resource) && carriesOurId(xml, account.bare),
  },
  // Stream management is listed before this module (modules/index.ts), so its `ended` hook has asked `retrievable`
  // about the session's unacknowledged messages by the time this one forgets the session.
  hooks: { ended: (state, _account, resource) => { state.queriedBy.delete(resource); } },
});

// ---------------------------------------------------------------- archiving

/**
 * XEP-0313 §7: chat and normal messages with a body, unless a hint says not
 * to keep them. Decided on the bytes when they leave no doubt (the common
 * case), on the parsed stanza otherwise.
 */
function archivable(msg: MessageEvent): boolean {
  const type = msg.type === '' ? 'normal' : msg.type;
  if (type !== 'chat' && type !== 'normal') return false;
  const xml = msg.xml;
  if (!xml.includes('<body')) return false;
  if (!xml.includes(NS_HINTS) && !xml.includes(NS_FORWARD)) return true;
  const s = msg.stanza();
  return child(s, 'body') !== undefined && !child(s, 'no-store', NS_HINTS) && !child(s, 'no-permanent-store', NS_HINTS);
}

function wanted(prefs: ArchivePrefs, account: AccountContext, peer: string): boolean {
  if (prefs.never.has(peer)) return false;
  if (prefs.always.has(peer)) return true;
  if (prefs.default === 'roster') return account.contact(peer) !== undefined;
  return prefs.default === 'always';
}

function archiveMessage(state: ArchiveState, account: AccountContext, msg: MessageEvent): void | Promise<void> {
  // XEP-0359 §5: a stanza id claiming to be ours came from someone else; it goes whatever happens next.
  const spoofed = msg.dir === 'in' && msg.xml.includes(NS_SID);
  const peer = bareJid(msg.dir === 'in' ? msg.from : msg.to);
  if (!archivable(msg) || peer === '' || !wanted(state.prefs, account, peer)) {
    if (spoofed) msg.replace(withoutOurIds(msg.stanza(), account.bare));
    return;
  }
  if (state.last < 0) {
    return readTail(account).then(({ last, count }) => {
      if (state.last < 0) {
        state.last = last;
        state.count = count;
      }
      append(state, account, msg, peer, spoofed);
    });
  }
  append(state, account, msg, peer, spoofed);
}

/**
 * The archive's last id and size, read once per activation. Tried again like a
 * write (session.storeRetries); an archive that stays unreadable does not stop
 * the message: numbering goes on from the clock, which is past every id unless
 * the clocks of two processes disagree (logged).
 */
async function readTail(account: AccountContext): Promise<{ last: number; count: number }> {
  const engine = archiveOf(account.server);
  const { storeRetries, storeRetryDelayMs } = account.server.config.session;
  for (let attempt = 0; ; attempt++) {
    try {
      const [[last], count] = await Promise.all([engine.range(account.bare, { reverse: true, limit: 1 }), engine.count(account.bare, {})]);
      return { last: last ? last.id : 0, count: count ?? 0 };
    } catch (e) {
      if (attempt >= storeRetries) {
        log.error('the archive could not be read; numbering from the clock', { account: account.bare, error: e });
        return { last: 0, count: 0 };
      }
      await sleep(storeRetryDelayMs * 2 ** attempt);
    }
  }
}

/**
 * Number the message, stamp its stanza id, and queue the write. Not awaited:
 * writes of one store connection (Redis) or one lmdb environment apply in
 * the order issued, a query waits for them (`writes`), and an await per
 * message would hold the account's mailbox for a disk commit.
 */
function append(state: ArchiveState, account: AccountContext, msg: MessageEvent, peer: string, spoofed: boolean): void {
  // Ids are the clock in µs, kept increasing: time filters are id bounds, and ids never repeat if the account is made again.
  const now = Date.now();
  const seq = state.last = Math.max(state.last + 1, now * 1000);
  if (msg.dir === 'in') {
    const tag = `<stanza-id xmlns="${NS_SID}" by="${escapeAttr(account.bare)}" id="${archiveId(seq)}"/>`;
    const end = msg.xml.lastIndexOf('</message>');
    if (spoofed || end < 0) {
      const s = withoutOurIds(msg.stanza(), account.bare);
      s.children.push(el('stanza-id', { xmlns: NS_SID, by: account.bare, id: archiveId(seq) }));
      msg.replace(s);
    } else {
      msg.rewrite(`${msg.xml.slice(0, end)}${tag}${msg.xml.slice(end)}`);
    }
  }
  const engine = archiveOf(account.server);
  const entry: ArchivedMessage = { id: seq, stamp: now, with: peer, dir: msg.dir, xml: msg.xml };
  // Retried (session.storeRetries): the message was delivered, only the archive would lose it. The same id again
  // is a no-op in every engine, so a retry after a write that landed unseen keeps one copy.
  let write: Promise<unknown> = retriedWrite(account, { what: 'archiving a message', write: () => engine.append(account.bare, entry) });
  state.count++;
  const { maxMessages, maxAgeDays } = account.server.config.mam;
  // Trimmed in steps: at most one trim per TRIM_STEP messages, each dropping only what is over. An engine that
  // expires by age itself (PostgreSQL's partitions) is left to do so.
  let trim: ArchiveTrim | undefined;
  if (maxAgeDays > 0 && !engine.expiresByAge && ++state.sinceTrim >= TRIM_STEP) {
    state.sinceTrim = 0;
    trim = { below: (now - maxAgeDays * 86_400_000) * 1000 };
  }
  let counted = 0;
  if (maxMessages > 0 && state.count >= maxMessages + TRIM_STEP) {
    // Counted off now, so the appends behind this trim do not ask for the same messages again.
    counted = (trim ??= {}).oldest = state.count - maxMessages;
    state.count = maxMessages;
  }
  if (trim) {
    const t = trim;
    write = write.then(() => engine.trim(account.bare, t)).then((n) => { state.count -= n - counted; });
  }
  state.writes = write.then(() => undefined, (e: unknown) => log.error('archiving failed', { account: account.bare, error: e }));
  // A shard handoff or a passivation waits for it: the next owner reads the archive's last id.
  account.background(state.writes, 'archiving a message');
}

/** A stanza id this account's archive gave the message (XEP-0359 `by` the account). */
function carriesOurId(xml: string, bare: string): boolean {
  if (!xml.includes(NS_SID)) return false;
  const s = parseFragment(xml);
  return s.children.some((c) => typeof c !== 'string' && c.name === 'stanza-id' && c.attrs.xmlns === NS_SID && c.attrs.by === bare);
}

function withoutOurIds(s: Element, bare: string): Element {
  return { ...s, children: s.children.filter((c) => typeof c === 'string' || !(c.name === 'stanza-id' && c.attrs.xmlns === NS_SID && c.attrs.by === bare)) };
}

// ---------------------------------------------------------------- queries

export interface ArchiveQuery {
  queryId: string;
  with?: string;
  start?: number;
  end?: number;
  afterId?: string;
  beforeId?: string;
  ids?: string[];
  max: number;
  /** RSM: page forwards after this id. */
  after?: string;
  /** RSM: page backwards before this id; '' asks for the last page. */
  before?: string;
}

function stamp(name: string, v: string): number {
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new StanzaError('bad-request', `${name} is not an XEP-0082 date-time`);
  return t;
}

export function parseQuery(q: Element, config: Config['mam']): ArchiveQuery {
  const out: ArchiveQuery = { queryId: q.attrs.queryid ?? '', max: config.defaultPage };
  const x = child(q, 'x', NS_DATA);
  for (const f of x ? children(x, 'field') : []) {
    const name = f.attrs.var ?? '';
    const values = children(f, 'value').map((v) => text(v));
    const v = values[0] ?? '';
    switch (name) {
      case 'FORM_TYPE':
        if (v !== NS_MAM) throw new StanzaError('bad-request', `expected a ${NS_MAM} form`);
        break;
      case 'with': {
        const j = tryParseJid(v);
        if (!j) throw new StanzaError('jid-malformed', `'${v}' is not a JID`);
        out.with = j.full;
        break;
      }
      case 'start': out.start = stamp(name, v); break;
      case 'end': out.end = stamp(name, v); break;
      case 'after-id': out.afterId = v; break;
      case 'before-id': out.beforeId = v; break;
      case 'ids': out.ids = values; break;
      default: throw new StanzaError('bad-request', `the archive does not filter by '${name}'`);
    }
  }
  const rsm = parseRsm(q, config.maxPage);
  if (rsm.max !== undefined) out.max = rsm.max;
  if (rsm.after !== undefined) out.after = rsm.after;
  if (rsm.before !== undefined) out.before = rsm.before;
  out.max = Math.min(out.max, config.maxPage);
  return out;
}

export interface ArchivePage {
  messages: ArchivedMessage[];
  /** Position of the first message among all the filters match (absent when a peer filter made counting a scan). */
  firstIndex?: number;
  count?: number;
  complete: boolean;
}

const matchesWith = (w: string) => (m: ArchivedMessage): boolean => {
  if (resourcePart(w) === '') return m.with === w;
  // A full JID narrows to that resource: the peer's address in the stanza.
  const peer = parseFragment(m.xml).attrs[m.dir === 'in' ? 'from' : 'to'] ?? '';
  return m.with === bareJid(w) && peer === w;
};

/** The archive id must name a kept message (RSM paging from it, XEP-0313 after-id/before-id). */
async function existing(account: AccountContext, id: string): Promise<number> {
  const n = parseArchiveId(id);
  const [hit] = await archiveOf(account.server).range(account.bare, { after: n - 1, before: n + 1, limit: 1 });
  if (!hit) throw new StanzaError('item-not-found', `no archived message with id ${id}`);
  return n;
}

const lower = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.max(a, b));
const upper = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.min(a, b));

/** One page of the archive for a query: a range read and counts (a peer's full JID: a scan of that peer's messages). */
export async function runQuery(account: AccountContext, q: ArchiveQuery): Promise<ArchivePage> {
  const engine = archiveOf(account.server);
  if (q.ids) {
    const found: ArchivedMessage[] = [];
    for (const id of q.ids) found.push(...(await engine.range(account.bare, { after: (await existing(account, id)) - 1, limit: 1 })));
    return { messages: found.sort((a, b) => a.id - b.id), complete: true };
  }
  // The result set: time and id filters, as exclusive id bounds (ids are µs stamps), and the peer.
  let after = q.start !== undefined ? q.start * 1000 - 1 : undefined;
  let before = q.end !== undefined ? q.end * 1000 + 1000 : undefined;
  if (q.afterId) after = lower(after, await existing(account, q.afterId));
  if (q.beforeId) before = upper(before, await existing(account, q.beforeId));
  const peer = q.with === undefined ? undefined : bareJid(q.with);
  const set = { after, before, with: peer };
  // The page within it (RSM).
  const backwards = q.before !== undefined;
  if (q.after) after = lower(after, await existing(account, q.after));
  if (q.before) before = upper(before, await existing(account, q.before));
  if (q.with === undefined || resourcePart(q.with) === '') {
    const got = await engine.range(account.bare, { after, before, with: peer, limit: q.max + 1, reverse: backwards });
    const complete = got.length <= q.max;
    const messages = got.slice(0, q.max);
    if (backwards) messages.reverse();
    const count = await engine.count(account.bare, set);
    // Counting is left out where the engine would scan for it (a peer filter in the store).
    const firstIndex = count !== undefined && messages.length ? await engine.count(account.bare, { ...set, before: messages[0].id }) : undefined;
    return { messages, count, firstIndex, complete };
  }
  // A peer's full JID: that peer's messages in chunks from the page's start, until one more than a page matched.
  const match = matchesWith(q.with);
  const messages: ArchivedMessage[] = [];
  let more = false;
  let cursor = backwards ? before : after;
  for (;;) {
    const chunk = await engine.range(account.bare, backwards
      ? { after, before: cursor, with: peer, limit: SCAN_CHUNK, reverse: true }
      : { after: cursor, before, with: peer, limit: SCAN_CHUNK });
    for (const m of chunk) {
      if (!match(m)) continue;
      if (messages.length === q.max) { more = true; break; }
      messages.push(m);
    }
    if (more || chunk.length < SCAN_CHUNK) break;
    cursor = chunk[chunk.length - 1].id;
  }
  if (backwards) messages.reverse();
  return { messages, complete: !more };
}

function resultMessage(account: AccountContext, to: string, queryId: string, m: ArchivedMessage): string {
  // The kept stanza stands alone inside <forwarded/>: it names its namespace (whatever stream it came in on).
  const kept = parseFragment(m.xml);
  const inner = serialize({ ...kept, attrs: { ...kept.attrs, xmlns: 'jabber:client' } });
  const qid = queryId ? ` queryid="${escapeAttr(queryId)}"` : '';
  return `<message from="${escapeAttr(account.bare)}" to="${escapeAttr(to)}"><result xmlns="${NS_MAM}"${qid} id="${archiveId(m.id)}">`
    + `<forwarded xmlns="${NS_FORWARD}"><delay xmlns="${NS_DELAY}" stamp="${new Date(m.stamp).toISOString()}"/>${inner}</forwarded></result></message>`;
}

function fin(p: ArchivePage): Element {
  const first = p.messages[0];
  const last = p.messages[p.messages.length - 1];
  return el('fin', { xmlns: NS_MAM, complete: p.complete ? 'true' : undefined },
    el('set', { xmlns: NS_RSM },
      first ? el('first', { index: p.firstIndex !== undefined ? String(p.firstIndex) : undefined }, archiveId(first.id)) : undefined,
      last ? el('last', {}, archiveId(last.id)) : undefined,
      p.count !== undefined ? el('count', {}, String(p.count)) : undefined));
}

async function query(req: IqRequest): Promise<Element> {
  requireOwner(req);
  await req.account.state(archive).writes;
  const q = parseQuery(req.payload, req.account.server.config.mam);
  const page = await runQuery(req.account, q);
  const resource = resourcePart(req.from);
  req.account.state(archive).queriedBy.add(resource);
  // Results first, then the iq result: both go through the actor in this order.
  for (const m of page.messages) {
    req.account.deliver(resource, { kind: 'message', from: req.account.bare, to: req.from, type: '', xml: resultMessage(req.account, req.from, q.queryId, m), t: 0 });
  }
  return fin(page);
}

function searchForm(): Element {
  const field = (v: string, type: string, value?: string) => el('field', { var: v, type }, value !== undefined ? el('value', {}, value) : undefined);
  return el('query', { xmlns: NS_MAM }, el('x', { xmlns: NS_DATA, type: 'form' },
    field('FORM_TYPE', 'hidden', NS_MAM), field('with', 'jid-single'), field('start', 'text-single'), field('end', 'text-single'),
    field('after-id', 'text-single'), field('before-id', 'text-single'), field('ids', 'text-multi')));
}

// ---------------------------------------------------------------- preferences

function prefsElement(p: ArchivePrefs): Element {
  const list = (name: string, s: Set<string>) => el(name, {}, ...[...s].sort().map((j) => el('jid', {}, j)));
  return el('prefs', { xmlns: NS_MAM, default: p.default }, list('always', p.always), list('never', p.never));
}

function jids(e: Element | undefined): Set<string> {
  const out = new Set<string>();
  for (const j of e ? children(e, 'jid') : []) {
    const parsed = tryParseJid(text(j));
    if (!parsed) throw new StanzaError('jid-malformed', `'${text(j)}' is not a JID`);
    out.add(parsed.bare);
  }
  return out;
}

async function setPrefs(req: IqRequest): Promise<Element> {
  requireOwner(req);
  const d = req.payload.attrs.default;
  if (d !== 'always' && d !== 'never' && d !== 'roster') throw new StanzaError('bad-request', "default is 'always', 'never' or 'roster'");
  const next: ArchivePrefs = { default: d, always: jids(child(req.payload, 'always')), never: jids(child(req.payload, 'never')) };
  const b = req.account.server.store.batch(req.account.bare);
  b.hset(PREFS, 'default', pack(next.default)).hset(PREFS, 'always', pack([...next.always])).hset(PREFS, 'never', pack([...next.never]));
  await b.exec();
  req.account.state(archive).prefs = next;
  return prefsElement(next);
}

export default defineModule({
  name: 'mam',
  enabled: (config) => config.mam.enabled,
  disco: { account: [NS_MAM, `${NS_MAM}#extended`, NS_SID] },
  state: [archive],
  stored: [ARCHIVE],
  // PostgreSQL's partitions: made ahead, dropped past retention (nothing to do for an archive in the store).
  periodic: {
    everyMs: (config) => (config.archive.postgres?.upkeepSeconds ?? 3600) * 1000,
    run: async (ctx) => void (await ctx.archive?.maintain?.(Date.now())),
  },
  iq: {
    'get/account/urn:xmpp:mam:2:query': (req) => { requireOwner(req); return searchForm(); },
    'set/account/urn:xmpp:mam:2:query': query,
    'get/account/urn:xmpp:mam:2:prefs': (req) => { requireOwner(req); return prefsElement(req.account.state(archive).prefs); },
    'set/account/urn:xmpp:mam:2:prefs': setPrefs,
  },
});
