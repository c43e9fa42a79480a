// Byte transports under the XMPP client: plain TCP (RFC 6120) and a minimal
// WebSocket client (RFC 6455 + RFC 7395 framing). Both deliver decoded text;
// TCP may split a stanza anywhere, which the scanner in client.ts handles.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';

export interface WireHandlers {
  onText(text: string): void;
  onClose(err?: Error): void;
}

export interface Wire {
  send(text: string): void;
  /** Bytes queued in user space: lets the generator skip a stalled connection. */
  backlog(): number;
  end(): void;
  destroy(): void;
}

export interface Endpoint {
  host: string;
  port: number;
  localAddress?: string;
  /** Set for WebSocket: ws://host:port/path */
  wsUrl?: string;
}

export function connectWire(ep: Endpoint, h: WireHandlers, onReady: () => void): Wire {
  return ep.wsUrl ? connectWs(ep, ep.wsUrl, h, onReady) : connectTcp(ep, h, onReady);
}

function connectTcp(ep: Endpoint, h: WireHandlers, onReady: () => void): Wire {
  const sock = net.connect({ host: ep.host, port: ep.port, localAddress: ep.localAddress });
  sock.setNoDelay(true);
  const dec = new StringDecoder('utf8');
  let closed = false;
  const close = (err?: Error): void => {
    if (!closed) { closed = true; h.onClose(err); }
  };
  sock.on('connect', onReady);
  sock.on('data', (b: Buffer) => h.onText(dec.write(b)));
  sock.on('error', (e) => close(e));
  sock.on('close', () => close());
  return {
    send: (t) => { sock.write(t); },
    backlog: () => sock.writableLength,
    end: () => { sock.end(); },
    destroy: () => { sock.destroy(); },
  };
}

// Client frames must be masked (RFC 6455 §5.3). A fresh key per frame is
// required; a per-connection xorshift is unpredictable enough on loopback and
// far cheaper than randomBytes() per frame.
function connectWs(ep: Endpoint, url: string, h: WireHandlers, onReady: () => void): Wire {
  const u = new URL(url);
  const sock = net.connect({ host: u.hostname, port: Number(u.port || 80), localAddress: ep.localAddress });
  sock.setNoDelay(true);
  let seed = randomBytes(4).readUInt32LE(0) | 1;
  let upgraded = false;
  let closed = false;
  let pending: Buffer = Buffer.alloc(0);
  let fragments: Buffer[] = [];
  const close = (err?: Error): void => {
    if (!closed) { closed = true; h.onClose(err); }
  };

  const frame = (opcode: number, payload: Buffer): Buffer => {
    const n = payload.length;
    const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
    const out = Buffer.allocUnsafe(head + 4 + n);
    out[0] = 0x80 | opcode;
    if (n < 126) out[1] = 0x80 | n;
    else if (n < 65536) { out[1] = 0x80 | 126; out.writeUInt16BE(n, 2); }
    else { out[1] = 0x80 | 127; out.writeBigUInt64BE(BigInt(n), 2); }
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    out.writeInt32LE(seed, head);
    for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i] ^ out[head + (i & 3)];
    return out;
  };

  const parseFrames = (): void => {
    for (;;) {
      if (pending.length < 2) return;
      const b0 = pending[0];
      const b1 = pending[1];
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) { if (pending.length < 4) return; len = pending.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (pending.length < 10) return; len = Number(pending.readBigUInt64BE(2)); off = 10; }
      const masked = (b1 & 0x80) !== 0; // servers must not mask, tolerate it anyway
      const maskOff = off;
      if (masked) off += 4;
      if (pending.length < off + len) return;
      const payload = Buffer.from(pending.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= pending[maskOff + (i & 3)];
      pending = pending.subarray(off + len);
      const opcode = b0 & 0x0f;
      if (opcode === 0x9) sock.write(frame(0xa, payload));
      else if (opcode === 0x8) { sock.end(frame(0x8, payload.subarray(0, 2))); }
      else if (opcode === 0x1 || opcode === 0x0 || opcode === 0x2) {
        fragments.push(payload);
        if (b0 & 0x80) { h.onText(Buffer.concat(fragments).toString('utf8')); fragments = []; }
      }
    }
  };

  sock.on('connect', () => {
    sock.write(
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n`,
    );
  });
  sock.on('data', (b: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, b]) : b;
    if (!upgraded) {
      const end = pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = pending.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 101/.test(head)) { close(new Error(`websocket upgrade refused: ${head.split('\r\n')[0]}`)); sock.destroy(); return; }
      upgraded = true;
      pending = pending.subarray(end + 4);
      onReady();
    }
    parseFrames();
  });
  sock.on('error', (e) => close(e));
  sock.on('close', () => close());
  return {
    send: (t) => { sock.write(frame(0x1, Buffer.from(t))); },
    backlog: () => sock.writableLength,
    end: () => { sock.end(frame(0x8, Buffer.from([0x03, 0xe8]))); },
    destroy: () => { sock.destroy(); },
  };
}
