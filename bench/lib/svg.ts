// A tiny SVG chart writer (line charts and bar histograms), no dependencies.
export interface Series { name: string; points: Array<[number, number]> }
export interface ChartOptions { title: string; xLabel: string; yLabel: string; logX?: boolean; logY?: boolean }

const W = 760, H = 420, L = 70, R = 170, T = 40, B = 50;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (v: number): string => (Math.abs(v) >= 1000 ? `${+(v / 1000).toPrecision(3)}k` : `${+v.toPrecision(3)}`);

function scale(lo: number, hi: number, log: boolean, a: number, b: number): (v: number) => number {
  const f = log ? (v: number): number => Math.log10(Math.max(v, 1e-9)) : (v: number): number => v;
  const [fl, fh] = [f(lo), f(hi) === f(lo) ? f(lo) + 1 : f(hi)];
  return (v) => a + ((f(v) - fl) / (fh - fl)) * (b - a);
}

function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(Math.max(lo, 1e-9))); Math.pow(10, e) <= hi * 1.0001; e++) for (const m of [1, 2, 5]) { const v = m * Math.pow(10, e); if (v >= lo * 0.9999 && v <= hi * 1.0001) out.push(v); }
    return out.length >= 2 ? out : [lo, hi];
  }
  const span = hi - lo || 1;
  const step = Math.pow(10, Math.floor(Math.log10(span / 5)));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => span / s <= 8) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-9; v += nice) out.push(+v.toPrecision(12));
  return out;
}

function frame(o: ChartOptions, xs: number[], ys: number[], body: (x: (v: number) => number, y: (v: number) => number) => string, legend: string[]): string {
  const [xlo, xhi] = [Math.min(...xs), Math.max(...xs)];
  const [ylo, yhi] = [o.logY ? Math.min(...ys.filter((v) => v > 0)) : 0, Math.max(...ys) * 1.05 || 1];
  const x = scale(xlo, xhi, !!o.logX, L, W - R);
  const y = scale(ylo, yhi, !!o.logY, H - B, T);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`];
  for (const t of ticks(xlo, xhi, !!o.logX)) parts.push(`<line x1="${x(t)}" y1="${T}" x2="${x(t)}" y2="${H - B}" stroke="#eee"/><text x="${x(t)}" y="${H - B + 16}" text-anchor="middle">${fmt(t)}</text>`);
  for (const t of ticks(ylo, yhi, !!o.logY)) parts.push(`<line x1="${L}" y1="${y(t)}" x2="${W - R}" y2="${y(t)}" stroke="#eee"/><text x="${L - 6}" y="${y(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#444"/>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  parts.push(body(x, y));
  legend.forEach((name, i) => parts.push(`<rect x="${W - R + 12}" y="${T + i * 18}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/><text x="${W - R + 30}" y="${T + i * 18 + 10}">${esc(name)}</text>`));
  parts.push('</svg>\n');
  return parts.join('\n');
}

export function lineChart(o: ChartOptions, series: Series[]): string {
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return frame(o, [0, 1], [0, 1], () => '', []);
  return frame(o, pts.map((p) => p[0]), pts.map((p) => p[1]), (x, y) => series.map((s, i) => {
    const c = COLORS[i % COLORS.length];
    const d = s.points.map((p, j) => `${j ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    return `<path d="${d}" fill="none" stroke="${c}" stroke-width="2"/>` + s.points.map((p) => `<circle cx="${x(p[0]).toFixed(1)}" cy="${y(p[1]).toFixed(1)}" r="3" fill="${c}"><title>${esc(s.name)}: ${fmt(p[0])}, ${fmt(p[1])}</title></circle>`).join('');
  }).join('\n'), series.map((s) => s.name));
}

/** Bars of [upper bound, count]; bar i spans from the previous bound. */
export function barChart(o: ChartOptions, bars: Array<[number, number]>, name: string): string {
  if (!bars.length) return frame(o, [0, 1], [0, 1], () => '', []);
  const xs = bars.map((b) => b[0]);
  const first = bars.length > 1 ? xs[0] / (xs[1] / xs[0]) : xs[0] / 2;
  return frame(o, [first, ...xs], bars.map((b) => b[1]), (x, y) => bars.map(([ub, n], i) => {
    const x0 = x(i ? xs[i - 1] : first);
    return `<rect x="${x0.toFixed(1)}" y="${y(n).toFixed(1)}" width="${Math.max(1, x(ub) - x0 - 1).toFixed(1)}" height="${(y(0) - y(n)).toFixed(1)}" fill="${COLORS[0]}"><title>≤ ${fmt(ub)}: ${n}</title></rect>`;
  }).join('\n'), [name]);
}
