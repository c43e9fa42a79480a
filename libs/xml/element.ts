// A light element tree: what the stream parser emits and the serializer writes.
// Namespaces are plain `xmlns` attributes; a child without one inherits its parent's.

export interface Element {
  name: string;
  attrs: Record<string, string>;
  children: Node[];
}

export type Node = Element | string;

export function isElement(n: Node): n is Element {
  return typeof n !== 'string';
}

/** Build an element: el('iq', {type: 'result', id}, el('ping', {xmlns: NS_PING})). */
export function el(name: string, attrs: Record<string, string | undefined> = {}, ...children: (Node | undefined | null | false)[]): Element {
  const a: Record<string, string> = {};
  for (const k in attrs) {
    const v = attrs[k];
    if (v !== undefined) a[k] = v;
  }
  const c: Node[] = [];
  for (const ch of children) if (ch !== undefined && ch !== null && ch !== false) c.push(ch);
  return { name, attrs: a, children: c };
}

/** First child element with this name (and namespace, when given). */
export function child(parent: Element, name: string, xmlns?: string): Element | undefined {
  for (const c of parent.children) {
    if (typeof c !== 'string' && c.name === name && (xmlns === undefined || c.attrs.xmlns === xmlns)) return c;
  }
  return undefined;
}

export function children(parent: Element, name?: string, xmlns?: string): Element[] {
  const out: Element[] = [];
  for (const c of parent.children) {
    if (typeof c !== 'string' && (name === undefined || c.name === name) && (xmlns === undefined || c.attrs.xmlns === xmlns)) out.push(c);
  }
  return out;
}

/** First element child whatever its name (the payload of an iq). */
export function firstElement(parent: Element): Element | undefined {
  for (const c of parent.children) if (typeof c !== 'string') return c;
  return undefined;
}

/** Concatenated text content of the direct text children. */
export function text(e: Element | undefined): string {
  if (!e) return '';
  let s = '';
  for (const c of e.children) if (typeof c === 'string') s += c;
  return s;
}
