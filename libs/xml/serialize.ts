// Element → XML text. Attributes are always double-quoted.
import type { Element } from './element.ts';

// Single scan that returns the input itself when nothing needs escaping (the
// common case), so clean strings cost no allocation.
export function escapeText(s: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    let rep: string;
    switch (s.charCodeAt(i)) {
      case 0x26: rep = '&amp;'; break;
      case 0x3c: rep = '&lt;'; break;
      case 0x3e: rep = '&gt;'; break;
      case 0x0d: rep = '&#13;'; break; // a literal CR would be normalized away by the reader
      default: continue;
    }
    out += s.slice(from, i) + rep;
    from = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}

export function escapeAttr(s: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    let rep: string;
    switch (s.charCodeAt(i)) {
      case 0x26: rep = '&amp;'; break;
      case 0x3c: rep = '&lt;'; break;
      case 0x3e: rep = '&gt;'; break;
      case 0x22: rep = '&quot;'; break;
      case 0x27: rep = '&apos;'; break;
      // Attribute-value normalization would turn these into spaces.
      case 0x09: rep = '&#9;'; break;
      case 0x0a: rep = '&#10;'; break;
      case 0x0d: rep = '&#13;'; break;
      default: continue;
    }
    out += s.slice(from, i) + rep;
    from = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}

function attrString(attrs: Record<string, string>): string {
  let s = '';
  for (const k in attrs) {
    const v = attrs[k];
    if (v !== undefined) s += ' ' + k + '="' + escapeAttr(v) + '"';
  }
  return s;
}

/** An unclosed start tag, e.g. the <stream:stream ...> header. */
export function startTag(name: string, attrs: Record<string, string>): string {
  return '<' + name + attrString(attrs) + '>';
}

export function serialize(el: Element): string {
  const s = '<' + el.name + attrString(el.attrs);
  const kids = el.children;
  if (kids.length === 0) return s + '/>';
  let body = '';
  for (let i = 0; i < kids.length; i++) {
    const c = kids[i];
    body += typeof c === 'string' ? escapeText(c) : serialize(c);
  }
  return s + '>' + body + '</' + el.name + '>';
}
