// The `parley` CLI's side of the admin API: find a running process (the
// address it wrote into its data directory, or --url), call a route with the
// token, and turn an error answer into one line.
import type { Config } from '../../libs/config/schema.ts';
import { readAdminEndpoint, readAdminToken } from './token.ts';

export class AdminClientError extends Error {
  /** The HTTP status, or 0 when the server could not be reached. */
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

export interface AdminClient {
  call<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T>;
}

export function adminClient(config: Config, url?: string): AdminClient {
  const base = (url ?? readAdminEndpoint(config)?.url ?? (config.admin.port ? `http://${config.admin.host}:${config.admin.port}/admin/v1` : undefined))?.replace(/\/$/, '');
  if (!base) {
    throw new AdminClientError(`no running server found: ${config.dataDir}/admin.json is missing (start the server, or give --url)`, 0);
  }
  const token = readAdminToken(config);
  if (!token) throw new AdminClientError(`no admin token: set admin.token or run as the user that can read ${config.dataDir}/admin-token`, 0);
  return {
    async call<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(config.admin.requestTimeoutMs + 10_000),
        });
      } catch (e) {
        const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e instanceof Error ? e.message : String(e));
        throw new AdminClientError(`cannot reach the admin API at ${base} (${cause}); is the server running?`, 0);
      }
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new AdminClientError(`the admin API answered ${res.status} with something that is not JSON`, res.status);
      }
      if (!res.ok) {
        const message = (parsed as { message?: string }).message ?? `HTTP ${res.status}`;
        throw new AdminClientError(message, res.status);
      }
      return parsed as T;
    },
  };
}
