// A Store that times every operation into a histogram (parley_store_seconds):
// Redis latency seen from the process, per operation.
import type { Bytes, Store, StoreBatch } from './store.ts';

export interface LatencySink {
  observe(op: string, seconds: number): void;
}

export function instrumentStore(inner: Store, sink: LatencySink): Store {
  const timed = <T>(op: string, p: Promise<T>): Promise<T> => {
    const t0 = process.hrtime.bigint();
    return p.finally(() => sink.observe(op, Number(process.hrtime.bigint() - t0) / 1e9));
  };
  return {
    kind: inner.kind,
    hget: (s, c, f) => timed('hget', inner.hget(s, c, f)),
    hgetall: (s, c) => timed('hgetall', inner.hgetall(s, c)),
    hset: (s, c, f, v) => timed('hset', inner.hset(s, c, f, v)),
    hdel: (s, c, f) => timed('hdel', inner.hdel(s, c, f)),
    hlen: (s, c) => timed('hlen', inner.hlen(s, c)),
    hsetnx: (s, c, f, v) => timed('hsetnx', inner.hsetnx(s, c, f, v)),
    rpush: (s, c, v: Bytes) => timed('rpush', inner.rpush(s, c, v)),
    lrange: (s, c, a, b) => timed('lrange', inner.lrange(s, c, a, b)),
    llen: (s, c) => timed('llen', inner.llen(s, c)),
    ltrim: (s, c, a, b) => timed('ltrim', inner.ltrim(s, c, a, b)),
    logAppend: (s, c, id, v) => timed('logAppend', inner.logAppend(s, c, id, v)),
    logRange: (s, c, r) => timed('logRange', inner.logRange(s, c, r)),
    logCount: (s, c, r) => timed('logCount', inner.logCount(s, c, r)),
    logTrim: (s, c, t) => timed('logTrim', inner.logTrim(s, c, t)),
    del: (s, c) => timed('del', inner.del(s, c)),
    load: (s, colls) => timed('load', inner.load(s, colls)),
    batch(scope: string): StoreBatch {
      const b = inner.batch(scope);
      const exec = b.exec.bind(b);
      b.exec = () => timed('batch', exec());
      return b;
    },
    close: () => inner.close(),
    ...(inner.fenced ? { fenced: (tokenOf, onStale) => instrumentStore(inner.fenced!(tokenOf, onStale), sink) } : {}),
    ...(inner.replicated ? { replicated: (scope: string) => timed('replicated', inner.replicated!(scope)) } : {}),
  } satisfies Store;
}
