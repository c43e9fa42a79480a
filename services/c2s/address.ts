// Client addresses: formatting raw ones and matching them against trusted networks.
import { BlockList, isIP } from 'node:net';

/** '::ffff:1.2.3.4' → '1.2.3.4'; anything else unchanged. */
export function unmapAddress(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** Dotted IPv4 (also for v4-mapped IPv6) or RFC 5952 IPv6, from 4 or 16 raw bytes. */
export function formatAddress(raw: ArrayBuffer | Uint8Array): string {
  const b = raw instanceof Uint8Array ? raw : new Uint8Array(raw);
  if (b.length === 4) return b.join('.');
  if (b.length !== 16) return '';
  let mapped = b[10] === 0xff && b[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (b[i] !== 0) mapped = false;
  if (mapped) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i] << 8) | b[i + 1]);
  // The longest run of two or more zero groups becomes '::'.
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt === -1) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}

/** A set of CIDRs ('10.0.0.0/8', '::1/128', or a bare address). */
export class SourceNetworks {
  private readonly list = new BlockList();

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const [net, bits] = c.split('/');
      const family = isIP(net);
      if (family === 0) throw new Error(`not a network: '${c}'`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      const prefix = bits === undefined ? (family === 4 ? 32 : 128) : Number(bits);
      if (!Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) throw new Error(`bad prefix length in '${c}'`);
      this.list.addSubnet(net, prefix, type);
    }
  }

  has(address: string): boolean {
    const a = unmapAddress(address);
    const family = isIP(a);
    if (family === 0) return false;
    return this.list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  }
}
