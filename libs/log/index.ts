// Plain structured logging to stderr: `level component message key=value…`.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
let threshold = ORDER[(process.env.PARLEY_LOG_LEVEL as LogLevel | undefined) ?? 'info'] ?? 20;

export function setLogLevel(level: LogLevel): void {
  threshold = ORDER[level];
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  enabled(level: LogLevel): boolean;
}

export function logger(component: string): Logger {
  const out = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < threshold) return;
    let line = `${new Date().toISOString()} ${level.padEnd(5)} ${component}: ${msg}`;
    if (fields) for (const [k, v] of Object.entries(fields)) line += ` ${k}=${v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v)}`;
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
 */
export function throttledWarn(log: Logger, intervalMs: number): (msg: string, fields?: Record<string, unknown>) => void {
  let last = -Infinity;
  let held = 0;
  return (msg, fields) => {
    const now = Date.now();
    if (now - last < intervalMs) {
      held++;
      return;
    }
    log.warn(msg, held ? { ...fields, suppressed: held } : fields);
    last = now;
    held = 0;
  };
}
