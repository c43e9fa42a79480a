// The receiving side of a server-to-server stream (RFC 6120 §4–§6) as one
// explicit state machine. The peer proves who it is by SASL EXTERNAL (its
// certificate names the domain in its header) or by Server Dialback, which
// authenticates one (our domain, its domain) pair at a time; a stanza is
// accepted only from a domain authenticated for the domain it is sent to
// (otherwise the stream ends with `invalid-from`, RFC 6120 §4.9.3.9).
// XEP-0288: the stream is offered as bidirectional; once the peer asks for
// it, every pair it authenticated carries our stanzas back to it too.
import { randomBytes } from 'node:crypto';
import { StanzaError, StreamError } from '../../libs/errors/index.ts';
import { tryParseJid } from '../../libs/jid/index.ts';
import { logger } from '../../libs/log/index.ts';
import { el, text, type Element } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import type { S2sConnection } from './connection.ts';
import type { DialbackVerdict, S2sContext } from './context.ts';
import { verifyAnswer } from './dialback.ts';
import { isStanza, NS_BIDI, NS_BIDI_FEATURE, NS_DIALBACK, NS_DIALBACK_FEATURE, NS_SASL, NS_SERVER, NS_STREAM, NS_TLS, qname, streamHeader } from './stanza.ts';

const log = logger('s2s');

export type IncomingState =
  | { name: 'wait-stream' }
  | { name: 'wait-tls' }
  /** Features sent: STARTTLS, SASL, dialback, and stanzas from authenticated pairs. */
  | { name: 'open' }
  | { name: 'closed' };

export type PeerAuth = 'external' | 'dialback';

/** What the s2s node hears from an incoming stream. */
export interface IncomingEvents {
  /** A (local, remote) pair authenticated on a stream the peer made bidirectional: ours to send on, from local to remote. */
  bidiPair(stream: IncomingStream, local: string, remote: string): void;
  ended(stream: IncomingStream): void;
}

export class IncomingStream {
  state: IncomingState = { name: 'wait-stream' };
  /** Our domain, from the header's 'to'. */
  local = '';
  /** The peer's domain, from the header's 'from'. */
  remote = '';
  /** `${local} ${remote}` → how that pair was authenticated. */
  readonly pairs = new Map<string, PeerAuth>();
  private id = '';
  private header: Record<string, string> = {};
  private externalOffered = false;
  private bidiOffered = false;
  /** XEP-0288: the peer asked for this stream to carry our stanzas to it too. */
  bidi = false;
  private readonly authTimer: NodeJS.Timeout;

  constructor(private readonly conn: S2sConnection, private readonly ctx: S2sContext, private readonly events: IncomingEvents) {
    conn.attach({
      open: (attrs) => this.onOpen(attrs),
      element: (e) => this.onElement(e),
      close: () => this.end(undefined, 'the peer closed the stream'),
      error: (err) => this.end(err, err.message),
      gone: () => this.end(undefined, 'the connection was closed'),
    });
    const seconds = ctx.config.s2s.setupTimeoutSeconds;
    this.authTimer = setTimeout(() => {
      if (this.pairs.size === 0) this.end(new StreamError('connection-timeout', `not authenticated within ${seconds} s`), 'authentication timeout');
    }, seconds * 1000);
    this.authTimer.unref();
  }

  get secure(): boolean {
    return this.conn.secure;
  }

  get lastActive(): number {
    return this.conn.lastActive;
  }

  close(err?: StreamError): void {
    this.end(err, 'closed by us');
  }

  /** A stanza of ours to the peer, on a stream it made bidirectional. */
  send(xml: string): void {
    this.conn.send(xml);
  }

  get open(): boolean {
    return this.state.name !== 'closed';
  }

  // ---- headers and features ----

  private onOpen(attrs: Record<string, string>): void {
    if (this.state.name !== 'wait-stream') return this.end(new StreamError('invalid-xml', 'unexpected stream header'), 'unexpected header');
    const to = attrs.to !== undefined ? tryParseJid(attrs.to) : undefined;
    const from = attrs.from !== undefined ? tryParseJid(attrs.from) : undefined;
    this.id = randomBytes(12).toString('hex');
    // Answer the header first: a stream error needs a stream to travel in.
    this.conn.openStream(streamHeader({ id: this.id, from: to?.domain ?? this.local, to: from?.domain }));
    if (attrs['xmlns:stream'] !== NS_STREAM) return this.end(new StreamError('invalid-namespace', 'the stream namespace must be http://etherx.jabber.org/streams'), 'bad namespace');
    if (attrs.xmlns !== NS_SERVER) return this.end(new StreamError('invalid-namespace', 'the content namespace must be jabber:server'), 'bad namespace');
    if (attrs.version === undefined || !attrs.version.startsWith('1.')) return this.end(new StreamError('unsupported-version', 'XMPP 1.0 streams only'), 'old version');
    if (attrs.to !== undefined && (!to || to.local || to.resource || !this.ctx.served.has(to.domain))) {
      return this.end(new StreamError('host-unknown', `this server does not serve '${attrs.to}'`), 'unknown host');
    }
    if (attrs.from !== undefined && (!from || from.local || from.resource)) return this.end(new StreamError('invalid-from', `'${attrs.from}' is not a domain`), 'bad from');
    // A restarted stream (after TLS or SASL) keeps its addressing.
    if ((this.local && to && to.domain !== this.local) || (this.remote && from && from.domain !== this.remote)) {
      return this.end(new StreamError('invalid-from', 'the addresses may not change when a stream restarts'), 'changed addresses');
    }
    this.local = to?.domain ?? this.local;
    this.remote = from?.domain ?? this.remote;
    this.header = attrs;
    this.conn.send(this.features());
    this.state = { name: 'open' };
    if (this.bidi) for (const p of this.pairs.keys()) this.events.bidiPair(this, p.slice(0, p.indexOf(' ')), p.slice(p.indexOf(' ') + 1));
  }

