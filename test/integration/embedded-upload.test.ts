// HTTP file upload (XEP-0363) in the embedded mode: files in the data
// directory, the bytes PUT and GET through Parley's HTTP listener.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import { freePort } from '../support/servers.ts';
import { uploadScenarios, UPLOAD_LIMITS } from '../scenarios/upload.ts';

describe('HTTP file upload, embedded mode (disk store)', () => {
  let d: Deployment & { server: { config: { dataDir: string } } };
  let port = 0;
  before(async () => {
    port = await freePort();
    d = await startEmbedded({ c2s: { http: { enabled: true, host: '127.0.0.1', port } }, upload: UPLOAD_LIMITS });
  });
  after(async () => { await d?.stop(); });

  /** The file of a GET URL in the data directory: uploads/<service>/<slot id>. */
  const fileOf = (url: string) => {
    const [, , service, id] = new URL(url).pathname.split('/');
    return join(d.server.config.dataDir, 'uploads', service, id);
  };
  uploadScenarios(() => d, () => ({ stored: async (url) => existsSync(fileOf(url)) }));

  test('GET URLs point at the HTTP listener', async () => {
    const { slot } = await import('../scenarios/upload.ts');
    const { connect } = await import('../support/clients.ts');
    await d.addUser('urlcheck');
    const c = await connect(d.ports[0], 'urlcheck');
    try {
      const s = await slot(c, 'a.txt', 3, 'text/plain');
      assert.ok(s.get.startsWith(`http://127.0.0.1:${port}/upload/`), s.get);
    } finally {
      await c.stop();
    }
  });
});
