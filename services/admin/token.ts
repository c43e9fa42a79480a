// How the `parley` CLI finds a running process's admin API: the token (from
// the configuration, or generated once into the data directory, mode 0600)
// and the address the listener bound (written at each start).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../libs/config/schema.ts';

export const TOKEN_FILE = 'admin-token';
export const ENDPOINT_FILE = 'admin.json';

/** The configured token, or the one in the data directory, made (owner-only) when absent. */
export function adminToken(config: Config): string {
  if (config.admin.token) return config.admin.token;
  const path = join(config.dataDir, TOKEN_FILE);
  try {
    writeFileSync(path, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  // Whatever wrote it before, nobody but the owner reads it from now on.
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  return readFileSync(path, 'utf8').trim();
}

/** The token a client of this data directory uses; undefined when there is none to read. */
export function readAdminToken(config: Config): string | undefined {
  if (config.admin.token) return config.admin.token;
  try {
    return readFileSync(join(config.dataDir, TOKEN_FILE), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface AdminEndpoint {
  url: string;
  node: string;
  pid: number;
}

export function writeAdminEndpoint(config: Config, endpoint: AdminEndpoint): void {
  writeFileSync(join(config.dataDir, ENDPOINT_FILE), `${JSON.stringify(endpoint)}\n`, { mode: 0o600 });
}

export function readAdminEndpoint(config: Config): AdminEndpoint | undefined {
  try {
    return JSON.parse(readFileSync(join(config.dataDir, ENDPOINT_FILE), 'utf8')) as AdminEndpoint;
  } catch {
    return undefined;
  }
}

/** Compares in constant time, so that the time of a refusal tells nothing of the token. */
export function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
