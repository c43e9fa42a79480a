// A client nobody here wrote: python3-slixmpp (Debian) uploads a file with its
// own HTTP file upload plugin (xep_0363: max-file-size from the service's form, a
// slot, an aiohttp PUT), and the test GETs it back byte for byte; a slot over
// the limit gets not-acceptable with <file-too-large/>.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { freePort, tempDir } from '../support/servers.ts';

const run = promisify(execFile);
const MAX = 2_000_000;

describe('slixmpp xep_0363 (HTTP file upload), embedded', () => {
  let d: Deployment;
  let port = 0;
  before(async () => {
    port = await freePort();
    d = await startEmbedded({ c2s: { http: { enabled: true, host: '127.0.0.1', port } }, upload: { maxFileBytes: MAX } });
  });
  after(async () => { await d.stop(); });

  test('the service found by disco, upload_file asks for a slot and PUTs the file, the GET URL gives back the same bytes', async () => {
    await d.addUser('slixupload');
    const bytes = randomBytes(700_000);
    const file = join(tempDir('parley-slix-upload'), 'picture.png');
    writeFileSync(file, bytes);
    const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_upload.py', '127.0.0.1', String(d.ports[0]), 'slixupload@localhost', 'secret',
      file, String(MAX + 1)], { timeout: 60_000 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { url: string; service: string; max_file_size: number; too_large: unknown };
    assert.equal(r.service, 'upload.localhost');
    assert.equal(r.max_file_size, MAX);
    assert.ok(r.url.startsWith(`http://127.0.0.1:${port}/upload/upload.localhost/`), r.url);
    assert.ok(r.url.endsWith('/picture.png'), r.url);
    const got = await fetch(r.url);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes), 'the same bytes');
    assert.deepEqual(r.too_large, { condition: 'not-acceptable', type: 'modify', max: String(MAX) });
  });
});
