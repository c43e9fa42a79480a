// Latency histograms (µs) shared between worker threads as compressed base64.
import * as hdr from 'hdr-histogram-js';

export type Histogram = hdr.Histogram;
const MAX_US = 120_000_000;

export const newHist = (): Histogram =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: MAX_US, numberOfSignificantValueDigits: 3 });

export const record = (h: Histogram, us: number): void => h.recordValue(Math.min(Math.max(1, Math.round(us)), MAX_US));
export const encodeHist = (h: Histogram): string => hdr.encodeIntoCompressedBase64(h);

export function mergeHists(encoded: readonly string[]): Histogram {
  const out = newHist();
  for (const e of encoded) out.add(hdr.decodeFromCompressedBase64(e));
  return out;
}

export interface LatencySummary { count: number; minMs: number; p50Ms: number; p90Ms: number; p99Ms: number; p999Ms: number; maxMs: number; meanMs: number }

const ms = (us: number): number => Math.round(us) / 1000;
export function summarize(h: Histogram): LatencySummary {
  const n = h.totalCount;
  const p = (q: number): number => (n ? ms(h.getValueAtPercentile(q)) : 0);
  return { count: n, minMs: n ? ms(h.minNonZeroValue) : 0, p50Ms: p(50), p90Ms: p(90), p99Ms: p(99), p999Ms: p(99.9), maxMs: n ? ms(h.maxValue) : 0, meanMs: n ? ms(h.mean) : 0 };
}

/** Histogram bars for an SVG: [upper bound ms, count] on log-spaced buckets. */
export function buckets(h: Histogram, count = 30): Array<[number, number]> {
  if (!h.totalCount) return [];
  // The CSV percentile distribution is the public way to read cumulative
  // counts; its .d.ts wrongly types the CSV flag as `false` only.
  const csv = (h.outputPercentileDistribution as (ticks: number, scale: number, csv: boolean) => string).call(h, 100, 1, true);
  const cumulative = csv.split('\n').slice(1)
    .map((l) => l.split(',').map(Number)).filter((r) => r.length >= 3 && Number.isFinite(r[0]) && Number.isFinite(r[2]))
    .map((r) => [r[0], r[2]] as const);
  const lo = Math.max(1, h.minNonZeroValue);
  const hi = Math.max(lo * 1.01, h.maxValue);
  const step = Math.pow(hi / lo, 1 / count);
  const out: Array<[number, number]> = [];
  let taken = 0;
  for (let i = 1; i <= count; i++) {
    const ub = i === count ? Infinity : lo * Math.pow(step, i);
    let c = 0;
    for (const [v, n] of cumulative) if (v <= ub) c = n;
    out.push([ms(Math.min(ub, hi)), c - taken]);
    taken = c;
  }
  return out;
}
