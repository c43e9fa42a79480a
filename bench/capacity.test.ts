// The capacity model's arithmetic on a fixed scale result (round figures, worked by hand below), not on live ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { firstLimit, plan, scaledByReach, unitCosts, withContactSlope } from './capacity.ts';
import { tempDir } from '../test/support/servers.ts';

const role = (bytesPerConnection: number, idleCpuUsPerConnSec: number, cpuUsPerMessage: number, cpuUsPerPresence: number, cpuMsPerRelogin: number) =>
  ({ bytesPerConnection, idleCpuUsPerConnSec, cpuUsPerMessage, cpuUsPerPresence, cpuMsPerLogin: cpuMsPerRelogin * 3, cpuMsPerRelogin });

const SCALE = {
  scenario: 'scale', target: 'parley-cluster',
  summary: {
    connections: 10_000, contacts: 20, pingIntervalSeconds: 20, presenceFanOut: 11,
    redisBytesPerAccountAlone: 200, redisBytesPerRosterItem: 60, redisBytesPerOnlineUser: 2000,
    busPerMessage: 3, busPerPresence: 12, busPerLogin: 99, busPerRelogin: 30, idleBusPerConnSec: 0.05,
    redisCommandsPerMessage: 0, redisCommandsPerPresence: 1, redisCommandsPerLogin: 99, redisCommandsPerRelogin: 20, idleRedisPerConnSec: 0.1,
  },
  details: {
    roles: {
      c2s: role(20_000, 10, 100, 300, 2),
      session: role(50_000, 5, 200, 700, 4),
      nats: role(1000, 1, 20, 60, 0.5),
      redis: role(2000, 2, 10, 30, 1),
    },
  },
};

test('capacity: a presence change or login reaching more contacts costs the per-delivery slope between a chat message and a measured presence', () => {
  // c2s: message 100 µs, presence with fan-out 11 300 µs → 20 µs per delivery; fan-out 51 → 100 + 20·50.
  assert.equal(scaledByReach(100, 300, 11, 51), 1100);
  assert.equal(scaledByReach(100, 300, 11, 1), 100);
  assert.equal(scaledByReach(300, 100, 11, 51), 300, 'a presence cheaper than a message adds nothing per delivery');
});

test('capacity: 1 million users from fixed unit costs', () => {
  const u = unitCosts(SCALE);
  assert.equal(u.roles.c2s.cpuMsPerLogin, 2, 'reconnects (contacts online) are preferred to cold logins');
  assert.equal(u.loginOnlineContacts, 10);
  const p = plan(u, 1_000_000);
  // 1M users: a message every 60 s, a presence change every 600 s, a reconnect every 1,800 s.
  assert.deepEqual(p.rates, { messagesPerSec: 16_667, presencePerSec: 1_667, loginsPerSec: 556 });
  assert.deepEqual(p.perOp, { presenceFanOut: 51, loginReach: 50 });
  // c2s: idle 10 µs measured with pings every 20 s, planned every 60 s: 10/3 µs·1M = 3.33 cores; msgs 100 µs·16,667/s
  // = 1.67; presence 1,100 µs·1,667/s = 1.83; login 2,000 + 20·2·(50 − 10) = 3,600 µs·556/s = 2.0 → 8.83 cores →
  // 15 processes at 0.6 core (10 by connections).
  assert.deepEqual(p.roles.c2s.coresBy, { idle: 3.33, messages: 1.67, presence: 1.83, reconnects: 2 });
  assert.equal(p.roles.c2s.cores, 8.83);
  assert.equal(p.roles.c2s.processes, 15);
  assert.equal(p.roles.c2s.limitedBy, 'cpu');
  assert.equal(p.roles.c2s.memoryGiB, 18.63);
  // session: 1.67 + 3.33 + 2,700 µs·1,667/s + 8,000 µs·556/s = 13.94 cores → 24 by CPU; 50 KB × (100 / 20 contacts) × 1M = 232.83 GiB → 30 processes of 8 GiB.
  assert.equal(p.roles.session.cores, 13.94);
  assert.equal(p.roles.session.memoryGiB, 232.83);
  assert.equal(p.roles.session.processes, 30);
  assert.equal(p.roles.session.limitedBy, 'memory');
  // NATS: 1.49 cores, under one 8-core server: the 3-server minimum.
  assert.equal(p.roles.nats.cores, 1.49);
  assert.equal(p.roles.nats.processes, 3);
  assert.equal(p.roles.nats.limitedBy, 'minimum');
  // Redis: 1.66 cores → 3 shards by CPU; 200 + 100·60 + 2,000 = 8,200 B per user = 7.64 GiB.
  assert.equal(p.roles.redis.cores, 1.66);
  assert.equal(p.redis.dataGiB, 7.64);
  assert.equal(p.redis.shards, 3);
  assert.equal(p.roles.redis.limitedBy, 'cpu');
  // bus: 0.05/3·1M + 3·16,667 + 12·(51/11)·1,667 + 30·556; Redis: 0.1/3·1M + 0 + 1·1,667 + 20·556.
  assert.equal(p.bus.messagesPerSec, 176_061);
  assert.equal(p.redis.commandsPerSec, 46_111);
  // archive: 1,440 messages a day, each kept for sender and recipient, 300 B.
  assert.equal(p.archive.bytesPerUserPerDay, 864_000);
  assert.equal(p.archive.gibPerDay, 804.66);
  assert.deepEqual(firstLimit(p), { role: 'session', by: 'presence', cores: 4.5 });
});

