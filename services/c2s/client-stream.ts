// One client's stream as an explicit state machine (RFC 6120 §4–§7). Every
// (state, input) pair has one place that answers it; whatever arrives in the
// wrong state gets a stream error, never silence.
import { createHash } from 'node:crypto';
import { InBandRegistration, inBandRegistration, type RegistrationStream } from '../../libs/accounts/registration.ts';
import { randomBytesPooled } from '../../libs/auth/random.ts';
import type { TokenUse } from '../../libs/auth/fast.ts';
import type { StoredCredentials } from '../../libs/auth/credentials.ts';
import { createHtSession, createSaslSession, HT_MECHANISMS, isHtMechanism, type ChannelBinding, type SaslSession, type SaslStep } from '../../libs/auth/sasl.ts';
import { envelope, type Envelope, type StanzaKind } from '../../libs/bus/envelope.ts';
import { errorReply, StanzaError, StreamError } from '../../libs/errors/index.ts';
import { normalizeLocal, normalizeResource, tryParseJid } from '../../libs/jid/index.ts';
import { logger } from '../../libs/log/index.ts';
import { child, el, text, type Element } from '../../libs/xml/element.ts';
import { serialize } from '../../libs/xml/serialize.ts';
import { unmapAddress } from './address.ts';
import { CORE_FEATURES } from '../features.ts';
import { ADMIN_KICK_CONDITION } from '../admin/kick.ts';
import type { SessionInfo, SessionTransport } from '../admin/operations.ts';
import { BUSY_TEXT } from './admission.ts';
import { blockedText, type Standing } from './auth-throttle.ts';
import type { C2sContext } from './context.ts';
import { CsiQueue, NS_CSI } from './csi.ts';
import { NS_SASL_CB } from './channel-binding.ts';
import {
  authenticationFeature, decodeSaslData, NS_BIND2, NS_CARBONS, NS_SASL2, parseAuthenticate, sasl2Challenge, sasl2Failure, sasl2Success, tokenElement,
  type Bind2Request, type Sasl2Request,
} from './sasl2.ts';
import { NS_SM, parseH, smElement, StreamManagement } from './stream-management.ts';
import type { ClientTransport, StreamEvents } from './transport.ts';

const log = logger('c2s');

const NS_CLIENT = 'jabber:client';
const NS_STREAM = 'http://etherx.jabber.org/streams';
const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
/** How the audit lines name a transport. */
const TRANSPORT_NAMES: Record<ClientTransport['kind'], SessionTransport> = { tcp: 'tcp', tls: 'tls', websocket: 'ws', bosh: 'bosh' };
const yesNo = (b: boolean): 'yes' | 'no' => (b ? 'yes' : 'no');
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
const NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session';

/**
 * The stream features offered once authenticated, in order (RFC 6120 §4.3.2), from the one table of what the server
 * implements outside its modules (services/features.ts). `sm`: only where stream management is offered.
 */
export const POST_AUTH_FEATURES: readonly { readonly element: Element; readonly sm?: true }[] =
  CORE_FEATURES.flatMap((f) => (f.stream ? [{ element: f.stream, sm: f.needsStreamManagement }] : []));

/**
 * What a stream is refused with when its connection manager cannot serve
 * (C2sNode.unavailable; C2sNode.membershipExpired says why this condition).
 */
export function unavailableError(why: string): StreamError {
  return new StreamError('internal-server-error', `the server cannot take sessions now (${why}); try again later`);
}

/**
 * A SASL2 login in progress (XEP-0388): what the <authenticate/> asked for
 * inline, and, when it authenticates with a FAST token, how that token was used.
 */
export interface Sasl2Exchange {
  readonly req: Sasl2Request;
  token?: TokenUse;
}

/** The actor's answers a SASL2 login waits for (askActor). */
const INLINE_ANSWERS = new Set(['sm-resumed', 'sm-resume-failed', 'sm-enabled', 'sm-failed']);

export type C2sState =
  | { name: 'wait-stream' }
  | { name: 'checking' }
  | { name: 'wait-auth' }
  | { name: 'wait-tls' }
  /** `sasl2`: the exchange is SASL2's (XEP-0388), not RFC 6120's. */
  | { name: 'wait-sasl-response'; sasl: SaslSession; sasl2: Sasl2Exchange | undefined }
  | { name: 'sasl-pending' }
  /** Authenticated by SASL2: resuming, or binding and enabling what was asked inline, before <success/> goes out. */
  | { name: 'sasl2-inline' }
  | { name: 'wait-bind' }
  | { name: 'binding' }
  | { name: 'established' }
  /** The client closed its stream with stanzas unacknowledged; we asked (<r/>) and wait a moment for its <a/>. */
  | { name: 'closing'; timer: NodeJS.Timeout }
  | { name: 'closed' };

/**
 * What the transport tells a stream, as methods of one small object: six arrow functions per connection would each
 * cost a closure, a context and (named by the loader) a property table of its own.
 */
class TransportEvents implements StreamEvents {
  constructor(private readonly s: ClientStream) {}
  open(attrs: Record<string, string>): void { this.s['onOpen'](attrs); }
  stanza(e: Element): void { this.s['onStanza'](e); }
  close(): void { this.s['onClientClose'](); }
  error(err: StreamError): void { this.s['fail'](err); }
  disconnected(): void { this.s['onDisconnected'](); }
  activity(bytes?: number): number { return this.s['onActivity'](bytes); }
}

export class ClientStream {
  readonly sid = randomBytesPooled(12).toString('base64url');
  state: C2sState = { name: 'wait-stream' };
  private domain = '';
  private user = '';
  private resource = '';
  /** local@domain/resource once bound. */
  jid = '';
  bare = '';
  private authFailures = 0;
  /** The address's login failures (auth-throttle.ts), read at the first stream header; updated by this stream's own failures. */
  private standing: Standing | undefined;
  /** The account the current SASL exchange names, once its mechanism has looked it up. */
  private tried = '';
  /** The account whose credentials were read last is disabled (answered only once its password is proved). */
  private disabledAccount = false;
  /** A SASL attempt or answer held back by the login throttle. */
  private throttleTimer: NodeJS.Timeout | undefined;
  private readonly csi = new CsiQueue();
  private mechanism = '';
  /** Which SASL profile the current exchange speaks: its failures are written in that profile's form. */
  private profile: 'sasl' | 'sasl2' = 'sasl';
  /** An answer from the account's actor that a SASL2 login waits for before its <success/> (askActor). */
  private inlineAnswer: ((env: Envelope | undefined) => void) | undefined;
  /** Deliveries that came while <success/> was not yet written: written after it. */
  private early: Envelope[] = [];
  /** Stanzas that arrived while an async step was pending (pipelining clients). */
  private held: Element[] = [];
  /** Dropped once cleared: a cleared timer kept here would hold its closure for the stream's life. */
  private authTimer: NodeJS.Timeout | undefined;
  /** When the client last sent anything; the node's sweeper pings the silent ones. */
  lastActive = Date.now();
  private pinged = false;
  private tokens = Number.POSITIVE_INFINITY;
  private refilled = Date.now();
  /** XEP-0198: counters only; the account's actor keeps what is unacknowledged. */
  private readonly sm: StreamManagement;
  /** Stanzas handed to the account's actor to be numbered (sm-relay `seq`). */
  private relayed = 0;
  private resumeTimer: NodeJS.Timeout | undefined;
  private readonly openedAt = Date.now();
  /** What this stream presented for in-band registration (a XEP-0445 token), kept until it registers. */
  private registering: RegistrationStream | undefined;
  /** Why the stream ended, for the stream-close line, when it is not the stream error's condition. */
  private endReason: string | undefined;
  /** Admission control let this connection's first stream in (later headers, after STARTTLS or SASL, pass). */
  private admitted = false;