  private features(): string {
    const s2s = this.ctx.config.s2s;
    const secure = this.conn.secure;
    const kids: Element[] = [];
    if (!secure) kids.push(el('starttls', { xmlns: NS_TLS }, s2s.requireTls ? el('required') : undefined));
    if (secure || !s2s.requireTls) {
      // RFC 6120 §13.7.2 / XEP-0178: EXTERNAL only when the certificate already proves the header's 'from'.
      this.externalOffered = this.pairs.size === 0 && secure && this.local !== '' && this.remote !== '' && !this.ctx.served.has(this.remote) && this.conn.certifies(this.remote);
      if (this.externalOffered) kids.push(el('mechanisms', { xmlns: NS_SASL }, el('mechanism', {}, 'EXTERNAL')));
      if (s2s.dialback === 'allow') kids.push(el('dialback', { xmlns: NS_DIALBACK_FEATURE }, el('errors')));
      // Asked for before authentication; a stream restarted after SASL keeps what was agreed.
      this.bidiOffered = s2s.bidi && this.pairs.size === 0 && !this.bidi;
      if (this.bidiOffered) kids.push(el('bidi', { xmlns: NS_BIDI_FEATURE }));
    }
    return serialize(el('stream:features', {}, ...kids));
  }

  // ---- elements ----

  private onElement(e: Element): void {
    const s = this.state;
    switch (s.name) {
      case 'wait-stream':
      case 'wait-tls':
      case 'closed':
        return; // nothing is parsed before a header, and nothing matters after the end
      case 'open':
        return this.onOpenElement(e);
      default: {
        const unreachable: never = s;
        return unreachable;
      }
    }
  }

  private onOpenElement(e: Element): void {
    const q = qname(e, this.header);
    if (q.ns === NS_STREAM && q.local === 'error') return this.end(undefined, `stream error from the peer: ${e.children.map((c) => (typeof c === 'string' ? '' : c.name)).join(' ')}`);
    if (q.ns === NS_TLS && q.local === 'starttls') return this.startTls();
    // Answering whether we issued a key reveals nothing: allowed before TLS and authentication.
    if (q.ns === NS_DIALBACK && q.local === 'verify' && e.attrs.type === undefined) return this.conn.send(verifyAnswer(this.ctx.keys, this.ctx.served, e));
    if (!this.conn.secure && this.ctx.config.s2s.requireTls) return this.end(new StreamError('policy-violation', 'STARTTLS first'), 'no TLS');
    if (q.ns === NS_SASL && q.local === 'auth') return this.saslExternal(e);
    if (q.ns === NS_DIALBACK && q.local === 'result' && e.attrs.type === undefined) return this.dialbackRequest(e);
    if (q.ns === NS_BIDI && q.local === 'bidi') {
      // Not offered (turned off, or asked after authentication): the peer keeps its own stream for our stanzas.
      if (!this.bidiOffered) return;
      this.bidiOffered = false;
      this.bidi = true;
      return;
    }
    if (isStanza(e)) {
      if (this.pairs.size === 0) return this.end(new StreamError('not-authorized', 'authenticate first'), 'stanza before authentication');
      const err = this.ctx.inbound(e, (l, r) => this.pairs.has(`${l} ${r}`), (r) => this.localFor(r));
      if (err) this.end(err, err.message);
      return;
    }
    this.end(new StreamError('unsupported-stanza-type', `<${e.name}/> is not expected here`), `unexpected <${e.name}/>`);
  }

  private startTls(): void {
    if (this.conn.secure) return this.end(new StreamError('policy-violation', 'TLS is already in place'), 'second STARTTLS');
    this.conn.send(`<proceed xmlns='${NS_TLS}'/>`);
    this.state = { name: 'wait-tls' };
    const { certs, served } = this.ctx;
    const context = this.local ? certs.context(this.local) : certs.defaultContext();
    this.conn.startTlsServer(context, (name) => (served.has(name.toLowerCase()) ? certs.context(name) : undefined)).then(
      () => { if (this.state.name === 'wait-tls') this.state = { name: 'wait-stream' }; },
      (err: unknown) => {
        log.debug('inbound TLS handshake failed', { peer: this.conn.remoteAddress, error: err });
        this.conn.destroy();
      },
    );
  }

