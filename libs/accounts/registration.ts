// XEP-0077 in-band registration before authentication: the jabber:iq:register
// iqs a client may send on a fresh stream, answered by the connection manager
// (no session or actor exists yet). Off unless `registration.open` or
// `registration.requireToken`; each connection manager limits the requests per
// IP address over a sliding window. XEP-0445 pre-authenticated registration:
// a client presents a token (`<preauth xmlns='urn:xmpp:pars:0'/>`) first, and
// with `requireToken` only such a stream may create an account, one per use of
// the token (registration-tokens.ts).
import type { Config } from '../config/schema.ts';
import { StanzaError, errorReply } from '../errors/index.ts';
import { jid as makeJid } from '../jid/index.ts';
import { child, children, el, text, type Element } from '../xml/element.ts';
import type { Accounts } from './index.ts';
import type { TokenRefusal } from './registration-tokens.ts';

export const NS_REGISTER = 'jabber:iq:register';
export const NS_REGISTER_FEATURE = 'http://jabber.org/features/iq-register';
/** XEP-0445: the stream feature that says registration tokens are taken, and the element that presents one (XEP-0379's). */
export const NS_IBR_TOKEN = 'urn:xmpp:ibr-token:0';
export const NS_PREAUTH = 'urn:xmpp:pars:0';

/** What one stream presented before registering: the token the server accepted. */
export interface RegistrationStream {
  token?: string;
}

const REFUSED: Record<TokenRefusal, string> = {
  unknown: 'the provided token is invalid or expired',
  'other-domain': 'the provided token is invalid or expired',
  expired: 'the provided token is invalid or expired',
  'used-up': 'the provided token has been used up',
};

/** Requests per IP address in a sliding window; old entries are pruned as they are met. */
export class RateLimiter {
  private readonly hits = new Map<string, number[]>();

  constructor(private readonly max: number, private readonly windowMs: number, private readonly now: () => number = Date.now) {}

  /** Counts one request; false when the address is over its budget (the request is not counted). */
  take(key: string): boolean {
    const t = this.now();
    const since = t - this.windowMs;
    const list = (this.hits.get(key) ?? []).filter((h) => h > since);
    if (list.length >= this.max) {
      this.hits.set(key, list);
      return false;
    }
    list.push(t);
    this.hits.set(key, list);
    if (this.hits.size > 10_000) this.prune(since);
    return true;
  }

  /** Seconds until the address may try again. */
  retryAfter(key: string): number {
    const oldest = this.hits.get(key)?.[0];
    return oldest === undefined ? 0 : Math.max(1, Math.ceil((oldest + this.windowMs - this.now()) / 1000));
  }

  private prune(since: number): void {
    for (const [k, list] of this.hits) if (list.every((h) => h <= since)) this.hits.delete(k);
  }
}

export class InBandRegistration {
  private readonly limiter: RateLimiter;

  constructor(private readonly accounts: Accounts, private readonly config: Config) {
    const r = config.registration;
    this.limiter = new RateLimiter(r.maxPerIp, r.windowSeconds * 1000);
  }

  /** Accounts may be created in-band: by anyone (`open`), or with a token (`requireToken`). */
  get open(): boolean {
    return this.config.registration.open || this.config.registration.requireToken;
  }

  /** The stream features advertised before authentication: registration, and that tokens are taken (XEP-0445 §3). */
  features(): Element[] {
    return [el('register', { xmlns: NS_IBR_TOKEN }), el('register', { xmlns: NS_REGISTER_FEATURE })];
  }

  /** The stream feature of XEP-0077 alone. */
  feature(): Element {
    return el('register', { xmlns: NS_REGISTER_FEATURE });
  }

  /** An iq this service answers before authentication: registration, or a token presented for it. */
  static handles(iq: Element): boolean {
    return child(iq, 'query', NS_REGISTER) !== undefined || (iq.attrs.type === 'set' && child(iq, 'preauth', NS_PREAUTH) !== undefined);
  }

  /** Answer a jabber:iq:register or preauth iq sent before authentication on `stream`: the result or the error reply. */
  async answer(iq: Element, domain: string, address: string, stream: RegistrationStream = {}): Promise<Element> {
    try {
      const preauth = child(iq, 'preauth', NS_PREAUTH);
      const result = preauth ? await this.preauth(preauth, domain, address, stream) : await this.handle(iq, domain, address, stream);
      return el('iq', { type: 'result', id: iq.attrs.id }, result);
    } catch (e) {
      if (!(e instanceof StanzaError)) throw e;
      // Without the payload: it may hold the password.
      const reply = errorReply(iq, e, false);
      delete reply.attrs.to;
      return reply;
    }
  }