  constructor(private readonly t: ClientTransport, private readonly ctx: C2sContext) {
    this.sm = new StreamManagement(ctx.config.streamManagement, ctx.config.bus.kind !== 'inprocess');
    t.attach(new TransportEvents(this));
    this.authTimer = setTimeout(() => this.fail(new StreamError('connection-timeout', 'no session was established in time')),
      ctx.config.c2s.authTimeoutSeconds * 1000);
    this.authTimer.unref();
    log.info('stream opened', { event: 'stream-open', sid: this.sid, address: this.address, transport: TRANSPORT_NAMES[t.kind], tls: yesNo(t.secure) });
  }

  /** Bytes arrived: the client is in contact; how long to hold them (the inbound rate). */
  private onActivity(bytes: number | undefined): number {
    const now = Date.now();
    this.lastActive = now;
    this.pinged = false;
    return bytes ? this.shape(now, bytes) : 0;
  }

  /** A bound session as the administration operations list it (services/admin). */
  describe(node: string): SessionInfo | undefined {
    if (!this.jid || this.state.name === 'closed') return undefined;
    return {
      jid: this.jid, resource: this.resource, node, address: this.address, since: new Date(this.openedAt).toISOString(),
      transport: TRANSPORT_NAMES[this.t.kind], tls: this.t.secure, sm: this.sm.on,
    };
  }

  /** The client's address as the audit lines give it (an IPv4-mapped IPv6 address as IPv4). */
  private get address(): string {
    return unmapAddress(this.t.remoteAddress);
  }

  /** The audit line of a login: a new session bound, or one resumed (XEP-0198). Never a credential. */
  private logLogin(resumed: boolean): void {
    log.info('login', { event: 'login', sid: this.sid, jid: this.jid, address: this.address, mechanism: this.mechanism, resumed: yesNo(resumed), tls: yesNo(this.t.secure) });
  }

  get authenticated(): boolean {
    return this.user !== '';
  }

  // ---- stream headers and features ----

  private onOpen(attrs: Record<string, string>): void {
    if (this.state.name !== 'wait-stream') return this.fail(new StreamError('invalid-xml', 'unexpected stream header'));
    const to = tryParseJid(attrs.to ?? '');
    const header = { xmlns: NS_CLIENT, 'xmlns:stream': NS_STREAM, id: randomBytesPooled(8).toString('hex'), from: to?.domain ?? this.domain, version: '1.0', 'xml:lang': 'en' };
    if (!to || to.local || to.resource || !this.ctx.hosts.has(to.domain)) {
      this.t.openStream(header);
      return this.fail(new StreamError('host-unknown', `this server does not serve '${attrs.to ?? ''}'`));
    }
    if (this.domain && to.domain !== this.domain) {
      this.t.openStream(header);
      return this.fail(new StreamError('host-unknown', 'the domain may not change within a session'));
    }
    this.domain = to.domain;
    this.t.openStream(header);
    if (attrs['xmlns:stream'] !== NS_STREAM) return this.fail(new StreamError('invalid-namespace', 'the stream namespace must be http://etherx.jabber.org/streams'));
    if (attrs.xmlns !== undefined && attrs.xmlns !== NS_CLIENT) return this.fail(new StreamError('invalid-namespace', 'the content namespace must be jabber:client'));
    if (attrs.version === undefined || !attrs.version.startsWith('1.')) return this.fail(new StreamError('unsupported-version', 'XMPP 1.0 streams only'));

    if (!this.admitted) {
      if (!this.ctx.admit('stream')) return this.fail(this.ctx.busy(this.t.kind));
      this.admitted = true;
    }
    if (!this.authenticated) {
      if (this.standing === undefined && this.ctx.authThrottle.enabled) {
        // One read per connection: a blocked address is refused here, before anything costs.
        this.state = { name: 'checking' };
        this.ctx.authThrottle.standing(this.t.remoteAddress).then((st) => {
          if (this.state.name !== 'checking') return;
          this.standing = st;
          this.offerAuth();
        }).catch(this.broken('reading login failures'));
        return;
      }
      this.offerAuth();
    } else {
      const sm = this.smOffered;
      this.t.send(serialize(el('stream:features', {}, ...POST_AUTH_FEATURES.filter((f) => sm || !f.sm).map((f) => f.element))));
      this.state = { name: 'wait-bind' };
    }
  }

  private offerAuth(): void {
    const blocked = blockedText(this.standing);
    if (blocked) {
      this.ctx.metrics.authBlocked?.('refused');
      return this.fail(new StreamError('policy-violation', blocked));
    }
    this.t.send(serialize(el('stream:features', {}, ...this.preAuthFeatures())));
    this.state = { name: 'wait-auth' };
    this.releaseHeld();
  }

  /** TLS may be skipped only on loopback where the listener allows it (`allowPlainOnLoopback`), or when not required at all. */
  private get tlsSatisfied(): boolean {
    const c = this.ctx.config.c2s;
    if (this.t.secure || !c.requireTls) return true;
    const listener = this.t.kind === 'websocket' || this.t.kind === 'bosh' ? c.http : c.tcp;
    return listener.allowPlainOnLoopback && this.t.loopback;
  }

  /** Where a secret travels as it is (PLAIN, and FAST tokens, which are as good as a password): TLS, or loopback. */
  private get secretsOk(): boolean {
    return this.t.secure || this.t.loopback;
  }

  /** RFC 5056 channel bindings of this connection (channel-binding.ts); none without TLS here. */
  private channelBindings(): readonly ChannelBinding[] {
    return this.t.secure ? this.t.channelBindings?.() ?? [] : [];
  }

  /**
   * The mechanisms a profile offers. The -PLUS ones only in SASL2, where the connection has a binding: RFC 6120 SASL
   * keeps the list it always had, since clients of it bind with tls-unique (slixmpp 1.8), which TLS 1.3 does not
   * define (RFC 9266), and would fail where they logged in before; there a 'y' flag is no downgrade either.
   */
  private mechanisms(profile: 'sasl' | 'sasl2'): string[] {
    if (!this.tlsSatisfied) return [];
    const plus = profile === 'sasl2' && this.channelBindings().length > 0;
    return this.ctx.config.c2s.saslMechanisms.filter((m) => (m !== 'PLAIN' || this.secretsOk) && (!m.endsWith('-PLUS') || plus));
  }

  private get sasl2Offered(): boolean {
    return this.ctx.config.c2s.sasl2.enabled && this.t.kind !== 'bosh';
  }

  /** XEP-0484 FAST mechanisms offered here: HT-SHA-256-NONE, and those whose channel binding this connection has. */
  private fastMechanisms(): string[] {
    if (!this.ctx.config.c2s.fast.enabled || !this.sasl2Offered || !this.tlsSatisfied || !this.secretsOk) return [];
    const types = new Set<string>(this.channelBindings().map((b) => b.type));
    return Object.entries(HT_MECHANISMS).filter(([, type]) => type === '' || types.has(type)).map(([m]) => m);
  }

