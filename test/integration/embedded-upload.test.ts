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
  let d: Deployment & { server: { config: { dataDir: string }; accounts: { add(jid: string, password: string): Promise<unknown> } } };
  let port = 0;
  before(async () => {
    port = await freePort();
    d = await startEmbedded({ domains: ['localhost', 'other.localhost'], c2s: { http: { enabled: true, host: '127.0.0.1', port } }, upload: UPLOAD_LIMITS });
  });
  after(async () => { await d?.stop(); });

  /** The file of a GET URL in the data directory: uploads/<service>/<slot id>. */
  const fileOf = (url: string) => {
    const [, , service, id] = new URL(url).pathname.split('/');
    return join(d.server.config.dataDir, 'uploads', service, id);
  };
  uploadScenarios(() => d, () => ({ stored: async (url) => existsSync(fileOf(url)), putOnce: true }));

  test('HEAD of a file tells its size and type without the bytes; an unknown slot is 404', async () => {
    const { slot, putFile } = await import('../scenarios/upload.ts');
    const { connect } = await import('../support/clients.ts');
    await d.addUser('headcheck');
    const c = await connect(d.ports[0], 'headcheck');
    try {
      const s = await slot(c, 'h.txt', 11, 'text/plain');
      assert.equal((await putFile(s.put, Buffer.from('hello world'), 'text/plain')).status, 201);
      const h = await fetch(s.get, { method: 'HEAD' });
      assert.equal(h.status, 200);
      assert.equal(h.headers.get('content-length'), '11');
      assert.equal(h.headers.get('content-type'), 'text/plain');
      assert.equal(h.headers.get('x-content-type-options'), 'nosniff');
      assert.equal((await h.arrayBuffer()).byteLength, 0);
      const unknown = s.get.replace(/\/[A-Za-z0-9_-]{22}\//, '/AAAAAAAAAAAAAAAAAAAAAA/');
      assert.equal((await fetch(unknown)).status, 404);
      assert.equal((await fetch(unknown, { method: 'HEAD' })).status, 404);
    } finally {
      await c.stop();
    }
  });

  test('a user of another served domain may not use this domain\'s service: not-allowed', async () => {
    const { requestSlot } = await import('../scenarios/upload.ts');
    const { connect } = await import('../support/clients.ts');
    await d.server.accounts.add('guest@other.localhost', 'secret');
    const c = await connect(d.ports[0], 'guest', { domain: 'other.localhost' });
    try {
      const e = await requestSlot(c, { filename: 'a.txt', size: '3', 'content-type': 'text/plain' }).then(
        (r) => { throw new Error(`granted: ${r.toString()}`); }, (err: { condition?: string }) => err);
      assert.equal(e.condition, 'not-allowed');
    } finally {
      await c.stop();
    }
  });

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
