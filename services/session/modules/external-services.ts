// XEP-0215 external service discovery: the STUN/TURN servers the operator
// configured (`externalServices`), told to the server's own users only, with
// TURN credentials made per request in the TURN REST shared-secret scheme
// (coturn's `use-auth-secret`): username `<expiry unix time>:<bare JID>`,
// password base64(HMAC-SHA1(secret, username)). The TURN server checks the
// password with the same secret and refuses it once the expiry is past, so
// nothing is stored here and any session process can answer.
import { createHmac } from 'node:crypto';
import type { Config } from '../../../libs/config/schema.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { bareJid, domainPart, hasLocalpart, resourcePart } from '../../../libs/jid/split.ts';
import { children, el, type Element } from '../../../libs/xml/element.ts';
import { defineModule, type AccountContext } from '../module.ts';

/** An iq to a served domain; `account` is the sender's when the sender is a local user (absent for another server's entity). */
interface HostRequest {
  readonly from: string;
  readonly to: string;
  readonly payload: Element;
  readonly account?: AccountContext;
}

export const NS_EXTDISCO = 'urn:xmpp:extdisco:2';

export type ExternalService = Config['externalServices'][number];

/** TURN REST credentials for `user`, valid until `expires` (unix seconds). */
export function turnCredentials(secret: string, user: string, expires: number): { username: string; password: string } {
  const username = `${expires}:${user}`;
  return { username, password: createHmac('sha1', secret).update(username).digest('base64') };
}

/**
 * Only a user of the addressed domain, from one of its bound sessions, learns
 * the services: not another server, not a user of another domain (served here
 * or not), not an entity without a session (XEP-0215 §2: forbidden).
 */
function requireLocalUser(req: HostRequest): AccountContext {
  const { from, account } = req;
  const isOwnUser = account !== undefined && hasLocalpart(from) && bareJid(from) === account.bare && domainPart(from) === req.to
    && account.sessionId(resourcePart(from)) !== undefined;
  if (!isOwnUser) throw new StanzaError('forbidden', `external services of ${req.to} are for its own users`);
  return account;
}

function serviceElement(s: ExternalService, user: string, now: number): Element {
  const attrs: Record<string, string | undefined> = {
    host: s.host, port: s.port === undefined ? undefined : String(s.port), transport: s.transport, type: s.type, name: s.name,
  };
  if (s.secret !== undefined) {
    const expires = Math.floor(now / 1000) + s.credentialTtlSeconds;
    const { username, password } = turnCredentials(s.secret, user, expires);
    Object.assign(attrs, { username, password, expires: new Date(expires * 1000).toISOString().replace('.000Z', 'Z'), restricted: '1' });
  }
  return el('service', attrs);
}

function services(req: HostRequest): Element {
  const account = requireLocalUser(req);
  const type = req.payload.attrs.type;
  const now = Date.now();
  const listed = account.server.config.externalServices.filter((s) => type === undefined || s.type === type);
  return el('services', { xmlns: NS_EXTDISCO, type }, ...listed.map((s) => serviceElement(s, account.bare, now)));
}

function credentials(req: HostRequest): Element {
  const account = requireLocalUser(req);
  const wanted = children(req.payload, 'service');
  if (wanted.length === 0) throw new StanzaError('bad-request', 'a credentials request names a service (host and type)');
  const now = Date.now();
  const out: Element[] = [];
  for (const w of wanted) {
    const { host, type, port } = w.attrs;
    if (!host || !type) throw new StanzaError('bad-request', "a service in a credentials request has 'host' and 'type'");
    const matching = account.server.config.externalServices.filter((s) => s.host === host && s.type === type && (port === undefined || String(s.port) === port));
    if (matching.length === 0) throw new StanzaError('item-not-found', `no ${type} service at ${host}${port ? ` port ${port}` : ''}`);
    for (const s of matching) out.push(serviceElement(s, account.bare, now));
  }
  return el('credentials', { xmlns: NS_EXTDISCO }, ...out);
}

export default defineModule({
  name: 'external-services',
  // Nothing configured: neither answered nor advertised.
  enabled: (config) => config.externalServices.length > 0,
  disco: { host: [NS_EXTDISCO] },
  iq: {
    'get/host/urn:xmpp:extdisco:2:services': services,
    'get/host/urn:xmpp:extdisco:2:credentials': credentials,
  },
});