  /** What Bind2 enables inline (XEP-0386 §2): carbons, CSI, and stream management where it is offered. */
  private bind2Inline(): string[] {
    const out: string[] = [];
    if (this.ctx.config.carbons.enabled) out.push(NS_CARBONS);
    out.push(NS_CSI);
    if (this.smOffered) out.push(NS_SM);
    return out;
  }

  private preAuthFeatures(): Element[] {
    const out: Element[] = [];
    if (this.t.canStartTls) out.push(el('starttls', { xmlns: NS_TLS }, this.tlsSatisfied ? undefined : el('required')));
    const mechs = this.mechanisms('sasl');
    if (mechs.length) out.push(el('mechanisms', { xmlns: NS_SASL }, ...mechs.map((m) => el('mechanism', {}, m))));
    const mechs2 = this.sasl2Offered ? this.mechanisms('sasl2') : [];
    if (mechs2.length) {
      out.push(authenticationFeature({ mechanisms: mechs2, bindInline: this.bind2Inline(), sm: this.smOffered, fastMechanisms: this.fastMechanisms() }));
    }
    const bindings = mechs2.length ? this.channelBindings() : [];
    if (bindings.length) out.push(el('sasl-channel-binding', { xmlns: NS_SASL_CB }, ...bindings.map((b) => el('channel-binding', { type: b.type })))); // XEP-0440
    const registration = inBandRegistration(this.ctx);
    if (registration.open && this.tlsSatisfied) out.push(...registration.features());
    return out;
  }

  // ---- elements ----

  private onStanza(e: Element): void {
    const s = this.state;
    switch (s.name) {
      case 'wait-stream':
      case 'wait-tls':
        return this.fail(new StreamError('not-authorized', 'no stream is open'));
      case 'wait-auth':
        return this.preAuth(e);
      case 'wait-sasl-response':
        return this.saslResponse(s.sasl, e, s.sasl2);
      case 'checking':
      case 'sasl-pending':
      case 'sasl2-inline':
      case 'binding':
        this.held.push(e);
        if (this.held.length > 100) this.fail(new StreamError('policy-violation', 'too many stanzas before the session was ready'));
        return;
      case 'wait-bind':
        return this.beforeBind(e);
      case 'established':
        return this.stanza(e);
      case 'closing':
        return this.lastAck(s, e);
      case 'closed':
        return;
      default: {
        const unreachable: never = s;
        return unreachable;
      }
    }
  }

  private preAuth(e: Element): void {
    if (e.name === 'starttls' && e.attrs.xmlns === NS_TLS) {
      if (!this.t.canStartTls) return this.fail(new StreamError('policy-violation', 'STARTTLS is not available here'));
      this.t.send(`<proceed xmlns='${NS_TLS}'/>`);
      this.state = { name: 'wait-tls' };
      this.t.startTls().then(
        () => { if (this.state.name === 'wait-tls') this.state = { name: 'wait-stream' }; },
        (err: unknown) => { log.debug('TLS handshake failed', { error: err }); this.t.closeStream(); },
      ).catch(this.broken('STARTTLS'));
      return;
    }
    const sasl2 = e.name === 'authenticate' && e.attrs.xmlns === NS_SASL2 && this.sasl2Offered;
    if ((e.name === 'auth' && e.attrs.xmlns === NS_SASL) || sasl2) {
      this.profile = sasl2 ? 'sasl2' : 'sasl';
      const begin = () => (sasl2 ? this.authenticate(e) : this.auth(e));
      // RFC 6120 §6.4.5: the SASL failure that says so; the stream stays open for STARTTLS.
      if (!this.tlsSatisfied) return this.saslFailure('encryption-required', this.t.canStartTls ? 'TLS is required before authentication: use STARTTLS' : 'TLS is required before authentication');
      // What this process learnt since the stream opened counts too (a block started by another stream).
      const known = this.ctx.authThrottle.current(this.t.remoteAddress);
      const blocked = blockedText(this.standing) ?? blockedText(known);
      if (blocked) {
        this.ctx.metrics.authBlocked?.('refused');
        return this.saslFailure('temporary-auth-failure', blocked);
      }
      // The address is in back-off: this attempt waits it out before anything is computed.
      const wait = Math.max(this.standing?.retryAt ?? 0, known.retryAt) - Date.now();
      if (wait > 0) {
        this.state = { name: 'sasl-pending' };
        this.throttleTimer = setTimeout(() => {
          if (this.state.name !== 'sasl-pending') return;
          this.state = { name: 'wait-auth' };
          begin();
        }, wait);
        return;
      }
      return begin();
    }
    // XEP-0386: a Bind2 request only means something inside <authenticate/>.
    if (e.attrs.xmlns === NS_BIND2) return this.fail(new StreamError('not-authorized', 'authenticate first: a Bind2 request goes inside <authenticate/>'));
    if (e.name === 'iq' && InBandRegistration.handles(e) && this.tlsSatisfied) {
      // XEP-0077: account creation is the one iq answered before authentication.
      inBandRegistration(this.ctx).answer(e, this.domain, this.t.remoteAddress, this.registering ??= {}).then(
        (reply) => { if (this.state.name !== 'closed') this.t.send(serialize(reply)); },
        (err: unknown) => {
          // The store failed under it: the client hears so and may try again; the stream goes on.
          log.error('registration failed', { error: err });
          if (this.state.name === 'closed') return;
          // Without the payload: it holds the password.
          const reply = errorReply(e, new StanzaError('internal-server-error', 'the account could not be created; try again later'), false);
          delete reply.attrs.to;
          this.t.send(serialize(reply));
        }).catch(this.broken('in-band registration'));
      return;
    }
    if (e.name === 'message' || e.name === 'presence' || e.name === 'iq') return this.fail(new StreamError('not-authorized', 'authenticate first'));
    this.fail(new StreamError('unsupported-stanza-type', `<${e.name}/> is not expected before authentication`));
  }

  private auth(e: Element): void {
    const mech = e.attrs.mechanism ?? '';
    this.tried = '';
    const sasl = this.mechanisms('sasl').includes(mech) ? createSaslSession(mech, (u) => this.credentialsOf(u), { domain: this.domain }) : undefined;
    if (!sasl) return this.saslFailure('invalid-mechanism', `mechanism '${mech}' is not offered`);
    this.mechanism = mech;
    const body = text(e);
    return this.saslStep(sasl, body === '=' ? Buffer.alloc(0) : Buffer.from(body, 'base64'), undefined);
  }

  /** XEP-0388 <authenticate/>: a mechanism (a password's, or a FAST token's) and what to do inline once it succeeds. */
  private authenticate(e: Element): void {
    const req = parseAuthenticate(e);
    if ('condition' in req) return this.saslFailure(req.condition, req.text);
    const x: Sasl2Exchange = { req };
    const mech = req.mechanism;
    this.tried = '';
    const opts = { domain: this.domain, channelBindings: this.channelBindings() };
    let sasl: SaslSession | undefined;
    if (isHtMechanism(mech)) {
      const client = req.userAgent?.id;
      if (this.fastMechanisms().includes(mech) && client !== undefined && req.fast) {
        sasl = createHtSession(mech, async (u, matches) => {
          this.tried = `${u}@${this.domain}`;
          const use = await this.ctx.fastTokens.use(this.tried, client, mech, matches);
          x.token = use;
          return use?.token;
        }, opts);
      }
    } else if (this.mechanisms('sasl2').includes(mech)) {
      sasl = createSaslSession(mech, (u) => this.credentialsOf(u), opts);
    }
    if (!sasl) {
      return this.saslFailure('invalid-mechanism', isHtMechanism(mech) && this.fastMechanisms().includes(mech)
        ? `'${mech}' needs <fast xmlns='urn:xmpp:fast:0'/> and <user-agent id=…/>` : `mechanism '${mech}' is not offered`);
    }
    if (req.requestToken !== undefined && !this.fastMechanisms().includes(req.requestToken)) {
      return this.saslFailure('invalid-mechanism', `FAST mechanism '${req.requestToken}' is not offered`);
    }
    this.mechanism = mech;
    return this.saslStep(sasl, req.initial, x);
  }

