// What the message-framed transports (WebSocket, BOSH) share: each element
// travels as a document of its own, so it must carry its namespaces itself,
// and limits the TCP stream parser enforces while reading are checked here on
// the parsed element instead.
import { StreamError } from '../../libs/errors/index.ts';
import type { StreamParserLimits } from '../../libs/xml/parser.ts';
import type { Element } from '../../libs/xml/element.ts';

export const NS_CLIENT = 'jabber:client';
export const NS_STREAM = 'http://etherx.jabber.org/streams';

/** The attribute names of an element's start tag (quote-aware, no allocation of values). */
function hasAttr(xml: string, from: number, to: number, name: string): boolean {
  let i = from;
  while (i < to) {
    const c = xml.charCodeAt(i);
    if (c === 0x22 || c === 0x27) { // skip a quoted value
      const end = xml.indexOf(c === 0x22 ? '"' : "'", i + 1);
      if (end === -1 || end > to) return false;
      i = end + 1;
      continue;
    }
    if ((c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) && xml.startsWith(name, i + 1)) {
      const after = xml.charCodeAt(i + 1 + name.length);
      if (after === 0x3d /* = */ || after === 0x20) return true;
    }
    i++;
  }
  return false;
}

/**
 * Give one serialized element the namespace declarations a stand-alone
 * document needs (RFC 7395 §3.3.3, XEP-0206 §7): stanzas get
 * xmlns='jabber:client', stream-level elements (features, errors) declare the
 * `stream` prefix. Elements that already carry their namespace pass as they are.
 */
export function qualify(xml: string): string {
  if (xml.charCodeAt(0) !== 0x3c) return xml;
  let nameEnd = 1;
  for (;;) {
    const c = xml.charCodeAt(nameEnd);
    if (Number.isNaN(c) || c === 0x20 || c === 0x2f || c === 0x3e || c === 0x09 || c === 0x0a || c === 0x0d) break;
    nameEnd++;
  }
  const name = xml.slice(1, nameEnd);
  let tagEnd = xml.indexOf('>', nameEnd);
  if (tagEnd === -1) return xml;
  if (xml.charCodeAt(tagEnd - 1) === 0x2f) tagEnd--;
  if (name === 'message' || name === 'presence' || name === 'iq') {
    if (hasAttr(xml, nameEnd, tagEnd, 'xmlns')) return xml;
    return `${xml.slice(0, nameEnd)} xmlns="${NS_CLIENT}"${xml.slice(nameEnd)}`;
  }
  if (name.startsWith('stream:')) {
    if (hasAttr(xml, nameEnd, tagEnd, 'xmlns:stream')) return xml;
    return `${xml.slice(0, nameEnd)} xmlns:stream="${NS_STREAM}"${xml.slice(nameEnd)}`;
  }
  return xml;
}

/** Depth and attribute-count limits, as the stream parser applies them on TCP. */
export function checkLimits(e: Element, limits: StreamParserLimits, depth = 1): StreamError | undefined {
  if (depth > limits.maxDepth) return new StreamError('policy-violation', `elements nested too deep (max ${limits.maxDepth})`);
  let n = 0;
  for (const _ in e.attrs) n++;
  if (n > limits.maxAttributes) return new StreamError('policy-violation', `too many attributes on <${e.name}> (max ${limits.maxAttributes})`);
  for (const c of e.children) {
    if (typeof c === 'string') continue;
    const err = checkLimits(c, limits, depth + 1);
    if (err) return err;
  }
  return undefined;
}

/** The bytes an outbound element carries, as a string. */
export function asText(data: string | Uint8Array): string {
  return typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
}
