import { SaxesParser } from 'saxes';
import { StringDecoder } from 'node:string_decoder';
const N = 200000;
const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`;
const msg = (i: number) => `<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' id='m${i}'><body>Art thou not Romeo, and a Montague? #${i}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`;
const parts: string[] = [HEADER]; for (let i = 0; i < N; i++) parts.push(msg(i));
const data = Buffer.from(parts.join(''));
const modes = process.argv.slice(2);
for (let r = 0; r < 2; r++) for (const mode of modes) {
  let c = 0;
  const t0 = performance.now();
  const s = new SaxesParser({ xmlns: false, fragment: false });
  const d = new StringDecoder('utf8');
  s.on('opentag', (t) => { if (mode === 'forin') { for (const k in t.attributes) c += k.length; } });
  s.on('closetag', () => { c++; if (mode === 'pos') c += s.position & 1; });
  s.on('text', () => {}); s.on('opentagstart', () => {});
  for (let i = 0; i < data.length; i += 65536) { const b = data.subarray(i, i + 65536); s.write(mode === 'dec' ? d.write(b) : b.toString('utf8')); }
  const secs = (performance.now() - t0) / 1000;
  console.log(mode, (N / secs) | 0, 'stanzas/s');
}
