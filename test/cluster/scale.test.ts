// The scale bench, reduced: 3,000 authenticated, stream-managed connections
// over 3 c2s and 2 session processes (NATS, Redis), rosters of 20 with half of
// them online, held 20 s with server pings every 8 s of silence. No connection
// may drop, every one must have answered a ping, and the memory each role
// spends per connection stays within the bounds below — a leak or a fattened
// session shows there first. The bounds are two to three times what this
// machine measures (docs/performance.md, Scale-out: c2s 13 KB, session 66 KB,
// NATS 1 KB, Redis 3 KB per connection; Redis 1.5 KB per account and 2.3 KB
// per online user), so a shared, busy box does not trip them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runScale } from '../../bench/scale.ts';
import { tempDir } from '../support/servers.ts';

const CONNECTIONS = 3000;
/** RSS growth per connection allowed per role, bytes. */
const BOUND = { c2s: 40_000, session: 140_000, nats: 8_000, redis: 12_000 } as const;
/** Redis used_memory per stored account (credentials, a roster of 20) and per online user. */
const REDIS_PER_ACCOUNT = 4_000;
const REDIS_PER_ONLINE_USER = 6_000;

test(`scale: ${CONNECTIONS} stream-managed connections over 3 c2s + 2 session held with pings, none dropped, memory per role bounded`, { timeout: 150_000 }, async (t) => {
  const out = tempDir('parley-scale');
  const r = await runScale({
    connections: CONNECTIONS, c2s: 3, sessions: 2, holdSeconds: 20, pingIntervalSeconds: 8, pingTimeoutSeconds: 10, settleSeconds: 2,
    chatRate: 200, chatSeconds: 2, presenceRate: 50, presenceSeconds: 2, reloginFraction: 0.03, out, quiet: !process.env.PARLEY_TEST_VERBOSE,
  });
  const s = r.summary;
  t.diagnostic(`${s.loginsPerSec} logins/s; bytes per connection ${Object.entries(r.details.roles).map(([k, f]) => `${k} ${f.bytesPerConnection}`).join(', ')}; Redis ${s.redisBytesPerAccount} B/account +${s.redisBytesPerOnlineUser} B/online user; ${s.pingsAnswered} pings`);
  assert.equal(s.connections, CONNECTIONS, 'every user logged in');
  assert.equal(s.disconnects, 0, 'no connection dropped during the hold');
  assert.ok(s.pingsAnswered >= CONNECTIONS, `every connection was pinged during the hold (${s.pingsAnswered} pings answered)`);
  for (const role of ['c2s', 'session', 'nats', 'redis'] as const) {
    const f = r.details.roles[role];
    assert.ok(f.processes >= 1, `${role} processes measured`);
    assert.ok(f.bytesPerConnection <= BOUND[role], `${role}: ${f.bytesPerConnection} B per connection (bound ${BOUND[role]})`);
    assert.ok(f.cpuMsPerLogin > 0, `${role}: CPU per login measured`);
  }
  assert.ok(r.details.roles.c2s.bytesPerConnection > 0 && r.details.roles.session.bytesPerConnection > 0, 'connections and sessions cost memory where they live');
  assert.ok(s.redisBytesPerAccount > 0 && s.redisBytesPerAccount <= REDIS_PER_ACCOUNT, `Redis ${s.redisBytesPerAccount} B per account`);
  assert.ok(s.redisBytesPerOnlineUser <= REDIS_PER_ONLINE_USER, `Redis +${s.redisBytesPerOnlineUser} B per online user`);
  // Presence reached the online contacts: each change went to the sender and its ~10 online contacts.
  assert.ok((s.presenceFanOut ?? 0) >= 8, `presence fan-out ${s.presenceFanOut}`);
  assert.ok((s.busPerLogin ?? 0) > 0 && (s.redisCommandsPerLogin ?? 0) > 0, 'bus messages and Redis commands per login counted');
  const written = JSON.parse(readFileSync(r.files.json, 'utf8')) as typeof r;
  assert.equal(written.scenario, 'scale');
  assert.deepEqual(written.summary, s, 'the JSON written holds the figures');
});
