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

/** Give an @xmpp/client connection the tests' timeout (the option is read on every open and request, but not declared in its types). */
export function withTestTimeout<T extends object>(xmpp: T): T {
  (xmpp as T & { timeout: number }).timeout = CLIENT_TIMEOUT_MS;
  return xmpp;
}

/** `opts.service` overrides the TCP address (e.g. ws://127.0.0.1:PORT/xmpp-websocket). */
export async function connect(port: number, local: string, opts: { resource?: string; password?: string; service?: string; domain?: string } = {}): Promise<TestClient> {
  const xmpp = client({
    service: opts.service ?? `xmpp://127.0.0.1:${port}`,
    domain: opts.domain ?? DOMAIN,
    username: local,
    password: opts.password ?? PASSWORD,
    resource: opts.resource,
  });
  withTestTimeout(xmpp);
  xmpp.reconnect.stop();
  xmpp.on('error', () => {});
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
  const address = await xmpp.start();
  return {
    xmpp,
    jid: address.toString(),
    received,
    waitFor(pred, timeoutMs = 10_000) {
      const hit = received.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve: (s: Stanza) => { clearTimeout(t); resolve(s); } };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`${local}: no matching stanza within ${timeoutMs} ms; got ${received.map((r) => r.toString()).join('\n')}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    send: (s) => xmpp.send(s),
    stop: async () => { await xmpp.stop().catch(() => {}); },
  };
}

export const bodyOf = (s: Stanza): string | undefined => s.getChildText('body') ?? undefined;
export const isMessageWithBody = (body: string) => (s: Stanza) => s.is('message') && s.getChildText('body') === body;
export { DOMAIN };
