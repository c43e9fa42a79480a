// A second, independent client library for the HTTP transports: StanzaJS
// (the `stanza` package) over WebSocket or BOSH.
import * as XMPP from 'stanza';
import { DOMAIN, PASSWORD } from './parley.ts';

export interface StanzaClient {
  agent: XMPP.Agent;
  /** The bound full JID. */
  jid: string;
  /** Bodies of chat messages received, with their sender. */
  received: { from: string; body: string }[];
  waitForBody(body: string, timeoutMs?: number): Promise<{ from: string; body: string }>;
  stop(): Promise<void>;
}

export async function connectStanza(local: string, transport: { websocket: string } | { bosh: string }, timeoutMs = 10_000): Promise<StanzaClient> {
  const agent = XMPP.createClient({
    jid: `${local}@${DOMAIN}`,
    password: PASSWORD,
    resource: `stanza-${Math.random().toString(36).slice(2, 8)}`,
    transports: 'websocket' in transport ? { websocket: transport.websocket, bosh: false } : { bosh: transport.bosh, websocket: false },
    useStreamManagement: false,
  });
  const received: { from: string; body: string }[] = [];
  const waiters: (() => void)[] = [];
  agent.on('message', (m) => {
    if (m.body === undefined) return;
    received.push({ from: m.from, body: m.body });
    for (const w of [...waiters]) w();
  });
  const started = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${local}: no session within ${timeoutMs} ms`)), timeoutMs);
    agent.once('session:started', () => { clearTimeout(t); resolve(); });
    agent.once('auth:failed', () => { clearTimeout(t); reject(new Error(`${local}: authentication failed`)); });
    agent.once('stream:error', (e) => { clearTimeout(t); reject(new Error(`${local}: stream error ${e.condition}`)); });
  });
  agent.connect();
  await started;
  return {
    agent,
    jid: agent.jid,
    received,
    waitForBody(body, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = received.find((r) => r.body === body);
          if (!hit) return;
          clearTimeout(t);
          waiters.splice(waiters.indexOf(check), 1);
          resolve(hit);
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(check), 1);
          reject(new Error(`${local}: no message '${body}' within ${ms} ms; got ${JSON.stringify(received)}`));
        }, ms);
        waiters.push(check);
        check();
      });
    },
    stop: async () => {
      const gone = new Promise<void>((r) => agent.once('--transport-disconnected', () => r()));
      agent.disconnect();
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
    },
  };
}