  /** The credentials a password mechanism checks, noting whether an administrator disabled the account. */
  private async credentialsOf(user: string): Promise<StoredCredentials | undefined> {
    this.tried = `${user}@${this.domain}`;
    const creds = await this.ctx.accounts.credentials(this.tried);
    this.disabledAccount = creds?.disabled === true;
    return creds;
  }

  private saslResponse(sasl: SaslSession, e: Element, x: Sasl2Exchange | undefined): void {
    const ns = x ? NS_SASL2 : NS_SASL;
    if (e.attrs.xmlns === ns && e.name === 'response') {
      const data = x ? decodeSaslData(text(e)) : Buffer.from(text(e), 'base64');
      if (!data) return this.saslFailure('incorrect-encoding', 'the response is not base64');
      return this.saslStep(sasl, data, x);
    }
    if (e.attrs.xmlns === ns && e.name === 'abort') return this.saslFailure('aborted');
    this.fail(new StreamError('not-authorized', 'authentication in progress'));
  }

  private saslStep(sasl: SaslSession, data: Buffer, x: Sasl2Exchange | undefined): void {
    this.state = { name: 'sasl-pending' };
    sasl.step(data).then((r) => this.saslResult(sasl, r, x), (err: unknown) => {
      log.error('SASL failed', { error: err });
      this.saslFailure('temporary-auth-failure');
    }).catch(this.broken('authentication'));
  }

  /** A throw after an async step (a bug) ends this stream with internal-server-error, never the process. */
  private broken(doing: string): (e: unknown) => void {
    return (e) => {
      log.error(`${doing} failed; closing the stream`, { sid: this.sid, error: e, stack: e instanceof Error ? e.stack : undefined });
      this.fail(new StreamError('internal-server-error', 'the server failed handling this stream'));
    };
  }

  private saslResult(sasl: SaslSession, r: SaslStep, x: Sasl2Exchange | undefined): void {
    if (this.state.name !== 'sasl-pending') return;
    switch (r.kind) {
      case 'challenge':
        this.t.send(x ? sasl2Challenge(r.data) : `<challenge xmlns='${NS_SASL}'>${r.data.toString('base64')}</challenge>`);
        this.state = { name: 'wait-sasl-response', sasl, sasl2: x };
        break;
      case 'failure':
        return this.authFailed(r.condition, r.text);
      case 'success': {
        // RFC 6120 §6.5.1, told only to who proved the password (disabling also drops the account's FAST tokens).
        if (this.disabledAccount) return this.saslFailure('account-disabled', 'this account has been disabled by an administrator');
        // SASL2 with an inline resumption takes its resumption token first: refused, the whole login is (nothing changes).
        if (x?.req.resume && this.smOffered && !this.ctx.admit('resumption')) {
          this.ctx.metrics.resumption?.(false);
          return this.loginBusy();
        }
        if (!this.ctx.admit('login')) return this.loginBusy();
        this.user = normalizeLocal(r.username);
        this.ctx.metrics.auth(this.mechanism, true);
        if (x) {
          // No stream restart (XEP-0388): what was asked inline is done first, then <success/> says how it went.
          this.state = { name: 'sasl2-inline' };
          this.completeSasl2(x, r.data).catch(this.broken('completing a SASL2 login'));
          return;
        }
        this.t.send(`<success xmlns='${NS_SASL}'>${r.data ? r.data.toString('base64') : ''}</success>`);
        this.t.resetStream();
        this.state = { name: 'wait-stream' };
        break;
      }
    }
    this.releaseHeld();
  }

  /**
   * A SASL exchange failed: logged and counted for the address and the account
   * (the server's own temporary-auth-failure is not the client's), and
   * answered once their back-off has passed; the failure that blocks the
   * address ends the stream.
   */
  private authFailed(condition: string, textMsg?: string): void {
    if (condition === 'temporary-auth-failure') return this.saslFailure(condition, textMsg);
    this.ctx.authThrottle.failed(this.t.remoteAddress, this.tried, this.mechanism, condition).then((v) => {
      if (this.state.name !== 'sasl-pending') return;
      this.standing = v.standing;
      const answer = () => {
        if (this.state.name !== 'sasl-pending') return;
        this.saslFailure(condition, textMsg);
        const blocked = blockedText(this.standing);
        if (blocked) this.fail(new StreamError('policy-violation', blocked));
      };
      const wait = v.answerAt - Date.now();
      if (wait > 0) this.throttleTimer = setTimeout(answer, wait);
      else answer();
    }).catch(this.broken('counting a failed login'));
  }

  /**
   * A login past admission control: the credentials were right, but the
   * answer is RFC 6120 §6.5.11 temporary-auth-failure ("advisable for the
   * initiating entity to try again later") with a text that says so. It is
   * not the client's failure: neither the login throttle nor
   * c2s.maxAuthFailures counts it, and the stream stays open for the retry.
   */
  private loginBusy(): void {
    this.t.send(this.profile === 'sasl2' ? sasl2Failure('temporary-auth-failure', BUSY_TEXT)
      : serialize(el('failure', { xmlns: NS_SASL }, el('temporary-auth-failure'), el('text', { 'xml:lang': 'en' }, BUSY_TEXT))));
    this.state = { name: 'wait-auth' };
    this.held = [];
  }

  private saslFailure(condition: string, textMsg?: string): void {
    this.ctx.metrics.auth(this.mechanism || 'none', false);
    this.t.send(this.profile === 'sasl2' ? sasl2Failure(condition, textMsg)
      : serialize(el('failure', { xmlns: NS_SASL }, el(condition), textMsg ? el('text', { 'xml:lang': 'en' }, textMsg) : undefined)));
    this.state = { name: 'wait-auth' };
    if (++this.authFailures >= this.ctx.config.c2s.maxAuthFailures) {
      this.fail(new StreamError('policy-violation', 'too many failed authentication attempts'));
    }
    this.held = [];
  }

