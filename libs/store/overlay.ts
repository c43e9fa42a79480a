// Some collections need no durability: in the embedded mode the session
// directory dies with the process anyway (it is cleared at start-up). This
// Store sends those collections to memory and the rest to the durable store,
// so a login costs no disk commit for its session.
import type { Bytes, LogTrim, Store, StoreBatch } from './store.ts';

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
      return new OverlayBatch(durable, ephemeral, isEphemeral, scope);
    },
    async close() {
      await Promise.all([durable.close(), ephemeral.close()]);
    },
  };
}

/** A batch over both stores, each one's batch made when a write needs it (a class: a batch is made per write). */
class OverlayBatch implements StoreBatch {
  private d: StoreBatch | undefined;
  private e: StoreBatch | undefined;
  constructor(private readonly durable: Store, private readonly ephemeral: Store, private readonly isEphemeral: (coll: string) => boolean,
    private readonly scope: string) {}

  private route(coll: string): StoreBatch {
    if (this.isEphemeral(coll)) return (this.e ??= this.ephemeral.batch(this.scope));
    return (this.d ??= this.durable.batch(this.scope));
  }

  hset(c: string, f: string, v: Bytes): this { this.route(c).hset(c, f, v); return this; }
  hdel(c: string, f: string): this { this.route(c).hdel(c, f); return this; }
  del(c: string): this { this.route(c).del(c); return this; }
  rpush(c: string, v: Bytes): this { this.route(c).rpush(c, v); return this; }
  logAppend(c: string, id: number, v: Bytes): this { this.route(c).logAppend(c, id, v); return this; }
  logTrim(c: string, t: LogTrim): this { this.route(c).logTrim(c, t); return this; }
  async exec(): Promise<void> {
    if (this.d && this.e) await Promise.all([this.d.exec(), this.e.exec()]);
    else await (this.d ?? this.e)?.exec();
  }
}
