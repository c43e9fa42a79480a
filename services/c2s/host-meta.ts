// XEP-0156 discovery over HTTP: /.well-known/host-meta (XRD) and
// host-meta.json list the WebSocket and BOSH endpoints of this listener.
import type { Config } from '../../libs/config/schema.ts';
import { escapeAttr } from '../../libs/xml/serialize.ts';
import type { HttpRequest, HttpRoute } from './http-server.ts';

const REL_WEBSOCKET = 'urn:xmpp:alt-connections:websocket';
const REL_BOSH = 'urn:xmpp:alt-connections:xbosh';
const HOST_RE = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

/** The links, from the configured public URL or else from the request's own Host. */
export function endpoints(c2s: Config['c2s'], req: HttpRequest, localPort: number): { rel: string; href: string }[] {
  let base = c2s.http.publicUrl?.replace(/\/+$/, '');
  if (!base) {
    const host = req.headers.host && HOST_RE.test(req.headers.host) ? req.headers.host : `${c2s.http.host}:${localPort}`;
    base = `${req.secure ? 'https' : 'http'}://${host}`;
  }
  const links: { rel: string; href: string }[] = [];
  if (c2s.websocket.enabled) links.push({ rel: REL_WEBSOCKET, href: base.replace(/^http/, 'ws') + c2s.websocket.path });
  if (c2s.bosh.enabled) links.push({ rel: REL_BOSH, href: base + c2s.bosh.path });
  return links;
}

export function hostMetaRoutes(c2s: Config['c2s'], localPort: () => number): HttpRoute[] {
  // Public facts: any origin may read them (XEP-0156 §3.2 asks for CORS here).
  const headers = (type: string) => ({ 'content-type': type, 'access-control-allow-origin': '*', 'cache-control': 'max-age=3600' });
  return [
    {
      method: 'get', path: '/.well-known/host-meta',
      handle: (req, _b, res) => {
        const links = endpoints(c2s, req, localPort()).map((l) => `  <Link rel="${l.rel}" href="${escapeAttr(l.href)}"/>\n`).join('');
        res.send(200, headers('application/xrd+xml; charset=utf-8'),
          `<?xml version="1.0" encoding="utf-8"?>\n<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">\n${links}</XRD>\n`);
      },
    },
    {
      method: 'get', path: '/.well-known/host-meta.json',
      handle: (req, _b, res) => {
        res.send(200, headers('application/json'), `${JSON.stringify({ links: endpoints(c2s, req, localPort()) }, null, 2)}\n`);
      },
    },
  ];
}
