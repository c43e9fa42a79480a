// Client halves of SCRAM (RFC 5802, with channel binding) and of the HT
// mechanisms (FAST, XEP-0484), for raw-wire tests of SASL2 logins: each step
// is a base64 string to put in <initial-response/> or <response/>.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { RawClient } from './raw.ts';

export const NS_SASL2 = 'urn:xmpp:sasl:2';
export const NS_BIND2 = 'urn:xmpp:bind:0';
export const NS_FAST = 'urn:xmpp:fast:0';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');

export interface ScramClient {
  /** client-first-message, base64. */
  first: string;
  /** client-final-message for the server-first-message (base64 in, base64 out). */
  final(serverFirstB64: string): string;
  /** Whether the server-final-message (base64) proves the server knew the password. */
  verify(serverFinalB64: string): boolean;
}

/** `gs2`: 'n,,' (no binding), 'y,,' (could bind, believes the server cannot) or 'p=<type>,,' with `cbData`. */
export function scramClient(mech: 'SCRAM-SHA-1' | 'SCRAM-SHA-256', user: string, password: string, gs2 = 'n,,', cbData: Buffer = Buffer.alloc(0)): ScramClient {
  const digest = mech === 'SCRAM-SHA-1' ? 'sha1' : 'sha256';
  const bare = `n=${user},r=${randomBytes(12).toString('base64')}`;
  let authMessage = '';
  let serverKey = Buffer.alloc(0);
  return {
    first: b64(gs2 + bare),
    final(serverFirstB64) {
      const serverFirst = Buffer.from(serverFirstB64, 'base64').toString();
      const attrs = Object.fromEntries(serverFirst.split(',').map((a) => [a[0], a.slice(2)]));
      const salted = pbkdf2Sync(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), digest === 'sha1' ? 20 : 32, digest);
      const clientKey = createHmac(digest, salted).update('Client Key').digest();
      serverKey = createHmac(digest, salted).update('Server Key').digest();
      const storedKey = createHash(digest).update(clientKey).digest();
      const noProof = `c=${Buffer.concat([Buffer.from(gs2), cbData]).toString('base64')},r=${attrs.r}`;
      authMessage = `${bare},${serverFirst},${noProof}`;
      const sig = createHmac(digest, storedKey).update(authMessage).digest();
      return b64(`${noProof},p=${Buffer.from(clientKey.map((x, i) => x ^ sig[i])).toString('base64')}`);
    },
    verify(serverFinalB64) {
      const expected = createHmac(digest, serverKey).update(authMessage).digest().toString('base64');
      return Buffer.from(serverFinalB64, 'base64').toString() === `v=${expected}`;
    },
  };
}

/** HT initial response: authcid NUL HMAC-SHA-256(token, "Initiator" || cb data), base64. */
export function htInitial(user: string, token: string, cbData: Buffer = Buffer.alloc(0)): string {
  return b64(Buffer.concat([Buffer.from(`${user}\0`), createHmac('sha256', token).update('Initiator').update(cbData).digest()]));
}

/** What the server proves back in <additional-data/>: HMAC-SHA-256(token, "Responder" || cb data), base64. */
export function htResponder(token: string, cbData: Buffer = Buffer.alloc(0)): string {
  return createHmac('sha256', token).update('Responder').update(cbData).digest().toString('base64');
}

/** RFC 9266 tls-exporter, as the client computes it. */
export function tlsExporter(c: RawClient): Buffer {
  return (c.socket as TLSSocket).exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
}

/** RFC 5929 tls-server-end-point: the hash of the server's certificate (SHA-256 for the certificates Parley generates). */
export function tlsServerEndPoint(c: RawClient): Buffer {
  return createHash('sha256').update((c.socket as TLSSocket).getPeerCertificate().raw).digest();
}

/** The text of the first `<name>` element in the output after `from`. */
export function elementText(out: string, name: string, from = 0): string | undefined {
  const m = new RegExp(`<${name}(?: [^>]*)?>([^<]*)</${name}>`).exec(out.slice(from));
  return m?.[1];
}

export function userAgent(id: string, software = 'parley-tests'): string {
  return `<user-agent id='${id}'><software>${software}</software><device>test</device></user-agent>`;
}

/** A SCRAM-SHA-256 login over SASL2 (two round trips); `inline` goes inside <authenticate/>. Resolves with the <success/> element. */
export async function sasl2Scram(c: RawClient, user: string, password: string, inline = '',
  opts: { mech?: 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS' | 'SCRAM-SHA-1'; gs2?: string; cbData?: Buffer } = {}): Promise<string> {
  const mech = opts.mech ?? 'SCRAM-SHA-256';
  const scram = scramClient(mech === 'SCRAM-SHA-1' ? 'SCRAM-SHA-1' : 'SCRAM-SHA-256', user, password, opts.gs2, opts.cbData);
  const at = c.output.length;
  c.send(`<authenticate xmlns='${NS_SASL2}' mechanism='${mech}'><initial-response>${scram.first}</initial-response>${inline}</authenticate>`);
  const challenged = await c.waitFor(new RegExp(`[^]{${at}}[^]*(<challenge|<failure)`));
  const challenge = elementText(challenged, 'challenge', at);
  if (challenge === undefined) throw new Error(`no challenge: ${challenged.slice(at)}`);
  const at2 = c.output.length;
  c.send(`<response xmlns='${NS_SASL2}'>${scram.final(challenge)}</response>`);
  const out = (await c.waitFor(new RegExp(`[^]{${at2}}[^]*(</success>|</failure>)`))).slice(at2);
  const success = /<success [^]*?<\/success>/.exec(out)?.[0];
  if (!success) throw new Error(`no success: ${out}`);
  const additional = elementText(success, 'additional-data');
  if (!additional || !scram.verify(additional)) throw new Error(`the server did not prove it knew the password: ${success}`);
  return success;
}
