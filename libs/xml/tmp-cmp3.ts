import { SaxesParser } from 'saxes';
const N = 200000;
const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`;
const msg = (i: number) => `<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' id='m${i}'><body>Art thou not Romeo, and a Montague? #${i}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`;
const parts: string[] = [HEADER]; for (let i = 0; i < N; i++) parts.push(msg(i));
const data = Buffer.from(parts.join(''));
declare const process: any;
const mode = process.argv[2];
for (let r = 0; r < 3; r++) {
  let c = 0;
  const s = new SaxesParser({ xmlns: false, fragment: false });
  const all = ['xmldecl', 'opentagstart', 'opentag', 'closetag', 'text', 'cdata', 'comment', 'processinginstruction', 'doctype', 'error'] as const;
  for (const e of mode === 'all' ? all : all.slice(1, 5)) s.on(e as any, (() => { c++; }) as any);
  const t0 = performance.now();
  for (let i = 0; i < data.length; i += 65536) s.write(data.subarray(i, i + 65536).toString('utf8'));
  const secs = (performance.now() - t0) / 1000;
  console.log(mode, (N / secs) | 0, 'stanzas/s');
}