  private beforeBind(e: Element): void {
    if (e.attrs.xmlns === NS_SM) return this.smBeforeBind(e);
    if (e.name !== 'iq') return this.fail(new StreamError('not-authorized', 'bind a resource first'));
    const bind = child(e, 'bind', NS_BIND);
    if (e.attrs.type !== 'set' || !bind) {
      return this.t.send(serialize(errorReply(e, new StanzaError('not-allowed', 'bind a resource first'))));
    }
    let resource = '';
    const r = text(child(bind, 'resource')).trim();
    if (r) {
      try {
        resource = normalizeResource(r);
      } catch {
        return this.t.send(serialize(errorReply(e, new StanzaError('bad-request', 'malformed resource'))));
      }
    }
    // No session process to answer (or no bus to reach one): say so now, not after session.requestTimeoutMs.
    const why = this.ctx.unavailable();
    if (why) return this.fail(unavailableError(why));
    this.state = { name: 'binding' };
    this.bare = `${this.user}@${this.domain}`;
    this.ctx.bind(this, resource).then((res) => {
      if (this.state.name !== 'binding') return;
      if ('condition' in res) {
        this.state = { name: 'wait-bind' };
        this.t.send(serialize(errorReply(e, new StanzaError(res.condition, res.text), false)));
      } else {
        this.resource = res.resource;
        this.jid = `${this.bare}/${this.resource}`;
        this.state = { name: 'established' };
        clearTimeout(this.authTimer);
        this.authTimer = undefined;
        this.t.send(serialize(el('iq', { type: 'result', id: e.attrs.id }, el('bind', { xmlns: NS_BIND }, el('jid', {}, this.jid)))));
        this.logLogin(false);
      }
      this.releaseHeld();
    }).catch(this.broken('binding'));
  }

  private releaseHeld(): void {
    while (this.held.length && this.state.name !== 'binding' && this.state.name !== 'sasl-pending' && this.state.name !== 'sasl2-inline'
      && this.state.name !== 'checking' && this.state.name !== 'closed') {
      this.onStanza(this.held.shift()!);
    }
  }

  // ---- the established session ----

  private stanza(e: Element): void {
    const name = e.name;
    if (e.attrs.xmlns === NS_CSI && (name === 'active' || name === 'inactive')) {
      this.csi.inactive = name === 'inactive';
      // A managed session's stanzas are numbered by its actor, so what waits waits there.
      if (this.sm.on) return this.smToActor('sm-csi', { inactive: this.csi.inactive });
      if (!this.csi.inactive) this.flushHeld();
      return;
    }
    if (e.attrs.xmlns === NS_SM) return this.smEstablished(e);
    if (name !== 'message' && name !== 'presence' && name !== 'iq') {
      return this.fail(new StreamError('unsupported-stanza-type', `<${name}/> is not a stanza`));
    }
    if (this.sm.state !== 'off') this.sm.handled++;
    const a = e.attrs;
    if (a.xmlns !== undefined) {
      if (a.xmlns !== NS_CLIENT) return this.fail(new StreamError('invalid-namespace', 'stanzas must be in jabber:client'));
      delete a.xmlns; // the recipient's stream supplies its own content namespace
    }
    if (a.from !== undefined && a.from !== this.jid && a.from !== this.bare) {
      const f = tryParseJid(a.from);
      if (!f || (f.full !== this.jid && f.full !== this.bare)) return this.fail(new StreamError('invalid-from', `'from' must be ${this.jid}`));
    }
    a.from = this.jid;
    const type = a.type ?? '';
    if (name === 'iq') {
      if (a.id === undefined || (type !== 'get' && type !== 'set' && type !== 'result' && type !== 'error')) {
        return this.replyError(e, new StanzaError('bad-request', 'an iq needs an id and a type of get, set, result or error'));
      }
      if (a.to === undefined && type === 'set' && child(e, 'session', NS_SESSION)) {
        return this.answer(el('iq', { type: 'result', id: a.id }));
      }
    }
    let to = '';
    if (a.to !== undefined) {
      const j = tryParseJid(a.to);
      if (!j) return this.replyError(e, new StanzaError('jid-malformed', `'${a.to}' is not a valid JID`));
      to = j.full;
      a.to = to;
    }
    let data: unknown;
    if (name === 'presence' && to === '' && type === '') {
      const p = Number.parseInt(text(child(e, 'priority')), 10);
      data = { priority: Number.isFinite(p) ? Math.max(-128, Math.min(127, p)) : 0 };
    }
    this.ctx.metrics.stanzaIn(name);
    const env = envelope({
      kind: name as StanzaKind, dir: 'out', from: this.jid, to, type, id: a.id ?? '', sid: this.sid, xml: serialize(e), data, t: Date.now(),
    });
    if (this.sm.state !== 'off' && !this.smTrack(env)) return;
    this.ctx.toActor(this.bare, env);
  }

  private replyError(e: Element, err: StanzaError): void {
    if (e.attrs.type === 'error') return this.answer(undefined);
    const reply = errorReply(e, err);
    delete reply.attrs.from; // from the server on behalf of the account
    reply.attrs.to = this.jid;
    this.answer(reply);
  }

  /**
   * The answer to a client stanza handled here (or none). A managed session
   * counts every stanza in its actor and numbers every answer there, so both
   * go through it.
   */
  private answer(reply: Element | undefined): void {
    if (this.sm.state === 'off') {
      if (reply) this.t.send(serialize(reply));
      return;
    }
    const env = envelope({ kind: 'ctl', dir: 'in', op: 'sm-relay', to: this.bare, sid: this.sid, xml: reply ? serialize(reply) : '',
      data: { kind: reply?.name ?? '', from: '', to: this.jid, type: reply?.attrs.type ?? '', counted: true } });
    if (this.smTrack(env)) this.ctx.toActor(this.bare, env);
  }

  // ---- from the actors ----

  deliver(env: Envelope): void {
    if (this.state.name === 'sasl2-inline') {
      // Bound or resumed, <success/> not written yet: these follow it.
      if (this.early.length >= this.ctx.config.streamManagement.maxQueue) return this.fail(new StreamError('resource-constraint', 'too many stanzas arrived before the login completed'));
      this.early.push(env);
      return;
    }
    if (this.state.name !== 'established') return;
    if (this.sm.on) return this.smDeliver(env);
    if (this.csi.hold(env)) return;
    if (this.csi.size > 0) this.flushHeld();
    this.write(env);
  }

  private flushHeld(): void {
    for (const held of this.csi.drain()) this.write(held);
  }

  private write(env: Envelope): void {
    this.t.send(env.xml);
    this.ctx.metrics.stanzaOut(env.kind, env.t);
    if (this.t.bufferedBytes() > this.ctx.config.limits.maxOutboundBufferBytes) {
      this.fail(new StreamError('policy-violation', 'the client is not reading its stream'));
    }
  }

  /**
   * Inbound rate limit (limits.bytesPerSecond): a token bucket holding up to
   * four seconds' worth. A client in debt has its next bytes held until the
   * debt is paid — read more slowly, like ejabberd's shapers, not cut off —
   * so it costs no one else anything. Returns the milliseconds to hold.
   */
  private shape(now: number, bytes: number): number {
    const rate = this.ctx.config.limits.bytesPerSecond;
    this.tokens = Math.min(rate * 4, this.tokens + (Math.max(0, now - this.refilled) * rate) / 1000);
    this.refilled = Math.max(now, this.refilled);
    const wait = this.tokens < 0 ? Math.ceil((-this.tokens * 1000) / rate) : 0;
    this.tokens -= bytes;
    if (wait > 0) this.refilled = now + wait; // the debt is paid by then; refill counts from there
    if (wait > 0) this.tokens += (wait * rate) / 1000;
    return wait;
  }

