// Shared pieces of the k6 scripts: target from the environment, RFC 7395
// framing, and the same marker scanning as the Node generator (no XML parser).
// k6 has no PBKDF2, so these scripts authenticate with SASL PLAIN: the target
// must allow it without TLS (loopback/test setups, as for bench/cli.ts).
import encoding from 'k6/encoding';

export const env = {
  url: __ENV.WS_URL || 'ws://127.0.0.1:5280/xmpp-websocket',
  domain: __ENV.XMPP_DOMAIN || 'localhost',
  prefix: __ENV.USERS_PREFIX || 'user',
  password: __ENV.PASSWORD || 'secret',
  users: Number(__ENV.USERS || '500'),
};

export const NS = " xmlns='jabber:client'";
export const open = (): string => `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='${env.domain}' version='1.0'/>`;
export const close = (): string => `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`;
export const plainAuth = (user: string): string =>
  `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${encoding.b64encode(`\u0000${user}\u0000${env.password}`)}</auth>`;
export const bind = (resource: string): string =>
  `<iq${NS} type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`;
/** Sent after initial presence: its reply proves the presence was processed. */
export const ping = (): string => `<iq${NS} type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>`;

export type Phase = 'connecting' | 'auth' | 'restart' | 'bind' | 'presence' | 'ready';

/** One login as a state machine over received frames; returns the frames to send next (one element each, RFC 7395 §3.3.3). */
export class Login {
  phase: Phase = 'connecting';
  error = '';
  constructor(readonly user: string) {}

  onFrame(f: string): string[] {
    if (f.indexOf('<stream:error') >= 0 || f.indexOf('<failure') >= 0) { this.error = f.slice(0, 200); return []; }
    switch (this.phase) {
      case 'connecting':
        if (f.indexOf('<mechanism>PLAIN</mechanism>') >= 0) { this.phase = 'auth'; return [plainAuth(this.user)]; }
        if (f.indexOf('features') >= 0) this.error = 'PLAIN not offered';
        return [];
      case 'auth':
        if (f.indexOf('<success') >= 0) { this.phase = 'restart'; return [open()]; }
        return [];
      case 'restart':
        if (f.indexOf('urn:ietf:params:xml:ns:xmpp-bind') >= 0) { this.phase = 'bind'; return [bind(`k6-${__VU}`)]; }
        return [];
      case 'bind':
        if (/id=['"]bind['"]/.test(f)) { this.phase = 'presence'; return [`<presence${NS}/>`, ping()]; }
        return [];
      case 'presence':
        if (/id=['"]ping['"]/.test(f)) this.phase = 'ready';
        return [];
      default:
        return [];
    }
  }
}

export const userFor = (n: number): string => `${env.prefix}${(n % env.users) + 1}`;
