// Several envelopes for one subject in one bus message:
//   u8 2 | ( u32 length | envelope bytes )*
// The first byte tells a frame from a single envelope (version 1).
const FRAME = 2;

export function isFrame(buf: Uint8Array): boolean {
  return buf[0] === FRAME;
}

export function packFrame(parts: readonly Uint8Array[]): Uint8Array {
  let size = 1;
  for (const p of parts) size += 4 + p.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[0] = FRAME;
  let off = 1;
  for (const p of parts) {
    view.setUint32(off, p.length);
    out.set(p, off + 4);
    off += 4 + p.length;
  }
  return out;
}

export function unpackFrame(buf: Uint8Array): Uint8Array[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Uint8Array[] = [];
  let off = 1;
  while (off < buf.length) {
    if (off + 4 > buf.length) throw new Error('truncated bus frame');
    const n = view.getUint32(off);
    if (off + 4 + n > buf.length) throw new Error('truncated bus frame');
    out.push(buf.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return out;
}
