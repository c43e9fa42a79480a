// Some collections need no durability: in the embedded mode the session
// directory dies with the process anyway (it is cleared at start-up). This
// Store sends those collections to memory and the rest to the durable store,
// so a login costs no disk commit for its session.
import type { Bytes, Store, StoreBatch } from './store.ts';

export function overlayStore(durable: Store, ephemeral: Store, isEphemeral: (coll: string) => boolean): Store {
  const pick = (coll: string) => (isEphemeral(coll) ? ephemeral : durable);
  return {
    kind: durable.kind,
    hget: (s, c, f) => pick(c).hget(s, c, f),
    hgetall: (s, c) => pick(c).hgetall(s, c),
    hset: (s, c, f, v) => pick(c).hset(s, c, f, v),
    hdel: (s, c, f) => pick(c).hdel(s, c, f),
    hlen: (s, c) => pick(c).hlen(s, c),
    hsetnx: (s, c, f, v) => pick(c).hsetnx(s, c, f, v),
    rpush: (s, c, v: Bytes) => pick(c).rpush(s, c, v),
    lrange: (s, c, a, b) => pick(c).lrange(s, c, a, b),
    llen: (s, c) => pick(c).llen(s, c),
    ltrim: (s, c, a, b) => pick(c).ltrim(s, c, a, b),
    logAppend: (s, c, id, v) => pick(c).logAppend(s, c, id, v),
    logRange: (s, c, r) => pick(c).logRange(s, c, r),
    logCount: (s, c, r) => pick(c).logCount(s, c, r),
    logTrim: (s, c, t) => pick(c).logTrim(s, c, t),
    del: (s, c) => pick(c).del(s, c),
    async load(scope, colls) {
      const mem = colls.filter(isEphemeral);
      const disk = colls.filter((c) => !isEphemeral(c));
      const [a, b] = await Promise.all([disk.length ? durable.load(scope, disk) : new Map<string, Map<string, Bytes>>(), mem.length ? ephemeral.load(scope, mem) : new Map<string, Map<string, Bytes>>()]);
      for (const [k, v] of b) a.set(k, v);
      return a;
    },
    batch(scope: string): StoreBatch {
      const d = durable.batch(scope);
      const e = ephemeral.batch(scope);
      let usedD = false;
      let usedE = false;
      const route = (coll: string) => (isEphemeral(coll) ? ((usedE = true), e) : ((usedD = true), d));
      const b: StoreBatch = {
        hset: (c, f, v) => { route(c).hset(c, f, v); return b; },
        hdel: (c, f) => { route(c).hdel(c, f); return b; },
        del: (c) => { route(c).del(c); return b; },
        rpush: (c, v) => { route(c).rpush(c, v); return b; },
        logAppend: (c, id, v) => { route(c).logAppend(c, id, v); return b; },
        logTrim: (c, t) => { route(c).logTrim(c, t); return b; },
        exec: async () => {
          await Promise.all([usedD ? d.exec() : undefined, usedE ? e.exec() : undefined]);
        },
      };
      return b;
    },
    async close() {
      await Promise.all([durable.close(), ephemeral.close()]);
    },
  };
}
