// Micro-benchmark: node --import tsx libs/xml/parser.bench.ts [stanzas]
import { StreamParser } from './parser.ts';
import { serialize } from './serialize.ts';
import { parseFragment } from './fragment.ts';
import type { Element } from './element.ts';

const N = Number(process.argv[2] ?? 200_000);
const HEADER = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`;
const msg = (i: number) =>
  `<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' id='m${i}'>` +
  `<body>Art thou not Romeo, and a Montague? #${i}</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`;

const parts: string[] = [HEADER];
for (let i = 0; i < N; i++) parts.push(msg(i), i % 10 === 0 ? '\n' : '');
const data = Buffer.from(parts.join(''));

function parseRun(chunkSize: number): { secs: number; count: number } {
  let count = 0;
  const p = new StreamParser({
    streamOpen() {},
    stanza() { count++; },
    streamClose() {},
    error(e) { throw e; },
  });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < data.length; i += chunkSize) p.write(data.subarray(i, i + chunkSize));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (count !== N) throw new Error(`parsed ${count} of ${N}`);
  return { secs, count };
}

function opsPerSec(iterations: number, fn: (i: number) => unknown): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn(i);
  return iterations / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

console.log(`node ${process.version}; ${N} stanzas, ${(data.length / 1e6).toFixed(1)} MB, ~${Math.round(data.length / N)} B/stanza`);
for (const chunk of [4096, 65536]) {
  parseRun(chunk); // warm-up
  const { secs } = parseRun(chunk);
  console.log(`StreamParser  ${String(chunk).padStart(5)} B chunks: ${fmt(N / secs)} stanzas/s, ${(data.length / secs / 1e6).toFixed(1)} MB/s`);
}

const sample: Element = parseFragment(msg(42));
const wire = Buffer.from(msg(42));
opsPerSec(50_000, () => serialize(sample));
console.log(`serialize      ${fmt(opsPerSec(N, () => serialize(sample)))} ops/s`);
opsPerSec(50_000, () => parseFragment(wire));
console.log(`parseFragment  ${fmt(opsPerSec(N, () => parseFragment(wire)))} ops/s (Buffer input)`);
