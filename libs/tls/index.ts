// Certificates: configured PEM files, or a self-signed one generated into the
// data directory on first start so a fresh install can offer STARTTLS at once.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { generate } from 'selfsigned';

export interface CertificatePair {
  cert: string;
  key: string;
}

export async function loadOrCreateCertificate(dataDir: string, domains: readonly string[], files: { cert?: string; key?: string }): Promise<CertificatePair> {
  if (files.cert && files.key) return { cert: readFileSync(files.cert, 'utf8'), key: readFileSync(files.key, 'utf8') };
  const dir = join(dataDir, 'certs');
  const certPath = join(dir, 'self-signed.crt');
  const keyPath = join(dir, 'self-signed.key');
  if (existsSync(certPath) && existsSync(keyPath)) return { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
  const primary = domains[0] ?? 'localhost';
  const pems = await generate([{ name: 'commonName', value: primary }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: domains.map((d) => ({ type: 2 as const, value: d })) }],
  });
  mkdirSync(dir, { recursive: true });
  writeFileSync(keyPath, pems.private, { mode: 0o600 });
  writeFileSync(certPath, pems.cert);
  return { cert: pems.cert, key: pems.private };
}

export function secureContext(pair: CertificatePair): SecureContext {
  return createSecureContext({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' });
}

/** Paths of one certificate chain and its key (PEM). */
export interface PemPaths {
  cert: string;
  key: string;
}

export interface DomainCertificatesOptions {
  /** Configured files by domain. */
  files?: Record<string, PemPaths>;
  /**
   * A directory searched on first use: `<domain>.crt` + `<domain>.key`, or
   * `<domain>/fullchain.pem` + `<domain>/privkey.pem` (the certbot layout).
   */
  dir?: string;
  /** For every domain that has no certificate of its own. */
  fallback: CertificatePair;
  /** CA bundle (PEM) that verifies peers' certificates; the system store when absent. */
  ca?: string;
  /** Most domains kept loaded at once. */
  maxCached?: number;
  /** How long "this domain has no certificate of its own" is believed before looking again. */
  recheckMs?: number;
}

interface CachedCertificate {
  pair: CertificatePair;
  own: boolean;
  context: SecureContext;
  at: number;
}

/**
 * Certificates per domain, chosen by TLS SNI: looked up when a domain is first
 * needed and kept in a bounded LRU cache, so a million hosted domains cost
 * nothing at start-up and only the busy ones stay in memory.
 */
export class DomainCertificates {
  private readonly cache = new Map<string, CachedCertificate>();
  private readonly files = new Map<string, PemPaths>();
  private fallbackContext: SecureContext | undefined;

  constructor(private readonly o: DomainCertificatesOptions) {
    for (const [d, f] of Object.entries(o.files ?? {})) this.files.set(d.toLowerCase(), f);
  }

  /** The context for a domain (its own certificate or the fallback), with the CA bundle for verifying peers. */
  context(domain: string): SecureContext {
    return this.entry(domain).context;
  }

  /** The fallback's context, for a peer that named no domain. */
  defaultContext(): SecureContext {
    return this.fallback();
  }

  /** True when the domain has a certificate of its own (not the fallback). */
  hasOwn(domain: string): boolean {
    return this.entry(domain).own;
  }

  private entry(domain: string): CachedCertificate {
    const name = domain.toLowerCase();
    const now = Date.now();
    const hit = this.cache.get(name);
    if (hit && (hit.own || now - hit.at < (this.o.recheckMs ?? 60_000))) {
      this.cache.delete(name); // re-insert: Map order is the LRU order
      this.cache.set(name, hit);
      return hit;
    }
    const pair = this.load(name);
    const e: CachedCertificate = pair
      ? { pair, own: true, context: createSecureContext({ cert: pair.cert, key: pair.key, ca: this.o.ca, minVersion: 'TLSv1.2' }), at: now }
      : { pair: this.o.fallback, own: false, context: this.fallback(), at: now };
    this.cache.delete(name);
    this.cache.set(name, e);
    if (this.cache.size > (this.o.maxCached ?? 10_000)) this.cache.delete(this.cache.keys().next().value!);
    return e;
  }

  private fallback(): SecureContext {
    return (this.fallbackContext ??= createSecureContext({ cert: this.o.fallback.cert, key: this.o.fallback.key, ca: this.o.ca, minVersion: 'TLSv1.2' }));
  }

  private load(name: string): CertificatePair | undefined {
    const configured = this.files.get(name);
    if (configured) return { cert: readFileSync(configured.cert, 'utf8'), key: readFileSync(configured.key, 'utf8') };
    const dir = this.o.dir;
    if (!dir || name.includes('/') || name.startsWith('.')) return undefined;
    for (const [cert, key] of [[`${name}.crt`, `${name}.key`], [join(name, 'fullchain.pem'), join(name, 'privkey.pem')]]) {
      const c = join(dir, cert);
      const k = join(dir, key);
      if (existsSync(c) && existsSync(k)) return { cert: readFileSync(c, 'utf8'), key: readFileSync(k, 'utf8') };
    }
    return undefined;
  }
}
