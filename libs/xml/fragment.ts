// One complete element → Element, for stanzas carried as bytes on the bus.
// A hand-written indexOf-driven scanner rather than saxes: the input is
// normally our own serializer's output, and saxes' per-character state machine
// is about half as fast on the same stanzas (bench: ~850k vs ~500k/s). It still checks
// structure (tag matching, quoting, entities, duplicate attributes, control
// characters) and throws StreamError('not-well-formed') on anything it does not
// accept. Name characters are checked loosely (any non-ASCII is allowed).
import { StreamError } from '../errors/index.ts';
import type { Element, Node } from './element.ts';

const MAX_DEPTH = 256; // recursion guard; the stream parser enforces the real limit
// Control characters XML 1.0 forbids (unpaired surrogates are not checked).
const NON_CHAR = /[\0-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/;

// Module-level cursor: parsing is synchronous and non-reentrant, so this avoids
// allocating a parser object per call.
let src = '';
let pos = 0;

function bad(msg: string): never {
  throw new StreamError('not-well-formed', `${msg} at offset ${pos}`);
}

export function parseFragment(xml: string | Uint8Array): Element {
  src = typeof xml === 'string' ? xml : Buffer.from(xml.buffer, xml.byteOffset, xml.byteLength).toString('utf8');
  pos = 0;
  try {
    // One native scan up front is cheaper than testing each text and value.
    const nc = src.search(NON_CHAR);
    if (nc !== -1) { pos = nc; bad('disallowed character'); }
    skipSpace();
    if (src.charCodeAt(pos) !== 0x3c /* < */) bad('expected an element');
    const el = parseElement(0);
    skipSpace();
    if (pos !== src.length) bad('content after the element');
    return el;
  } finally {
    src = ''; // don't pin a large input
  }
}

function skipSpace(): void {
  for (;;) {
    const c = src.charCodeAt(pos);
    if (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d) pos++;
    else return;
  }
}

// Permissive XML Name: ASCII letters, digits, - . _ : and anything non-ASCII.
function isNameChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x3a) ||
    c === 0x2d || c === 0x2e || c === 0x5f || (c >= 0x80 && c !== 0xfffd);
}

function readName(): string {
  const start = pos;
  const c0 = src.charCodeAt(pos);
  if (!isNameChar(c0) || (c0 >= 0x30 && c0 <= 0x39) || c0 === 0x2d || c0 === 0x2e) bad('invalid name');
  pos++;
  while (isNameChar(src.charCodeAt(pos))) pos++;
  return src.slice(start, pos);
}

/** pos is at '<' of a start tag. */
function parseElement(depth: number): Element {
  if (depth > MAX_DEPTH) bad('elements nested too deep');
  pos++;
  const name = readName();
  const attrs: Record<string, string> = {};
  for (;;) {
    const before = pos;
    skipSpace();
    const c = src.charCodeAt(pos);
    if (c === 0x3e /* > */) { pos++; break; }
    if (c === 0x2f /* / */) {
      if (src.charCodeAt(pos + 1) !== 0x3e) bad("expected '>' after '/'");
      pos += 2;
      return { name, attrs, children: [] };
    }
    if (pos === before) bad('expected whitespace before attribute');
    const an = readName();
    skipSpace();
    if (src.charCodeAt(pos) !== 0x3d /* = */) bad("expected '='");
    pos++;
    skipSpace();
    const q = src.charCodeAt(pos);
    if (q !== 0x22 && q !== 0x27) bad('unquoted attribute value');
    const end = src.indexOf(q === 0x22 ? '"' : "'", pos + 1);
    if (end === -1) bad('unterminated attribute value');
    let v = src.slice(pos + 1, end);
    if (v.includes('<')) bad("'<' in attribute value");
    if (v.includes('&')) v = decode(v, true);
    else if (hasWs(v)) v = v.replace(/\r\n|[\t\n\r]/g, ' '); // attribute-value normalization
    if (Object.prototype.hasOwnProperty.call(attrs, an)) bad(`duplicate attribute ${an}`);
    if (an === '__proto__') Object.defineProperty(attrs, an, { value: v, enumerable: true, writable: true, configurable: true });
    else attrs[an] = v;
    pos = end + 1;
  }

  const children: Node[] = [];
  for (;;) {
    const lt = src.indexOf('<', pos);
    if (lt === -1) bad(`unclosed <${name}>`);
    if (lt > pos) pushText(children, text(src.slice(pos, lt)));
    pos = lt;
    const c = src.charCodeAt(lt + 1);
    if (c === 0x2f /* / */) {
      pos += 2;
      const cn = readName();
      if (cn !== name) bad(`</${cn}> closes <${name}>`);
      skipSpace();
      if (src.charCodeAt(pos) !== 0x3e) bad("expected '>'");
      pos++;
      return { name, attrs, children };
    }
    if (c === 0x21 /* ! */) {
      if (!src.startsWith('<![CDATA[', lt)) {
        throw new StreamError('restricted-xml', `comments and DTDs are not allowed (offset ${lt})`);
      }
      const end = src.indexOf(']]>', lt + 9);
      if (end === -1) bad('unterminated CDATA section');
      pushText(children, normalizeNewlines(src.slice(lt + 9, end)));
      pos = end + 3;
      continue;
    }
    if (c === 0x3f /* ? */) throw new StreamError('restricted-xml', `processing instructions are not allowed (offset ${lt})`);
    children.push(parseElement(depth + 1));
  }
}

function pushText(children: Node[], t: string): void {
  const last = children.length - 1;
  if (last >= 0 && typeof children[last] === 'string') children[last] += t;
  else children.push(t);
}

function hasWs(v: string): boolean {
  return v.includes('\n') || v.includes('\t') || v.includes('\r');
}

function normalizeNewlines(t: string): string {
  return t.includes('\r') ? t.replace(/\r\n?/g, '\n') : t;
}

function text(t: string): string {
  if (t.includes(']]>')) bad("']]>' in text");
  t = normalizeNewlines(t);
  return t.includes('&') ? decode(t, false) : t;
}

const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes entity references; in attributes, literal whitespace becomes a space first. */
function decode(s: string, attr: boolean): string {
  let out = '';
  let from = 0;
  for (;;) {
    const amp = s.indexOf('&', from);
    const chunk = amp === -1 ? s.slice(from) : s.slice(from, amp);
    out += attr && hasWs(chunk) ? chunk.replace(/\r\n|[\t\n\r]/g, ' ') : chunk;
    if (amp === -1) return out;
    const semi = s.indexOf(';', amp + 1);
    if (semi === -1 || semi - amp > 12) bad('malformed entity reference');
    const ref = s.slice(amp + 1, semi);
    if (ref.charCodeAt(0) === 0x23 /* # */) {
      const cp = ref.charCodeAt(1) === 0x78 /* x */
        ? (/^#x[0-9a-fA-F]+$/.test(ref) ? parseInt(ref.slice(2), 16) : NaN)
        : (/^#[0-9]+$/.test(ref) ? parseInt(ref.slice(1), 10) : NaN);
      if (!isXmlChar(cp)) bad(`invalid character reference &${ref};`);
      out += String.fromCodePoint(cp);
    } else {
      const v = NAMED[ref];
      if (v === undefined || !Object.prototype.hasOwnProperty.call(NAMED, ref)) {
        if (!/^[A-Za-z_:][\w.:-]*$/.test(ref)) bad('malformed entity reference');
        throw new StreamError('restricted-xml', `undefined entity &${ref};`);
      }
      out += v;
    }
    from = semi + 1;
  }
}

function isXmlChar(c: number): boolean {
  return c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) ||
    (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}