  /** XEP-0178: the certificate proved the header's 'from' before EXTERNAL was offered. */
  private saslExternal(e: Element): void {
    const failure = (condition: string): void => this.conn.send(serialize(el('failure', { xmlns: NS_SASL }, el(condition))));
    if (e.attrs.mechanism !== 'EXTERNAL' || !this.externalOffered) return failure('invalid-mechanism');
    const body = text(e).trim();
    const authzid = body === '' || body === '=' ? '' : Buffer.from(body, 'base64').toString('utf8');
    if (authzid !== '' && authzid !== this.remote) return failure('invalid-authzid');
    if (!this.conn.certifies(this.remote)) return failure('not-authorized');
    this.externalOffered = false;
    this.authenticated(this.local, this.remote, 'external');
    this.conn.send(`<success xmlns='${NS_SASL}'/>`);
    this.conn.resetStream();
    this.state = { name: 'wait-stream' };
  }

  /** XEP-0220 §2.2: the peer claims `from` for a stream to `to`; its authoritative server must confirm the key. */
  private dialbackRequest(e: Element): void {
    const fromJ = tryParseJid(e.attrs.from ?? '');
    const toJ = tryParseJid(e.attrs.to ?? '');
    const key = text(e).trim();
    if (!fromJ || !toJ || fromJ.local || toJ.local || fromJ.resource || toJ.resource || key === '') {
      return this.end(new StreamError('improper-addressing', 'db:result needs a domain in from and to, and a key'), 'bad db:result');
    }
    const local = toJ.domain;
    const remote = fromJ.domain;
    if (!this.ctx.served.has(local)) return this.end(new StreamError('host-unknown', `this server does not serve '${local}'`), 'db:result for a domain not served');
    if (this.ctx.served.has(remote)) return this.end(new StreamError('invalid-from', `'${remote}' is served here`), 'claims one of our domains');
    if (this.ctx.config.s2s.dialback !== 'allow') return this.dialbackAnswer(local, remote, { error: 'not-allowed', text: 'dialback is not accepted here' });
    if (this.pairs.has(`${local} ${remote}`)) return this.dialbackAnswer(local, remote, 'valid');
    // XEP-0344 §2.4: a certificate that already proves the domain makes the callback unnecessary.
    if (this.conn.certifies(remote)) return this.dialbackAnswer(local, remote, 'valid');
    this.ctx.verifyDialback(local, remote, this.id, key).then(
      (verdict) => this.dialbackAnswer(local, remote, verdict),
      (err: unknown) => {
        log.error('dialback verification failed', { local, remote, error: err });
        this.dialbackAnswer(local, remote, { error: 'internal-server-error', text: 'verification failed' });
      },
    ).catch((e: unknown) => {
      log.error('answering a dialback request failed; closing the stream', { local, remote, error: e });
      this.conn.destroy();
    });
  }

  private dialbackAnswer(local: string, remote: string, verdict: DialbackVerdict): void {
    if (this.state.name === 'closed') return;
    if (verdict === 'valid') {
      const again = this.pairs.has(`${local} ${remote}`);
      this.conn.send(serialize(el('db:result', { from: local, to: remote, type: 'valid' })));
      if (!again) this.authenticated(local, remote, 'dialback');
    } else if (verdict === 'invalid') {
      log.warn('dialback key refused by the authoritative server', { local, remote });
      this.ctx.counters.dialbackFailed('in');
      this.conn.send(serialize(el('db:result', { from: local, to: remote, type: 'invalid' })));
    } else {
      // XEP-0220 §2.4 dialback errors (we announce <errors/>).
      this.ctx.counters.dialbackFailed('in');
      this.conn.send(serialize(el('db:result', { from: local, to: remote, type: 'error' }, new StanzaError(verdict.error, verdict.text).toElement())));
    }
  }

  /** A domain of ours `remote` proved itself to on this stream (the header's first). */
  private localFor(remote: string): string | undefined {
    if (this.pairs.has(`${this.local} ${remote}`)) return this.local;
    for (const p of this.pairs.keys()) if (p.endsWith(` ${remote}`)) return p.slice(0, p.indexOf(' '));
    return undefined;
  }

  private authenticated(local: string, remote: string, auth: PeerAuth): void {
    this.pairs.set(`${local} ${remote}`, auth);
    log.info('incoming stream authenticated', { local, remote, auth, bidi: this.bidi });
    // After SASL the stream restarts first (onOpen); a dialback pair is usable at once.
    if (this.bidi && auth === 'dialback') this.events.bidiPair(this, local, remote);
  }

  // ---- ending ----

  private end(err: StreamError | undefined, why: string): void {
    if (this.state.name === 'closed') return;
    this.state = { name: 'closed' };
    clearTimeout(this.authTimer);
    if (err && err.condition !== 'system-shutdown') log.info('incoming stream error', { peer: this.conn.remoteAddress, remote: this.remote, condition: err.condition, text: err.text });
    else log.debug('incoming stream ended', { peer: this.conn.remoteAddress, remote: this.remote, why });
    this.conn.close(err);
    this.events.ended(this);
  }
}
