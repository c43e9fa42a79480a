// Accounts in and out of the store as XEP-0227 documents (pie.ts): what
// `parley export` reads and `parley import` writes. Both work on the store
// directly, in either mode, beside a running server:
//  - export reads what the actors wrote (each account's scope is read as it
//    is at that moment).
//  - import only creates accounts that do not exist yet, so no running actor
//    holds state of its own for them (an actor that met the address before
//    reloads its roster once the account appears: user-actor's bind); an
//    account that exists already refuses the whole import.
// Every file is read and checked, every limit included, before anything is
// written: a refused import has written nothing.
import { pack, unpack } from 'msgpackr';
import { deriveCredentials, type ScramCredential, type StoredCredentials } from '../../libs/auth/credentials.ts';
import type { Config } from '../../libs/config/schema.ts';
import { bareJid } from '../../libs/jid/split.ts';
import type { Store } from '../../libs/store/store.ts';
import { el, type Element } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { decodeItem, encodeItem, type RosterItem } from '../session/im/roster.ts';
import { storeArchive, type ArchivedMessage, type MessageArchive } from '../../libs/archive/index.ts';
import { ARCHIVE, archiveId, encodeArchived } from '../session/modules/mam.ts';
import { FIELD as VCARD_FIELD, VCARD } from '../session/modules/vcard.ts';
import { compact, hostClose, hostOpen, PIE_HEAD, PIE_TAIL, userXml, type PieAccount, type PieDocument } from './pie.ts';

const NS_CLIENT = 'jabber:client';
const NS_SID = 'urn:xmpp:sid:0';
const EMPTY = new Uint8Array(0);
/** Archive entries read, or written, per round trip. */
const ARCHIVE_CHUNK = 500;

/** An import refused for what the files hold or what the store has; nothing was written. */
export class ImportRefused extends Error {}

// ---------------------------------------------------------------- export

/** One account as an XEP-0227 <user/>. */
async function readAccount(store: Store, archived: MessageArchive, bare: string): Promise<PieAccount> {
  const data = await store.load(bare, ['account', 'roster', VCARD]);
  const account = data.get('account');
  const credsRaw = account?.get('creds');
  const creds = credsRaw ? (unpack(credsRaw) as Partial<StoredCredentials>) : {};
  const ver = account?.get('rosterver');
  const roster: PieAccount['roster'] = [];
  for (const [jid, raw] of [...(data.get('roster') ?? [])].sort(([x], [y]) => x.localeCompare(y))) {
    const i = decodeItem(raw);
    if (i.inRoster) roster.push({ jid, name: i.name, subscription: i.subscription, ask: i.ask, approved: i.approved, groups: i.groups });
  }
  const vcardRaw = data.get(VCARD)?.get(VCARD_FIELD);
  const offline = (await store.lrange(bare, 'offline', 0, -1)).map((raw) => asClientStanza(parseFragment(raw)));
  const archive: PieAccount['archive'] = [];
  for (let after: number | undefined; ;) {
    const page = await archived.range(bare, { after, limit: ARCHIVE_CHUNK });
    for (const m of page) {
      archive.push({ id: archiveId(m.id), stamp: m.stamp, message: asClientStanza(parseFragment(m.xml)) });
    }
    if (page.length < ARCHIVE_CHUNK) break;
    after = page[page.length - 1].id;
  }
  const scram: PieAccount['scram'] = {};
  if (creds['SCRAM-SHA-1']) scram['SCRAM-SHA-1'] = creds['SCRAM-SHA-1'];
  if (creds['SCRAM-SHA-256']) scram['SCRAM-SHA-256'] = creds['SCRAM-SHA-256'];
  return {
    jid: bare, scram, otherMechanisms: [], roster, rosterVersion: ver ? String(unpack(ver)) : undefined,
    vcard: vcardRaw ? parseFragment(vcardRaw) : undefined, offline, archive, notCarried: [],
  };
}

/** A stanza as the store keeps it (namespace inherited from the stream), with jabber:client written out. */
function asClientStanza(s: Element): Element {
  return s.attrs.xmlns ? s : { ...s, attrs: { xmlns: NS_CLIENT, ...s.attrs } };
}

/**
 * Write the accounts of `domains` as one XEP-0227 document; resolves to how many accounts were written. Archives
 * are read from `archived` (PostgreSQL with archive.postgres), by default the store's.
 */
