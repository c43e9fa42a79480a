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
