import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SrvRecord } from 'node:dns';
import { orderTargets, parseTarget, resolveXmppService, type SrvLookup } from './index.ts';

function fakeDns(records: Record<string, SrvRecord[]>): SrvLookup {
  return {
    async resolveSrv(name) {
      const r = records[name];
      if (!r) throw Object.assign(new Error(`queryNxdomain ${name}`), { code: 'ENOTFOUND' });
      return r;
    },
  };
}

const srv = (name: string, port: number, priority = 0, weight = 0): SrvRecord => ({ name, port, priority, weight });

test('no SRV records: the domain itself on the default port', async () => {
  assert.deepEqual(await resolveXmppService('example.org', { service: 'server', defaultPort: 5269, resolver: fakeDns({}) }),
    [{ host: 'example.org', port: 5269, directTls: false }]);
});

test('STARTTLS and direct TLS records merge by priority; direct TLS first on a tie', async () => {
  const resolver = fakeDns({
    '_xmpp-server._tcp.example.org': [srv('b.example.org.', 5269, 10), srv('a.example.org', 5269, 5)],
    '_xmpps-server._tcp.example.org': [srv('tls.example.org', 5270, 5)],
  });
  assert.deepEqual(await resolveXmppService('example.org', { service: 'server', defaultPort: 5269, resolver }), [
    { host: 'tls.example.org', port: 5270, directTls: true },
    { host: 'a.example.org', port: 5269, directTls: false },
    { host: 'b.example.org', port: 5269, directTls: false },
  ]);
});

test("a lone '.' target means no service at all; with the other service present it is ignored", async () => {
  const none = fakeDns({ '_xmpp-server._tcp.example.org': [srv('.', 0)] });
  assert.deepEqual(await resolveXmppService('example.org', { service: 'server', defaultPort: 5269, resolver: none }), []);
  const one = fakeDns({ '_xmpp-server._tcp.example.org': [srv('.', 0)], '_xmpps-server._tcp.example.org': [srv('x.example.org', 5270)] });
  assert.deepEqual(await resolveXmppService('example.org', { service: 'server', defaultPort: 5269, resolver: one }), [{ host: 'x.example.org', port: 5270, directTls: true }]);
});

test('weights draw proportionally within one priority (RFC 2782)', () => {
  const c = (host: string, weight: number) => ({ host, port: 5269, directTls: false, priority: 1, weight });
  let seed = 1;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  let heavyFirst = 0;
  for (let i = 0; i < 2000; i++) if (orderTargets([c('light', 10), c('heavy', 90)], random)[0].host === 'heavy') heavyFirst++;
  assert.ok(heavyFirst > 1600 && heavyFirst < 1950, `heavy first ${heavyFirst} of 2000`);
  assert.equal(orderTargets([c('a', 0), c('b', 0)]).length, 2);
});

test('static route syntax', () => {
  assert.deepEqual(parseTarget('10.0.0.1:5299', 5269), { host: '10.0.0.1', port: 5299, directTls: false });
  assert.deepEqual(parseTarget('xmpp.example.org', 5269), { host: 'xmpp.example.org', port: 5269, directTls: false });
  assert.deepEqual(parseTarget('tls://[::1]:5270', 5269), { host: '::1', port: 5270, directTls: true });
  assert.throws(() => parseTarget('host:99999', 5269));
});
