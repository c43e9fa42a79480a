// Incremental XMPP stream parser on saxes. Emits the stream header, each
// complete depth-1 element as a light Element tree, and the stream close.
// Namespaces are not resolved: `xmlns` / `xmlns:p` stay plain attributes and
// names keep their prefix, which is all XMPP routing needs and much cheaper.
import { SaxesParser, type EventName, type SaxesTagPlain } from 'saxes';
import { StreamError, type StreamErrorCondition } from '../errors/index.ts';
import type { Element } from './element.ts';

export interface StreamParserLimits {
  maxStanzaBytes: number;
  maxDepth: number;
  maxAttributes: number;
}

export const DEFAULT_LIMITS: StreamParserLimits = { maxStanzaBytes: 262144, maxDepth: 32, maxAttributes: 64 };

export interface StreamParserHandler {
  /** The <stream:stream ...> start tag (depth 0). */
  streamOpen(name: string, attrs: Record<string, string>): void;
  /** Each complete depth-1 element; `bytes` is its approximate size on the wire. */
  stanza(el: Element, bytes: number): void;
  /** </stream:stream>; further input is ignored until reset(). */
  streamClose(): void;
  /** Fatal; further input is ignored until reset(). */
  error(err: StreamError): void;
}

type SaxOptions = { xmlns: false; fragment: false };

// saxes' on() stores each handler with a keyed store (this[name] = h); after
// about seven such additions V8 turns the parser into a dictionary-mode object
// and every this.i / this.chunk access in its per-character loop gets ~5x
// slower. Declaring the slots up front with named stores keeps it in fast mode.
// The names are saxes 6 internals: should they change, this is only slower.
class FastSaxes extends SaxesParser<SaxOptions> {
  constructor(readonly owner: StreamParser) {
    super({ xmlns: false, fragment: false });
    const slots = this as unknown as Record<string, unknown>;
    slots.xmldeclHandler = undefined;
    slots.textHandler = undefined;
    slots.piHandler = undefined;
    slots.doctypeHandler = undefined;
    slots.commentHandler = undefined;
    slots.openTagStartHandler = undefined;
    slots.attributeHandler = undefined;
    slots.openTagHandler = undefined;
    slots.closeTagHandler = undefined;
    slots.cdataHandler = undefined;
    slots.errorHandler = undefined;
    slots.endHandler = undefined;
    slots.readyHandler = undefined;
    // The table holds unbound methods, the same for every parser: one copy for all of them.
    sharedStateTable ??= slots.stateTable;
    slots.stateTable = sharedStateTable;
  }
}
let sharedStateTable: unknown;

/** Stands for the attributes saxes collected once the element is read: saxes reads them no more, nor do we. */
const READ_ATTRIBUTES: Record<string, string> = Object.freeze(Object.create(null) as Record<string, string>);

// Bytes that are not UTF-8 end the stream (RFC 6120 §11.6). Each read is
// decoded in one shot, which Node does on its fast path (TextDecoder's
// streaming mode is several times slower on the ASCII most stanzas are); a
// character split across reads waits in `tail` for the rest of its bytes.
// ignoreBOM keeps U+FEFF where it is, as for any other character.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
export const NOT_UTF8 = 'the bytes received are not UTF-8';

/** How many bytes at the end of b start a character whose other bytes are still to come. */
function partialTail(b: Uint8Array): number {
  for (let i = 1; i <= 3 && i <= b.length; i++) {
    const c = b[b.length - i];
    if (c < 0x80) return 0;
    if (c >= 0xc0) return c >= 0xc2 && c <= 0xf4 && (c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2) > i ? i : 0;
  }
  return 0; // complete, or not UTF-8, which decoding reports
}

/** The whole characters b starts with, up to its first bytes that are not UTF-8. */
function validPrefix(b: Uint8Array): string {
  let lo = 0; // b[0, lo) decodes
  let hi = b.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    try {
      UTF8.decode(b.subarray(0, mid - partialTail(b.subarray(0, mid))));
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  return UTF8.decode(b.subarray(0, lo - partialTail(b.subarray(0, lo))));
}

/** Thrown from inside saxes callbacks to unwind its write loop; never escapes write(). */
const ABORT = Symbol('abort');

// What a closetag left held back (see flush). Plain numbers: no enums, so the
// file also runs under plain type stripping.
const NONE = 0, STANZA = 1, CLOSE = 2;

// saxes `fail()` messages (v6) → RFC 6120 §11 conditions. Anything else is not-well-formed.
function conditionFor(message: string): StreamErrorCondition {
  if (message.includes('doctype') || message.includes('processing instruction') ||
      message.includes('at the start of the document') || message.includes('undefined entity')) return 'restricted-xml';
  return 'not-well-formed';
}

function isWhitespace(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) return false;
  }
  return true;
}

