// XEP-0227 portable import/export (`urn:xmpp:pie:0`): the document as it is
// read and written, apart from any store. Accounts with their credentials,
// roster (jabber:iq:roster), vCard (vcard-temp), offline messages
// (<offline-messages/> of stanzas) and message archive (<archive
// xmlns='urn:xmpp:pie:0#mam'/> of XEP-0313 results), in the shapes the two
// exporters in the field write:
//  - ejabberd's `export_piefxis DIR`: a <server-data/> file that XIncludes one
//    <host/> file per domain; SCRAM credentials whose salt and keys are
//    base64-encoded twice; clear passwords as a `password` attribute.
//  - Prosody's `prosody-migrator` to its `xep0227` store: one <server-data/>
//    file per account; SCRAM-SHA-1 credentials (sometimes written twice).
// Reading checks everything before anything is returned, so a caller can
// refuse a whole file on one bad part.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SCRAM_HASH, type ScramCredential, type ScramMechanism } from '../../libs/auth/credentials.ts';
import { StreamError } from '../../libs/errors/index.ts';
import { parseJid } from '../../libs/jid/index.ts';
import { child, children, el, text, type Element, type Node } from '../../libs/xml/element.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { escapeAttr, serialize } from '../../libs/xml/serialize.ts';

export const NS_PIE = 'urn:xmpp:pie:0';
export const NS_PIE_SCRAM = 'urn:xmpp:pie:0#scram';
export const NS_PIE_MAM = 'urn:xmpp:pie:0#mam';
export const NS_ROSTER = 'jabber:iq:roster';
export const NS_VCARD = 'vcard-temp';
const NS_CLIENT = 'jabber:client';
const NS_MAM = 'urn:xmpp:mam:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_DELAY = 'urn:xmpp:delay';
const NS_XINCLUDE = 'http://www.w3.org/2001/XInclude';
const NS_XML = 'http://www.w3.org/XML/1998/namespace';

