// A raw TCP client for protocol-level tests: bytes in, bytes out, no parser,
// so the tests see exactly what a client would see on the wire.
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface RawClient {
  socket: Socket | TLSSocket;
  /** Everything received so far. */
  readonly output: string;
  send(s: string): void;
  /** Resolves with the output once it matches. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the server closes the connection. */
  closed: Promise<void>;
  startTls(): Promise<void>;
  close(): void;
}

export const STREAM_OPEN = (to = 'localhost') =>
  `<?xml version='1.0'?><stream:stream to='${to}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;

export function plainAuth(user: string, password: string): string {
  return `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`;
}

export async function rawConnect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawClient> {
  let out = '';
  let socket: Socket | TLSSocket = tcpConnect({ port, host, localAddress });
  const listeners: (() => void)[] = [];
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const l of [...listeners]) l();
  };
  socket.on('data', onData);
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  socket.on('close', () => resolveClosed());
  socket.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const client: RawClient = {
    get socket() { return socket; },
    get output() { return out; },
    send: (s) => { socket.write(s); },
    waitFor(re, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(out)) {
            clearTimeout(t);
            listeners.splice(listeners.indexOf(check), 1);
            resolve(out);
            return true;
          }
          return false;
        };
        const t = setTimeout(() => {
          listeners.splice(listeners.indexOf(check), 1);
          reject(new Error(`no ${re} within ${timeoutMs} ms; got: ${out}`));
        }, timeoutMs);
        listeners.push(check);
        check();
      });
    },
    closed,
    async startTls() {
      const plain = socket;
      plain.removeListener('data', onData);
      const tls = tlsConnect({ socket: plain as Socket, rejectUnauthorized: false, servername: 'localhost' });
      await new Promise<void>((resolve, reject) => {
        tls.once('secureConnect', resolve);
        tls.once('error', reject);
      });
      out = '';
      tls.on('data', onData);
      tls.on('close', () => resolveClosed());
      socket = tls;
    },
    close: () => socket.destroy(),
  };
  return client;
}
