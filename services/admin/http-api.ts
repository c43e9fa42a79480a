// The HTTP admin API: JSON over HTTP on its own listener (admin.host,
// admin.port), every route behind a bearer token. The routes are described in
// services/admin/openapi.yaml, served at /admin/v1/openapi.json; a test holds
// the two to each other.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { logger, type LogLevel } from '../../libs/log/index.ts';
import { AdminError, HTTP_STATUS, type AdminOperations } from './operations.ts';
import { tokenMatches } from './token.ts';

const log = logger('admin');

export const API_PREFIX = '/admin/v1';

type Body = Record<string, unknown>;

interface RouteRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Body;
}

interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Under API_PREFIX; `{name}` is one path segment, URL-decoded. */
  path: string;
  /** Served without the token (the API's own description). */
  open?: boolean;
  handle(ops: AdminOperations, r: RouteRequest): Promise<unknown>;
}

const optionalString = (b: Body, key: string): string | undefined => {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new AdminError('bad-request', `${key} must be a string`);
  return v;
};

/** The description, read once: the file in the repository is what is served. */
let openapi: unknown;
export function openapiDocument(): unknown {
  openapi ??= parseYaml(readFileSync(new URL('./openapi.yaml', import.meta.url), 'utf8'));
  return openapi;
}

export const ROUTES: readonly Route[] = [
  { method: 'GET', path: '/openapi.json', open: true, handle: async () => openapiDocument() },
  { method: 'GET', path: '/nodes', handle: async (ops) => ({ nodes: await ops.nodes() }) },
  { method: 'GET', path: '/sessions', handle: (ops, r) => ops.listSessions({ domain: r.query.get('domain') ?? undefined }) },
  { method: 'POST', path: '/sessions/kick', handle: (ops, r) => ops.kickSession(optionalString(r.body, 'jid') ?? '', optionalString(r.body, 'text')) },
  { method: 'GET', path: '/stats', handle: (ops) => ops.stats() },
  {
    method: 'POST', path: '/announce',
    handle: (ops, r) => ops.announce({
      domain: optionalString(r.body, 'domain') ?? '', body: optionalString(r.body, 'body') ?? '',
      subject: optionalString(r.body, 'subject'), type: optionalString(r.body, 'type') as 'headline' | 'normal' | undefined,
    }),
  },
  { method: 'GET', path: '/log-level', handle: async (ops) => ({ nodes: await ops.logLevels() }) },
  {
    method: 'PUT', path: '/log-level',
    handle: (ops, r) => ops.setLogLevel((optionalString(r.body, 'level') ?? '') as LogLevel, optionalString(r.body, 'node')),
  },
  { method: 'POST', path: '/reload', handle: (ops, r) => ops.reload(optionalString(r.body, 'node')) },
  {
    method: 'GET', path: '/users',
    handle: async (ops, r) => {
      const domain = r.query.get('domain');
      if (!domain) throw new AdminError('bad-request', 'give the domain (?domain=…)');
      return { users: await ops.listUsers(domain) };
    },
  },
  {
    method: 'POST', path: '/users',
    handle: async (ops, r) => {
      const jid = optionalString(r.body, 'jid') ?? '';
      await ops.addUser(jid, optionalString(r.body, 'password') ?? '');
      return { created: jid };
    },
  },
  {
    method: 'DELETE', path: '/users/{jid}',
    handle: async (ops, r) => {
      await ops.removeUser(r.params.jid);
      return { deleted: r.params.jid };
    },
  },
  {
    method: 'PUT', path: '/users/{jid}/disabled',
    handle: async (ops, r) => {
      const disabled = r.body.disabled;
      if (typeof disabled !== 'boolean') throw new AdminError('bad-request', 'give disabled: true or false');
      await ops.disableUser(r.params.jid, disabled);
      return { jid: r.params.jid, disabled };
    },
  },
  {
    method: 'PUT', path: '/users/{jid}/password',
    handle: async (ops, r) => {
      await ops.setPassword(r.params.jid, optionalString(r.body, 'password') ?? '');
      return { changed: r.params.jid };
    },
  },
];

