// The wire forms of a one-round-trip login: XEP-0388 SASL2 <authenticate/>
// with what a client asks for inline — XEP-0386 Bind2 (with carbons, stream
// management and CSI enabled in the same exchange), a XEP-0198 resumption,
// XEP-0484 FAST tokens — parsed into one request the stream's state machine
// (client-stream.ts) acts on, and the features, <success/> and <failure/>
// built for it.
import { normalizeResource } from '../../libs/jid/index.ts';
import { child, el, text, type Element } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { NS_CSI } from './csi.ts';
import { NS_SM, parseH } from './stream-management.ts';

export const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
export const NS_SASL2 = 'urn:xmpp:sasl:2';
export const NS_BIND2 = 'urn:xmpp:bind:0';
export const NS_FAST = 'urn:xmpp:fast:0';
/** XEP-0280: the one inline Bind2 feature the account's session applies (as the iq it stands for). */
export const NS_CARBONS = 'urn:xmpp:carbons:2';

/** What the client sent inside <bind xmlns='urn:xmpp:bind:0'/>. */
export interface Bind2Request {
  /** The client's name for itself; the resource is this tag, '/' and an identifier the server chooses. */
  tag: string;
  /** Payloads the account's session applies as the iq set each stands for (<enable xmlns='urn:xmpp:carbons:2'/>). */
  accountPayloads: Element[];
  /** <enable xmlns='urn:xmpp:sm:3'/> inline. */
  sm: { resume: boolean; max: number | undefined } | undefined;
  /** <inactive xmlns='urn:xmpp:csi:0'/> inline. */
  inactive: boolean;
}

export interface Sasl2Request {
  mechanism: string;
  /** The decoded initial response; empty when none was sent. */
  initial: Buffer;
  /** <user-agent id=…/>: what FAST tokens are bound to. */
  userAgent: { id: string; software: string; device: string } | undefined;
  bind: Bind2Request | undefined;
  resume: { previd: string; h: number } | undefined;
  /** <request-token mechanism=…/>: issue a FAST token for this mechanism on success. */
  requestToken: string | undefined;
  /** <fast/>: the client authenticates with a token; `invalidate` ends it once used. */
  fast: { invalidate: boolean } | undefined;
}

