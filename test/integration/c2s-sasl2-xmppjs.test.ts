// A real client library that speaks SASL2: @xmpp/client 0.14 (xmpp.js) logs
// in with SASL2 and Bind2, asks for a FAST token, logs in again with it
// (HT-SHA-256-NONE) in one round trip, and resumes its stream-managed session
// inline in SASL2 after its connection is cut; and over WebSocket.
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { testClient, xml, type Stanza } from '../support/clients.ts';
import { startEmbedded, DOMAIN, PASSWORD, type Deployment } from '../support/parley.ts';
import type { RunningServer } from '../../services/server.ts';
import { WebSocket as NodeWebSocket } from 'stanza/platform/index.js';

// @xmpp/websocket uses the WHATWG WebSocket global, which Node 20 has only behind a flag.
(globalThis as Record<string, unknown>).WebSocket ??= NodeWebSocket;

interface FastToken { mechanism: string; token: string; expiry: string }
interface Internals {
  fast: { saveToken(t: FastToken): Promise<void>; fetchToken(): Promise<FastToken | undefined> };
  streamManagement: { enabled: boolean; id: string; on(e: 'resumed', f: () => void): void };
  socket?: { socket?: { destroy(): void } };
  options: { service: string };
  status: string;
  connect(service: string): Promise<void>;
  open(o: { domain: string }): Promise<void>;
  on(e: 'send' | 'element' | 'status' | 'online', f: (x: Stanza & string) => void): void;
  removeListener(e: 'status', f: (x: string) => void): void;
}

describe('@xmpp/client 0.14 over SASL2, Bind2 and FAST (embedded)', () => {
  let d: Deployment & { server: RunningServer };
  let service: string;
  before(async () => {
    d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 } } });
    service = `xmpp://127.0.0.1:${d.ports[0]}`;
    await d.addUser('xjs');
  });
  after(async () => { await d.stop(); });

  test('password login with Bind2 and a token request, then a FAST login with the token, then an inline resumption', async () => {
    const userAgent = xml('user-agent', { id: randomUUID() }, xml('software', {}, 'xmpp.js'));
    let saved: FastToken | undefined;
    const store = (c: unknown) => {
      const f = (c as Internals).fast;
      f.saveToken = async (t) => { saved = t; };
      f.fetchToken = async () => saved;
    };
    /** What the library wrote and read outside stanzas (the SASL2 exchange). */
    const trace = (c: unknown) => {
      const seen: string[] = [];
      (c as Internals).on('send', (e) => { seen.push(`> ${e.toString()}`); });
      (c as Internals).on('element', (e) => { seen.push(`< ${e.toString()}`); });
      return seen;
    };

    const first = testClient({ service, domain: DOMAIN, username: 'xjs', password: PASSWORD, resource: 'js', sasl2: true, userAgent } as Parameters<typeof testClient>[0]);
    store(first);
    const t1 = trace(first);
    const jid1 = (await first.start()).toString();
    assert.match(jid1, /^xjs@localhost\/js\/[0-9a-f]{8}$/, 'Bind2: the tag and an identifier of the server\'s');
    assert.ok(t1.some((l) => /^> <authenticate xmlns="urn:xmpp:sasl:2" mechanism="SCRAM-SHA-1"/.test(l)), t1.join('\n'));
    assert.ok(t1.some((l) => l.startsWith('> <authenticate') && l.includes('<request-token xmlns="urn:xmpp:fast:0" mechanism="HT-SHA-256-NONE"/>')));
    assert.equal(saved?.mechanism, 'HT-SHA-256-NONE');
    assert.ok(saved?.token && Date.parse(saved.expiry) > Date.now());
    await first.stop();

    // A new client instance of the same user agent: one round trip with the token, no password exchange.
    const second = testClient({ service, domain: DOMAIN, username: 'xjs', password: PASSWORD, resource: 'js', sasl2: true, userAgent } as Parameters<typeof testClient>[0]);
    store(second);
    const t2 = trace(second);
    const jid2 = (await second.start()).toString();
    assert.match(jid2, /^xjs@localhost\/js\/[0-9a-f]{8}$/);
    assert.ok(t2.some((l) => /^> <authenticate xmlns="urn:xmpp:sasl:2" mechanism="HT-SHA-256-NONE"/.test(l) && l.includes('<fast xmlns="urn:xmpp:fast:0"/>')), t2.join('\n'));
    assert.ok(!t2.some((l) => l.startsWith('< <challenge')), 'no challenge: one round trip');
    const inner = second as unknown as Internals;
    assert.ok(inner.streamManagement.enabled && inner.streamManagement.id, 'stream management enabled inline in Bind2');

    // Cut the connection; the library resumes inline in its next <authenticate/>.
    const gone = new Promise<void>((r) => {
      const f = (status: string) => { if (status === 'disconnect') { inner.removeListener('status', f); r(); } };
      inner.on('status', f);
    });
    inner.socket?.socket?.destroy();
    await gone;
    const resumed = new Promise<void>((resolve, reject) => {
      inner.streamManagement.on('resumed', () => resolve());
      inner.on('online', () => reject(new Error('a new session was bound instead of resuming')));
    });
    const t3Start = t2.length;
    await inner.connect(service);
    await inner.open({ domain: DOMAIN });
    await resumed;
    const t3 = t2.slice(t3Start);
    assert.ok(t3.some((l) => l.startsWith('> <authenticate') && /<resume xmlns="urn:xmpp:sm:3"/.test(l)), t3.join('\n'));
    assert.ok(t3.some((l) => l.startsWith('< <success') && /<resumed xmlns="urn:xmpp:sm:3"/.test(l)), t3.join('\n'));
    const pong = await second.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(pong.attrs.type, 'result');
    await second.stop();
  });

  test('over WebSocket (RFC 7395): SASL2 with Bind2', async () => {
    const ws = `ws://127.0.0.1:${d.server.c2s!.httpPort()}/xmpp-websocket`;
    const c = testClient({ service: ws, domain: DOMAIN, username: 'xjs', password: PASSWORD, resource: 'web', sasl2: true } as Parameters<typeof testClient>[0]);
    const seen: string[] = [];
    (c as unknown as Internals).on('send', (e) => { seen.push(`> ${e.toString()}`); });
    const jid = (await c.start()).toString();
    assert.match(jid, /^xjs@localhost\/web\/[0-9a-f]{8}$/);
    assert.ok(seen.some((l) => l.startsWith('> <authenticate xmlns="urn:xmpp:sasl:2"')), seen.join('\n'));
    const pong = await c.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })));
    assert.equal(pong.attrs.type, 'result');
    await c.stop();
  });
});
