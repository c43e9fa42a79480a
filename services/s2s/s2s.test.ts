import { test } from 'node:test';
import assert from 'node:assert/strict';
import { envelope } from '../../libs/bus/envelope.ts';
import { parseFragment } from '../../libs/xml/fragment.ts';
import { DialbackKeys, verifyAnswer } from './dialback.ts';
import { qname, wireStanza } from './stanza.ts';

test('dialback keys: XEP-0185 shape, bound to both domains and the stream id', () => {
  const keys = new DialbackKeys('s3cr3t');
  const k = keys.key('target.example', 'sender.example', 'D60000229F');
  assert.match(k, /^[0-9a-f]{64}$/);
  assert.ok(keys.check('target.example', 'sender.example', 'D60000229F', k));
  assert.ok(!keys.check('target.example', 'sender.example', 'other-id', k));
  assert.ok(!keys.check('sender.example', 'target.example', 'D60000229F', k));
  assert.ok(!new DialbackKeys('another').check('target.example', 'sender.example', 'D60000229F', k));
});

test('answering db:verify as the authoritative server', () => {
  const keys = new DialbackKeys('s3cr3t');
  const hosts = { has: (d: string) => d === 'sender.example' };
  const key = keys.key('target.example', 'sender.example', 'abc');
  const ok = parseFragment(verifyAnswer(keys, hosts, parseFragment(`<db:verify from='target.example' to='sender.example' id='abc'>${key}</db:verify>`)));
  assert.deepEqual(ok.attrs, { from: 'sender.example', to: 'target.example', id: 'abc', type: 'valid' });
  const forged = parseFragment(verifyAnswer(keys, hosts, parseFragment(`<db:verify from='target.example' to='sender.example' id='abc'>${'0'.repeat(64)}</db:verify>`)));
  assert.equal(forged.attrs.type, 'invalid');
  const notOurs = parseFragment(verifyAnswer(keys, hosts, parseFragment(`<db:verify from='target.example' to='elsewhere.example' id='abc'>${key}</db:verify>`)));
  assert.equal(notOurs.attrs.type, 'invalid');
});

test('outbound stanzas carry both addresses and no client namespace; probes come from the bare JID', () => {
  const broadcast = envelope({ kind: 'presence', dir: 'out', from: 'a@x.example/r', to: 'b@y.example', xml: `<presence xmlns='jabber:client' from='a@x.example/r'><show>away</show></presence>` });
  assert.equal(wireStanza(broadcast), '<presence from="a@x.example/r" to="b@y.example"><show>away</show></presence>');
  const probe = envelope({ kind: 'presence', dir: 'out', type: 'probe', from: 'a@x.example/r', to: 'b@y.example' });
  assert.equal(wireStanza(probe), '<presence from="a@x.example" to="b@y.example" type="probe"/>');
});

test('names resolve through the prefixes of the stream header', () => {
  const header = { xmlns: 'jabber:server', 'xmlns:stream': 'http://etherx.jabber.org/streams', 'xmlns:db': 'jabber:server:dialback' };
  assert.deepEqual(qname(parseFragment(`<db:result from='a' to='b'>k</db:result>`), header), { ns: 'jabber:server:dialback', local: 'result' });
  assert.deepEqual(qname(parseFragment(`<result xmlns='jabber:server:dialback'/>`), header), { ns: 'jabber:server:dialback', local: 'result' });
  assert.deepEqual(qname(parseFragment(`<stream:features/>`), header), { ns: 'http://etherx.jabber.org/streams', local: 'features' });
  assert.deepEqual(qname(parseFragment(`<message/>`), header), { ns: 'jabber:server', local: 'message' });
});
