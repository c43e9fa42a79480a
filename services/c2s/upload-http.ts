// XEP-0363 HTTP file upload, the disk store's half on the HTTP listener: PUT
// takes the bytes of a slot straight to disk (streamed, the client paused
// while the disk is behind, never held whole), GET streams them back, HEAD
// tells their size and type. A PUT
// is checked against its signed URL (libs/upload/disk.ts) before a byte is
// written; what does not match the slot is refused with a 4xx and leaves nothing.
import type { Config } from '../../libs/config/schema.ts';
import { logger } from '../../libs/log/index.ts';
import { UPLOAD_PATH, type DiskFiles } from '../../libs/upload/index.ts';
import type { HttpRequest, HttpResponse, HttpRoute, HttpStreamRoute } from './http-server.ts';

const log = logger('upload');
const TEXT = { 'content-type': 'text/plain; charset=utf-8', 'access-control-allow-origin': '*' };

/** /upload/<service>/<slot id>/<file name>, the name percent-decoded; undefined when the path is not one. */
function slotPath(path: string): { service: string; id: string; fileName: string } | undefined {
  const parts = path.slice(UPLOAD_PATH.length + 1).split('/');
  if (parts.length !== 3) return undefined;
  try {
    return { service: decodeURIComponent(parts[0]), id: parts[1], fileName: decodeURIComponent(parts[2]) };
  } catch {
    return undefined;
  }
}

/** The media type without parameters or case, to compare what a PUT sends with what its slot says. */
function sameType(sent: string | undefined, granted: string): boolean {
  const norm = (t: string) => t.split(';').map((p) => p.trim().toLowerCase()).filter(Boolean).join(';');
  if (sent === undefined || sent === '') return granted === 'application/octet-stream';
  return norm(sent) === norm(granted);
}

/** RFC 6266 Content-Disposition with the file's own name. */
function disposition(contentType: string, fileName: string): string {
  const inline = /^(image|audio|video)\//.test(contentType) || contentType.startsWith('text/plain');
  const ascii = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `${inline ? 'inline' : 'attachment'}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(fileName)}`;
}

function put(files: DiskFiles, maxFileBytes: number): HttpStreamRoute {
  return {
    method: 'put',
    path: `${UPLOAD_PATH}/*`,
    handle(req: HttpRequest, body, res: HttpResponse) {
      // A refusal before the body is read closes the connection: the rest of the body is not a next request.
      const refuse = (status: number, text: string) => res.send(status, TEXT, `${text}\n`, true);
      const p = slotPath(req.path);
      if (!p) return refuse(404, 'not an upload URL');
      const grant = files.verifyPut(p.service, p.id, p.fileName, req.query);
      if (grant === 'forged') return refuse(403, 'this is not a valid upload URL (altered, or never granted)');
      if (grant === 'expired') return refuse(403, 'this upload URL has expired; request a new slot');
      const length = req.headers['content-length'];
      if (length === undefined || !/^\d{1,16}$/.test(length)) return refuse(411, `send the file with Content-Length: ${grant.size}`);
      if (Number(length) !== grant.size) return refuse(400, `Content-Length ${length} is not the slot's size ${grant.size}`);
      if (!sameType(req.headers['content-type'], grant.contentType)) {
        return refuse(415, `Content-Type ${req.headers['content-type'] ?? '(none)'} is not the slot's ${grant.contentType}`);
      }
      if (grant.size > maxFileBytes) return refuse(413, `files are limited to ${maxFileBytes} bytes`);
      const out = files.writer(p.service, p.id, grant);
      let received = 0;
      let failed = false;
      const fail = (status: number, text: string) => {
        if (failed) return;
        failed = true;
        void out.abort().catch((e: unknown) => log.warn('could not remove a partial upload', { error: e }));
        refuse(status, text);
      };
      res.onAborted(() => fail(400, 'aborted'));
      body.onData((chunk, last) => {
        if (failed) return;
        received += chunk.byteLength;
        if (received > grant.size) return fail(413, `more bytes than the slot's size ${grant.size}`);
        if (!out.write(chunk) && !last) {
          body.pause();
          out.drained(() => body.resume());
        }
        if (!last) return;
        if (received !== grant.size) return fail(400, `${received} bytes received, the slot is for ${grant.size}`);
        out.commit().then((placed) => {
          if (!placed) return refuse(409, 'this slot has its file already');
          res.send(201, TEXT, 'stored\n');
        }, (e: unknown) => {
          log.warn('upload failed', { service: p.service, error: e });
          // EEXIST: another PUT to this slot is under way.
          fail((e as NodeJS.ErrnoException).code === 'EEXIST' ? 409 : 500, 'the file could not be stored');
        });
      });
    },
  };
}

/** GET streams a file; HEAD answers its headers alone (clients ask for the size before downloading). */
function get(files: DiskFiles, method: 'get' | 'head'): HttpRoute {
  return {
    method,
    path: `${UPLOAD_PATH}/*`,
    handle(req, _body, res) {
      const p = slotPath(req.path);
      if (!p) return res.send(404, TEXT, 'not found\n');
      void files.reader(p.service, p.id).then(async (f) => {
        if (res.done) return;
        if (!f || f.fileName !== p.fileName) return res.send(404, TEXT, 'no such file (never uploaded, or expired)\n');
        const headers = {
          'content-type': f.contentType,
          'content-disposition': disposition(f.contentType, f.fileName),
          // A file is shown, never run: no sniffing into HTML, no scripts, no embedding of its origin's other pages.
          'x-content-type-options': 'nosniff',
          'content-security-policy': "default-src 'none'; sandbox",
          'access-control-allow-origin': '*',
          'cache-control': 'private, max-age=86400',
        };
        if (method === 'head') return res.head(200, headers, f.size);
        const stream = f.open();
        res.onAborted(() => stream.destroy());
        await res.stream(200, headers, f.size, stream);
      }).catch((e: unknown) => {
        log.warn('serving a file failed', { path: req.path, error: e });
        if (!res.done) res.send(500, TEXT, 'internal error\n');
      });
    },
  };
}

/** CORS preflight: web clients on other origins may PUT with a Content-Type (the URL's signature is what protects). */
function preflight(): HttpRoute {
  return {
    method: 'options',
    path: `${UPLOAD_PATH}/*`,
    handle(_req, _body, res) {
      res.send(204, {
        'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET, PUT',
        'access-control-allow-headers': 'content-type', 'access-control-max-age': '86400',
      });
    },
  };
}

/** The routes of the disk store, for the HTTP listener. */
export function uploadRoutes(files: DiskFiles, config: Config): { routes: HttpRoute[]; streamRoutes: HttpStreamRoute[] } {
  return { routes: [get(files, 'get'), get(files, 'head'), preflight()], streamRoutes: [put(files, config.upload.maxFileBytes)] };
}