  /**
   * Out-of-contact detection (RFC 2779 3.2.4/3.2.5): a client silent past the
   * interval is pinged (XEP-0199); still silent past the timeout, it is gone.
   */
  checkAlive(now: number, intervalMs: number, timeoutMs: number): void {
    if (this.state.name !== 'established') return;
    const idle = now - this.lastActive;
    if (idle > intervalMs + timeoutMs) return this.fail(new StreamError('connection-timeout', 'no answer to ping'));
    if (idle > intervalMs && !this.pinged) {
      this.pinged = true;
      const ping = `<iq type="get" id="c2s-ping-${now}" to="${this.jid}" from="${this.domain}"><ping xmlns="urn:xmpp:ping"/></iq>`;
      // On a managed stream every stanza carries the actor's number: the ping goes through it too.
      if (this.sm.on) this.smToActor('sm-relay', { kind: 'iq', from: this.domain, to: this.jid, type: 'get', counted: false }, ping);
      else this.t.send(ping);
    }
    if (this.sm.due(now)) this.t.send(smElement.r());
  }

  kick(condition: StreamError['condition'], textMsg: string): void {
    this.endReason ??= 'kicked';
    this.fail(new StreamError(condition, textMsg), false);
  }

  /** An administrator ends the session: the actor is told, and a managed session ends too rather than wait to be resumed. */
  endByAdministrator(textMsg: string): void {
    this.endReason ??= 'ended by an administrator';
    this.fail(new StreamError(ADMIN_KICK_CONDITION, textMsg), true, true);
  }

  // ---- ending ----

  /** `closed`: the session ends with the stream (the client closed it, or broke stream management); otherwise a resumable one waits. */
  fail(err: StreamError | undefined, unbind = true, closed = err === undefined): void {
    if (this.state.name === 'closed') return;
    if (err) log.debug('stream error', { sid: this.sid, condition: err.condition, text: err.text });
    this.endReason ??= !err ? 'client closed' : err.condition === 'system-shutdown' ? 'shutdown' : err.condition;
    this.t.closeStream(err);
    this.end(unbind, closed, err?.condition);
  }

  private onDisconnected(): void {
    this.endReason ??= 'connection lost';
    // A client that closed its stream meant to end the session, even if it left before we closed ours.
    this.end(true, this.state.name === 'closing');
  }

  /**
   * The client closed its stream (XEP-0198 §4). What it has not acknowledged would be handed back and delivered
   * again (offline storage, the next session), so it is asked once and given `closeAckWaitMs` to answer; a client
   * that acknowledged everything, or sends no <a/>, is closed as before.
   */
  private onClientClose(): void {
    const wait = this.ctx.config.streamManagement.closeAckWaitMs;
    if (this.state.name !== 'established' || !this.sm.on || this.sm.written === this.sm.acked || wait === 0) return this.fail(undefined);
    const timer = setTimeout(() => this.fail(undefined), wait);
    timer.unref();
    this.state = { name: 'closing', timer };
    this.t.send(smElement.r());
    this.t.readAfterClose?.();
  }

  /** While closing, only an <a/> means anything: the acknowledged stanzas are done with; all acknowledged, we close. */
  private lastAck(s: { timer: NodeJS.Timeout }, e: Element): void {
    if (e.name !== 'a' || e.attrs.xmlns !== NS_SM) return;
    const h = parseH(e.attrs.h);
    if (h === undefined) return;
    const before = this.sm.acked;
    const n = this.sm.ack(h, Date.now());
    if (n instanceof StreamError) return this.fail(n, true, true);
    if (n > before) this.smToActor('sm-ack', { h: n });
    if (this.sm.acked === this.sm.written) {
      clearTimeout(s.timer);
      this.fail(undefined);
    }
  }

  private end(unbind: boolean, closed: boolean, condition?: string): void {
    if (this.state.name === 'closed') return;
    const wasBound = this.jid !== '';
    if (this.state.name === 'closing') clearTimeout(this.state.timer);
    this.state = { name: 'closed' };
    log.info('stream closed', {
      event: 'stream-close', sid: this.sid, jid: this.jid || undefined, address: this.address, reason: this.endReason ?? 'connection lost', condition,
      duration: Math.round((Date.now() - this.openedAt) / 100) / 10,
    });
    clearTimeout(this.authTimer);
    this.authTimer = undefined;
    if (this.throttleTimer) clearTimeout(this.throttleTimer);
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.ctx.ended(this, wasBound && unbind, this.resource, closed);
  }

  // ---- XEP-0198 stream management (the actor's half: services/session/sm) ----

  private get smOffered(): boolean {
    return this.ctx.config.streamManagement.enabled && this.t.kind !== 'bosh';
  }

  private smToActor(op: string, data: unknown, xml: string | Uint8Array = ''): void {
    this.ctx.toActor(this.bare, envelope({ kind: 'ctl', dir: 'in', op, to: this.bare, sid: this.sid, data, xml }));
  }

  /** Number a client stanza and keep it until the actor confirms it; false when too many wait (the stream ends). */
  private smTrack(env: Envelope): boolean {
    if (this.sm.unconfirmed >= this.ctx.config.streamManagement.maxQueue) {
      this.fail(new StreamError('resource-constraint', 'too many stanzas are waiting to be confirmed by the server; resume the session to send them again'));
      return false;
    }
    const now = Date.now();
    this.sm.track(env, now);
    if (this.sm.unconfirmed === 1) this.ctx.awaitConfirmation(this);
    return true;
  }

  /**
   * The node's confirmation sweeper (streams with stanzas unconfirmed): answer
   * a waiting <r/>, ask the actor, or send again what the bus lost. False once
   * nothing is left to watch.
   */
  confirmTick(now: number): boolean {
    if (this.state.name === 'closed' || this.sm.state === 'off') return false;
    switch (this.sm.confirmDue(now)) {
      case 'ack':
        this.sm.reported = this.sm.confirmed;
        this.t.send(smElement.a(this.sm.confirmed));
        break;
      case 'ask':
        this.smToActor('sm-r', { h: this.sm.handled });
        break;
      case 'resend':
        log.debug('sending unconfirmed stanzas again', { jid: this.jid, from: this.sm.confirmed + 1, count: this.sm.unconfirmed });
        for (const env of this.sm.pending()) this.ctx.toActor(this.bare, env);
        this.smToActor('sm-r', { h: this.sm.handled });
        break;
    }
    return this.sm.unconfirmed > 0;
  }

  /** After authentication, before binding: only a resumption means anything yet. */
  private smBeforeBind(e: Element): void {
    switch (e.name) {
      case 'resume': return this.smResume(e);
      case 'enable': return this.t.send(smElement.failed('unexpected-request')); // §3: bind first
      case 'r':
      case 'a':
        return; // nothing is managed yet
      default:
        return this.fail(new StreamError('unsupported-stanza-type', `<${e.name}/> is not a stream management element`));
    }
  }

