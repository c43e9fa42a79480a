// The last line of defence of a running server (`parley start`): a promise
// rejection nobody handled and an exception nobody caught. Every failure is
// meant to be handled where it means something (docs/architecture.md,
// "Faults"); one that was not is a bug, logged at error with its stack and
// counted (parley_process_faults_total).
//  - unhandledRejection: the process keeps running. One account's failed write
//    must not end every session this process serves.
//  - uncaughtException: the process exits with status 1. A synchronous throw
//    that unwound to the event loop may have left state half-changed; the
//    cluster's failover (leases, resumption elsewhere) is the safer recovery.
import { logger } from '../libs/log/index.ts';

const log = logger('process');

export type ProcessFault = 'unhandledRejection' | 'uncaughtException';

function described(e: unknown): Record<string, unknown> {
  if (e instanceof Error) return { error: `${e.name}: ${e.message}`, stack: e.stack ?? '(no stack)' };
  return { error: typeof e === 'string' ? e : JSON.stringify(e) ?? String(e) };
}

/** Installs both handlers; returns what removes them. `exit` is process.exit but for tests. */
export function guardProcess(count: (kind: ProcessFault) => void, exit: (code: number) => void = (code) => process.exit(code)): () => void {
  const onRejection = (reason: unknown): void => {
    try {
      count('unhandledRejection');
    } finally {
      log.error('unhandled promise rejection (a bug: the failure was not handled where it happened); the process keeps running', described(reason));
    }
  };
  const onException = (e: unknown, origin: string): void => {
    try {
      count('uncaughtException');
      log.error('uncaught exception; exiting, the process state may be inconsistent', { origin, ...described(e) });
    } finally {
      exit(1);
    }
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
