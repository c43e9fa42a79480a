// One behaviour suite (test/support/store-contract.ts), run unchanged against
// every backend, plus what only one backend can show: Redis key names (the
// hash tag), lmdb across processes.
import { describe, it, before, after } from 'node:test';
import { MemoryStore } from './memory-store.ts';
import { overlayStore } from './overlay.ts';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore, openLmdbStore, createRedisClient, type Bytes, type Store } from './index.ts';
import { startRedis, tempDir, type Spawned } from '../../test/support/servers.ts';
import { b, storeSuite, str, strs } from '../../test/support/store-contract.ts';

// ---------------------------------------------------------------- backends

const lmdbDir = tempDir('parley-store-test');
storeSuite('lmdb', 'lmdb', async () => {
  const store = await openStore({ kind: 'lmdb', path: join(lmdbDir, 'shared') });
  return { store, close: () => store.close() };
});

storeSuite('memory', 'memory', async () => {
  const store = new MemoryStore();
  return { store, close: () => store.close() };
});

// The embedded mode's store: sessions in memory, everything else on disk.
storeSuite('lmdb with an in-memory overlay', 'lmdb', async () => {
  const durable = await openStore({ kind: 'lmdb', path: join(lmdbDir, 'overlay') });
  const store = overlayStore(durable, new MemoryStore(), (coll) => coll === 'sessions' || coll === 'offline');
  return { store, close: () => store.close() };
});

let redis: Spawned | undefined;
storeSuite('redis', 'redis', async () => {
  redis = await startRedis();
  const store = await openStore({ kind: 'redis', url: redis.url });
  return { store, close: async () => { await store.close(); await redis!.stop(); } };
});

// Writes through the fenced view (libs/store/redis-fenced.ts) run as scripts: the same behaviour, op for op.
storeSuite('redis, fenced writes', 'redis', async () => {
  const srv = await startRedis();
  const base = await openStore({ kind: 'redis', url: srv.url });
  return { store: base.fenced!((scope) => (scope.startsWith('$') ? undefined : 1)), close: async () => { await base.close(); await srv.stop(); } };
});

// ---------------------------------------------------------------- redis only

describe('redis key layout', () => {
  let srv: Spawned;
  before(async () => { srv = await startRedis(); });
  after(async () => srv.stop());

  it('uses {scope} as the hash tag after the prefix', async () => {
    const raw = createRedisClient(srv.url);
    const store = await openStore({ kind: 'redis', url: srv.url });
    const custom = await openStore({ kind: 'redis', url: srv.url, keyPrefix: 'test:' });
    try {
      await store.hset('alice@example.com', 'roster', 'bob@example.com', b('B'));
      await store.rpush('alice@example.com', 'offline', b('m'));
      await store.batch('$domains').hset('hosts', 'example.com', b('1')).exec();
      await custom.hset('alice@example.com', 'roster', 'x', b('X'));
      assert.equal(await raw.type('parley:{alice@example.com}:roster'), 'hash');
      assert.equal(await raw.type('parley:{alice@example.com}:offline'), 'list');
      assert.equal(await raw.type('parley:{$domains}:hosts'), 'hash');
      assert.equal(await raw.type('test:{alice@example.com}:roster'), 'hash');
      assert.deepEqual((await raw.keys('*')).sort(), [
        'parley:{$domains}:hosts',
        'parley:{alice@example.com}:offline',
        'parley:{alice@example.com}:roster',
        'test:{alice@example.com}:roster',
      ]);
      const v = await raw.hgetBuffer('parley:{alice@example.com}:roster', 'bob@example.com');
      assert.equal(v?.toString(), 'B');
    } finally {
      await Promise.all([store.close(), custom.close(), raw.quit()]);
    }
  });
});

// ---------------------------------------------------------------- lmdb only

