// Prometheus metrics and health endpoints, as an operator scrapes them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded } from '../support/parley.ts';
import { connect, isMessageWithBody, xml } from '../support/clients.ts';
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
    assert.equal(value(/^parley_c2s_connections\{transport="tcp"\} (\d+)/m), 1);
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
