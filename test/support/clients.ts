// Real XMPP clients (@xmpp/client) for the scenarios, with small helpers to
// wait for what a user would see.
import { client, xml, type Client } from '@xmpp/client';
import type { Element as XElement } from '@xmpp/xml';
import { DOMAIN, PASSWORD } from './parley.ts';

export { xml };
export type Stanza = XElement;

export interface TestClient {
  xmpp: Client;
  jid: string;
  /** Every stanza received, in order. */
  received: Stanza[];
  /** Resolves with the first received stanza (past or future) that matches. */
  waitFor(pred: (s: Stanza) => boolean, timeoutMs?: number): Promise<Stanza>;
  send(s: Stanza): Promise<void>;
  stop(): Promise<void>;
}

/** How long a test client waits for a stream open or an iq answer: the library's 2 s is too short for a loaded CI machine. */
export const CLIENT_TIMEOUT_MS = 10_000;

type ClientOptions = Parameters<typeof client>[0] & {
  /**
   * Log in with SASL2 (XEP-0388) and Bind2 when the server offers them, as @xmpp/client 0.14 does on its own: the
   * resource is then the client's tag and an identifier of the server's. Off by default: the scenarios bind the
   * resource they name, over RFC 6120 SASL and binding (c2s-sasl2-xmppjs.test.ts tests the library's SASL2).
   */
  sasl2?: boolean;
};

const NS_SASL2 = 'urn:xmpp:sasl:2';

/**
 * An @xmpp/client for a test: the tests' timeout (read on every open and
 * request, though not in the library's types), no reconnection, errors left
 * to the test's waits.
 */
export function testClient({ sasl2 = false, ...opts }: ClientOptions): Client {
  const xmpp = client(opts);
  if (!sasl2) {
    // Before the library's own handlers see the features: without <authentication/> it logs in the RFC 6120 way.
    (xmpp as unknown as { prependListener(e: 'element', f: (el: XElement) => void): void }).prependListener('element', (el) => {
      if (!el.is('features', 'http://etherx.jabber.org/streams')) return;
      el.children = el.children.filter((c) => typeof c === 'string' || !c.is('authentication', NS_SASL2));
    });
  }
  (xmpp as Client & { timeout: number }).timeout = CLIENT_TIMEOUT_MS;
  xmpp.reconnect.stop();
  xmpp.on('error', () => {});
  return xmpp;
}

export interface Inbox {
  /** Every stanza received, in order. */
  received: Stanza[];
  /** The first stanza received at index `since` or later (past or future) that matches. */
  waitFor(pred: (s: Stanza) => boolean, timeoutMs?: number, since?: number): Promise<Stanza>;
}

/** Record what a client receives, and wait for what a user would see. Attach before `start()`. */
export function inbox(xmpp: Client, label: string, defaultTimeoutMs = 10_000): Inbox {
  const received: Stanza[] = [];
  const waiters: { pred: (s: Stanza) => boolean; resolve: (s: Stanza) => void }[] = [];
  xmpp.on('stanza', (s: Stanza) => {
    received.push(s);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].pred(s)) {
        waiters[i].resolve(s);
        waiters.splice(i, 1);
      }
    }
  });
  return {
    received,
    waitFor(pred, timeoutMs = defaultTimeoutMs, since = 0) {
      const hit = received.slice(since).find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (s: Stanza) => { clearTimeout(t); resolve(s); } };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          const last = received.slice(-20).map((r) => r.toString()).join('\n');
          reject(new Error(`${label}: no matching stanza within ${timeoutMs} ms; the last ${Math.min(20, received.length)} of ${received.length} received:\n${last}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
  };
}

/** `opts.service` overrides the TCP address (e.g. ws://127.0.0.1:PORT/xmpp-websocket). */
export async function connect(port: number, local: string, opts: { resource?: string; password?: string; service?: string; domain?: string } = {}): Promise<TestClient> {
  const xmpp = testClient({
    service: opts.service ?? `xmpp://127.0.0.1:${port}`,
    domain: opts.domain ?? DOMAIN,
    username: local,
    password: opts.password ?? PASSWORD,
    resource: opts.resource,
  });
  const box = inbox(xmpp, local);
  const address = await xmpp.start();
  return {
    xmpp,
    jid: address.toString(),
    received: box.received,
    waitFor: (pred, timeoutMs) => box.waitFor(pred, timeoutMs),
    send: (s) => xmpp.send(s),
    stop: async () => { await xmpp.stop().catch(() => {}); },
  };
}

export const bodyOf = (s: Stanza): string | undefined => s.getChildText('body') ?? undefined;
export const isMessageWithBody = (body: string) => (s: Stanza) => s.is('message') && s.getChildText('body') === body;
export { DOMAIN };