  private smEstablished(e: Element): void {
    switch (e.name) {
      case 'enable': {
        if (this.sm.state !== 'off' || !this.smOffered) return this.t.send(smElement.failed('unexpected-request'));
        this.sm.state = 'enabling';
        this.sm.reset(0); // §4: counting starts with <enable/>
        const max = Number.parseInt(e.attrs.max ?? '', 10);
        this.smToActor('sm-enable', {
          resource: this.resource, node: this.ctx.nodeId, resume: e.attrs.resume === 'true' || e.attrs.resume === '1',
          max: Number.isFinite(max) && max > 0 ? max : undefined, inactive: this.csi.inactive,
        });
        return;
      }
      case 'r':
        if (!this.sm.on) return;
        // Everything the client sent is confirmed safe: answer now. Otherwise once the actor confirms it.
        if (this.sm.settled) {
          this.sm.reported = this.sm.confirmed;
          return this.t.send(smElement.a(this.sm.confirmed));
        }
        this.sm.wantAck(Date.now());
        return this.smToActor('sm-r', { h: this.sm.handled });
      case 'a': {
        if (!this.sm.on) return;
        const h = parseH(e.attrs.h);
        if (h === undefined) return this.fail(new StreamError('invalid-xml', "<a/> needs an 'h' between 0 and 2^32-1"), true, true);
        const before = this.sm.acked;
        const n = this.sm.ack(h, Date.now());
        if (n instanceof StreamError) return this.fail(n, true, true);
        if (n > before) this.smToActor('sm-ack', { h: n });
        return;
      }
      case 'resume':
        this.ctx.metrics.resumption?.(false);
        return this.t.send(smElement.failed('unexpected-request'));
      default:
        return this.fail(new StreamError('unsupported-stanza-type', `<${e.name}/> is not a stream management element`));
    }
  }

  private smResume(e: Element): void {
    const h = parseH(e.attrs.h);
    const previd = e.attrs.previd ?? '';
    if (!this.smOffered || previd === '' || h === undefined) {
      this.ctx.metrics.resumption?.(false);
      return this.t.send(smElement.failed(h === undefined && this.smOffered && previd !== '' ? 'bad-request' : 'item-not-found'));
    }
    const why = this.ctx.unavailable();
    if (why) return this.fail(unavailableError(why));
    if (!this.ctx.admit('resumption')) {
      // The session waits on untouched: the client tries again (on this stream or another) and loses nothing.
      this.ctx.metrics.resumption?.(false);
      return this.t.send(smElement.failed('resource-constraint', BUSY_TEXT));
    }
    this.bare = `${this.user}@${this.domain}`;
    // The resumption is checked by the actor of the account this stream authenticated: another account's id is unknown there.
    this.state = { name: 'binding' };
    this.sm.state = 'resuming';
    this.smToActor('sm-resume', { previd, h, node: this.ctx.nodeId });
    this.resumeTimer = setTimeout(() => this.smResumeFailed('internal-server-error'), this.ctx.config.session.requestTimeoutMs);
  }

  private smResumeFailed(condition: string, textMsg?: string): void {
    if (this.sm.state !== 'resuming' || this.state.name !== 'binding') return;
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.sm.state = 'off';
    this.state = { name: 'wait-bind' };
    this.ctx.metrics.resumption?.(false);
    if (condition === 'undefined-condition') return this.fail(new StreamError('undefined-condition', 'the resumption acknowledges more stanzas than were sent'), false);
    this.t.send(smElement.failed(condition, textMsg));
    this.releaseHeld();
  }

  /** A numbered stanza from the account's actor: written once, in order; anything else goes to the actor to be numbered. */
  private smDeliver(env: Envelope): void {
    if (typeof env.data !== 'number') {
      // Mostly room traffic, many sessions at once: batched per session process, ordered by `seq` at the actor.
      const data = { kind: env.kind, from: env.from, to: env.to, type: env.type, counted: false, seq: ++this.relayed };
      return this.ctx.viaHolder(this.bare, envelope({ kind: 'ctl', dir: 'in', op: 'sm-relay', to: this.bare, sid: this.sid, data, xml: env.xml }));
    }
    const n = env.data;
    switch (this.sm.numbered(n)) {
      case 'duplicate':
        return;
      case 'gap':
        return this.smToActor('sm-resend', { from: this.sm.written + 1 });
      case 'write':
        this.write(env);
        if (env.track !== undefined) this.sm.noteDelivered(env.track[0], env.track[1]);
        if (this.sm.wrote(n, Date.now()) && this.state.name === 'established') this.t.send(smElement.r());
    }
  }

  /** Answers from the account's actor. */
  smControl(env: Envelope): void {
    const d = env.data as Record<string, unknown>;
    if (this.inlineAnswer && this.state.name === 'sasl2-inline' && INLINE_ANSWERS.has(env.op)) return this.inlineAnswer(env);
    switch (env.op) {
      case 'sm-delivered?':
        // A new owner of the account: what this client already has from other accounts' managed sessions.
        return this.smToActor('sm-delivered', { marks: [...this.sm.delivered], written: this.sm.on ? this.sm.written : 0 });
      case 'sm-enabled':
        if (this.sm.state !== 'enabling' || this.state.name !== 'established') return;
        this.flushHeld(); // what CSI held before stream management: it goes out uncounted, before <enabled/>
        this.t.send(this.smEnabled(d));
        return;
      case 'sm-failed':
        if (this.sm.state !== 'enabling') return;
        this.sm.state = 'off';
        this.t.send(smElement.failed(String(d.condition), typeof d.text === 'string' ? d.text : undefined));
        return;
      case 'sm-h':
        if (this.sm.state === 'off' || this.state.name !== 'established') return;
        if (this.sm.confirm(Number(d.h), Date.now()) && this.sm.on) {
          this.sm.reported = this.sm.confirmed;
          this.t.send(smElement.a(this.sm.confirmed));
        }
        return;
      case 'sm-resend-in':
        // The actor saw a gap in our numbering: the bus lost what we sent; send it again from there.
        if (this.sm.state === 'off' || this.state.name !== 'established') return;
        // What it asks for was confirmed to us already (its record lost that in a failover): tell it where we are.
        if (Number(d.from) <= this.sm.confirmed) this.smToActor('sm-confirmed', { h: this.sm.confirmed });
        for (const e of this.sm.resend(Number(d.from), Date.now())) this.ctx.toActor(this.bare, e);
        return;
      case 'sm-resumed': {
        if (this.sm.state !== 'resuming' || this.state.name !== 'binding') return;
        if (this.resumeTimer) clearTimeout(this.resumeTimer);
        this.state = { name: 'established' };
        this.t.send(this.smResumed(d));
        this.releaseHeld();
        return;
      }
      case 'sm-resume-failed':
        return this.smResumeFailed(String(d.condition), typeof d.text === 'string' ? d.text : undefined);
      default:
        log.warn('unknown stream management answer', { op: env.op });
    }
  }

  /** Stream management is on, as the actor enabled it: the <enabled/> to write. */
  private smEnabled(d: Record<string, unknown>): string {
    this.sm.state = 'on';
    this.sm.resumable = typeof d.id === 'string';
    this.sm.written = 0;
    this.sm.acked = 0;
    return smElement.enabled(typeof d.id === 'string' ? d.id : undefined, typeof d.max === 'number' ? d.max : undefined);
  }

  /** The session is resumed, as the actor answered: the <resumed/> to write. */
  private smResumed(d: Record<string, unknown>): string {
    this.resource = String(d.resource);
    this.jid = `${this.bare}/${this.resource}`;
    this.sm.state = 'on';
    this.sm.resumable = true;
    this.sm.reset(Number(d.h));
    this.sm.written = Number(d.acked);
    this.sm.acked = Number(d.acked);
    clearTimeout(this.authTimer);
    this.authTimer = undefined;
    this.ctx.metrics.resumption?.(true);
    this.logLogin(true);
    return smElement.resumed(String(d.previd), this.sm.handled);
  }

  // ---- XEP-0388 SASL2: what a login asked for inline (XEP-0386 Bind2, XEP-0198, XEP-0484) ----

