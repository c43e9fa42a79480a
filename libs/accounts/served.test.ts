import { test } from 'node:test';
import assert from 'node:assert/strict';
import { envelope, type Envelope } from '../bus/envelope.ts';
import { HostedDomains } from './hosts.ts';
import { ServedDomains } from './served.ts';

test('served: the hosted domains, the services\' domains, and who takes a service\'s stanzas itself', () => {
  const hosts = new HostedDomains(['example.com']);
  const rooms = { has: (d: string) => d === 'conference.example.com' };
  const sent: Array<[string, Envelope]> = [];
  let connected = true;
  const component = { has: (d: string) => d === 'bot.example.net', send: (d: string, env: Envelope) => { if (connected) sent.push([d, env]); return connected; } };
  const served = new ServedDomains(hosts, rooms, component);
  assert.deepEqual(['example.com', 'conference.example.com', 'bot.example.net', 'example.net', 'upload.example.com'].map((d) => served.has(d)), [true, true, true, false, false]);
  assert.deepEqual(['example.com', 'conference.example.com', 'bot.example.net'].map((d) => served.isService(d)), [false, true, true]);
  const env = envelope({ kind: 'message', dir: 'in', from: 'a@remote.test', to: 'bot.example.net', type: 'chat' });
  // Actors on the shards serve a hosted domain and the room service: nobody takes their stanzas here.
  assert.equal(served.send('example.com', env), undefined);
  assert.equal(served.send('conference.example.com', env), undefined);
  assert.equal(served.send('bot.example.net', env), true);
  assert.deepEqual(sent.map(([d]) => d), ['bot.example.net']);
  connected = false;
  assert.equal(served.send('bot.example.net', env), false);
});