export async function exportDomains(store: Store, domains: readonly string[], listAccounts: (domain: string) => Promise<string[]>,
  write: (chunk: string) => Promise<void>, archived: MessageArchive = storeArchive(store)): Promise<number> {
  let n = 0;
  await write(PIE_HEAD);
  for (const domain of domains) {
    await write(hostOpen(domain));
    for (const bare of await listAccounts(domain)) {
      await write(userXml(await readAccount(store, archived, bare)));
      n++;
    }
    await write(hostClose);
  }
  await write(PIE_TAIL);
  return n;
}

// ---------------------------------------------------------------- import

export interface ImportPlan {
  accounts: PieAccount[];
  /** Lines for the operator: what each account brings, and what it does not. */
  notes: string[];
}

/**
 * Check the documents against this deployment: every account's domain served, none existing already, none twice,
 * within the configured limits. Throws ImportRefused naming the first problem.
 */
export async function planImport(docs: ReadonlyArray<{ file: string; doc: PieDocument }>, store: Store, config: Config,
  notServed: (domain: string) => Promise<string | undefined>): Promise<ImportPlan> {
  const accounts: PieAccount[] = [];
  const notes: string[] = [];
  const seen = new Map<string, string>();
  const domains = new Set<string>();
  for (const { file, doc } of docs) {
    for (const a of doc.accounts) {
      const where = `${file}: ${a.jid}`;
      const twice = seen.get(a.jid);
      if (twice) throw new ImportRefused(`${a.jid} is in both ${twice} and ${file}`);
      seen.set(a.jid, file);
      domains.add(a.jid.slice(a.jid.lastIndexOf('@') + 1));
      checkLimits(a, where, config);
      accounts.push(a);
    }
  }
  for (const d of domains) {
    const why = await notServed(d);
    if (why) throw new ImportRefused(`${why}; add it with 'parley domain add ${d}' or to domains in the configuration`);
  }
  const existing = (await Promise.all(accounts.map(async (a) => ((await store.hget(a.jid, 'account', 'creds')) ? a.jid : undefined)))).filter(Boolean);
  if (existing.length) throw new ImportRefused(`${existing.slice(0, 5).join(', ')}${existing.length > 5 ? ` and ${existing.length - 5} more` : ''} exist${existing.length === 1 ? 's' : ''} already (import only creates accounts)`);
  for (const a of accounts) notes.push(describe(a));
  const sha1Only = accounts.filter((a) => !a.password && !a.scram['SCRAM-SHA-256']).length;
  if (sha1Only && config.c2s.saslMechanisms.includes('SCRAM-SHA-256')) {
    notes.push(`# ${sha1Only} of these accounts have SCRAM-SHA-1 credentials only: a client that chooses SCRAM-SHA-256 cannot log in to them `
      + 'until their password is set again; leaving SCRAM-SHA-256 out of c2s.saslMechanisms meanwhile lets every client in');
  }
  return { accounts, notes };
}

function checkLimits(a: PieAccount, where: string, config: Config): void {
  const over = (what: string, n: number, key: string, max: number) =>
    new ImportRefused(`${where} has ${what} ${n}, over ${key} (${max}); raise it in the configuration to import this account`);
  if (a.roster.length > config.roster.maxItems) throw over('roster items:', a.roster.length, 'roster.maxItems', config.roster.maxItems);
  if (a.vcard) {
    const bytes = Buffer.byteLength(serialize(compact(a.vcard)));
    if (bytes > config.vcard.maxBytes) throw over('a vCard of bytes:', bytes, 'vcard.maxBytes', config.vcard.maxBytes);
  }
  if (a.offline.length > config.offline.quota) throw over('offline messages:', a.offline.length, 'offline.quota', config.offline.quota);
  const maxArchive = config.mam.maxMessages;
  if (maxArchive > 0 && a.archive.length > maxArchive) throw over('archived messages:', a.archive.length, 'mam.maxMessages', maxArchive);
}

function describe(a: PieAccount): string {
  const parts = [
    a.password ? 'password' : `${Object.keys(a.scram).join('+')} credentials`,
    `${a.roster.length} contacts`, a.vcard ? 'a vCard' : 'no vCard', `${a.offline.length} offline messages`, `${a.archive.length} archived messages`,
  ];
  const lost: string[] = [...a.notCarried];
  if (!a.password && !a.scram['SCRAM-SHA-256']) lost.push('SCRAM-SHA-256 login until the password is set again (SCRAM-SHA-1 and PLAIN work)');
  if (a.otherMechanisms.length) lost.push(`${a.otherMechanisms.join(', ')} credentials`);
  return `${a.jid}: ${parts.join(', ')}${lost.length ? `; not carried over: ${lost.join('; ')}` : ''}`;
}

