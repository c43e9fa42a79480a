// s3rver checks a presigned URL's expiry but not its AWS Signature V4 (its
// source says so: "Signature version 4 calculation is unimplemented"), where
// S3 itself refuses a request whose signed headers (content-length,
// content-type), path or query differ from what was signed. This gate stands
// in front of it and checks query-string SigV4 signatures the way S3 does
// (https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html),
// answering 403 SignatureDoesNotMatch, and passes every other request through.
import { createHash, createHmac } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';

const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();
const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/** The signature a presigned request should carry, computed from the request as it arrived. */
export function expectedSignature(method: string, rawUrl: string, headers: Record<string, string | string[] | undefined>, secret: string): string {
  const url = new URL(rawUrl, 'http://x');
  const params = [...url.searchParams].filter(([k]) => k !== 'X-Amz-Signature').map(([k, v]) => [rfc3986(k), rfc3986(v)]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const signed = (url.searchParams.get('X-Amz-SignedHeaders') ?? '').split(';');
  const canonicalHeaders = signed.map((h) => `${h}:${String(headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonical = [method, url.pathname, params.map(([k, v]) => `${k}=${v}`).join('&'), canonicalHeaders, signed.join(';'), 'UNSIGNED-PAYLOAD'].join('\n');
  const date = url.searchParams.get('X-Amz-Date') ?? '';
  const scope = (url.searchParams.get('X-Amz-Credential') ?? '').split('/').slice(1).join('/');
  const [day, region, service] = scope.split('/');
  const toSign = ['AWS4-HMAC-SHA256', date, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  return createHmac('sha256', key).update(toSign).digest('hex');
}

export interface SigV4Gate {
  readonly port: number;
  /** Requests refused for a signature that did not match. */
  refused: number;
  close(): Promise<void>;
}

export async function startSigV4Gate(target: { host: string; port: number }, secret: string, port: number): Promise<SigV4Gate> {
  const gate: SigV4Gate = { port, refused: 0, close: () => new Promise((r) => server.close(() => r())) };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const given = url.searchParams.get('X-Amz-Signature');
    if (given !== null && given !== expectedSignature(req.method ?? 'GET', req.url ?? '/', req.headers, secret)) {
      gate.refused++;
      req.resume();
      res.writeHead(403, { 'content-type': 'application/xml', connection: 'close' });
      res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code></Error>');
      return;
    }
    const up = request({ host: target.host, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return gate;
}
