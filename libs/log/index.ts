// Structured logging to stderr, one entry per line, in one of two formats (`log.format`):
//  - text: `time level component: message key=value…`; a value containing a space, a quote, `=` or a control
//    character is written as a JSON string (`reason="no session process is alive"`), so each entry stays one
//    line and splits unambiguously;
//  - json: one object per line, `{"time","level","role","node","logger","msg", …fields}`.
// A disabled level costs one comparison: nothing is formatted, no clock is read.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold = ORDER[(process.env.PARLEY_LOG_LEVEL as LogLevel | undefined) ?? 'info'] ?? 20;
let format: LogFormat = 'text';
/** What this process is, for the JSON entries: its role and node id once known (null before). */
const context: { role: string | null; node: string | null } = { role: null, node: null };

export function setLogLevel(level: LogLevel): void {
  threshold = ORDER[level];
}

export function setLogFormat(f: LogFormat): void {
  format = f;
}

/** The level and format in effect (what `parley log-level` reports). */
export function logSettings(): { level: LogLevel; format: LogFormat } {
  const level = (Object.keys(ORDER) as LogLevel[]).find((l) => ORDER[l] === threshold) ?? 'info';
  return { level, format };
}

/** The role (c2s, session, s2s, all) and node id the JSON entries carry. */
export function setLogContext(c: { role?: string; node?: string }): void {
  if (c.role !== undefined) context.role = c.role;
  if (c.node !== undefined) context.node = c.node;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  enabled(level: LogLevel): boolean;
}

/** One entry, before formatting. */
export interface LogRecord {
  time: Date;
  level: LogLevel;
  role: string | null;
  node: string | null;
  logger: string;
  msg: string;
  fields?: Record<string, unknown>;
}

/**
 * The keys every JSON entry has. A field of the same name is left out when it says the same (a `node` field naming
 * this process), and otherwise written with `_` in front (`_node`: another process).
 */
const RESERVED = new Set(['time', 'level', 'role', 'node', 'logger', 'msg']);

/** An error as the JSON entries carry it: name and message, and its code when it has one (ECONNREFUSED…). */
function errorJson(e: Error): Record<string, unknown> {
  const code = (e as { code?: unknown }).code;
  return code === undefined ? { name: e.name, message: e.message } : { name: e.name, message: e.message, code };
}

function jsonValue(_key: string, v: unknown): unknown {
  if (v instanceof Error) return errorJson(v);
  if (typeof v === 'bigint') return v.toString();
  return v;
}

function stringify(v: unknown): string {
  try {
    return JSON.stringify(v, jsonValue) ?? String(v);
  } catch {
    return String(v); // a cycle: never let a log line throw
  }
}

const NEEDS_QUOTES = /[\s"=\u0000-\u001f\u007f]/;

/** A field's value in the text format: as it reads, quoted (as a JSON string) when it would not split cleanly. */
export function textValue(v: unknown): string {
  const s = v instanceof Error ? v.message : typeof v === 'string' ? v : stringify(v);
  return s === '' || NEEDS_QUOTES.test(s) ? JSON.stringify(s) : s;
}

export function formatRecord(r: LogRecord, f: LogFormat): string {
  if (f === 'json') {
    const o: Record<string, unknown> = { time: r.time.toISOString(), level: r.level, role: r.role, node: r.node, logger: r.logger, msg: r.msg };
    if (r.fields) {
      for (const k of Object.keys(r.fields)) {
        const v = r.fields[k];
        if (v === undefined) continue;
        if (!RESERVED.has(k)) o[k] = v;
        else if (v !== o[k]) o[`_${k}`] = v;
      }
    }
    return stringify(o);
  }
  let line = `${r.time.toISOString()} ${r.level.padEnd(5)} ${r.logger}: ${r.msg}`;
  if (r.fields) {
    for (const k of Object.keys(r.fields)) {
      const v = r.fields[k];
      if (v !== undefined) line += ` ${k}=${textValue(v)}`;
    }
  }
  return line;
}

export function logger(component: string): Logger {
  const out = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < threshold) return;
    const line = formatRecord({ time: new Date(), level, role: context.role, node: context.node, logger: component, msg, fields }, format);
    process.stderr.write(line + '\n');
  };
  return {
    debug: (m, f) => out('debug', m, f),
    info: (m, f) => out('info', m, f),
    warn: (m, f) => out('warn', m, f),
    error: (m, f) => out('error', m, f),
    enabled: (l) => ORDER[l] >= threshold,
  };
}

/** A URL as it may appear in a log line or an error: any password replaced by `***`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_, scheme: string, auth: string) => {
    const colon = auth.indexOf(':');
    return `${scheme}${colon < 0 ? auth : `${auth.slice(0, colon)}:***`}@`;
  });
}

/**
 * A warning that repeats during an outage (every reconnect attempt fails the
 * same way): written at most once per `intervalMs`, with how many were held back.
 * `always` writes this one regardless (the first of an outage, an audit event) and starts the interval anew.
 */
export function throttledWarn(log: Logger, intervalMs: number): (msg: string, fields?: Record<string, unknown>, always?: boolean) => void {
  let last = -Infinity;
  let held = 0;
  return (msg, fields, always = false) => {
    const now = Date.now();
    if (!always && now - last < intervalMs) {
      held++;
      return;
    }
    log.warn(msg, held ? { ...fields, suppressed: held } : fields);
    last = now;
    held = 0;
  };
}
