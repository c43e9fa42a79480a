// Certificates per domain for TLS SNI, with the c2s certificate as the
// fallback for names we have no certificate of our own for.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Config } from '../../libs/config/schema.ts';
import type { SniLookup } from './tcp.ts';

export interface PemFiles {
  cert: string;
  key: string;
}

export interface DomainCertificates {
  /** The certificate for a server name, or undefined for the fallback. */
  sni: SniLookup;
  /** PEM files by domain, for listeners that load files themselves (HTTPS). */
  files: Record<string, PemFiles>;
  /** The fallback's PEM files: the configured ones or the generated self-signed pair. */
  fallbackFiles: PemFiles;
}

export function loadDomainCertificates(config: Config): DomainCertificates {
  const contexts = new Map<string, SecureContext>();
  const files: Record<string, PemFiles> = {};
  for (const [domain, f] of Object.entries(config.c2s.certificates)) {
    const name = domain.toLowerCase();
    contexts.set(name, createSecureContext({ cert: readFileSync(f.cert), key: readFileSync(f.key), minVersion: 'TLSv1.2' }));
    files[name] = f;
  }
  const { cert, key } = config.c2s.tls;
  // libs/tls writes the generated pair here when no files are configured.
  const generated = join(config.dataDir, 'certs');
  return {
    sni: (servername) => contexts.get(servername.toLowerCase()),
    files,
    fallbackFiles: cert && key ? { cert, key } : { cert: join(generated, 'self-signed.crt'), key: join(generated, 'self-signed.key') },
  };
}