export interface Sasl2Refusal {
  condition: 'malformed-request' | 'incorrect-encoding';
  text: string;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** A user-agent id is a UUID (XEP-0388 §2.3); a bit of slack for case, nothing else. */
const USER_AGENT_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const TAG_MAX = 64;

/** SASL data as XML character data: base64, '=' for an empty message. */
export function decodeSaslData(s: string): Buffer | undefined {
  const t = s.replace(/\s+/g, '');
  if (t === '=' || t === '') return Buffer.alloc(0);
  return BASE64.test(t) ? Buffer.from(t, 'base64') : undefined;
}

const isTrue = (v: string | undefined) => v === 'true' || v === '1';

/** <authenticate xmlns='urn:xmpp:sasl:2'/> → what it asks for, or why it is malformed. Nothing is acted on here. */
export function parseAuthenticate(e: Element): Sasl2Request | Sasl2Refusal {
  const mechanism = e.attrs.mechanism ?? '';
  const ir = child(e, 'initial-response');
  const initial = ir ? decodeSaslData(text(ir)) : Buffer.alloc(0);
  if (!initial) return { condition: 'incorrect-encoding', text: 'the initial response is not base64' };

  let userAgent: Sasl2Request['userAgent'];
  const ua = child(e, 'user-agent');
  if (ua) {
    const id = ua.attrs.id ?? '';
    if (!USER_AGENT_ID.test(id)) return { condition: 'malformed-request', text: "<user-agent/> needs an 'id' that is a UUID" };
    userAgent = { id: id.toLowerCase(), software: text(child(ua, 'software')).slice(0, 256), device: text(child(ua, 'device')).slice(0, 256) };
  }

  let bind: Bind2Request | undefined;
  const b = child(e, 'bind', NS_BIND2);
  if (b) {
    const rawTag = text(child(b, 'tag')).trim();
    let tag = '';
    if (rawTag) {
      try {
        tag = normalizeResource(rawTag);
      } catch {
        return { condition: 'malformed-request', text: 'the Bind2 <tag/> is not a valid resource' };
      }
      if (tag.length > TAG_MAX) return { condition: 'malformed-request', text: `the Bind2 <tag/> must be at most ${TAG_MAX} characters` };
    }
    let sm: Bind2Request['sm'];
    let inactive = false;
    const accountPayloads: Element[] = [];
    for (const c of b.children) {
      if (typeof c === 'string' || c.name === 'tag') continue;
      const ns = c.attrs.xmlns;
      if (ns === NS_SM && c.name === 'enable') {
        const max = Number.parseInt(c.attrs.max ?? '', 10);
        sm = { resume: isTrue(c.attrs.resume), max: Number.isFinite(max) && max > 0 ? max : undefined };
      } else if (ns === NS_CSI && (c.name === 'inactive' || c.name === 'active')) {
        inactive = c.name === 'inactive';
      } else if (ns === NS_CARBONS && c.name === 'enable') {
        accountPayloads.push(c);
      }
      // Anything else inline is a feature not offered: ignored, as XEP-0386 §3 lets a server do.
    }
    bind = { tag, accountPayloads, sm, inactive };
  }

  let resume: Sasl2Request['resume'];
  const r = child(e, 'resume', NS_SM);
  if (r) {
    const h = parseH(r.attrs.h);
    if (h === undefined || !r.attrs.previd) return { condition: 'malformed-request', text: "<resume/> needs 'previd' and an 'h' between 0 and 2^32-1" };
    resume = { previd: r.attrs.previd, h };
  }

  const rt = child(e, 'request-token', NS_FAST);
  const f = child(e, 'fast', NS_FAST);
  if ((rt || f) && !userAgent) return { condition: 'malformed-request', text: 'FAST tokens need <user-agent id=…/> (XEP-0484 §7)' };
  return {
    mechanism, initial, userAgent, bind, resume,
    requestToken: rt ? (rt.attrs.mechanism ?? '') : undefined,
    fast: f ? { invalidate: isTrue(f.attrs.invalidate) } : undefined,
  };
}

/** What the <authentication/> feature offers inline on this connection. */
export interface Sasl2Offer {
  mechanisms: readonly string[];
  /** Bind2's inline features (namespaces). */
  bindInline: readonly string[];
  /** Stream management can be resumed inline. */
  sm: boolean;
  fastMechanisms: readonly string[];
}

export function authenticationFeature(o: Sasl2Offer): Element {
  const inline = el('inline', {},
    el('bind', { xmlns: NS_BIND2 }, el('inline', {}, ...o.bindInline.map((v) => el('feature', { var: v })))),
    o.sm ? el('sm', { xmlns: NS_SM }) : undefined,
    o.fastMechanisms.length ? el('fast', { xmlns: NS_FAST }, ...o.fastMechanisms.map((m) => el('mechanism', {}, m))) : undefined);
  return el('authentication', { xmlns: NS_SASL2 }, ...o.mechanisms.map((m) => el('mechanism', {}, m)), inline);
}

/** XEP-0388 §2.6.2: a SASL condition from RFC 6120 §6.5, and a text. */
export function sasl2Failure(condition: string, textMsg?: string): string {
  return serialize(el('failure', { xmlns: NS_SASL2 }, el(condition, { xmlns: NS_SASL }), textMsg ? el('text', {}, textMsg) : undefined));
}

export function sasl2Challenge(data: Buffer): string {
  return serialize(el('challenge', { xmlns: NS_SASL2 }, data.toString('base64')));
}

/** <success/>: the mechanism's additional data, the identity (a full JID once bound or resumed), then what was done inline. */
export function sasl2Success(additional: Buffer | undefined, identity: string, inline: readonly (Element | string)[]): string {
  let out = `<success xmlns='${NS_SASL2}'>`;
  if (additional?.length) out += serialize(el('additional-data', {}, additional.toString('base64')));
  out += serialize(el('authorization-identifier', {}, identity));
  for (const i of inline) out += typeof i === 'string' ? i : serialize(i);
  return `${out}</success>`;
}

/** XEP-0484 §3.3: a token and when it expires (XEP-0082 DateTime). */
export function tokenElement(token: string, expiry: Date): Element {
  return el('token', { xmlns: NS_FAST, expiry: expiry.toISOString().replace(/\.\d{3}Z$/, 'Z'), token });
}
