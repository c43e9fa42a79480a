// The fail2ban filter shipped in deploy/fail2ban, applied as fail2ban applies it: the timestamp its datepattern
// finds is cut out of the line, then each failregex is tried with <ADDR> as the address.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const FILTER = 'deploy/fail2ban/parley.conf';

/** The value of `key` in the filter, with its continuation lines (indented), one entry per line. */
function option(conf: string, key: string): string[] {
  const lines = conf.split('\n');
  const i = lines.findIndex((l) => new RegExp(`^${key}\\s*=`).test(l));
  if (i < 0) return [];
  const out = [lines[i].replace(new RegExp(`^${key}\\s*=\\s*`), '')];
  for (let j = i + 1; j < lines.length && /^\s+\S/.test(lines[j]); j++) out.push(lines[j].trim());
  return out.map((s) => s.trim()).filter(Boolean);
}

/** The address the filter finds in a log line, or undefined. */
export function fail2banAddress(line: string): string | undefined {
  const conf = readFileSync(FILTER, 'utf8');
  // The two timestamps Parley writes: at the start of a text line, as the "time" that opens a JSON object.
  const rest = line.replace(/^\{"time":"[^"]*"/, '').replace(/^\S+Z /, '');
  for (const re of option(conf, 'failregex')) {
    const m = new RegExp(re.replace('<ADDR>', '(?<addr>[0-9a-fA-F.:]+)')).exec(rest);
    if (m?.groups?.addr) return m.groups.addr;
  }
  return undefined;
}

/** fail2ban-regex itself on these lines when it is installed: the addresses it found, in order; undefined without it. */
export function fail2banRegex(lines: string[]): string[] | undefined {
  try {
    execFileSync('fail2ban-regex', ['--version'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const file = join(mkdtempSync(join(tmpdir(), 'parley-f2b-')), 'parley.log');
  writeFileSync(file, lines.join('\n') + '\n');
  const out = execFileSync('fail2ban-regex', ['-v', file, FILTER], { encoding: 'utf8' });
  // With -v each matched address is listed under its failregex as `|      203.0.113.7  Thu Jan 01 …`.
  return [...out.matchAll(/^\|\s{6}([0-9a-fA-F.:]+)\s{2}\S/gm)].map((m) => m[1]);
}
