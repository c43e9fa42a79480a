// Where a domain's XMPP service listens (RFC 6120 §3.2, XEP-0368): the SRV
// records for STARTTLS (`_xmpp-server._tcp`) and for direct TLS
// (`_xmpps-server._tcp`) merged into one list ordered by priority and weight
// (RFC 2782), or the domain itself on the default port when it publishes
// none. Host names are returned as they are: the connector's own lookup
// resolves A/AAAA (and tries both families).
import { Resolver } from 'node:dns/promises';
import type { SrvRecord } from 'node:dns';

export interface ServiceTarget {
  host: string;
  port: number;
  /** XEP-0368: TLS from the first byte (ALPN 'xmpp-server' / 'xmpp-client'). */
  directTls: boolean;
}

/** The part of node:dns this needs; tests hand in their own. */
export interface SrvLookup {
  resolveSrv(name: string): Promise<SrvRecord[]>;
}

// Short timeouts: a resolver that does not answer costs the sender a bounce,
// not a stanza queue held for the c-ares default (5 s × 4 tries).
let shared: Resolver | undefined;
function defaultLookup(): SrvLookup {
  return (shared ??= new Resolver({ timeout: 2000, tries: 2 }));
}

interface Candidate extends ServiceTarget {
  priority: number;
  weight: number;
}

/** Records of one service; undefined when the domain has none, [] when it says "not here" (target '.'). */
async function lookup(resolver: SrvLookup, name: string, directTls: boolean): Promise<Candidate[] | undefined> {
  let records: SrvRecord[];
  try {
    records = await resolver.resolveSrv(name);
  } catch {
    return undefined; // NXDOMAIN, no records, timeouts: all mean "use the fallback"
  }
  if (records.length === 0) return undefined;
  // RFC 2782: a single record with target '.' means the service is decidedly unavailable.
  if (records.length === 1 && (records[0].name === '.' || records[0].name === '')) return [];
  return records
    .filter((r) => r.name !== '.' && r.name !== '')
    .map((r) => ({ host: r.name.replace(/\.$/, ''), port: r.port, directTls, priority: r.priority, weight: r.weight }));
}

/** RFC 2782 order: ascending priority; within one, a weighted random draw (direct TLS first on equal draws). */
export function orderTargets(candidates: readonly Candidate[], random: () => number = Math.random): ServiceTarget[] {
  const byPriority = new Map<number, Candidate[]>();
  for (const c of candidates) {
    const list = byPriority.get(c.priority);
    if (list) list.push(c);
    else byPriority.set(c.priority, [c]);
  }
  const out: ServiceTarget[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    // Zero weights first, as RFC 2782 asks, so they keep a small chance.
    const pool = byPriority.get(priority)!.sort((a, b) => a.weight - b.weight || Number(b.directTls) - Number(a.directTls));
    while (pool.length > 0) {
      const total = pool.reduce((s, c) => s + c.weight, 0);
      const r = random() * total;
      let i = 0;
      let sum = pool[0].weight;
      while (sum < r && i < pool.length - 1) sum += pool[++i].weight;
      const [c] = pool.splice(i, 1);
      out.push({ host: c.host, port: c.port, directTls: c.directTls });
    }
  }
  return out;
}

export interface ResolveOptions {
  /** 'server' for s2s (`_xmpp-server`), 'client' for c2s (`_xmpp-client`). */
  service: 'server' | 'client';
  /** Port of the fallback when the domain publishes no SRV records (5269 for servers). */
  defaultPort: number;
  resolver?: SrvLookup;
}

/**
 * The targets to try, in order. Empty means the domain declared it offers no
 * such service (SRV target '.'), which callers treat like a failed lookup.
 */
export async function resolveXmppService(domain: string, o: ResolveOptions): Promise<ServiceTarget[]> {
  const resolver = o.resolver ?? defaultLookup();
  const [direct, starttls] = await Promise.all([
    lookup(resolver, `_xmpps-${o.service}._tcp.${domain}`, true),
    lookup(resolver, `_xmpp-${o.service}._tcp.${domain}`, false),
  ]);
  if (direct === undefined && starttls === undefined) return [{ host: domain, port: o.defaultPort, directTls: false }];
  return orderTargets([...(direct ?? []), ...(starttls ?? [])]);
}

/** 'host:port', '[v6]:port' or 'host' (default port); a 'tls://' prefix asks for direct TLS. */
export function parseTarget(spec: string, defaultPort: number): ServiceTarget {
  let s = spec.trim();
  let directTls = false;
  if (s.startsWith('tls://')) {
    directTls = true;
    s = s.slice(6);
  } else if (s.startsWith('tcp://')) {
    s = s.slice(6);
  }
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (v6) return { host: v6[1], port: v6[2] ? Number(v6[2]) : defaultPort, directTls };
  const colon = s.lastIndexOf(':');
  if (colon > 0 && s.indexOf(':') === colon) {
    const port = Number(s.slice(colon + 1));
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad port in route '${spec}'`);
    return { host: s.slice(0, colon), port, directTls };
  }
  return { host: s, port: defaultPort, directTls };
}