  /**
   * Authenticated: FAST tokens invalidated, issued or rotated; the session
   * resumed, or a resource bound with carbons, CSI and stream management
   * enabled; then one <success/> that says how each went, and the stream goes
   * on without a restart. A bind that fails leaves the stream unauthenticated
   * (XEP-0388 §2.6: a failure changes nothing).
   */
  private async completeSasl2(x: Sasl2Exchange, additional: Buffer | undefined): Promise<void> {
    const { req } = x;
    const bare = `${this.user}@${this.domain}`;
    this.bare = bare;
    const inline: string[] = [];
    const client = req.userAgent?.id;
    if (client !== undefined) {
      const fast = this.ctx.fastTokens;
      if (req.fast?.invalidate) await fast.invalidate(bare, client);
      // A token used close to its expiry is replaced (XEP-0484 §3.5), unless the client is ending it.
      const rotate = x.token?.rotationDue === true && !req.fast?.invalidate ? this.mechanism : undefined;
      const mechanism = req.requestToken ?? rotate;
      if (mechanism !== undefined) {
        const issued = await fast.issue(bare, client, mechanism);
        inline.push(serialize(tokenElement(issued.token, issued.expiry)));
      }
    }
    if (this.state.name !== 'sasl2-inline') return;
    let established = false;
    if (req.resume) {
      const r = await this.resumeInline(req.resume);
      if (this.state.name !== 'sasl2-inline') return;
      if (r.fatal) return this.fail(r.fatal, false);
      inline.push(r.xml);
      established = r.resumed;
    }
    if (!established && req.bind) {
      const bound = await this.bindInline(req.bind, client);
      if (this.state.name !== 'sasl2-inline') return;
      if (typeof bound !== 'string') {
        this.user = '';
        this.bare = '';
        return this.authFailed('temporary-auth-failure', `no resource could be bound: ${bound.text ?? bound.condition}`);
      }
      inline.push(bound);
      established = true;
      this.logLogin(false);
    }
    this.t.send(sasl2Success(additional, established ? this.jid : bare, inline));
    if (!established) {
      // No stream restart: the features of the authenticated stream follow at once (XEP-0388 §2.6.1).
      const sm = this.smOffered;
      this.t.send(serialize(el('stream:features', {}, ...POST_AUTH_FEATURES.filter((f) => sm || !f.sm).map((f) => f.element))));
      this.state = { name: 'wait-bind' };
      return this.releaseHeld();
    }
    this.state = { name: 'established' };
    clearTimeout(this.authTimer);
    this.authTimer = undefined;
    const early = this.early;
    this.early = [];
    for (const env of early) this.deliver(env);
    this.releaseHeld();
  }

  /** One request to the account's actor whose answer the login waits for (INLINE_ANSWERS); undefined when none came in time. */
  private askActor(op: string, data: unknown): Promise<Envelope | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.inlineAnswer = undefined;
        resolve(undefined);
      }, this.ctx.config.session.requestTimeoutMs);
      this.inlineAnswer = (env) => {
        clearTimeout(timer);
        this.inlineAnswer = undefined;
        resolve(env);
      };
      this.smToActor(op, data);
    });
  }

  /** XEP-0198 <resume/> inside <authenticate/>: checked by the actor of the account just authenticated, like a legacy one. */
  private async resumeInline(r: { previd: string; h: number }): Promise<{ resumed: boolean; xml: string; fatal?: StreamError }> {
    if (!this.smOffered) {
      this.ctx.metrics.resumption?.(false);
      return { resumed: false, xml: smElement.failed('item-not-found') };
    }
    const why = this.ctx.unavailable();
    if (why) return { resumed: false, xml: smElement.failed('internal-server-error', why) };
    this.sm.state = 'resuming';
    const answer = await this.askActor('sm-resume', { previd: r.previd, h: r.h, node: this.ctx.nodeId });
    const d = (answer?.data ?? {}) as Record<string, unknown>;
    if (answer?.op === 'sm-resumed') return { resumed: true, xml: this.smResumed(d) };
    this.sm.state = 'off';
    this.ctx.metrics.resumption?.(false);
    if (!answer) return { resumed: false, xml: smElement.failed('internal-server-error', 'the session service did not answer in time') };
    // XEP-0198 §4: acknowledging more than was sent ends the stream, as it does for a legacy <resume/>.
    if (d.condition === 'undefined-condition') return { resumed: false, xml: '', fatal: new StreamError('undefined-condition', 'the resumption acknowledges more stanzas than were sent') };
    return { resumed: false, xml: smElement.failed(String(d.condition), typeof d.text === 'string' ? d.text : undefined) };
  }

  /** XEP-0386: a resource named after the client's tag, bound with what the request enables; the <bound/> that says so. */
  private async bindInline(b: Bind2Request, client: string | undefined): Promise<string | { condition: string; text?: string }> {
    const why = this.ctx.unavailable();
    if (why) return { condition: 'internal-server-error', text: why };
    // XEP-0386 §3.1's recommended form: the client's tag, '/', an identifier of the server's. The identifier is the
    // same for the same account, client (user-agent id) and tag, so a client that binds again replaces the session it
    // left behind (c2s.resourceConflict) rather than adding one; a hash, so the user-agent id is not shown.
    const name = (id: string) => (b.tag ? `${b.tag}/${id}` : id);
    const random = () => randomBytesPooled(4).toString('hex');
    const stable = client === undefined ? undefined : createHash('sha256').update(`${this.bare}\0${client}\0${b.tag}`).digest('hex').slice(0, 8);
    const payloads = b.accountPayloads.map((p) => serialize(p));
    let res = await this.ctx.bind(this, name(stable ?? random()), payloads);
    // Where a resource in use is refused rather than taken over, the client still gets a session.
    if ('condition' in res && res.condition === 'conflict' && stable !== undefined && this.state.name === 'sasl2-inline') {
      res = await this.ctx.bind(this, name(random()), payloads);
    }
    if ('condition' in res) return res;
    this.resource = res.resource;
    this.jid = `${this.bare}/${this.resource}`;
    if (this.state.name !== 'sasl2-inline') return '';
    this.csi.inactive = b.inactive;
    let inside = '';
    if (b.sm && this.smOffered) {
      this.sm.state = 'enabling';
      this.sm.reset(0); // §4: counting starts with <enable/>
      const answer = await this.askActor('sm-enable', { resource: this.resource, node: this.ctx.nodeId, resume: b.sm.resume, max: b.sm.max, inactive: this.csi.inactive });
      const d = (answer?.data ?? {}) as Record<string, unknown>;
      if (answer?.op === 'sm-enabled') {
        inside += this.smEnabled(d);
      } else {
        this.sm.state = 'off';
        inside += answer ? smElement.failed(String(d.condition), typeof d.text === 'string' ? d.text : undefined)
          : smElement.failed('internal-server-error', 'the session service did not answer in time');
      }
    }
    // An inline account payload the session refused (carbons off…) is left out of <bound/>, as XEP-0386 §3 allows.
    for (const o of res.inline) if (!o.ok) log.debug('an inline Bind2 request was refused', { jid: this.jid, condition: o.condition, text: o.text });
    return `<bound xmlns="${NS_BIND2}">${inside}</bound>`;
  }

  /** For a drain: whether a client can resume this session elsewhere once the stream closes. */
  get resumable(): boolean {
    return this.sm.on && this.sm.resumable;
  }
}
