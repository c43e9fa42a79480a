// TLS channel bindings a client can bind its SCRAM-PLUS or HT login to
// (XEP-0440 advertises them): tls-exporter (RFC 9266) where TLS 1.3 runs, and
// tls-server-end-point (RFC 5929 §4), the hash of our certificate, wherever we
// present one. tls-exporter is not offered on TLS 1.2, where it is only safe
// with the extended master secret, which Node does not report.
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { ChannelBinding } from '../../libs/auth/sasl.ts';

export const NS_SASL_CB = 'urn:xmpp:sasl-cb:0';

/** The bindings available on this TLS connection, computed once it is established. */
export function tlsChannelBindings(socket: TLSSocket): ChannelBinding[] {
  const out: ChannelBinding[] = [];
  if (socket.getProtocol() === 'TLSv1.3') {
    out.push({ type: 'tls-exporter', data: socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)) });
  }
  const raw = (socket.getCertificate() as { raw?: Buffer } | null)?.raw;
  const digest = raw ? endPointDigest(raw) : undefined;
  if (raw && digest) out.push({ type: 'tls-server-end-point', data: createHash(digest).update(raw).digest() });
  return out;
}

// Signature algorithm OIDs (DER contents) → the hash RFC 5929 §4.1 names: the
// certificate's own, except MD5 and SHA-1, which become SHA-256.
const SIGNATURE_HASHES: Record<string, 'sha256' | 'sha384' | 'sha512'> = {
  '2a864886f70d010104': 'sha256', // md5WithRSAEncryption
  '2a864886f70d010105': 'sha256', // sha1WithRSAEncryption
  '2a864886f70d01010b': 'sha256', // sha256WithRSAEncryption
  '2a864886f70d01010c': 'sha384',
  '2a864886f70d01010d': 'sha512',
  '2a8648ce3d040301': 'sha256', // ecdsa-with-SHA1
  '2a8648ce3d040302': 'sha256', // ecdsa-with-SHA256
  '2a8648ce3d040303': 'sha384',
  '2a8648ce3d040304': 'sha512',
};

/**
 * The hash for tls-server-end-point, from the certificate's signatureAlgorithm
 * (Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature });
 * undefined for algorithms RFC 5929 gives no hash for (Ed25519, RSA-PSS).
 */
export function endPointDigest(der: Buffer): 'sha256' | 'sha384' | 'sha512' | undefined {
  const header = (at: number): { body: number; end: number } | undefined => {
    if (at + 2 > der.length) return undefined;
    let len = der[at + 1];
    let body = at + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4 || body + n > der.length) return undefined;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[body + i];
      body += n;
    }
    return { body, end: body + len };
  };
  const cert = header(0);
  const tbs = cert && header(cert.body);
  const alg = tbs && header(tbs.end);
  const oid = alg && der[alg.body] === 0x06 ? header(alg.body) : undefined;
  return oid ? SIGNATURE_HASHES[der.subarray(oid.body, oid.end).toString('hex')] : undefined;
}
