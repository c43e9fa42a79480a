// Admission control on the wire (c2s.admission): a new stream past its bucket is closed with
// <resource-constraint/> and a text, a login past its bucket gets temporary-auth-failure on a stream that stays
// open, a resumption past its bucket gets <failed><resource-constraint/>; each retried later succeeds and loses
// nothing. Clients already connected are never held back.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import { plainAuth, rawConnect, STREAM_OPEN, type RawClient } from '../support/raw.ts';
import { rawAuthenticated, rawLogin } from '../support/im.ts';
import type { RunningServer } from '../../services/server.ts';

const NS_SM = 'urn:xmpp:sm:3';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metric(d: Deployment & { server: RunningServer }, what: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.server.metricsPort()}/metrics`)).text();
  return Number(new RegExp(`^parley_admission_refused_total\\{what="${what}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
}

describe('admission control', () => {
  let d: Deployment & { server: RunningServer };
  let port: number;
  const open: RawClient[] = [];
  before(async () => {
    d = await startEmbedded({
      c2s: {
        admission: {
          // Streams: three at once, then 1.5 a second; logins and resumptions: two at once, then 4 a second.
          streams: { burst: 3, ratePerSecond: 1.5 },
          logins: { burst: 2, ratePerSecond: 4 },
          resumptions: { burst: 2, ratePerSecond: 4 },
        },
      },
    });
    port = d.ports[0];
    for (const u of ['adm1', 'adm2', 'adm3']) await d.addUser(u);
  });
  after(async () => {
    for (const c of open) c.close();
    await d?.stop();
  });

  test('streams, logins and resumptions past their buckets are told to retry, and a retry goes through', async () => {
    // Two logins (the login bucket's burst) on two of the three streams the stream bucket holds.
    const a = await rawLogin(port, 'adm1', 'desk');
    open.push(a);
    a.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
    const previd = /<enabled [^>]*id="([^"]+)"/.exec(await a.waitFor(/<enabled [^>]*id="[^"]+"/))![1];
    const b = await rawLogin(port, 'adm2', 'desk');
    open.push(b);

    // The third stream is admitted; its login is not (the login bucket is empty): a temporary failure, the stream stays.
    const c = await rawConnect(port);
    open.push(c);
    c.send(STREAM_OPEN());
    await c.waitFor(/<\/stream:features>/);
    c.send(plainAuth('adm3', PASSWORD));
    const busy = await c.waitFor(/<\/failure>/);
    assert.match(busy, /<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><temporary-auth-failure\/><text xml:lang="en">this server is busy[^<]*retry in a few seconds<\/text><\/failure>/);
    assert.equal(await metric(d, 'login'), 1);

    // A fourth stream finds the stream bucket empty: <resource-constraint/> and the stream closes.
    const e = await rawConnect(port);
    e.send(STREAM_OPEN());
    await e.closed;
    assert.match(e.output, /<stream:error><resource-constraint xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/><text [^>]*>this server is busy[^<]*<\/text><\/stream:error>/);
    assert.equal(await metric(d, 'stream'), 1);

    // Connected clients are not held back: a message between them goes through at once.
    const t0 = Date.now();
    b.send(`<message to='adm1@localhost/desk' type='chat' id='m0'><body>during</body></message>`);
    await a.waitFor(/<body>during<\/body>/);
    assert.ok(Date.now() - t0 < 1000);

    // A quarter of a second later the login bucket has a token again: the same stream logs in.
    await sleep(300);
    c.send(plainAuth('adm3', PASSWORD));
    await c.waitFor(/<success/);

    // adm1 loses its connection; a message reaches its waiting session meanwhile.
    a.socket.destroy();
    await sleep(100);
    b.send(`<message to='adm1@localhost/desk' type='chat' id='m1'><body>while away</body></message>`);
    await sleep(600); // the login bucket refills (4/s, two tokens)
    const back = await rawAuthenticated(port, 'adm1');
    open.push(back);
    // Two resumptions drain the resumption bucket (the first one names no session), the third is refused.
    back.send(`<resume xmlns='${NS_SM}' previd='nosuchsession' h='0'/>`);
    await back.waitFor(/<failed [^>]*><item-not-found/);
    back.send(`<resume xmlns='${NS_SM}' previd='nosuchsession' h='0'/>`);
    await back.waitFor(/<failed [^>]*><item-not-found[\s\S]*<failed [^>]*><item-not-found/);
    back.send(`<resume xmlns='${NS_SM}' previd='${previd}' h='1'/>`);
    const refused = await back.waitFor(/<resource-constraint[\s\S]*<\/failed>/);
    assert.match(refused, /<failed xmlns="urn:xmpp:sm:3"><resource-constraint xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/><text [^>]*>this server is busy[^<]*<\/text><\/failed>/);
    assert.equal(await metric(d, 'resumption'), 1);
    // Retried on the same stream once the bucket refilled: resumed, and what came meanwhile arrives.
    await sleep(300);
    back.send(`<resume xmlns='${NS_SM}' previd='${previd}' h='1'/>`);
    await back.waitFor(/<resumed [^>]*previd=/);
    await back.waitFor(/<body>while away<\/body>/);
  });
});
