// A raw WebSocket client (RFC 6455) for wire-level tests: it shows every
// message and close code as they are, can send what a well-behaved library
// never would (binary frames, several elements in one message), and can stop
// reading to play a slow client.
import { randomBytes } from 'node:crypto';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface RawWs {
  /** The subprotocol the server chose. */
  readonly protocol: string;
  /** Text messages received, in order. */
  readonly messages: string[];
  /** A text frame; bytes go out as they are, UTF-8 or not. */
  sendText(s: string | Uint8Array): void;
  sendBinary(b: Uint8Array): void;
  /** Resolves with the first message (past or future) that matches. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the connection is gone, with the close code the server sent (0 if none). */
  readonly closed: Promise<number>;
  /** Stop reading from the socket (a slow client); resume() reads again. */
  pause(): void;
  resume(): void;
  destroy(): void;
}

export class UpgradeRefused extends Error {
  constructor(readonly status: number, readonly body: string) {
    super(`upgrade refused: ${status}`);
  }
}

function frame(opcode: number, payload: Uint8Array): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len])
    : len < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff])
    : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(len)); return b; })()]);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

export function rawWs(url: string, opts: { protocols?: string[]; localAddress?: string; headers?: Record<string, string> } = {}): Promise<RawWs> {
  const u = new URL(url);
  const secure = u.protocol === 'wss:';
  const port = Number(u.port || (secure ? 443 : 80));
  const socket: Socket = secure
    ? tlsConnect({ host: u.hostname, port, rejectUnauthorized: false, servername: 'localhost' })
    : tcpConnect({ host: u.hostname, port, localAddress: opts.localAddress });
  const key = randomBytes(16).toString('base64');
  const protocols = opts.protocols ?? ['xmpp'];
  const request = [
    `GET ${u.pathname} HTTP/1.1`, `Host: ${u.host}`, 'Upgrade: websocket', 'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`, 'Sec-WebSocket-Version: 13',
    ...(protocols.length ? [`Sec-WebSocket-Protocol: ${protocols.join(', ')}`] : []),
    ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`), '', '',
  ].join('\r\n');
  socket.on('error', () => {});

  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const messages: string[] = [];
    const waiters: (() => void)[] = [];
    let closeCode = 0;
    let resolveClosed!: (code: number) => void;
    const closed = new Promise<number>((r) => (resolveClosed = r));
    let protocol = '';
    let fragments: Buffer[] = [];

    const parseFrames = () => {
      for (;;) {
        if (buf.length < 2) return;
        const opcode = buf[0] & 0x0f;
        const fin = (buf[0] & 0x80) !== 0;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (opcode === 0x8) {
          closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 0;
          socket.write(frame(0x8, payload.subarray(0, 2)));
          socket.end();
        } else if (opcode === 0x9) {
          socket.write(frame(0xa, payload));
        } else if (opcode === 0x1 || opcode === 0x0 || opcode === 0x2) {
          fragments.push(Buffer.from(payload));
          if (fin) {
            messages.push(Buffer.concat(fragments).toString('utf8'));
            fragments = [];
            for (const w of [...waiters]) w();
          }
        }
      }
    };

    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        const status = Number(head.split(' ')[1]);
        if (status !== 101) {
          socket.destroy();
          return reject(new UpgradeRefused(status, buf.subarray(end + 4).toString()));
        }
        protocol = /^sec-websocket-protocol:\s*(.+)$/im.exec(head)?.[1].trim() ?? '';
        upgraded = true;
        buf = buf.subarray(end + 4);
        resolve(ws);
      }
      parseFrames();
    });
    socket.on('close', () => {
      if (!upgraded) reject(new Error('connection closed before the upgrade'));
      resolveClosed(closeCode);
    });
    socket.once(secure ? 'secureConnect' : 'connect', () => socket.write(request));

    const ws: RawWs = {
      get protocol() { return protocol; },
      messages,
      sendText: (s) => { socket.write(frame(0x1, typeof s === 'string' ? Buffer.from(s, 'utf8') : s)); },
      sendBinary: (b) => { socket.write(frame(0x2, b)); },
      waitFor(re, timeoutMs = 5000) {
        return new Promise((res, rej) => {
          const check = () => {
            const hit = messages.find((m) => re.test(m));
            if (hit === undefined) return false;
            clearTimeout(t);
            waiters.splice(waiters.indexOf(check), 1);
            res(hit);
            return true;
          };
          const t = setTimeout(() => {
            waiters.splice(waiters.indexOf(check), 1);
            rej(new Error(`no message matching ${re} within ${timeoutMs} ms; got:\n${messages.join('\n')}`));
          }, timeoutMs);
          waiters.push(check);
          check();
        });
      },
      closed,
      pause: () => socket.pause(),
      resume: () => socket.resume(),
      destroy: () => socket.destroy(),
    };
  });
}
