// k6: XMPP-over-WebSocket logins (connect, PLAIN, bind, presence), then close.
//   k6 run -e WS_URL=ws://127.0.0.1:15280/xmpp-websocket -e USERS=2000 -e VUS=50 -e DURATION=30s bench/k6/login.ts
import { check } from 'k6';
import ws from 'k6/ws';
import { Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { close, env, Login, open, userFor } from './xmpp.ts';

const loginTime = new Trend('xmpp_login_duration', true);
const loginOk = new Rate('xmpp_login_success');

export const options: Options = {
  vus: Number(__ENV.VUS || '50'),
  duration: __ENV.DURATION || '30s',
  thresholds: {
    xmpp_login_duration: ['p(50)<100', 'p(99)<500'],
    xmpp_login_success: ['rate>0.999'],
    ws_connecting: ['p(99)<200'],
  },
};

export default function (): void {
  const login = new Login(userFor((__VU - 1) * 100_000 + __ITER));
  const t0 = Date.now();
  const res = ws.connect(env.url, { headers: { 'Sec-WebSocket-Protocol': 'xmpp' } }, (socket) => {
    socket.on('open', () => socket.send(open()));
    socket.on('message', (frame: string) => {
      for (const out of login.onFrame(frame)) socket.send(out);
      if (login.phase === 'ready') {
        loginTime.add(Date.now() - t0);
        socket.send(close());
        socket.close();
      } else if (login.error) socket.close();
    });
    socket.setTimeout(() => { if (login.phase !== 'ready') login.error ||= `timeout in ${login.phase}`; socket.close(); }, 10_000);
  });
  loginOk.add(login.phase === 'ready');
  check(res, { 'upgraded (101)': (r) => r !== null && r.status === 101 });
  check(login, { 'logged in': (l) => l.phase === 'ready' });
}
