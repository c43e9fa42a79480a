// XEP-0363 HTTP file upload: what the session processes (granting slots) and
// the HTTP listener (taking and serving the disk store's bytes) share.
import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import { DiskFiles } from './disk.ts';
import type { UploadFiles } from './files.ts';

export { Slots, uploadScope, unguessable, type Slot, type ExpiredSlot } from './slots.ts';
export type { UploadFiles, SlotUrls } from './files.ts';
export { DiskFiles, UPLOAD_PATH, type FileWriter, type PutGrant } from './disk.ts';

/**
 * The service is offered: enabled, and its store can serve in this deployment. The disk store needs the HTTP
 * listener, and one process (the embedded mode): in a cluster a file written on one node would be missing on the others.
 */
export function uploadOffered(config: Config): boolean {
  return config.upload.enabled && uploadHeldBack(config) === undefined;
}

/** Why an enabled upload service is not offered (for the start-up line), or undefined when it is. */
export function uploadHeldBack(config: Config): string | undefined {
  if (config.upload.store.kind === 's3') return undefined;
  if (config.bus.kind !== 'inprocess') return 'the disk store serves the embedded mode only; a cluster needs upload.store.kind s3';
  if (!config.c2s.http.enabled) return 'the disk store needs the HTTP listener (c2s.http.enabled)';
  return undefined;
}

/**
 * Where the disk store's files are reached: the configured URL, else the HTTP listener's public URL, else its own
 * address (`listeningPort`: the port it got when configured with 0).
 */
export function diskBaseUrl(config: Config, listeningPort = 0): string {
  const s = config.upload.store;
  if (s.kind === 'disk' && s.url) return s.url;
  if (config.c2s.http.publicUrl) return config.c2s.http.publicUrl;
  const host = config.c2s.http.host.includes(':') ? `[${config.c2s.http.host}]` : config.c2s.http.host;
  return `${config.c2s.http.tls ? 'https' : 'http'}://${host}:${listeningPort || config.c2s.http.port}`;
}

/** Origins a browser must be allowed to connect to for uploads besides the page's own (object storage). */
export function uploadOrigins(config: Config): string[] {
  const s = config.upload.store;
  if (!uploadOffered(config) || s.kind !== 's3') return [];
  return [s.endpoint ? new URL(s.endpoint).origin : 'https://*.amazonaws.com', ...(s.publicUrl ? [new URL(s.publicUrl).origin] : [])];
}

export function diskDir(config: Config): string {
  const s = config.upload.store;
  return (s.kind === 'disk' ? s.dir : undefined) ?? join(config.dataDir, 'uploads');
}

const opened = new WeakMap<Config, Promise<UploadFiles>>();

/** The file store of a configuration, one per process (the SDK of object storage is loaded only when used). */
export function uploadFiles(config: Config): Promise<UploadFiles> {
  let f = opened.get(config);
  if (!f) {
    const u = config.upload;
    const s = u.store;
    f = s.kind === 'disk'
      ? Promise.resolve(new DiskFiles(diskDir(config), (port) => diskBaseUrl(config, port)))
      : import('./s3.ts').then((m) => new m.S3Files(s, u.slotSeconds, u.fileLifetimeSeconds));
    opened.set(config, f);
  }
  return f;
}
