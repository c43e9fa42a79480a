// XMPP addresses (RFC 7622). Every JID that leaves this module is normalized,
// so the rest of the server compares addresses as plain strings.
//
// We do not build on @xmpp/jid's parser: its constructor silently applies
// XEP-0106 escaping to forbidden localpart characters ("a b@d" becomes
// "a\20b@d"), which would make invalid input valid and alias two distinct
// inputs to one address. The split rule below is the same one it uses.
import { domainToASCII, domainToUnicode } from 'node:url';
import { isIPv6 } from 'node:net';
import { StanzaError } from '../errors/index.ts';

export interface Jid {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;
  readonly bare: string;
  readonly full: string;
}

const MAX_PART_BYTES = 1023;

// Printable ASCII minus the RFC 7622 §3.3.1 forbidden characters: such a
// localpart is already normalized once lowercased, so skip the Unicode work.
const ASCII_LOCAL = /^[!#-%(-.0-9;=?A-~]+$/;
const LOCAL_FORBIDDEN = /["&'/:<>@\s\p{Z}\p{C}]/u; // \p{C}: controls, format/ignorables, surrogates, private use, unassigned
const RESOURCE_FORBIDDEN = /[\p{Cc}\p{Cs}\p{Cn}]/u; // OpaqueString: controls, lone surrogates, unassigned
const NON_ASCII_SPACE = /[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/gu;
const FULL_HALF_WIDTH = /[\uff01-\uffef]/gu;
const ASCII_PRINTABLE = /^[\x21-\x7e]*$/;
const LDH_DOMAIN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const NON_LDH_ASCII = /[\x00-\x2c\x2f\x3a-\x60\x7b-\x7f]/;
const IPV4_LIKE = /^\d+\.\d+\.\d+\.\d+$/;

// UTF-8 is at most 3 bytes per UTF-16 unit, so short strings skip the count.
const tooLong = (s: string): boolean => s.length * 3 > MAX_PART_BYTES && Buffer.byteLength(s) > MAX_PART_BYTES;

function malformed(text: string): never {
  throw new StanzaError('jid-malformed', text);
}

/**
 * Localpart per the UsernameCaseMapped profile (RFC 8265 §3.3), approximated:
 * width mapping, toLowerCase, NFC; characters with compatibility decompositions
 * are rejected as IdentifierClass does, so NFKC-based SASLprep agrees with us.
 */
export function normalizeLocal(s: string): string {
  if (s === '') malformed('empty localpart');
  let out: string;
  if (ASCII_LOCAL.test(s)) {
    out = s.toLowerCase();
  } else {
    out = s.replace(FULL_HALF_WIDTH, (c) => c.normalize('NFKC')).toLowerCase().normalize('NFC');
    if (LOCAL_FORBIDDEN.test(out)) malformed('forbidden character in localpart');
    if (out.normalize('NFKC') !== out) malformed('compatibility character in localpart');
  }
  if (tooLong(out)) malformed('localpart longer than 1023 bytes');
  return out;
}

/** Domainpart: IP literal or IDNA domain name, stored in Unicode (U-label) form. */
export function normalizeDomain(s: string): string {
  if (s.endsWith('.')) s = s.slice(0, -1); // RFC 7622 §3.2: strip before anything else
  if (s === '') malformed('empty domainpart');
  if (s[0] === '[') {
    if (s.at(-1) !== ']' || !isIPv6(s.slice(1, -1)) || s.includes('%')) malformed('bad IPv6 literal');
    return s.toLowerCase();
  }
  let d = s.toLowerCase();
  if (!ASCII_PRINTABLE.test(d) || d.includes('xn--')) {
    // WHATWG host parsing percent-decodes and reads odd IPv4 forms, so only
    // let LDH characters reach it from the ASCII range.
    d = d.normalize('NFC');
    if (NON_LDH_ASCII.test(d)) malformed('forbidden character in domainpart');
    const ascii = domainToASCII(d);
    if (ascii === '' || IPV4_LIKE.test(ascii) || !LDH_DOMAIN.test(ascii)) malformed('invalid IDN domainpart');
    d = domainToUnicode(ascii);
  } else if (!LDH_DOMAIN.test(d)) {
    malformed('invalid domainpart');
  }
  if (tooLong(d)) malformed('domainpart longer than 1023 bytes');
  return d;
}

/** Resourcepart per the OpaqueString profile (RFC 8265 §4.2): spaces to U+0020, NFC. */
export function normalizeResource(s: string): string {
  if (s === '') malformed('empty resourcepart');
  let out = s;
  if (!ASCII_PRINTABLE.test(s)) {
    out = s.replace(NON_ASCII_SPACE, ' ').normalize('NFC');
    if (RESOURCE_FORBIDDEN.test(out)) malformed('forbidden character in resourcepart');
  }
  if (tooLong(out)) malformed('resourcepart longer than 1023 bytes');
  return out;
}

function make(local: string, domain: string, resource: string): Jid {
  const bare = local ? `${local}@${domain}` : domain;
  return Object.freeze({ local, domain, resource, bare, full: resource ? `${bare}/${resource}` : bare });
}

// Bounded cache of successful parses, keyed by the raw string: two generations
// approximate LRU without Map iteration (evicting a Map's oldest key is slow
// once it has seen many deletes). Long keys are not cached, so memory stays
// small whatever clients send.
const GENERATION_SIZE = 1024;
const CACHE_MAX_KEY = 256;
let young = new Map<string, Jid>();
let old = new Map<string, Jid>();

function remember(s: string, j: Jid): void {
  if (young.size >= GENERATION_SIZE) {
    old = young;
    young = new Map();
  }
  young.set(s, j);
}

/** Parse and normalize a JID string; throws StanzaError('jid-malformed'). */
export function parseJid(s: string): Jid {
  const hit = young.get(s);
  if (hit) return hit;
  const older = old.get(s);
  if (older) {
    remember(s, older);
    return older;
  }
  // RFC 7622 §3.1: the resource starts at the first '/', the localpart ends at
  // the first '@' before it.
  const slash = s.indexOf('/');
  const head = slash < 0 ? s : s.slice(0, slash);
  const at = head.indexOf('@');
  const j = make(
    at < 0 ? '' : normalizeLocal(head.slice(0, at)),
    normalizeDomain(at < 0 ? head : head.slice(at + 1)),
    slash < 0 ? '' : normalizeResource(s.slice(slash + 1)),
  );
  if (s.length <= CACHE_MAX_KEY) remember(s, j);
  return j;
}

export function tryParseJid(s: string): Jid | undefined {
  try {
    return parseJid(s);
  } catch (err) {
    if (err instanceof StanzaError) return undefined;
    throw err;
  }
}

/** Build a JID from parts; '' (or an omitted resource) means the part is absent. */
export function jid(local: string, domain: string, resource?: string): Jid {
  return make(local ? normalizeLocal(local) : '', normalizeDomain(domain), resource ? normalizeResource(resource) : '');
}

/** Bare form of an already-normalized JID string; no validation (hot path). */
export function bareOf(s: string): string {
  const slash = s.indexOf('/');
  return slash < 0 ? s : s.slice(0, slash);
}