/** Parts of an account other exporters write that Parley does not take over; named in the import's report. */
const NOT_CARRIED: Array<[RegExp, string]> = [
  [/^jabber:iq:privacy$/, 'privacy lists'],
  [/^jabber:iq:private$/, 'private XML storage'],
  [/^http:\/\/jabber\.org\/protocol\/pubsub(#owner)?$/, 'PEP nodes'],
  [/^urn:xmpp:pie:0#pep$/, 'PEP nodes'],
];

export interface PieRosterItem {
  jid: string;
  name: string;
  subscription: 'none' | 'to' | 'from' | 'both';
  ask: boolean;
  approved: boolean;
  groups: string[];
}

export interface PieArchived {
  /** The id the exporter gave the message (its XEP-0313 archive id). */
  id: string;
  /** When it was archived, ms since the epoch. */
  stamp: number;
  message: Element;
}

export interface PieAccount {
  /** Bare JID. */
  jid: string;
  /** A clear password (ejabberd's `auth_password_format: plain`, Prosody's internal_plain). */
  password?: string;
  scram: Partial<Record<ScramMechanism, ScramCredential>>;
  /** Credentials for mechanisms Parley has no use for (e.g. SCRAM-SHA-512). */
  otherMechanisms: string[];
  roster: PieRosterItem[];
  rosterVersion?: string;
  vcard?: Element;
  offline: Element[];
  archive: PieArchived[];
  /** What the file holds for this account that is not carried over (e.g. 'privacy lists'). */
  notCarried: string[];
}

export interface PieDocument {
  /** Domains named by <host/>, in file order (a host may have no users). */
  hosts: string[];
  accounts: PieAccount[];
}

/** A file that is not an XEP-0227 document Parley can take; the message names the file and what is wrong. */
export class PieError extends Error {}

// ---------------------------------------------------------------- reading

/** Parse and check one export file (and the files it XIncludes). */
export function readPieFile(file: string): PieDocument {
  const doc: PieDocument = { hosts: [], accounts: [] };
  const root = loadXml(file);
  if (root.attrs.xmlns !== NS_PIE || (root.name !== 'server-data' && root.name !== 'host')) {
    throw new PieError(`${file}: the document is <${root.name} xmlns='${root.attrs.xmlns ?? ''}'>, not XEP-0227 <server-data xmlns='${NS_PIE}'>`);
  }
  readContainer(root, file, doc, 0);
  const seen = new Set<string>();
  for (const a of doc.accounts) {
    if (seen.has(a.jid)) throw new PieError(`${file}: ${a.jid} appears twice`);
    seen.add(a.jid);
  }
  return doc;
}

/** <server-data/> holds hosts; a <host/> holds users. XIncluded files (ejabberd) are read in place. */
function readContainer(e: Element, file: string, doc: PieDocument, depth: number): void {
  if (e.name === 'host') return readHost(e, file, doc);
  for (const c of elements(e)) {
    if (c.name === 'include' && c.attrs.xmlns === NS_XINCLUDE) {
      const href = c.attrs.href;
      if (!href || depth > 2) throw new PieError(`${file}: an <xi:include/> without href, or nested too deep`);
      const included = resolve(dirname(file), href);
      const root = loadXml(included);
      if (root.attrs.xmlns !== NS_PIE || root.name !== 'host') throw new PieError(`${included}: expected <host xmlns='${NS_PIE}'>, found <${root.name}>`);
      readContainer(root, included, doc, depth + 1);
    } else if (c.name === 'host' && c.attrs.xmlns === NS_PIE) {
      readHost(c, file, doc);
    } else {
      throw unknown(file, c, 'server-data');
    }
  }
}

function readHost(h: Element, file: string, doc: PieDocument): void {
  let domain: string;
  try {
    const j = parseJid(h.attrs.jid ?? '');
    if (j.local || j.resource) throw new Error();
    domain = j.domain;
  } catch {
    throw new PieError(`${file}: <host jid='${h.attrs.jid ?? ''}'> does not name a domain`);
  }
  if (!doc.hosts.includes(domain)) doc.hosts.push(domain);
  for (const u of elements(h)) {
    if (u.name !== 'user' || u.attrs.xmlns !== NS_PIE) throw unknown(file, u, `host ${domain}`);
    doc.accounts.push(readUser(u, domain, file));
  }
}

function readUser(u: Element, domain: string, file: string): PieAccount {
  let jid: string;
  try {
    const j = parseJid(`${u.attrs.name ?? ''}@${domain}`);
    if (!j.local) throw new Error();
    jid = j.bare;
  } catch {
    throw new PieError(`${file}: <user name='${u.attrs.name ?? ''}'> of ${domain} is not a valid account name`);
  }
  const where = `${file}: ${jid}`;
  const a: PieAccount = { jid, scram: {}, otherMechanisms: [], roster: [], offline: [], archive: [], notCarried: [] };
  if (u.attrs.password) a.password = u.attrs.password;
  for (const c of elements(u)) {
    const ns = c.attrs.xmlns;
    if (c.name === 'scram-credentials' && ns === NS_PIE_SCRAM) readScram(c, a, where);
    else if (c.name === 'query' && ns === NS_ROSTER) readRoster(c, a, where);
    else if (c.name === 'vCard' && ns === NS_VCARD) a.vcard = c;
    else if (c.name === 'offline-messages' && ns === NS_PIE) a.offline.push(...readOffline(c, where));
    else if (c.name === 'archive' && ns === NS_PIE_MAM) a.archive.push(...readArchive(c, where));
    else {
      const what = NOT_CARRIED.find(([re]) => re.test(ns ?? ''))?.[1];
      if (!what) throw unknown(file, c, jid);
      if (!a.notCarried.includes(what)) a.notCarried.push(what);
    }
  }
  if (!a.password && !a.scram['SCRAM-SHA-1'] && !a.scram['SCRAM-SHA-256']) {
    const other = a.otherMechanisms.length ? ` (only ${a.otherMechanisms.join(', ')}, which Parley does not keep)` : '';
    throw new PieError(`${where} has neither a password nor SCRAM-SHA-1/SCRAM-SHA-256 credentials${other}`);
  }
  return a;
}

/**
 * Salt and keys are base64 (XEP-0227 §5.2 uses the SCRAM attribute encoding). ejabberd 23 encodes them twice:
 * told apart by the keys, which must decode to the hash's length, and then the salt is unwrapped likewise.
 */
function readScram(c: Element, a: PieAccount, where: string): void {
  const mechanism = c.attrs.mechanism ?? '';
  if (mechanism !== 'SCRAM-SHA-1' && mechanism !== 'SCRAM-SHA-256') {
    if (!a.otherMechanisms.includes(mechanism)) a.otherMechanisms.push(mechanism || '(no mechanism)');
    return;
  }
  const field = (name: string): string => {
    const v = text(child(c, name)).trim();
    if (!v) throw new PieError(`${where}: <scram-credentials mechanism='${mechanism}'> lacks <${name}/>`);
    return v;
  };
  const iterations = Number(field('iter-count'));
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new PieError(`${where}: <iter-count/> of ${mechanism} is not a positive integer`);
  const length = SCRAM_HASH[mechanism].length;
  const b64 = (v: string) => (/^[A-Za-z0-9+/]+={0,2}$/.test(v) ? Buffer.from(v, 'base64') : undefined);
  const once = { storedKey: b64(field('stored-key')), serverKey: b64(field('server-key')), salt: b64(field('salt')) };
  let { storedKey, serverKey, salt } = once;
  if (storedKey?.length !== length || serverKey?.length !== length) {
    const twice = (b: Buffer | undefined) => (b ? b64(b.toString('latin1')) : undefined);
    [storedKey, serverKey, salt] = [twice(storedKey), twice(serverKey), twice(salt)];
    if (storedKey?.length !== length || serverKey?.length !== length || !salt) {
      throw new PieError(`${where}: the ${mechanism} stored-key and server-key are not base64 of ${length} bytes`);
    }
  }
  if (!salt || salt.length === 0) throw new PieError(`${where}: the ${mechanism} salt is not base64`);
  a.scram[mechanism] = { salt: salt.toString('base64'), iterations, storedKey: storedKey.toString('base64'), serverKey: serverKey.toString('base64') };
}

function readRoster(q: Element, a: PieAccount, where: string): void {
  if (q.attrs.ver ?? q.attrs.version) a.rosterVersion = q.attrs.ver ?? q.attrs.version;
  for (const i of elements(q)) {
    if (i.name !== 'item' || i.attrs.xmlns !== NS_ROSTER) throw new PieError(`${where}: the roster holds <${i.name}>, not <item/>`);
    let jid: string;
    try {
      const j = parseJid(i.attrs.jid ?? '');
      if (j.resource) throw new Error();
      jid = j.bare;
    } catch {
      throw new PieError(`${where}: roster item '${i.attrs.jid ?? ''}' is not a bare JID`);
    }
    if (jid === a.jid) continue; // a roster cannot hold its own account (RFC 6121 §2.3.3)
    const sub = i.attrs.subscription ?? 'none';
    if (sub !== 'none' && sub !== 'to' && sub !== 'from' && sub !== 'both') throw new PieError(`${where}: roster item ${jid} has subscription '${sub}'`);
    const groups = [...new Set(children(i, 'group').map((g) => text(g)).filter((g) => g !== ''))];
    a.roster.push({ jid, name: i.attrs.name ?? '', subscription: sub, ask: i.attrs.ask === 'subscribe', approved: i.attrs.approved === 'true', groups });
  }
}

function readOffline(o: Element, where: string): Element[] {
  return elements(o).map((m) => {
    if (m.name !== 'message' || (m.attrs.xmlns !== NS_CLIENT && m.attrs.xmlns !== NS_PIE)) {
      throw new PieError(`${where}: <offline-messages/> holds <${m.name} xmlns='${m.attrs.xmlns ?? ''}'>, not a message`);
    }
    return { ...m, attrs: { ...m.attrs, xmlns: NS_CLIENT } };
  });
}

function readArchive(arch: Element, where: string): PieArchived[] {
  return elements(arch).map((r) => {
    const fwd = r.name === 'result' && r.attrs.xmlns === NS_MAM ? child(r, 'forwarded', NS_FORWARD) : undefined;
    const message = fwd && child(fwd, 'message');
    if (!fwd || !message || (message.attrs.xmlns !== NS_CLIENT && message.attrs.xmlns !== NS_FORWARD)) {
      throw new PieError(`${where}: the archive holds <${r.name} xmlns='${r.attrs.xmlns ?? ''}'>, not <result xmlns='${NS_MAM}'> with a forwarded message`);
    }
    const stamp = Date.parse(child(fwd, 'delay', NS_DELAY)?.attrs.stamp ?? '');
    if (Number.isNaN(stamp)) throw new PieError(`${where}: archived message ${r.attrs.id ?? ''} has no <delay stamp/>`);
    return { id: r.attrs.id ?? '', stamp, message: { ...message, attrs: { ...message.attrs, xmlns: NS_CLIENT } } };
  });
}

function unknown(file: string, e: Element, where: string): PieError {
  return new PieError(`${file}: unknown element <${e.name} xmlns='${e.attrs.xmlns ?? ''}'> in ${where}`);
}

function elements(e: Element): Element[] {
  return e.children.filter((c): c is Element => typeof c !== 'string');
}

/** Read and parse a file: a byte-order mark, the XML declaration and whitespace around the root are allowed. */
function loadXml(file: string): Element {
  let src: string;
  try {
    src = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new PieError(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message}`);
  }
  const body = src.replace(/^\ufeff/, '').replace(/^\s*<\?xml[^?]*\?>/, '');
  try {
    return withNamespaces(parseFragment(body), '', new Map());
  } catch (e) {
    const why = e instanceof StreamError ? (e.condition === 'restricted-xml' ? `${e.text ?? ''} (comments, DTDs and processing instructions are not read)` : e.text) : (e as Error).message;
    throw new PieError(`${file} is not well-formed XML: ${why}`);
  }
}

/**
 * The tree with every element under its local name and its namespace in `xmlns` (written where it changes), so
 * prefixed elements (`<xi:include/>`) and default namespaces read alike. Prefixed attributes other than xml:
 * and the declarations themselves are dropped.
 */
function withNamespaces(e: Element, inherited: string, prefixes: Map<string, string>): Element {
  let scope = prefixes;
  for (const [k, v] of Object.entries(e.attrs)) {
    if (k.startsWith('xmlns:')) {
      if (scope === prefixes) scope = new Map(prefixes);
      scope.set(k.slice(6), v);
    }
  }
  const colon = e.name.indexOf(':');
  const local = colon < 0 ? e.name : e.name.slice(colon + 1);
  let ns: string;
  if (colon < 0) ns = e.attrs.xmlns ?? inherited;
  else {
    const p = e.name.slice(0, colon);
    const bound = scope.get(p);
    if (bound === undefined) throw new Error(`undeclared namespace prefix '${p}' on <${e.name}>`);
    ns = bound;
  }
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(e.attrs)) {
    if (k === 'xmlns' || k.startsWith('xmlns:')) continue;
    if (k.includes(':') && !k.startsWith('xml:') && scope.get(k.slice(0, k.indexOf(':'))) !== NS_XML) continue;
    attrs[k] = v;
  }
  attrs.xmlns = ns;
  const kids: Node[] = e.children.map((c) => (typeof c === 'string' ? c : withNamespaces(c, ns, scope)));
  return { name: local, attrs, children: kids };
}

/** Drop the `xmlns` a child repeats from its parent, for compact serialization. */
export function compact(e: Element, parentNs = ''): Element {
  const { xmlns, ...rest } = e.attrs;
  const attrs = xmlns === undefined || xmlns === parentNs ? rest : { xmlns, ...rest };
  return { name: e.name, attrs, children: e.children.map((c) => (typeof c === 'string' ? c : compact(c, xmlns ?? parentNs))) };
}

// ---------------------------------------------------------------- writing

/** The file's head, then one `userXml` per account inside a `<host/>` per domain (hostOpen / hostClose), then the tail. */
export const PIE_HEAD = `<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='${NS_PIE}'>\n`;
export const PIE_TAIL = '</server-data>\n';
export const hostOpen = (domain: string): string => `<host jid="${escapeAttr(domain)}">\n`;
export const hostClose = '</host>\n';

/** One <user/> element as one line: credentials, roster, vCard, offline messages and archive. */
export function userXml(a: PieAccount): string {
  const parts: Element[] = [];
  for (const [mechanism, c] of Object.entries(a.scram) as Array<[ScramMechanism, ScramCredential]>) {
    parts.push(el('scram-credentials', { xmlns: NS_PIE_SCRAM, mechanism },
      el('iter-count', {}, String(c.iterations)), el('salt', {}, c.salt), el('server-key', {}, c.serverKey), el('stored-key', {}, c.storedKey)));
  }
  if (a.roster.length || a.rosterVersion) {
    parts.push(el('query', { xmlns: NS_ROSTER, ver: a.rosterVersion }, ...a.roster.map((i) =>
      el('item', { jid: i.jid, name: i.name || undefined, subscription: i.subscription, ask: i.ask ? 'subscribe' : undefined, approved: i.approved ? 'true' : undefined },
        ...i.groups.map((g) => el('group', {}, g))))));
  }
  if (a.vcard) parts.push(a.vcard);
  if (a.offline.length) parts.push(el('offline-messages', {}, ...a.offline));
  if (a.archive.length) {
    parts.push(el('archive', { xmlns: NS_PIE_MAM }, ...a.archive.map((m) =>
      el('result', { xmlns: NS_MAM, id: m.id }, el('forwarded', { xmlns: NS_FORWARD }, el('delay', { xmlns: NS_DELAY, stamp: new Date(m.stamp).toISOString() }), m.message)))));
  }
  const local = a.jid.slice(0, a.jid.lastIndexOf('@'));
  return `${serialize(el('user', { name: local, password: a.password }, ...parts))}\n`;
}
