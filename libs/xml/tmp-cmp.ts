import { SaxesParser } from 'saxes';
import { StreamParser } from './parser.ts';
const N = 200000;
const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`;
const msg = (i: number) => `<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' id='m${i}'><body>Art thou not Romeo, and a Montague? #${i}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`;
const parts: string[] = [HEADER]; for (let i = 0; i < N; i++) parts.push(msg(i));
const data = Buffer.from(parts.join(''));
for (let r = 0; r < 3; r++) for (const mode of ['raw', 'raw-utf8', 'ours']) {
  let c = 0;
  const t0 = performance.now();
  if (mode === 'ours') {
    const p = new StreamParser({ streamOpen() {}, stanza() { c++; }, streamClose() {}, error(e) { throw e; } });
    for (let i = 0; i < data.length; i += 65536) p.write(data.subarray(i, i + 65536));
  } else {
    const s = new SaxesParser({ xmlns: false, fragment: false });
    s.on('opentag', () => {}); s.on('closetag', () => { c++; }); s.on('text', () => {}); s.on('opentagstart', () => {});
    for (let i = 0; i < data.length; i += 65536) s.write(data.subarray(i, i + 65536).toString(mode === 'raw' ? 'latin1' : 'utf8'));
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(mode, (N / secs) | 0, 'stanzas/s', (data.length / secs / 1e6).toFixed(1), 'MB/s');
}
