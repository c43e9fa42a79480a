// Uploaded files in a directory (the embedded mode), served by Parley's HTTP
// listener: `<dir>/<service>/<slot id>` and its `.meta` (content type, name).
// Like a presigned object-storage URL, the PUT URL carries the slot's size,
// content type and deadline with an HMAC over them under a key kept in the
// directory, so the listener checks a PUT without a store round trip and a
// client cannot change what it was granted. The GET URL has no signature: the
// 128-bit slot id is the secret, and it cannot write. Bytes are written to a
// `.part` file renamed once complete: a reader never sees half a file, an
// aborted PUT leaves nothing, and a second PUT to the same slot is refused.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, readFileSync, writeFileSync, type ReadStream, type WriteStream } from 'node:fs';
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { urlFileName, type SlotUrls, type UploadFiles } from './files.ts';
import type { Slot } from './slots.ts';

/** A file being written: chunks in order, then commit() or abort(). */
export interface FileWriter {
  /** False: the disk is behind; wait for `drained` before writing more. */
  write(chunk: Uint8Array): boolean;
  drained(cb: () => void): void;
  /** The file is complete: it becomes visible, once (false: the slot was used already). */
  commit(): Promise<boolean>;
  abort(): Promise<void>;
}

/** What a verified PUT URL grants. */
export interface PutGrant {
  readonly size: number;
  readonly contentType: string;
  readonly fileName: string;
}

/** The HTTP path of the files, below the listener's base URL: /upload/<service>/<slot id>/<file name>. */
export const UPLOAD_PATH = '/upload';
const SLOT_ID = /^[A-Za-z0-9_-]{22}$/;
const DOMAIN = /^[a-z0-9.-]{1,253}$/;

export class DiskFiles implements UploadFiles {
  readonly kind = 'disk';
  private key: Buffer | undefined;
  /** The port the HTTP listener got (configured as 0: any free one). */
  private listeningPort = 0;

  constructor(readonly dir: string, private readonly baseUrl: (listeningPort: number) => string) {}

  /** The HTTP listener serves these files on `port`. */
  served(port: number): void {
    this.listeningPort = port;
  }

  /** The signing key, made once per data directory (a restart keeps outstanding PUT URLs valid). */
  private signingKey(): Buffer {
    if (this.key) return this.key;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const file = join(this.dir, '.key');
    try {
      this.key = readFileSync(file);
    } catch {
      const k = randomBytes(32);
      try {
        writeFileSync(file, k, { flag: 'wx', mode: 0o600 });
        this.key = k;
      } catch {
        this.key = readFileSync(file); // made by someone else meanwhile
      }
    }
    return this.key;
  }

  private sign(service: string, id: string, fileName: string, size: number, contentType: string, until: number): string {
    return createHmac('sha256', this.signingKey()).update([service, id, fileName, size, contentType, until].join('\n')).digest('base64url');
  }

  private path(service: string, id: string): string {
    return join(this.dir, service, id);
  }

  async urls(service: string, slot: Slot): Promise<SlotUrls> {
    const get = `${this.baseUrl(this.listeningPort).replace(/\/+$/, '')}${UPLOAD_PATH}/${encodeURIComponent(service)}/${slot.id}/${urlFileName(slot.fileName)}`;
    const q = new URLSearchParams({ size: String(slot.size), type: slot.contentType, until: String(slot.putUntil),
      sig: this.sign(service, slot.id, slot.fileName, slot.size, slot.contentType, slot.putUntil) });
    return { get, put: `${get}?${q}` };
  }

  /** A PUT URL's query checked against its path: what it grants, 'expired', or 'forged' (anything altered or made up). */
  verifyPut(service: string, id: string, fileName: string, query: string, now = Date.now()): PutGrant | 'expired' | 'forged' {
    if (!DOMAIN.test(service) || !SLOT_ID.test(id)) return 'forged';
    const q = new URLSearchParams(query);
    const size = Number(q.get('size'));
    const contentType = q.get('type') ?? '';
    const until = Number(q.get('until'));
    const sig = Buffer.from(q.get('sig') ?? '');
    const want = Buffer.from(this.sign(service, id, fileName, size, contentType, until));
    if (!Number.isSafeInteger(size) || !Number.isSafeInteger(until) || sig.length !== want.length || !timingSafeEqual(sig, want)) return 'forged';
    if (now > until) return 'expired';
    return { size, contentType, fileName };
  }

  writer(service: string, id: string, grant: PutGrant): FileWriter {
    mkdirSync(join(this.dir, service), { recursive: true, mode: 0o700 });
    const final = this.path(service, id);
    const part = `${final}.part`;
    // 'wx': a PUT racing another for the same slot fails here instead of mixing bytes.
    const out: WriteStream = createWriteStream(part, { flags: 'wx', mode: 0o600 });
    const finished = new Promise<void>((resolve, reject) => {
      out.once('finish', resolve);
      out.once('error', reject);
    });
    finished.catch(() => {}); // seen by commit() or abort()
    let mine = true;
    out.once('error', () => { mine = false; });
    return {
      write: (chunk) => out.write(chunk),
      drained: (cb) => out.once('drain', cb),
      commit: async () => {
        out.end();
        await finished;
        await writeFile(`${final}.meta`, JSON.stringify({ contentType: grant.contentType, fileName: grant.fileName }), { mode: 0o600 });
        // link() fails when the file exists: a slot takes one file, however many PUTs it sees.
        const placed = await link(part, final).then(() => true, (e: NodeJS.ErrnoException) => {
          if (e.code === 'EEXIST') return false;
          throw e;
        });
        await rm(part, { force: true });
        return placed;
      },
      abort: async () => {
        out.destroy();
        if (mine) await rm(part, { force: true });
      },
    };
  }

  /** A stored file, or undefined when it is not there (never uploaded, or swept). */
  async reader(service: string, id: string): Promise<{ size: number; contentType: string; fileName: string; open(): ReadStream } | undefined> {
    if (!DOMAIN.test(service) || !SLOT_ID.test(id)) return undefined;
    const p = this.path(service, id);
    const s = await stat(p).catch(() => undefined);
    if (!s?.isFile()) return undefined;
    const meta = await readFile(`${p}.meta`, 'utf8').then((t) => JSON.parse(t) as { contentType: string; fileName: string }, () => undefined);
    if (!meta) return undefined;
    return { size: s.size, ...meta, open: () => createReadStream(p, { highWaterMark: 256 * 1024 }) };
  }

  async remove(service: string, slots: readonly { id: string }[]): Promise<void> {
    await Promise.all(slots.map(async (s) => {
      const p = this.path(service, s.id);
      await Promise.all([rm(p, { force: true }), rm(`${p}.meta`, { force: true }), rm(`${p}.part`, { force: true })]);
    }));
  }
}
