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