  /**
   * XEP-0445 §4: a token presented for the registration to come. Its expiry is checked here only; a use is taken
   * when the account is created. A wrong one counts against the address like a registration attempt.
   */
  private async preauth(preauth: Element, domain: string, address: string, stream: RegistrationStream): Promise<undefined> {
    if (!this.open) throw new StanzaError('service-unavailable', 'accounts are not created in-band on this server');
    const token = preauth.attrs.token ?? '';
    const refused = await this.accounts.registrationTokens.check(token, domain);
    if (refused) {
      if (!this.limiter.take(address)) {
        throw new StanzaError('resource-constraint', `too many registration requests from your address; try again in ${this.limiter.retryAfter(address)} seconds`);
      }
      throw new StanzaError('item-not-found', REFUSED[refused]);
    }
    stream.token = token;
    return undefined;
  }

  private async handle(iq: Element, domain: string, address: string, stream: RegistrationStream): Promise<Element | undefined> {
    if (!this.open) throw new StanzaError('service-unavailable', 'accounts are not created in-band on this server');
    const query = child(iq, 'query', NS_REGISTER)!;
    if (iq.attrs.type === 'get') {
      return el('query', { xmlns: NS_REGISTER },
        el('instructions', {}, 'Choose a username and password for use with this service.'),
        el('username'), el('password'));
    }
    if (iq.attrs.type !== 'set') throw new StanzaError('bad-request', 'registration is an iq get or set');
    if (child(query, 'remove')) throw new StanzaError('registration-required', 'log in before removing an account');
    if (this.config.registration.requireToken && stream.token === undefined) {
      throw new StanzaError('forbidden', `accounts are created here with an invitation only: present its token first (<preauth xmlns='${NS_PREAUTH}'/>)`);
    }
    if (!this.limiter.take(address)) {
      throw new StanzaError('resource-constraint', `too many registration requests from your address; try again in ${this.limiter.retryAfter(address)} seconds`);
    }
    // The checks run in this order, so the answer names the first thing to fix:
    // the form, then the username (malformed, then taken), then the password policy.
    if (children(query, 'username').length > 1 || children(query, 'password').length > 1) {
      throw new StanzaError('bad-request', 'a registration carries one username and one password');
    }
    const username = text(child(query, 'username')).trim();
    const password = text(child(query, 'password'));
    // XEP-0077 §3.1: missing information (an empty password included) is not-acceptable.
    if (!username || !password) throw new StanzaError('not-acceptable', 'a username and a password are required');
    let bare: string;
    try {
      bare = makeJid(username, domain).bare;
    } catch {
      throw new StanzaError('jid-malformed', `'${username}' cannot be a username`);
    }
    const taken = () => new StanzaError('conflict', `'${username}' is taken`);
    if (await this.accounts.exists(bare)) throw taken();
    const min = this.config.registration.minPasswordLength;
    if ([...password].length < min) throw new StanzaError('not-acceptable', `the password must have at least ${min} characters`);
    // The token's use is taken before the account is made, and given back if it is not.
    const use = stream.token === undefined ? undefined : await this.accounts.registrationTokens.take(stream.token, domain);
    if (typeof use === 'string') {
      stream.token = undefined;
      throw new StanzaError('item-not-found', REFUSED[use]);
    }
    let created = false;
    try {
      // Taken between the check and now: still a conflict.
      created = await this.accounts.add(bare, password);
    } finally {
      if (!created) await use?.release();
    }
    if (!created) throw taken();
    // One account per presented token: another needs the token presented again.
    stream.token = undefined;
    return undefined;
  }
}

// One registration service (and so one rate limiter) per connection manager,
// found from its context without the context having to know about it.
const services = new WeakMap<object, InBandRegistration>();

export function inBandRegistration(ctx: { readonly accounts: Accounts; readonly config: Config }): InBandRegistration {
  let r = services.get(ctx);
  if (!r) services.set(ctx, (r = new InBandRegistration(ctx.accounts, ctx.config)));
  return r;
}
