// One external component's connection (XEP-0114, `jabber:component:accept`):
// the stream header names the component's domain, the component proves it
// knows the domain's secret with <handshake/> (hex SHA-1 of the stream id and
// the secret), and from then on it sends and receives stanzas for its domain.
//
//   header ──▶ handshake ──▶ established ──▶ closed
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { StreamError } from '../../libs/errors/index.ts';
import { tryParseJid, type Jid } from '../../libs/jid/index.ts';
import { logger } from '../../libs/log/index.ts';
import { text, type Element } from '../../libs/xml/element.ts';
import type { S2sConnection } from '../s2s/connection.ts';
import { NS_STREAM } from '../s2s/stanza.ts';

const log = logger('component');

export const NS_COMPONENT = 'jabber:component:accept';

type State =
  | { name: 'header' }
  | { name: 'handshake'; domain: string; secret: string }
  | { name: 'established'; domain: string }
  | { name: 'closed' };

/** What a stream needs from its listener. */
export interface ComponentStreamOwner {
  /** The secret of a configured component's domain, or undefined. */
  secretOf(domain: string): string | undefined;
  /** The handshake succeeded: take the domain's stanzas to this stream. */
  authenticated(stream: ComponentStream, domain: string): Promise<void>;
  /** A stanza the component sent, its addresses checked (`from` is on the component's domain). */
  route(stream: ComponentStream, stanza: Element, from: Jid): void;
  ended(stream: ComponentStream): void;
}

/** The hex SHA-1 of the stream id and the secret, as the component must send it (XEP-0114 §3). */
export function handshakeDigest(streamId: string, secret: string): string {
  return createHash('sha1').update(streamId + secret, 'utf8').digest('hex');
}

export class ComponentStream {
  readonly id = randomBytes(12).toString('hex');
  private state: State = { name: 'header' };
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly conn: S2sConnection, private readonly owner: ComponentStreamOwner, handshakeTimeoutMs: number) {
    this.timer = setTimeout(() => this.fail(new StreamError('connection-timeout', 'the handshake did not complete in time')), handshakeTimeoutMs);
    this.timer.unref();
    conn.attach({
      open: (attrs) => this.open(attrs),
      element: (e) => this.element(e),
      close: () => this.close(),
      error: (err) => this.fail(err),
      gone: () => this.gone(),
    });
  }

  /** The authenticated domain, or '' before the handshake. */
  get domain(): string {
    return this.state.name === 'established' ? this.state.domain : '';
  }

  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  /** A stanza for the component, as it goes on the wire. */
  send(xml: string): void {
    if (this.state.name === 'established') this.conn.send(xml);
  }

  /** End the stream with a stream error (RFC 6120 §4.9). */
  fail(err: StreamError): void {
    if (this.state.name === 'closed') return;
    if (this.state.name !== 'established' && err.condition !== 'connection-timeout') {
      log.info('component refused', { address: this.conn.remoteAddress, condition: err.condition, reason: err.text });
    }
    this.state = { name: 'closed' };
    this.conn.close(err);
    this.finish();
  }

  private open(attrs: Record<string, string>): void {
    if (this.state.name !== 'header') return this.fail(new StreamError('invalid-xml', 'a second stream header'));
    // The answer's header first, so that any error below arrives inside a stream of the right namespace.
    this.conn.openStream({ 'xmlns:stream': NS_STREAM, xmlns: NS_COMPONENT, id: this.id, ...(attrs.to ? { from: attrs.to } : {}) });
    if (attrs.xmlns !== NS_COMPONENT) return this.fail(new StreamError('invalid-namespace', `a component stream is in ${NS_COMPONENT}`));
    if (attrs['xmlns:stream'] !== NS_STREAM) return this.fail(new StreamError('invalid-namespace', `the stream prefix must be bound to ${NS_STREAM}`));
    const domain = (attrs.to ?? '').toLowerCase();
    const secret = this.owner.secretOf(domain);
    if (secret === undefined) return this.fail(new StreamError('host-unknown', domain ? `no component '${domain}' is configured here` : 'the stream header names no component domain (to)'));
    this.state = { name: 'handshake', domain, secret };
  }

  private element(e: Element): void {
    const s = this.state;
    switch (s.name) {
      case 'header':
      case 'closed':
        return;
      case 'handshake':
        if (e.name !== 'handshake') return this.fail(new StreamError('not-authorized', 'send <handshake/> before anything else'));
        return this.handshake(s.domain, s.secret, text(e).trim());
      case 'established':
        return this.stanza(s.domain, e);
      default:
        s satisfies never;
    }
  }

  private handshake(domain: string, secret: string, digest: string): void {
    const expected = Buffer.from(handshakeDigest(this.id, secret));
    const given = Buffer.from(digest.toLowerCase());
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return this.fail(new StreamError('not-authorized', `the handshake does not match the secret configured for ${domain}`));
    }
    clearTimeout(this.timer);
    this.state = { name: 'established', domain };
    this.owner.authenticated(this, domain).then(() => {
      if (this.state.name !== 'established') return;
      this.conn.send('<handshake/>');
      log.info('component connected', { domain, address: this.conn.remoteAddress });
    }, (e: unknown) => {
      log.error('could not take a component\'s stanzas', { domain, error: e });
      this.fail(new StreamError('internal-server-error', 'the server could not route this component\'s domain'));
    });
  }

  /**
   * XEP-0114 §3: the component addresses every stanza (`from` and `to`), and
   * `from` must be on its own domain. A stanza without either cannot be routed
   * (RFC 6120 §4.9.3.7 improper-addressing); a `from` the handshake did not
   * authorize is the stream error RFC 6120 §4.9.3.9 names (invalid-from), as
   * a server stream answers a sender claiming a domain it did not authenticate.
   */
  private stanza(domain: string, e: Element): void {
    if (e.name !== 'message' && e.name !== 'presence' && e.name !== 'iq') {
      return this.fail(new StreamError('unsupported-stanza-type', `<${e.name}/> is not a stanza`));
    }
    const ns = e.attrs.xmlns;
    if (ns !== undefined) {
      if (ns !== NS_COMPONENT) return this.fail(new StreamError('invalid-namespace', `stanzas on a component stream are in ${NS_COMPONENT}`));
      delete e.attrs.xmlns;
    }
    if (e.attrs.from === undefined || e.attrs.to === undefined) {
      return this.fail(new StreamError('improper-addressing', 'a component addresses every stanza: from and to'));
    }
    const from = tryParseJid(e.attrs.from);
    if (!from || from.domain !== domain) {
      return this.fail(new StreamError('invalid-from', `'${e.attrs.from}' is not on this component's domain ${domain}`));
    }
    e.attrs.from = from.full;
    this.owner.route(this, e, from);
  }

  private close(): void {
    if (this.state.name === 'closed') return;
    this.state = { name: 'closed' };
    this.conn.close();
    this.finish();
  }

  private gone(): void {
    if (this.state.name !== 'closed') this.state = { name: 'closed' };
    this.finish();
  }

  private finished = false;

  private finish(): void {
    clearTimeout(this.timer);
    if (this.finished) return;
    this.finished = true;
    this.owner.ended(this);
  }
}

