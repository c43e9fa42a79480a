// k6: pairs of VUs (1↔2, 3↔4, …) log in over WebSocket and message each other
// at a fixed interval; latency comes from the send time carried in the body.
//   k6 run -e WS_URL=ws://127.0.0.1:15280/xmpp-websocket -e VUS=200 -e INTERVAL_MS=100 -e SECONDS=30 bench/k6/chat.ts
import { check } from 'k6';
import ws from 'k6/ws';
import { Counter, Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { close, env, Login, NS, open } from './xmpp.ts';

const latency = new Trend('xmpp_msg_latency', true);
const sent = new Counter('xmpp_msgs_sent');
const received = new Counter('xmpp_msgs_received');
const loginOk = new Rate('xmpp_login_success');
const INTERVAL_MS = Number(__ENV.INTERVAL_MS || '100');
const SECONDS = Number(__ENV.SECONDS || '30');

export const options: Options = {
  scenarios: {
    chat: { executor: 'per-vu-iterations', vus: Number(__ENV.VUS || '200'), iterations: 1, maxDuration: `${SECONDS + 60}s` },
  },
  thresholds: {
    xmpp_msg_latency: ['p(99)<100'],
    xmpp_login_success: ['rate>0.999'],
    // Loss: at least 99% of the messages the pairs are expected to send must arrive.
    xmpp_msgs_received: [`count>=${Math.floor(Number(__ENV.VUS || '200') * (SECONDS * 1000 / INTERVAL_MS) * 0.99)}`],
  },
};

export default function (): void {
  // Users are numbered from 1; VU n talks to its neighbour in the pair.
  const me = __VU;
  const peer = me % 2 === 1 ? me + 1 : me - 1;
  const login = new Login(`${env.prefix}${me}`);
  const to = `${env.prefix}${peer}@${env.domain}`;
  ws.connect(env.url, { headers: { 'Sec-WebSocket-Protocol': 'xmpp' } }, (socket) => {
    let started = false;
    let sending = true;
    socket.on('open', () => socket.send(open()));
    socket.on('message', (frame: string) => {
      if (login.phase !== 'ready') {
        for (const out of login.onFrame(frame)) socket.send(out);
        if (login.error) socket.close();
      } else {
        const a = frame.indexOf('bnch~');
        if (a >= 0) {
          latency.add(Date.now() - Number(frame.slice(a + 5, frame.indexOf('~', a + 5))));
          received.add(1);
        }
      }
      if (login.phase === 'ready' && !started) {
        started = true;
        socket.setInterval(() => {
          if (!sending) return;
          socket.send(`<message${NS} to='${to}' type='chat'><body>bnch~${Date.now()}~</body></message>`);
          sent.add(1);
        }, INTERVAL_MS);
        // k6 intervals cannot be cleared: stop sending after SECONDS, close 2 s later for the last deliveries.
        socket.setTimeout(() => { sending = false; }, SECONDS * 1000);
        socket.setTimeout(() => { socket.send(close()); socket.close(); }, SECONDS * 1000 + 2000);
      }
    });
    socket.setTimeout(() => { if (login.phase !== 'ready') socket.close(); }, 15_000);
  });
  loginOk.add(login.phase === 'ready');
  check(login, { 'logged in': (l) => l.phase === 'ready' });
}
