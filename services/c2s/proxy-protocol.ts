// HAProxy PROXY protocol, v1 (text) and v2 (binary), in front of the TCP and
// direct-TLS listeners. A load balancer that terminates nothing but forwards
// the connection puts the client's real address in a header before the first
// byte of XMPP (or of the TLS handshake). Only configured networks may do
// that: a header from anywhere else is a spoofing attempt and the connection
// is dropped. The address found here is the client's address for logs, the
// loopback exemption and limits; it is never put in anything another entity sees.
import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { logger } from '../../libs/log/index.ts';
import { formatAddress, SourceNetworks, unmapAddress } from './address.ts';

const log = logger('c2s');

const V1 = Buffer.from('PROXY ', 'latin1');
const V2 = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX = 107; // the longest v1 line, CRLF included
const V2_MAX = 16 + 2048; // addresses plus TLVs we are willing to skip

export interface ProxyPolicy {
  readonly enabled: boolean;
  readonly trusted: SourceNetworks;
  readonly headerTimeoutMs: number;
}

export function proxyPolicy(cfg: { enabled: boolean; trustedSources: string[]; headerTimeoutMs: number }): ProxyPolicy {
  return { enabled: cfg.enabled, trusted: new SourceNetworks(cfg.trustedSources), headerTimeoutMs: cfg.headerTimeoutMs };
}

export interface ProxiedPeer {
  /** The client's address: from the header, or the socket's own when there was none. */
  address: string;
  /** A trusted proxy supplied the address. */
  proxied: boolean;
  /** The proxy says the client reached it over TLS (v2's PP2_TYPE_SSL field, client bit set): this connection counts as TLS. */
  tls?: boolean;
}

/** What the first bytes say: more needed, a header of this length, no header, or a malformed one. */
type Scan = { kind: 'more' } | { kind: 'none' } | { kind: 'bad'; why: string } | { kind: 'header'; length: number; address: string | undefined; tls?: boolean };

function startsWithPrefix(buf: Buffer, sig: Buffer): 'yes' | 'prefix' | 'no' {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return 'no';
  return buf.length >= sig.length ? 'yes' : 'prefix';
}

export function scanProxyHeader(buf: Buffer): Scan {
  const v1 = startsWithPrefix(buf, V1);
  const v2 = startsWithPrefix(buf, V2);
  if (v1 === 'prefix' || v2 === 'prefix') return { kind: 'more' };
  if (v1 === 'yes') {
    const end = buf.indexOf('\r\n', 0, 'latin1');
    if (end === -1) return buf.length >= V1_MAX ? { kind: 'bad', why: 'v1 header too long' } : { kind: 'more' };
    const parts = buf.subarray(0, end).toString('latin1').split(' ');
    if (parts[1] === 'UNKNOWN') return { kind: 'header', length: end + 2, address: undefined };
    if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) return { kind: 'bad', why: 'malformed v1 header' };
    const fam = isIP(parts[2]);
    if ((parts[1] === 'TCP4' && fam !== 4) || (parts[1] === 'TCP6' && fam !== 6)) return { kind: 'bad', why: 'bad v1 source address' };
    return { kind: 'header', length: end + 2, address: unmapAddress(parts[2]) };
  }
  if (v2 === 'yes') {
    if (buf.length < 16) return { kind: 'more' };
    const verCmd = buf[12];
    const fam = buf[13];
    const len = buf.readUInt16BE(14);
    if (verCmd >> 4 !== 2) return { kind: 'bad', why: 'unknown v2 version' };
    if (16 + len > V2_MAX) return { kind: 'bad', why: 'v2 header too long' };
    if (buf.length < 16 + len) return { kind: 'more' };
    const cmd = verCmd & 0xf;
    if (cmd === 0) return { kind: 'header', length: 16 + len, address: undefined }; // LOCAL: the proxy's own health check
    if (cmd !== 1) return { kind: 'bad', why: 'unknown v2 command' };
    const family = fam >> 4;
    const addressBytes = family === 1 ? 12 : family === 2 ? 36 : family === 3 ? 216 : 0;
    const tls = clientTls(buf.subarray(16 + Math.min(addressBytes, len), 16 + len));
    if (family === 1 && len >= 12) return { kind: 'header', length: 16 + len, address: formatAddress(buf.subarray(16, 20)), tls };
    if (family === 2 && len >= 36) return { kind: 'header', length: 16 + len, address: formatAddress(buf.subarray(16, 32)), tls };
    return { kind: 'header', length: 16 + len, address: undefined, tls }; // AF_UNIX or unspecified
  }
  return { kind: 'none' };
}

const PP2_TYPE_SSL = 0x20;
const PP2_CLIENT_SSL = 0x01;

/** The v2 TLVs after the addresses: whether PP2_TYPE_SSL says the client's connection to the proxy used TLS. */
function clientTls(tlvs: Buffer): boolean {
  let i = 0;
  while (i + 3 <= tlvs.length) {
    const type = tlvs[i];
    const len = tlvs.readUInt16BE(i + 1);
    if (i + 3 + len > tlvs.length) return false;
    if (type === PP2_TYPE_SSL) return len >= 1 && (tlvs[i + 3] & PP2_CLIENT_SSL) !== 0;
    i += 3 + len;
  }
  return false;
}

/**
 * Read the PROXY header, if any, off a fresh socket and leave every byte after
 * it unread for whoever takes the socket next (the socket is paused then).
 * Resolves null when the connection must be refused.
 */
export function readProxyHeader(socket: Socket, policy: ProxyPolicy): Promise<ProxiedPeer | null> {
  const own = unmapAddress(socket.remoteAddress ?? '');
  if (!policy.enabled) return Promise.resolve({ address: own, proxied: false });
  const trusted = policy.trusted.has(own);
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    const finish = (peer: ProxiedPeer | null, rest?: Buffer) => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.pause();
      if (rest && rest.length > 0) socket.unshift(rest);
      if (!peer) socket.destroy();
      resolve(peer);
    };
    const onClose = () => finish(null);
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const scan = scanProxyHeader(buf);
      switch (scan.kind) {
        case 'more':
          return;
        case 'none':
          return finish({ address: own, proxied: false }, buf);
        case 'bad':
          log.warn('malformed PROXY header', { source: own, reason: scan.why });
          return finish(null);
        case 'header':
          if (!trusted) {
            log.warn('PROXY header from an untrusted source refused', { source: own });
            return finish(null);
          }
          return finish({ address: scan.address ?? own, proxied: scan.address !== undefined, tls: scan.tls === true }, buf.subarray(scan.length));
        default: {
          const unreachable: never = scan;
          return unreachable;
        }
      }
    };
    // A silent client is handed on as it is (the header is optional even from a
    // trusted proxy); one that stopped halfway through a header is dropped.
    const timer = setTimeout(() => finish(buf.length === 0 ? { address: own, proxied: false } : null), policy.headerTimeoutMs);
    timer.unref();
    socket.on('error', () => socket.destroy());
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}
