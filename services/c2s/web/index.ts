// The web client (c2s.webClient): one static page and its script, read once
// at start-up and served from memory.
import { readFileSync } from 'node:fs';
import type { HttpRoute } from '../http-server.ts';

const here = new URL('.', import.meta.url);

export function webClientRoutes(): HttpRoute[] {
  const html = readFileSync(new URL('index.html', here));
  const js = readFileSync(new URL('client.js', here));
  // The page talks only to its own origin (WebSocket and host-meta).
  const security = {
    'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache',
  };
  return [
    { method: 'get', path: '/', handle: (_req, _b, res) => res.send(200, { 'content-type': 'text/html; charset=utf-8', ...security }, html) },
    { method: 'get', path: '/client.js', handle: (_req, _b, res) => res.send(200, { 'content-type': 'text/javascript; charset=utf-8', ...security }, js) },
  ];
}
