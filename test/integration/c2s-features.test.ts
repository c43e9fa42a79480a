// The stream features after authentication, on the wire: every feature the
// server implements is offered (RFC 6121 §2.6.1 roster versioning and §3.4.1
// pre-approval are MUSTs for a server that implements them), and what is
// offered works.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN } from '../support/raw.ts';
import type { RunningServer } from '../../services/server.ts';

const FEATURES = /<stream:features>.*?<\/stream:features>/gs;

describe('stream features after authentication', () => {
  let d: Deployment & { server: RunningServer };
  let port: number;
  before(async () => {
    d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 } } });
    port = d.ports[0];
    await d.addUser('featuser');
  });
  after(async () => { await d.stop(); });

  test('TCP: bind, session, roster versioning, pre-approval, CSI and stream management are offered', async () => {
    const c = await rawConnect(port);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth('featuser', PASSWORD));
    await c.waitFor(/<success/);
    c.send(STREAM_OPEN());
    const out = await c.waitFor(/<\/stream:features>[^]*<\/stream:features>/);
    const features = out.match(FEATURES)![1];
    assert.equal(features, '<stream:features>' +
      '<bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/>' +
      '<session xmlns="urn:ietf:params:xml:ns:xmpp-session"><optional/></session>' +
      '<ver xmlns="urn:xmpp:features:rosterver"/>' +
      '<sub xmlns="urn:xmpp:features:pre-approval"/>' +
      '<csi xmlns="urn:xmpp:csi:0"/>' +
      '<sm xmlns="urn:xmpp:sm:3"/>' +
      '</stream:features>');

    // Roster versioning as offered: a version with the roster, nothing when it has not changed (RFC 6121 §2.6.3).
    c.send(`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`);
    await c.waitFor(/<jid>/);
    c.send(`<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>`);
    const ver = /<iq [^>]*id="r1"[^>]*><query xmlns="jabber:iq:roster" ver="([^"]+)"/.exec(await c.waitFor(/id="r1"/))?.[1];
    assert.ok(ver, 'the roster result carries ver');
    c.send(`<iq type='get' id='r2'><query xmlns='jabber:iq:roster' ver='${ver}'/></iq>`);
    assert.match(await c.waitFor(/id="r2"/), /<iq [^>]*id="r2"[^>]*\/>/);
    c.close();
  });

  test('BOSH: the same features, without stream management (not offered over BOSH)', async () => {
    const url = `http://127.0.0.1:${d.server.c2s!.httpPort()}/http-bind`;
    const NS = `xmlns="http://jabber.org/protocol/httpbind" xmlns:xmpp="urn:xmpp:xbosh"`;
    const post = async (body: string) => (await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/xml; charset=utf-8' } })).text();
    let rid = 7000;
    const created = await post(`<body ${NS} rid="${rid++}" to="localhost" wait="5" hold="1" ver="1.11" xmpp:version="1.0"/>`);
    const sid = / sid="([^"]+)"/.exec(created)![1];
    assert.match(await post(`<body ${NS} rid="${rid++}" sid="${sid}">${plainAuth('featuser', PASSWORD)}</body>`), /<success/);
    const restarted = await post(`<body ${NS} rid="${rid++}" sid="${sid}" xmpp:restart="true"/>`);
    const features = /<stream:features[^>]*>(.*)<\/stream:features>/s.exec(restarted)?.[1] ?? '';
    assert.equal(features,
      '<bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/>' +
      '<session xmlns="urn:ietf:params:xml:ns:xmpp-session"><optional/></session>' +
      '<ver xmlns="urn:xmpp:features:rosterver"/>' +
      '<sub xmlns="urn:xmpp:features:pre-approval"/>' +
      '<csi xmlns="urn:xmpp:csi:0"/>');
    await post(`<body ${NS} rid="${rid++}" sid="${sid}" type="terminate"/>`);
  });
});
