// The web client (c2s.webClient): one static page and its script, read once
// at start-up and served from memory.
import { readFileSync } from 'node:fs';
import type { HttpRoute } from '../http-server.ts';

const here = new URL('.', import.meta.url);

/** `uploadOrigins`: where files are PUT besides this origin (object storage), which the page may connect to as well. */
export function webClientRoutes(uploadOrigins: readonly string[] = []): HttpRoute[] {
  const html = readFileSync(new URL('index.html', here));
  const js = readFileSync(new URL('client.js', here));
  // The page talks only to its own origin (WebSocket, host-meta, uploads to the disk store) and to the upload origins.
  const connect = ["'self'", 'ws:', 'wss:', ...uploadOrigins].join(' ');
  const security = {
    'content-security-policy': `default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src ${connect}; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache',
  };
  return [
    { method: 'get', path: '/', handle: (_req, _b, res) => res.send(200, { 'content-type': 'text/html; charset=utf-8', ...security }, html) },
    { method: 'get', path: '/client.js', handle: (_req, _b, res) => res.send(200, { 'content-type': 'text/javascript; charset=utf-8', ...security }, js) },
  ];
}
