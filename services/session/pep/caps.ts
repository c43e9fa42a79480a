// XEP-0115 entity capabilities as PEP needs them: the <c/> a client puts in
// its presence, the verification string of a disco#info answer (§5.1, so a
// client cannot poison the cluster-wide cache with a forged hash), and the
// `+notify` nodes its features declare (XEP-0163 §4).
import { createHash } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import type { Store } from '../../../libs/store/store.ts';
import { child, children, text, type Element } from '../../../libs/xml/element.ts';
import { parseFragment } from '../../../libs/xml/fragment.ts';

export const NS_CAPS = 'http://jabber.org/protocol/caps';
const NS_DATA = 'jabber:x:data';
const HASHES: Record<string, string> = { 'sha-1': 'sha1', 'sha-256': 'sha256', 'sha-512': 'sha512' };
/** Where verified feature lists live, shared by every session process. */
const CAPS_SCOPE = '$caps';
const CAPS_COLL = 'caps';
const MEMO_MAX = 10_000;

export interface Caps {
  hash: string;
  node: string;
  ver: string;
}

/** One verification string's identity across the cluster. */
export const capsKey = (c: Caps): string => `${c.hash} ${c.ver}`;

/** The caps a presence advertises; legacy caps (no `hash`) and unknown algorithms are ignored. */
export function presenceCaps(presence: string): Caps | undefined {
  if (!presence.includes(NS_CAPS)) return undefined; // most presence has none: skip the parse
  const c = child(parseFragment(presence), 'c', NS_CAPS);
  const { hash, node, ver } = c?.attrs ?? {};
  if (!hash || !node || !ver || !HASHES[hash]) return undefined;
  return { hash, node, ver };
}

/** XEP-0115 §5.1: the verification string of a disco#info <query/>. */
export function verificationString(query: Element, hash: string): string | undefined {
  const algo = HASHES[hash];
  if (!algo) return undefined;
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  let s = '';
  const ids = children(query, 'identity').map((i) => `${i.attrs.category ?? ''}/${i.attrs.type ?? ''}/${i.attrs['xml:lang'] ?? ''}/${i.attrs.name ?? ''}`);
  for (const i of ids.sort(cmp)) s += `${i}<`;
  for (const f of children(query, 'feature').map((f) => f.attrs.var ?? '').sort(cmp)) s += `${f}<`;
  const forms: { type: string; body: string }[] = [];
  for (const x of children(query, 'x', NS_DATA)) {
    const fields = children(x, 'field');
    const formType = fields.find((f) => f.attrs.var === 'FORM_TYPE');
    if (!formType) continue; // §5.4: forms without FORM_TYPE are ignored
    let body = '';
    const rest = fields.filter((f) => f.attrs.var !== 'FORM_TYPE').sort((a, b) => cmp(a.attrs.var ?? '', b.attrs.var ?? ''));
    for (const f of rest) {
      body += `${f.attrs.var ?? ''}<`;
      for (const v of children(f, 'value').map((v) => text(v)).sort(cmp)) body += `${v}<`;
    }
    forms.push({ type: text(child(formType, 'value')), body });
  }
  for (const f of forms.sort((a, b) => cmp(a.type, b.type))) s += `${f.type}<${f.body}`;
  return createHash(algo).update(s, 'utf8').digest('base64');
}

/** The nodes a feature list asks notifications for. */
export function notifyNodes(features: readonly string[]): ReadonlySet<string> {
  const out = new Set<string>();
  for (const f of features) if (f.endsWith('+notify')) out.add(f.slice(0, -'+notify'.length));
  return out;
}

// Per process: a verification string, once known, never changes meaning.
const memo = new Map<string, ReadonlySet<string>>();

function remember(key: string, nodes: ReadonlySet<string>): ReadonlySet<string> {
  if (memo.size >= MEMO_MAX) memo.delete(memo.keys().next().value!);
  memo.set(key, nodes);
  return nodes;
}

/** The +notify nodes of a verified verification string, from this process or the shared store. */
export async function knownCaps(store: Store, key: string): Promise<ReadonlySet<string> | undefined> {
  const hit = memo.get(key);
  if (hit) return hit;
  const raw = await store.hget(CAPS_SCOPE, CAPS_COLL, key);
  return raw ? remember(key, notifyNodes(unpack(raw) as string[])) : undefined;
}

/** Keep a verified feature list for every session process. */
export async function storeCaps(store: Store, key: string, features: readonly string[]): Promise<ReadonlySet<string>> {
  await store.hset(CAPS_SCOPE, CAPS_COLL, key, pack(features));
  return remember(key, notifyNodes(features));
}
