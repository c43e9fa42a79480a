// Server side of SASL (RFC 6120 §6): SCRAM-SHA-1/-256 (RFC 5802, RFC 7677),
// optionally with channel binding (-PLUS), PLAIN (RFC 4616), and the HT
// token mechanisms FAST logins use (XEP-0484, draft-schmaus-kitten-sasl-ht). The stream
// layer owns base64, <abort/>, and the TLS requirement for PLAIN; a session
// only turns decoded client messages into the next step.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { randomBytesPooled } from './random.ts';
import { normalizeLocal, tryParseJid } from '../jid/index.ts';
import {
  DEFAULT_ITERATIONS, SCRAM_HASH, saslprep, verifyPassword,
  type ScramCredential, type ScramMechanism, type StoredCredentials,
} from './credentials.ts';

export type SaslFailure =
  | 'aborted' | 'account-disabled' | 'credentials-expired' | 'encryption-required' | 'incorrect-encoding'
  | 'invalid-authzid' | 'invalid-mechanism' | 'malformed-request' | 'mechanism-too-weak' | 'not-authorized'
  | 'temporary-auth-failure';

export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  | { kind: 'success'; data?: Buffer; username: string; authzid?: string }
  | { kind: 'failure'; condition: SaslFailure; text?: string };

/** username is the SASLprepped, normalized localpart. */
export interface CredentialLookup { (username: string): Promise<StoredCredentials | undefined> }

/** The first call gets the initial response (empty if the client sent none). */
export interface SaslSession { step(data: Buffer): Promise<SaslStep> }

export interface ChannelBinding {
  /** e.g. 'tls-exporter' (RFC 9266; Node: tlsSocket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0))). */
  type: string;
  data: Buffer;
}

export interface SaslOptions {
  /** Our domain; without it any non-empty authzid is refused. */
  domain?: string;
  /**
   * Set when this connection offers the -PLUS mechanisms. Besides enabling
   * them it makes a client's 'y' flag a detected downgrade (RFC 5802 §6).
   */
  channelBinding?: ChannelBinding;
  /** The same for a connection that offers several types (tls-exporter and tls-server-end-point); the client picks one. */
  channelBindings?: readonly ChannelBinding[];
  /**
   * Key for faking salts of unknown users. Defaults to a per-process random
   * key; a cluster must share one, or two nodes give an unknown user two salts.
   */
  fakeSaltSecret?: Buffer;
  /** Iteration count shown for unknown users; match what real accounts use. */
  fakeIterations?: number;
  /** Fixed server nonce part, for test vectors only. */
  serverNonce?: string;
}

export const SUPPORTED_MECHANISMS = ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'] as const;
/** Offer these too (first) when a channel binding is available. */
export const PLUS_MECHANISMS = ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS'] as const;

/** undefined for unknown mechanisms, and for -PLUS without opts.channelBinding. */
export function createSaslSession(mechanism: string, lookup: CredentialLookup, opts: SaslOptions = {}): SaslSession | undefined {
  switch (mechanism) {
    case 'PLAIN': return session([(msg) => plain(msg, lookup, opts)]);
    case 'SCRAM-SHA-1': case 'SCRAM-SHA-256': return scram(mechanism, false, lookup, opts);
    case 'SCRAM-SHA-1-PLUS': case 'SCRAM-SHA-256-PLUS':
      return bindingsOf(opts).length ? scram(mechanism.slice(0, -5) as ScramMechanism, true, lookup, opts) : undefined;
    default: return undefined;
  }
}

const bindingsOf = (opts: SaslOptions): readonly ChannelBinding[] => opts.channelBindings ?? (opts.channelBinding ? [opts.channelBinding] : []);

const fail = (condition: SaslFailure, text?: string): SaslStep => ({ kind: 'failure', condition, text });
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Runs one handler per client message. An empty first message means "no
 * initial response": answer with an empty challenge once. Anything after the
 * outcome is a protocol error.
 */