test('capacity: ten times the users is ten times every rate and memory', () => {
  const u = unitCosts(SCALE);
  const [a, b] = [plan(u, 1_000_000), plan(u, 10_000_000)];
  assert.equal(b.rates.messagesPerSec, 166_667);
  assert.equal(b.roles.c2s.cores, 88.33);
  assert.equal(b.roles.c2s.processes, 148);
  assert.equal(b.archive.gibPerDay, Math.round(a.archive.bytesPerUserPerDay * 1e7 / 2 ** 30 * 100) / 100);
  assert.equal(b.redis.dataGiB, 76.37);
});

test('capacity: the command prints both plans from a result file, and refuses a file that is no scale result', () => {
  const dir = tempDir('parley-capacity');
  const f = join(dir, 'scale.json');
  writeFileSync(f, JSON.stringify(SCALE));
  const ok = spawnSync(process.execPath, ['--import', 'tsx', 'bench/capacity.ts', f], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /^1,000,000 concurrent users: 16,667 msgs\/s/m);
  assert.match(ok.stdout, /^10,000,000 concurrent users: 166,667 msgs\/s/m);
  assert.match(ok.stdout, /Redis Cluster: 3 primary shards of 2\.55 GiB/);
  const g = join(dir, 'login.json');
  writeFileSync(g, JSON.stringify({ scenario: 'login', summary: {} }));
  const bad = spawnSync(process.execPath, ['--import', 'tsx', 'bench/capacity.ts', g], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /no scale result/);
});

test('capacity: a second result with 100 contacts turns the session memory into a fixed part and a part per contact', () => {
  const wide = structuredClone(SCALE);
  wide.summary.contacts = 100;
  wide.details.roles.session.bytesPerConnection = 90_000; // 50,000 at 20 contacts → 500 B per contact
  const u = withContactSlope(unitCosts(SCALE), wide);
  assert.equal(u.sessionBytesPerContact, 500);
  // 50,000 + 500·(100 − 20) = 90,000 B per user × 1M = 83.82 GiB → 11 processes of 8 GiB; CPU still asks for 24.
  const p = plan(u, 1_000_000);
  assert.equal(p.roles.session.memoryGiB, 83.82);
  assert.equal(p.roles.session.processes, 24);
  assert.equal(p.roles.session.limitedBy, 'cpu');
});