/** Last non-whitespace char code of s, or -1. */
function lastSignificant(s: string): number {
  for (let i = s.length - 1; i >= 0; i--) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) return c;
  }
  return -1;
}

/** The handlers saxes calls with itself as `this`, one set for every parser. */
const SAX_HANDLERS: ReadonlyArray<[EventName, (this: FastSaxes, arg: never) => void]> = [
  ['xmldecl', function (this: FastSaxes, d: { encoding?: string }) { this.owner['onXmlDecl'](d.encoding); }],
  ['opentagstart', function (this: FastSaxes, t: { name: string }) { this.owner['onOpenTagStart'](t.name); }],
  ['attribute', function (this: FastSaxes, a: { name: string; value: string }) { this.owner['onAttribute'](a.name, a.value); }],
  ['opentag', function (this: FastSaxes, t: SaxesTagPlain) { this.owner['onOpenTag'](t); }],
  ['cdata', function (this: FastSaxes, t: string) { this.owner['onText'](t); }],
  ['comment', function (this: FastSaxes) { this.owner['restricted']('comments are not allowed'); }],
  ['processinginstruction', function (this: FastSaxes) { this.owner['restricted']('processing instructions are not allowed'); }],
  ['doctype', function (this: FastSaxes) { this.owner['restricted']('DTDs are not allowed'); }],
];

export class StreamParser {
  private readonly handler: StreamParserHandler;
  private readonly limits: StreamParserLimits;
  private sax!: FastSaxes;
  private tail: Buffer | undefined;    // the first bytes of a character split across reads
  private beforeBad = '';               // when decode() failed: the text ahead of the bad bytes
  private epoch = 0;                    // counts init()s

  private opened = false;       // saw the stream header
  private opening = false;      // inside a stanza's start tag (name seen, '>' not yet)
  private dead = false;         // error emitted or stream closed: ignore input
  private inWrite = false;
  private resetRequested = false;
  private stack: Element[] = []; // open elements of the current stanza
  private attrs: Record<string, string> = READ_ATTRIBUTES; // of the start tag being read
  private nattrs = 0;
  private tagName = '';
  private pending = NONE;
  private pendingEl: Element | null = null;
  private pendingBytes = 0;

  // Byte accounting. saxes positions are UTF-16 offsets; we map them to bytes
  // by interpolating across the current chunk (exact for ASCII chunks).
  private bytesBefore = 0;   // bytes fed before the current chunk
  private unitsBefore = 0;   // UTF-16 units fed to saxes before the current chunk
  private ratio = 1;         // bytes per unit in the current chunk
  private mark = 0;          // byte offset where the current stanza (or inter-stanza gap) began
  private lastSig = -1;      // last non-whitespace char fed, to spot clean inter-stanza points

  constructor(handler: StreamParserHandler, limits?: Partial<StreamParserLimits>) {
    this.handler = handler;
    // Every stream of a listener is given the same complete limits: keep that object rather than a copy each.
    this.limits = limits && limits.maxStanzaBytes !== undefined && limits.maxDepth !== undefined && limits.maxAttributes !== undefined
      ? limits as StreamParserLimits
      : { ...DEFAULT_LIMITS, ...limits };
    this.init();
  }