function session(handlers: ((msg: string) => Promise<SaslStep>)[]): SaslSession {
  let next = 0;
  let waitedForInitial = false;
  return {
    async step(data) {
      if (next >= handlers.length) return fail('malformed-request', 'authentication already finished');
      if (next === 0 && data.length === 0 && !waitedForInitial) {
        waitedForInitial = true;
        return { kind: 'challenge', data: Buffer.alloc(0) };
      }
      let msg: string;
      try {
        msg = utf8.decode(data);
      } catch {
        next = handlers.length;
        return fail('malformed-request', 'not UTF-8');
      }
      const result = await handlers[next++](msg);
      if (result.kind !== 'challenge') next = handlers.length;
      return result;
    },
  };
}

/** SASL user name → lookup key, or undefined if it cannot be anyone's localpart. */
export function prepUsername(name: string): string | undefined {
  try {
    return normalizeLocal(saslprep(name));
  } catch {
    return undefined;
  }
}

async function find(lookup: CredentialLookup, username: string): Promise<StoredCredentials | undefined | Error> {
  try {
    return await lookup(username);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

// Unknown users get a salt, iteration count and keys derived from their name,
// so repeated attempts see the same answers a real account would give.
const PROCESS_SECRET = randomBytes(32);
function fakeCredential(mechanism: ScramMechanism, username: string, opts: SaslOptions): ScramCredential {
  const mac = (label: string, len: number) =>
    createHmac('sha256', opts.fakeSaltSecret ?? PROCESS_SECRET).update(`${label}\0${mechanism}\0${username}`).digest().subarray(0, len).toString('base64');
  const { length } = SCRAM_HASH[mechanism];
  return { salt: mac('salt', 16), iterations: opts.fakeIterations ?? DEFAULT_ITERATIONS, storedKey: mac('stored', length), serverKey: mac('server', length) };
}
const fakeCredentials = (username: string, opts: SaslOptions): StoredCredentials => ({
  'SCRAM-SHA-1': fakeCredential('SCRAM-SHA-1', username, opts),
  'SCRAM-SHA-256': fakeCredential('SCRAM-SHA-256', username, opts),
});

/**
 * RFC 6120 §6.3.8: users may only act as themselves, so a non-empty authzid
 * must be the authenticated user's own bare JID.
 */
function succeed(username: string, authzid: string, opts: SaslOptions, data?: Buffer): SaslStep {
  if (authzid === '') return { kind: 'success', data, username };
  const requested = tryParseJid(authzid);
  const own = opts.domain === undefined ? undefined : tryParseJid(`${username}@${opts.domain}`);
  if (!requested || !own || requested.full !== own.bare) return fail('invalid-authzid', 'authzid must be your own bare JID');
  return { kind: 'success', data, username, authzid: own.bare };
}

/** RFC 4616: [authzid] NUL authcid NUL passwd */
async function plain(msg: string, lookup: CredentialLookup, opts: SaslOptions): Promise<SaslStep> {
  const parts = msg.split('\0');
  if (parts.length !== 3 || parts[1] === '' || parts[2] === '') return fail('malformed-request', 'expected authzid NUL authcid NUL password');
  const [authzid, authcid, password] = parts;
  const username = prepUsername(authcid);
  if (username === undefined) return fail('not-authorized');
  const creds = await find(lookup, username);
  if (creds instanceof Error) return fail('temporary-auth-failure');
  // Unknown users pay the same PBKDF2 cost, so timing does not reveal them.
  const ok = await verifyPassword(creds ?? fakeCredentials(username, opts), password);
  if (!ok || !creds) return fail('not-authorized');
  return succeed(username, authzid, opts);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/; // printable ASCII except ','
const EXTENSION = /^[A-Za-z]=[^,]+$/;
const GS2 = /^(n|y|p=([A-Za-z0-9.-]+)),(?:a=([^,]+))?,/;

/** saslname (RFC 5802 §5.1): ',' and '=' arrive as =2C and =3D; any other '=' is malformed. */
function decodeSaslname(s: string): string | undefined {
  if (s === '' || /=(?!2C|3D)/.test(s)) return undefined;
  return s.replace(/=2C|=3D/g, (m) => (m === '=2C' ? ',' : '='));
}

function scram(mechanism: ScramMechanism, plus: boolean, lookup: CredentialLookup, opts: SaslOptions): SaslSession {
  const { digest, length } = SCRAM_HASH[mechanism];
  let gs2Header = '';
  let clientFirstBare = '';
  let serverFirst = '';
  let nonce = '';
  let username = '';
  let authzid = '';
  let cred: ScramCredential; // the account's, or a fake one for unknown users
  let known = false;
  const bindings = bindingsOf(opts);
  let bound: ChannelBinding | undefined; // the type the client chose

  async function clientFirst(msg: string): Promise<SaslStep> {
    const gs2 = GS2.exec(msg);
    if (!gs2) return fail('malformed-request', 'bad GS2 header');
    const [header, flag, cbName, rawAuthzid] = gs2;
    if (cbName !== undefined) {
      if (!plus || bindings.length === 0) return fail('malformed-request', `channel binding requires ${mechanism}-PLUS`);
      bound = bindings.find((b) => b.type === cbName);
      if (!bound) return fail('not-authorized', `unsupported channel binding type; use ${bindings.map((b) => b.type).join(' or ')}`);
    } else if (plus) {
      return fail('malformed-request', `${mechanism}-PLUS requires channel binding`);
    } else if (flag === 'y' && bindings.length > 0) {
      // The client could have bound but believes we cannot: someone stripped -PLUS.
      return fail('not-authorized', 'channel binding downgrade detected');
    }
    const decodedAuthzid = rawAuthzid === undefined ? '' : decodeSaslname(rawAuthzid);
    gs2Header = header;
    clientFirstBare = msg.slice(header.length);
    const [n, r, ...exts] = clientFirstBare.split(',');
    if (n?.startsWith('m=')) return fail('malformed-request', 'mandatory extensions are not supported');
    const name = n?.startsWith('n=') ? decodeSaslname(n.slice(2)) : undefined;
    if (decodedAuthzid === undefined || name === undefined || !r?.startsWith('r=') || !NONCE.test(r.slice(2)) || !exts.every((e) => EXTENSION.test(e)))
      return fail('malformed-request', 'bad client-first-message');
    authzid = decodedAuthzid;
    const prepped = prepUsername(name);
    if (prepped === undefined) return fail('not-authorized');
    username = prepped;
    const creds = await find(lookup, username);
    if (creds instanceof Error) return fail('temporary-auth-failure');
    known = creds?.[mechanism] !== undefined;
    cred = creds?.[mechanism] ?? fakeCredential(mechanism, username, opts);
    nonce = r.slice(2) + (opts.serverNonce ?? randomBytesPooled(18).toString('base64'));
    serverFirst = `r=${nonce},s=${cred.salt},i=${cred.iterations}`;
    return { kind: 'challenge', data: Buffer.from(serverFirst) };
  }

  async function clientFinal(msg: string): Promise<SaslStep> {
    const parts = msg.split(',');
    const [c, r] = parts;
    const p = parts[parts.length - 1];
    if (parts.length < 3 || !c.startsWith('c=') || !BASE64.test(c.slice(2)) || !r.startsWith('r=') || !p.startsWith('p=')
      || !BASE64.test(p.slice(2)) || !parts.slice(2, -1).every((e) => EXTENSION.test(e)))
      return fail('malformed-request', 'bad client-final-message');
    const proof = Buffer.from(p.slice(2), 'base64');
    if (proof.length !== length) return fail('malformed-request', 'bad proof length');
    const cbInput = Buffer.concat([Buffer.from(gs2Header), bound ? bound.data : Buffer.alloc(0)]);
    if (!Buffer.from(c.slice(2), 'base64').equals(cbInput)) return fail('not-authorized', 'channel binding mismatch');
    if (r.slice(2) !== nonce) return fail('not-authorized', 'nonce mismatch');

    // Same work whether or not the user exists.
    const storedKey = Buffer.from(cred.storedKey, 'base64');
    const authMessage = `${clientFirstBare},${serverFirst},${parts.slice(0, -1).join(',')}`;
    const clientSignature = createHmac(digest, storedKey).update(authMessage).digest();
    for (let i = 0; i < length; i++) proof[i] ^= clientSignature[i]; // proof becomes ClientKey
    const candidate = createHash(digest).update(proof).digest();
    const ok = storedKey.length === candidate.length && timingSafeEqual(storedKey, candidate);
    const serverSignature = createHmac(digest, Buffer.from(cred.serverKey, 'base64')).update(authMessage).digest();
    if (!ok || !known) return fail('not-authorized');
    return succeed(username, authzid, opts, Buffer.from(`v=${serverSignature.toString('base64')}`));
  }

  return session([clientFirst, clientFinal]);
}

/** The HT mechanisms (draft-schmaus-kitten-sasl-ht) by the channel binding each uses; NONE uses none. */
export const HT_MECHANISMS = {
  'HT-SHA-256-EXPR': 'tls-exporter',
  'HT-SHA-256-ENDP': 'tls-server-end-point',
  'HT-SHA-256-NONE': '',
} as const;
export type HtMechanism = keyof typeof HT_MECHANISMS;
export const isHtMechanism = (m: string): m is HtMechanism => Object.hasOwn(HT_MECHANISMS, m);

/** HMAC-SHA-256 keyed with the token over the label ('Initiator' or 'Responder') and the channel binding data. */
export function htHash(token: string, label: 'Initiator' | 'Responder', cbData: Buffer): Buffer {
  return createHmac('sha256', token).update(label).update(cbData).digest();
}

/**
 * Finds the token the client proved it holds, among the ones stored for it
 * (`matches` compares in constant time), and records its use; undefined when
 * none matches. Throws when the store fails.
 */
export interface TokenCheck { (username: string, matches: (token: string) => boolean): Promise<string | undefined> }

/**
 * An HT exchange: one message `authcid NUL HMAC(token, "Initiator" || cb)`,
 * answered by success with `HMAC(token, "Responder" || cb)` (mutual
 * authentication) or not-authorized. undefined when the mechanism's channel
 * binding is not available on this connection.
 */
export function createHtSession(mechanism: string, check: TokenCheck, opts: SaslOptions = {}): SaslSession | undefined {
  if (!isHtMechanism(mechanism)) return undefined;
  const type = HT_MECHANISMS[mechanism];
  const cb = type === '' ? Buffer.alloc(0) : bindingsOf(opts).find((b) => b.type === type)?.data;
  if (!cb) return undefined;
  return {
    async step(data) {
      const nul = data.indexOf(0);
      if (nul <= 0 || data.length - nul - 1 !== 32) return fail('malformed-request', 'expected authcid NUL a 32-byte HMAC');
      let authcid: string;
      try {
        authcid = utf8.decode(data.subarray(0, nul));
      } catch {
        return fail('malformed-request', 'not UTF-8');
      }
      const username = prepUsername(authcid);
      if (username === undefined) return fail('not-authorized');
      const proof = data.subarray(nul + 1);
      let token: string | undefined;
      try {
        token = await check(username, (t) => timingSafeEqual(htHash(t, 'Initiator', cb), proof));
      } catch {
        return fail('temporary-auth-failure');
      }
      if (token === undefined) return fail('not-authorized', 'the token is not valid for this account and client');
      return succeed(username, '', opts, htHash(token, 'Responder', cb));
    },
  };
}