/** Write a checked plan (archives into `archived`, by default the store's); resolves to how many accounts were created. */
export async function runImport(plan: ImportPlan, store: Store, config: Config, archived: MessageArchive = storeArchive(store)): Promise<number> {
  // Credentials from clear passwords first: the slow part, and one that can refuse (SASLprep) before any write.
  const creds = new Map<string, Partial<StoredCredentials>>();
  for (const a of plan.accounts) {
    if (a.password) {
      try {
        creds.set(a.jid, await deriveCredentials(a.password, config.auth.scramIterations));
      } catch (e) {
        throw new ImportRefused(`${a.jid}: its password cannot be used (${(e as Error).message}); nothing imported`);
      }
    } else {
      creds.set(a.jid, a.scram as Partial<Record<keyof StoredCredentials, ScramCredential>>);
    }
  }
  let n = 0;
  for (const a of plan.accounts) {
    await writeAccount(store, archived, a, creds.get(a.jid)!);
    n++;
  }
  return n;
}

async function writeAccount(store: Store, archived: MessageArchive, a: PieAccount, creds: Partial<StoredCredentials>): Promise<void> {
  const bare = a.jid;
  const at = bare.lastIndexOf('@');
  // The archive first, in chunks (it can be large): the account does not exist until its credentials land.
  const entries = archiveEntries(a);
  for (let i = 0; i < entries.length; i += ARCHIVE_CHUNK) {
    const chunk = entries.slice(i, i + ARCHIVE_CHUNK);
    if (archived.kind === 'store') {
      const b = store.batch(bare);
      for (const m of chunk) b.logAppend(ARCHIVE, m.id, encodeArchived(m));
      await b.exec();
    } else {
      await Promise.all(chunk.map((m) => archived.append(bare, m)));
    }
  }
  const b = store.batch(bare);
  for (const i of a.roster) {
    const item: RosterItem = { subscription: i.subscription, ask: i.ask, pendingIn: false, approved: i.approved, name: i.name, groups: i.groups, inRoster: true, pendingXml: '' };
    b.hset('roster', i.jid, encodeItem(item));
  }
  if (a.roster.length) {
    const ver = Number(a.rosterVersion);
    b.hset('account', 'rosterver', pack(Number.isSafeInteger(ver) && ver > 0 ? ver : 1));
  }
  if (a.vcard) b.hset(VCARD, VCARD_FIELD, Buffer.from(serialize(compact(a.vcard))));
  for (const m of a.offline) b.rpush('offline', Buffer.from(serialize(stored(m))));
  b.hset('account', 'created', pack(Date.now()));
  // Parley keeps SHA-1 and SHA-256; an export that carries one of them is imported with that one only.
  b.hset('account', 'creds', pack(creds));
  await b.exec();
  await store.hset(`$domain:${bare.slice(at + 1)}`, 'users', bare.slice(0, at), EMPTY);
}

/** A stanza as the store keeps it: its namespace inherited from the stream. */
function stored(m: Element): Element {
  const s = compact(m, NS_CLIENT);
  const { xmlns: _, ...attrs } = s.attrs;
  return { ...s, attrs };
}

/**
 * Archive entries with ids in Parley's scheme (the archived time in µs, increasing). An id Parley gave
 * (round trip) that matches its stamp is kept, so references to it stay true; any other is replaced, and a
 * message received gets this archive's stanza id in place of the old server's.
 */
function archiveEntries(a: PieAccount): ArchivedMessage[] {
  const withIds = a.archive.map((m) => {
    const parsed = /^[0-9a-z]{1,11}$/.test(m.id) ? Number.parseInt(m.id, 36) : NaN;
    const own = Number.isSafeInteger(parsed) && Math.abs(parsed / 1000 - m.stamp) < 1000;
    return { m, id: own ? parsed : m.stamp * 1000 };
  }).sort((x, y) => x.id - y.id);
  let last = 0;
  return withIds.map(({ m, id }) => {
    const seq = last = Math.max(last + 1, id);
    const from = bareJid(m.message.attrs.from ?? '');
    const dir = from === a.jid ? 'out' : 'in';
    const peer = dir === 'out' ? bareJid(m.message.attrs.to ?? '') : from;
    let message = stored(m.message);
    if (dir === 'in') {
      const kept = message.children.filter((c) => typeof c === 'string' || !(c.name === 'stanza-id' && c.attrs.xmlns === NS_SID && c.attrs.by === a.jid));
      message = { ...message, children: [...kept, el('stanza-id', { xmlns: NS_SID, by: a.jid, id: archiveId(seq) })] };
    }
    return { id: seq, stamp: m.stamp, with: peer, dir, xml: serialize(message) };
  });
}