  write(chunk: Buffer | string): void {
    if (this.dead) return;
    if (this.inWrite) throw new Error('StreamParser.write is not reentrant');
    let str: string;
    let bytes: number;
    if (typeof chunk === 'string') {
      str = chunk;
      bytes = Buffer.byteLength(chunk);
    } else {
      const text = this.decode(chunk);
      if (text === null) {
        // What came before the bad bytes is processed first, as before any other error,
        // and a reset it causes discards them with the rest of the chunk.
        const epoch = this.epoch;
        const before = this.beforeBad;
        this.beforeBad = '';
        if (before !== '') this.write(before);
        if (this.epoch === epoch) this.fail('not-well-formed', NOT_UTF8);
        return;
      }
      str = text;
      bytes = chunk.length;
    }
    const units = str.length;
    // Whitespace keepalive at a clean point between stanzas: don't feed saxes
    // at all, so it neither accumulates text nor counts toward the gap limit.
    if (this.opened && this.stack.length === 0 && !this.opening && this.lastSig === 0x3e /* > */ && isWhitespace(str)) {
      this.bytesBefore += bytes;
      this.mark = this.bytesBefore;
      return;
    }

    this.ratio = units === 0 ? 1 : bytes / units;
    this.inWrite = true;
    try {
      if (units !== 0) this.sax.write(str);
    } catch (e) {
      if (e !== ABORT) throw e;
    } finally {
      this.inWrite = false;
    }
    if (this.resetRequested) { this.init(); return; }
    if (this.dead) return;

    this.bytesBefore += bytes;
    this.unitsBefore += units;
    const sig = lastSignificant(str);
    if (sig !== -1) this.lastSig = sig;
    if (this.pending !== NONE) {
      this.flush();
      if (this.resetRequested) { this.init(); return; }
      if (this.dead) return;
    }
    // Mid-stanza (or mid-gap) size check: bounded by one chunk of overshoot.
    if (this.bytesBefore - this.mark > this.limits.maxStanzaBytes) {
      this.fail('policy-violation', this.stack.length > 0 || this.opening
        ? `stanza too large (max ${this.limits.maxStanzaBytes} bytes)`
        : `too much data between stanzas (max ${this.limits.maxStanzaBytes} bytes)`);
    }
  }

  /** The chunk as text, or null if it is not UTF-8 (then beforeBad has what precedes the bad bytes). */
  private decode(chunk: Buffer): string | null {
    let b = chunk;
    if (this.tail !== undefined) {
      b = Buffer.concat([this.tail, chunk]);
      this.tail = undefined;
    }
    const cut = b[b.length - 1] >= 0x80 ? partialTail(b) : 0;
    if (cut !== 0) {
      this.tail = Buffer.from(b.subarray(b.length - cut));
      b = b.subarray(0, b.length - cut);
    }
    try {
      return UTF8.decode(b);
    } catch {
      this.beforeBad = validPrefix(b);
      return null;
    }
  }

  /**
   * Start a fresh stream (after STARTTLS or SASL success). Called from inside a
   * handler, the rest of the current chunk is discarded: bytes sent after
   * <starttls/> belong to the plaintext layer and must not be processed.
   */
  reset(): void {
    if (this.inWrite) this.resetRequested = true;
    else this.init();
  }

  private init(): void {
    if (this.sax === undefined) {
      const sax = new FastSaxes(this);
      // saxes calls most handlers as its own methods: those are shared by every parser (SAX_HANDLERS); it calls
      // the text, close-tag and error handlers detached too, so they are this parser's own.
      for (const [event, handler] of SAX_HANDLERS) sax.on(event, handler as never);
      sax.on('text', (t) => this.onText(t));
      sax.on('closetag', () => this.onCloseTag());
      sax.on('error', (e) => this.onSaxError(e));
      this.sax = sax;
    } else {
      this.sax._init();
    }
    this.tail = undefined;
    this.epoch++;
    this.opened = false;
    this.opening = false;
    this.dead = false;
    this.resetRequested = false;
    this.stack = [];
    this.pending = NONE;
    this.pendingEl = null;
    this.bytesBefore = 0;
    this.unitsBefore = 0;
    this.ratio = 1;
    this.mark = 0;
    this.lastSig = -1;
  }

  private byteAt(): number {
    return this.bytesBefore + Math.round((this.sax.position - this.unitsBefore) * this.ratio);
  }

  /** Emits the error, goes dead, and unwinds saxes when called from inside it. */
  private fail(condition: StreamErrorCondition, text: string): void {
    if (this.dead) return;
    this.dead = true;
    this.pending = NONE;
    this.pendingEl = null;
    this.handler.error(new StreamError(condition, text));
    if (this.inWrite) throw ABORT;
  }

  private restricted(text: string): void {
    this.flush();
    this.fail('restricted-xml', text);
  }

  private onSaxError(e: Error): void {
    // A held-back stanza or stream close is good unless saxes is complaining
    // about that very close tag: deliver it before the error.
    if (this.pending !== NONE && !/clos(e|ing) tag/.test(e.message)) this.flush();
    this.fail(conditionFor(e.message), e.message);
  }

  private onXmlDecl(encoding: string | undefined): void {
    if (encoding !== undefined && encoding.toLowerCase() !== 'utf-8') {
      this.fail('unsupported-encoding', `only UTF-8 is supported, not ${encoding}`);
    }
  }