describe('lmdb across opens and processes', () => {
  const repo = fileURLToPath(new URL('../..', import.meta.url));
  const module = fileURLToPath(new URL('./lmdb-store.ts', import.meta.url));

  /** Run `body` in a child node process with `store` opened on `path`; resolves to its stdout. */
  function child(path: string, body: string, onOutput?: () => void): Promise<string> {
    const code = `const { openLmdbStore } = await import(${JSON.stringify(module)});
      const store = await openLmdbStore(${JSON.stringify(path)});
      ${body}
      await store.close();`;
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repo });
      let out = '', err = '';
      p.stdout.on('data', (d) => { out += d; onOutput?.(); });
      p.stderr.on('data', (d) => (err += d));
      p.on('error', reject);
      p.on('exit', (c) => (c === 0 ? resolve(out) : reject(new Error(`child exited ${c}: ${err}`))));
    });
  }

  it('a second open of the same path sees the first one\'s writes, and data survives reopening', async () => {
    const path = join(lmdbDir, 'reopen');
    const one = await openLmdbStore(path);
    const two = await openLmdbStore(path);
    await one.hset('$accounts', 'users', 'alice', b('A'));
    await one.rpush('alice@example.com', 'offline', b('m'));
    assert.equal(str(await two.hget('$accounts', 'users', 'alice')), 'A');
    assert.deepEqual(strs(await two.lrange('alice@example.com', 'offline', 0, -1)), ['m']);
    await two.close();
    assert.equal(str(await one.hget('$accounts', 'users', 'alice')), 'A'); // closing one handle leaves the other working
    await one.close();
    const three = await openLmdbStore(path);
    assert.equal(str(await three.hget('$accounts', 'users', 'alice')), 'A');
    await three.close();
  });

  it('another process sees our writes and we see its writes, while both are open', async () => {
    const path = join(lmdbDir, 'multiproc');
    const store = await openLmdbStore(path);
    try {
      await store.hset('$accounts', 'users', 'server', b('S'));
      // Like the CLI adding a user while the server runs.
      const out = await child(path, `
        process.stdout.write(Buffer.from(await store.hget('$accounts', 'users', 'server')).toString());
        await store.hset('$accounts', 'users', 'cli', Buffer.from('C'));`);
      assert.equal(out, 'S');
      assert.equal(str(await store.hget('$accounts', 'users', 'cli')), 'C');
    } finally {
      await store.close();
    }
  });

  it('flushed on an interval: a committed write survives the writing process being killed', async () => {
    const path = join(lmdbDir, 'interval');
    const code = `const { openLmdbStore } = await import(${JSON.stringify(module)});
      const store = await openLmdbStore(${JSON.stringify(path)}, { every: 'interval', ms: 60000 });
      for (let i = 0; i < 100; i++) await store.logAppend('k@example.com', 'archive', i + 1, Buffer.from('m' + i));
      await store.hset('k@example.com', 'roster', 'x', Buffer.from('kept'));
      process.stdout.write('done');
      setInterval(() => {}, 1000);`;
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: repo });
    await new Promise<void>((resolve, reject) => {
      p.stdout.on('data', (d: Buffer) => { if (d.toString().includes('done')) resolve(); });
      p.on('exit', (c) => reject(new Error(`child exited ${c}`)));
    });
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
    const store = await openLmdbStore(path, { every: 'interval', ms: 1000 });
    try {
      assert.equal(str(await store.hget('k@example.com', 'roster', 'x')), 'kept');
      assert.equal((await store.logRange('k@example.com', 'archive')).length, 100);
    } finally {
      await store.close();
    }
  });

  it('concurrent rpush from two processes loses nothing', async () => {
    const path = join(lmdbDir, 'contended');
    const store = await openLmdbStore(path);
    try {
      const N = 300;
      // Both sides push one committed transaction at a time, starting together,
      // so their read-modify-writes of the list meta really interleave.
      let go!: () => void;
      const started = new Promise<void>((r) => (go = r));
      const theirs = child(path, `
        process.stdout.write('go');
        for (let i = 0; i < ${N}; i++) await store.rpush('s', 'q', Buffer.from('c' + i));`, go);
      await started;
      for (let i = 0; i < N; i++) await store.rpush('s', 'q', b(`p${i}`));
      await theirs;
      const all = strs(await store.lrange('s', 'q', 0, -1));
      assert.equal(await store.llen('s', 'q'), 2 * N);
      assert.equal(new Set(all).size, 2 * N);
      // Each process's own pushes keep their order.
      assert.deepEqual(all.filter((x) => x[0] === 'p'), Array.from({ length: N }, (_, i) => `p${i}`));
      assert.deepEqual(all.filter((x) => x[0] === 'c'), Array.from({ length: N }, (_, i) => `c${i}`));
      const switches = all.filter((x, i) => i > 0 && x[0] !== all[i - 1][0]).length;
      assert.ok(switches > 1, 'the two writers did not overlap');
    } finally {
      await store.close();
    }
  });
});
