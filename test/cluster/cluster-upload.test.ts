// HTTP file upload (XEP-0363) in a cluster with the S3 store: slots granted by
// the service actor on the session processes, the bytes PUT and GET straight
// to a real S3-speaking server (s3rver, started here on a free port) through
// presigned URLs, never through a Parley process. s3rver does not check SigV4
// signatures, so a gate that checks them as S3 does stands in front of it
// (test/support/sigv4-gate.ts): a PUT of another size or content type than the
// slot signed is refused there, as S3 would refuse it.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { startCluster, type Cluster } from '../support/parley.ts';
import { freePort, tempDir } from '../support/servers.ts';
import { connect } from '../support/clients.ts';
import { startSigV4Gate, type SigV4Gate } from '../support/sigv4-gate.ts';
import { slot, uploadScenarios, UPLOAD_LIMITS } from '../scenarios/upload.ts';

interface S3rverInstance { run(): Promise<unknown>; close(): Promise<void> }
type S3rverClass = new (o: Record<string, unknown>) => S3rverInstance;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;

const BUCKET = 'parley-uploads';
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

describe('HTTP file upload, cluster (S3 store)', () => {
  let c: Cluster;
  let s3: S3rverInstance;
  let gate: SigV4Gate;
  let endpoint = '';
  let client: S3Client;
  before(async () => {
    const port = await freePort();
    s3 = new S3rver({ port, address: '127.0.0.1', silent: true, directory: tempDir('parley-s3'), configureBuckets: [{ name: BUCKET }] });
    await s3.run();
    gate = await startSigV4Gate({ host: '127.0.0.1', port }, CREDENTIALS.secretAccessKey, await freePort());
    endpoint = `http://127.0.0.1:${gate.port}`;
    client = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, credentials: CREDENTIALS });
    c = await startCluster({
      session: 2, c2s: 1,
      config: { upload: { ...UPLOAD_LIMITS, store: { kind: 's3', bucket: BUCKET, endpoint, forcePathStyle: true, ...CREDENTIALS } } },
    });
  });
  after(async () => {
    await c?.stop();
    client?.destroy();
    await gate?.close();
    await s3?.close();
  });

  /** Whether the bucket holds the object of a GET URL (endpoint/bucket/key…), asked with a HEAD of our own. */
  const stored = async (url: string): Promise<boolean> => {
    const path = new URL(url).pathname.split('/').slice(2).map(decodeURIComponent).join('/');
    return client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: path })).then(() => true, (e: { name?: string }) => {
      if (e.name === 'NotFound') return false;
      throw e;
    });
  };
  uploadScenarios(() => c, () => ({ stored, putOnce: false }));

  test('the gate passed what was signed and refused the rest (the refusals above came from signatures, as at S3)', () => {
    assert.ok(gate.refused >= 4, `refused ${gate.refused}`);
  });

  test('the URLs are the bucket\'s: the bytes never pass through a Parley process', async () => {
    await c.addUser('bucketurl');
    const u = await connect(c.ports[0], 'bucketurl');
    try {
      const s = await slot(u, 'a.txt', 3, 'text/plain');
      assert.ok(s.put.startsWith(`${endpoint}/${BUCKET}/`), s.put);
      assert.ok(s.get.startsWith(`${endpoint}/${BUCKET}/`), s.get);
      assert.match(s.put, /X-Amz-Signature=/);
      assert.equal(new URL(s.put).searchParams.get('X-Amz-SignedHeaders'), 'content-length;content-type;host', 'S3 checks the size and type signed');
      assert.equal(new URL(s.put).searchParams.get('X-Amz-Expires'), String(UPLOAD_LIMITS.slotSeconds));
    } finally {
      await u.stop();
    }
  });
});