/** The route and its path parameters, or why none: no such path (404) or not with this method (405). */
function match(method: string, path: string): { route: Route; params: Record<string, string> } | 'no-path' | 'no-method' {
  if (!path.startsWith(`${API_PREFIX}/`)) return 'no-path';
  const segments = path.slice(API_PREFIX.length).split('/');
  let pathFound = false;
  for (const route of ROUTES) {
    const pattern = route.path.split('/');
    if (pattern.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let ok = true;
    for (let i = 0; i < pattern.length && ok; i++) {
      const p = pattern[i];
      if (p.startsWith('{') && p.endsWith('}')) {
        if (segments[i] === '') ok = false;
        else {
          try {
            params[p.slice(1, -1)] = decodeURIComponent(segments[i]);
          } catch {
            ok = false;
          }
        }
      } else if (p !== segments[i]) ok = false;
    }
    if (!ok) continue;
    pathFound = true;
    if (route.method === method) return { route, params };
  }
  return pathFound ? 'no-method' : 'no-path';
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, error: string, message: string, headers: Record<string, string> = {}, details: Record<string, unknown> = {}): void {
  send(res, status, { ...details, error, message }, headers);
}

function readBody(req: IncomingMessage, max: number): Promise<Body> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Past the limit the rest is read and dropped, so that the answer still reaches the client.
      if (size <= max) chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (size > max) return reject(new AdminError('bad-request', `the request body is larger than admin.maxRequestBytes (${max})`));
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (text === '') return resolve({});
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (e) {
        return reject(new AdminError('bad-request', `the request body is not JSON: ${(e as Error).message}`));
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return reject(new AdminError('bad-request', 'the request body must be a JSON object'));
      resolve(parsed as Body);
    });
  });
}

export interface AdminApiOptions {
  host: string;
  port: number;
  token: string;
  maxRequestBytes: number;
  operations: AdminOperations;
}

export function serveAdminApi(o: AdminApiOptions): Promise<Server> {
  const server = createServer((req, res) => {
    void handle(o, req, res).catch((e: unknown) => {
      log.error('admin request failed', { error: e });
      if (!res.headersSent) sendError(res, 500, 'internal', e instanceof Error ? e.message : String(e));
      else res.end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.removeListener('error', reject);
      resolve(server);
    });
  });
}

async function handle(o: AdminApiOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const found = match(req.method ?? 'GET', url.pathname);
  if (found === 'no-path') return sendError(res, 404, 'not-found', `no such route: ${url.pathname} (the routes: ${API_PREFIX}/openapi.json)`);
  if (found === 'no-method') return sendError(res, 405, 'method-not-allowed', `${req.method ?? ''} is not allowed on ${url.pathname}`);
  if (!found.route.open) {
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (!m || !tokenMatches(m[1], o.token)) {
      log.warn('admin request refused: bad token', { event: 'admin-refused', address: req.socket.remoteAddress, path: url.pathname, reason: m ? 'wrong token' : 'no token' });
      return sendError(res, 401, 'unauthorized', m ? 'wrong admin token' : 'give the admin token: Authorization: Bearer <token>', { 'www-authenticate': 'Bearer realm="parley-admin"' });
    }
  }
  try {
    const body = req.method === 'GET' || req.method === 'DELETE' ? {} : await readBody(req, o.maxRequestBytes);
    const result = await found.route.handle(o.operations, { params: found.params, query: url.searchParams, body });
    if (req.method !== 'GET') log.info('admin operation', { event: 'admin', method: req.method, path: url.pathname, address: req.socket.remoteAddress });
    send(res, 200, result);
  } catch (e) {
    if (e instanceof AdminError) return sendError(res, HTTP_STATUS[e.code], e.code, e.message, {}, e.details);
    throw e;
  }
}
