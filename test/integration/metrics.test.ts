// Prometheus metrics and health endpoints, as an operator scrapes them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded } from '../support/parley.ts';
import { connect, isMessageWithBody, xml } from '../support/clients.ts';
import { rawAuthenticated, rosterGet } from '../support/im.ts';
import { plainAuth, rawConnect, STREAM_OPEN } from '../support/raw.ts';
import { mobile } from '../scenarios/mobile.ts';
import { Metrics } from '../../libs/metrics/index.ts';
import type { RunningServer } from '../../services/server.ts';
import type { Deployment } from '../support/parley.ts';

let d: Deployment & { server: RunningServer };
before(async () => {
  d = await startEmbedded();
  await d.addUser('metered');
  await d.addUser('absent');
});
after(async () => { await d.stop(); });

test('/metrics counts connections, stanzas, auth, shards, store latency; /healthz and /readyz answer', async () => {
  const base = `http://127.0.0.1:${d.server.metricsPort()}`;
  const c = await connect(d.ports[0], 'metered');
  try {
    await c.send(xml('presence'));
    await c.xmpp.iqCaller.request(xml('iq', { type: 'get', to: 'localhost' }, xml('ping', 'urn:xmpp:ping')));
    await c.send(xml('message', { to: 'metered@localhost', type: 'chat' }, xml('body', {}, 'note to self')));
    await c.waitFor(isMessageWithBody('note to self'));
    await c.send(xml('message', { to: 'absent@localhost', type: 'chat' }, xml('body', {}, 'for later')));
    await new Promise((r) => setTimeout(r, 200));
    const text = await (await fetch(`${base}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    assert.equal(value(/^parley_c2s_connections\{transport="tcp",tls="yes"\} (\d+)/m) + value(/^parley_c2s_connections\{transport="tcp",tls="no"\} (\d+)/m), 1);
    assert.ok(value(/^parley_stanzas_in_total\{kind="iq"\} (\d+)/m) >= 1);
    assert.ok(value(/^parley_stanzas_out_total\{kind="iq"\} (\d+)/m) >= 1);
    assert.equal(value(/^parley_auth_total\{mechanism="SCRAM-SHA-1",result="success"\} (\d+)/m), 1, "@xmpp/client prefers SCRAM-SHA-1");
    assert.equal(value(/^parley_shards_owned (\d+)/m), 1024);
    assert.ok(value(/^parley_store_seconds_count\{op="load"\} (\d+)/m) >= 1);
    assert.ok(value(/^parley_bus_published_total (\d+)/m) > 0);
    assert.match(text, /^nodejs_eventloop_lag_seconds /m);
    assert.ok(value(/^parley_routing_seconds_count (\d+)/m) >= 1, 'routing latency from client to client');
    assert.equal(value(/^parley_offline_messages_total\{event="stored"\} (\d+)/m), 1);
    assert.equal(value(/^parley_ready (\d+)/m), 1);
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  } finally {
    await c.stop();
  }
});

async function scrape(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${d.server.metricsPort()}/metrics`)).text();
}
const sample = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};

test('a STARTTLS stream counts as tls="no" until its handshake is done, then tls="yes"; transport stays tcp', async () => {
  const before = await scrape();
  const plainBefore = sample(before, 'parley_c2s_connections{transport="tcp",tls="no"}');
  const secureBefore = sample(before, 'parley_c2s_connections{transport="tcp",tls="yes"}');
  const c = await rawConnect(d.ports[0]);
  try {
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    let text = await scrape();
    assert.equal(sample(text, 'parley_c2s_connections{transport="tcp",tls="no"}'), plainBefore + 1);
    assert.equal(sample(text, 'parley_c2s_connections{transport="tcp",tls="yes"}'), secureBefore);
    c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
    await c.waitFor(/<proceed/);
    await c.startTls();
    c.send(STREAM_OPEN());
    await c.waitFor(/<stream:features>.*mechanisms/s);
    text = await scrape();
    assert.equal(sample(text, 'parley_c2s_connections{transport="tcp",tls="no"}'), plainBefore);
    assert.equal(sample(text, 'parley_c2s_connections{transport="tcp",tls="yes"}'), secureBefore + 1);
    assert.match(text, /^parley_c2s_connections\{transport="ws",tls="no"\} 0$/m, 'every transport is listed, WebSocket as ws');
  } finally {
    c.close();
  }
});

test('parley_build_info, and counters typed as counters: bus messages, stanza errors by condition', async () => {
  const c = await rawAuthenticated(d.ports[0], 'metered');
  try {
    c.send(`<iq type='get' id='early' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await c.waitFor(/<not-allowed/);
  } finally {
    c.close();
  }
  const text = await scrape();
  assert.match(text, /^parley_build_info\{version="\d+\.\d+\.\d+[^"]*",node="embedded",role="all"\} 1$/m);
  assert.match(text, /^# TYPE parley_bus_published_total counter$/m);
  assert.ok(sample(text, 'parley_stanza_errors_total{condition="not-allowed"}') >= 1);
  for (const [, name, type] of text.matchAll(/^# TYPE (parley_\S+) (\S+)$/gm)) {
    if (name.endsWith('_total')) assert.equal(type, 'counter', `${name} ends in _total`);
    if (type === 'counter') assert.ok(name.endsWith('_total'), `the counter ${name} ends in _total`);
  }
});

test('failed logins and blocks are counted: parley_auth_failures_total, parley_auth_blocks_total{event}', async () => {
  const before = await scrape();
  const failures = sample(before, 'parley_auth_failures_total');
  const c = await rawConnect(d.ports[0]);
  try {
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth('metered', 'wrong'));
    await c.waitFor(/<failure xmlns=["']urn:ietf:params:xml:ns:xmpp-sasl["']><not-authorized/);
  } finally {
    c.close();
  }
  const text = await scrape();
  assert.equal(sample(text, 'parley_auth_failures_total'), failures + 1);
  assert.match(text, /^# TYPE parley_auth_blocks_total counter$/m);
});

test('stream management resumptions, resumed and failed: parley_sm_resumptions_total{result}', async () => {
  const before = await scrape();
  const ok = sample(before, 'parley_sm_resumptions_total{result="success"}');
  const failed = sample(before, 'parley_sm_resumptions_total{result="failure"}');
  const phone = await mobile(d.ports[0], 'metered', { resource: 'phone' });
  await rosterGet(phone); // a round trip: <enabled/> has arrived
  await phone.drop();
  await phone.resume(d.ports[0]);
  await phone.stop();
  const c = await rawAuthenticated(d.ports[0], 'metered');
  try {
    c.send(`<resume xmlns='urn:xmpp:sm:3' previd='no-such-session' h='0'/>`);
    await c.waitFor(/<failed xmlns=["']urn:xmpp:sm:3["']/);
  } finally {
    c.close();
  }
  const text = await scrape();
  assert.equal(sample(text, 'parley_sm_resumptions_total{result="success"}'), ok + 1);
  assert.equal(sample(text, 'parley_sm_resumptions_total{result="failure"}'), failed + 1);
});

test('a process exports the metrics of the roles it runs: no session gauges in a c2s process, no connection gauge in a session one', async () => {
  const names = async (m: Metrics) => new Set([...(await m.registry.metrics()).matchAll(/^# TYPE (\S+) /gm)].map((x) => x[1]));
  const c2s = await names(new Metrics(false, { c2s: true, session: false, s2s: false }));
  const session = await names(new Metrics(false, { c2s: false, session: true, s2s: false }));
  for (const n of ['parley_c2s_connections', 'parley_auth_failures_total', 'parley_sm_resumptions_total', 'parley_build_info', 'parley_bus_published_total']) assert.ok(c2s.has(n), n);
  for (const n of ['parley_shards_owned', 'parley_actors', 'parley_actor_mailbox_depth', 'parley_shard_leases_lost_total', 'parley_shard_leases_lapsed_total']) {
    assert.ok(!c2s.has(n), `a c2s process has no ${n}`);
    assert.ok(session.has(n), n);
  }
  for (const n of ['parley_c2s_connections', 'parley_stanzas_in_total', 'parley_auth_total']) assert.ok(!session.has(n), `a session process has no ${n}`);
  assert.ok(session.has('parley_bus_published_total'));
});

test('an address blocked by the login throttle: parley_auth_blocks_total{event="started"} once, {event="refused"} for each stream it opens after', async () => {
  const t = await startEmbedded({ c2s: { authThrottle: { maxFailuresPerAddress: 2, addressBackoffAfter: 10, accountBackoffAfter: 10 } } });
  try {
    await t.addUser('guessed');
    const base = `http://127.0.0.1:${t.server.metricsPort()}`;
    const c = await rawConnect(t.ports[0]);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth('guessed', 'wrong1'));
    await c.waitFor(/<not-authorized/);
    c.send(plainAuth('guessed', 'wrong2'));
    await c.waitFor(/temporarily blocked/);
    await c.closed;
    const again = await rawConnect(t.ports[0]);
    again.send(STREAM_OPEN());
    await again.waitFor(/<policy-violation/);
    await again.closed;
    const text = await (await fetch(`${base}/metrics`)).text();
    assert.equal(sample(text, 'parley_auth_failures_total'), 2);
    assert.equal(sample(text, 'parley_auth_blocks_total{event="started"}'), 1);
    assert.equal(sample(text, 'parley_auth_blocks_total{event="refused"}'), 1);
  } finally {
    await t.stop();
  }
});