  // saxes calls closetag *before* checking the close tag's name, so a finished
  // stanza or stream close is held back until the next event (or the end of
  // write) proves it was well-formed.
  private flush(): void {
    const p = this.pending;
    if (p === NONE) return;
    this.pending = NONE;
    if (p === STANZA) {
      const el = this.pendingEl!;
      this.pendingEl = null;
      this.handler.stanza(el, this.pendingBytes);
    } else {
      this.dead = true;
      this.handler.streamClose();
    }
    // Stop saxes mid-chunk: after a reset the rest belongs to no stream, after
    // the close it is ignored.
    if (this.inWrite && (this.resetRequested || this.dead)) throw ABORT;
  }

  private onOpenTagStart(name: string): void {
    if (this.pending !== NONE) this.flush();
    this.attrs = {};
    this.nattrs = 0;
    this.tagName = name;
    const depth = this.stack.length;
    if (!this.opened) {
      const colon = name.indexOf(':');
      if ((colon === -1 ? name : name.slice(colon + 1)) !== 'stream') {
        this.fail('not-well-formed', `expected a stream header, got <${name}>`);
      }
      return;
    }
    if (depth === 0) {
      this.opening = true;
      this.mark = this.byteAt() - name.length - 2; // back to the '<'
    } else if (depth >= this.limits.maxDepth) {
      this.fail('policy-violation', `elements nested too deep (max ${this.limits.maxDepth})`);
    }
  }

  // saxes' own attribute maps are null-prototype (dictionary-mode, slow to
  // walk, and unlike el()'s objects), so build a plain object per attribute
  // event instead; it also lets the count limit trip before the tag ends.
  private onAttribute(name: string, value: string): void {
    if (++this.nattrs > this.limits.maxAttributes) {
      this.fail('policy-violation', `too many attributes on <${this.tagName}> (max ${this.limits.maxAttributes})`);
    }
    if (name === '__proto__') Object.defineProperty(this.attrs, name, { value, enumerable: true, writable: true, configurable: true });
    else this.attrs[name] = value;
  }

  private onOpenTag(tag: SaxesTagPlain): void {
    const attrs = this.attrs;
    this.attrs = READ_ATTRIBUTES; // the element has them; an idle stream need not keep the last ones (nor the read they slice)
    // saxes keeps the tag, with its own copy of the attributes, while the element is open (the stream header: for
    // the stream's life) and after it closed: an idle stream need not hold either.
    tag.attributes = READ_ATTRIBUTES;
    if (!this.opened) {
      // The header's name is a slice of the whole first read, which it would keep alive.
      if (tag.name === 'stream:stream') tag.name = 'stream:stream';
      this.opened = true;
      this.handler.streamOpen(tag.name, attrs);
      if (this.resetRequested) throw ABORT;
      this.mark = this.byteAt();
      return;
    }
    this.opening = false;
    const el: Element = { name: tag.name, attrs, children: [] };
    const stack = this.stack;
    if (stack.length !== 0) stack[stack.length - 1].children.push(el);
    stack.push(el);
  }

  private onCloseTag(): void {
    if (this.pending !== NONE) this.flush();
    const stack = this.stack;
    if (stack.length === 0) {
      this.pending = CLOSE;
      return;
    }
    const el = stack.pop()!;
    if (stack.length !== 0) return;
    const end = this.byteAt();
    const size = end - this.mark;
    if (size > this.limits.maxStanzaBytes) {
      this.fail('policy-violation', `stanza too large (max ${this.limits.maxStanzaBytes} bytes)`);
    }
    this.mark = end;
    this.pending = STANZA;
    this.pendingEl = el;
    this.pendingBytes = size;
  }

  private onText(t: string): void {
    if (this.pending !== NONE) this.flush();
    const stack = this.stack;
    if (stack.length === 0) {
      // Stream level: only whitespace keepalives are legitimate. Before the
      // header saxes itself rejects non-whitespace.
      if (this.opened && !isWhitespace(t)) this.fail('bad-format', 'text is not allowed between stanzas');
      return;
    }
    const kids = stack[stack.length - 1].children;
    const last = kids.length - 1;
    // CDATA next to text arrives as separate events; keep one string child.
    if (last >= 0 && typeof kids[last] === 'string') kids[last] += t;
    else kids.push(t);
  }
}
