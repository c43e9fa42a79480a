// Whether this process can serve: the first reason it cannot, checked once a
// second and on every /readyz, logged when it changes and exported as the
// parley_ready gauge (when metrics are on).
import { logger } from '../libs/log/index.ts';

const log = logger('server');

export interface Readiness {
  /** Check now: why this process cannot serve, or undefined when it can. */
  notReady(): string | undefined;
  stop(): void;
}

export function watchReadiness(check: () => string | undefined, gauge?: { set(value: number): void }, everyMs = 1000): Readiness {
  let last: string | undefined;
  const notReady = (): string | undefined => {
    const why = check();
    if (why !== last) {
      if (why !== undefined) log.warn('not ready', { reason: why });
      else log.info('ready again', { was: last });
      last = why;
    }
    gauge?.set(why === undefined ? 1 : 0);
    return why;
  };
  notReady();
  const timer = setInterval(notReady, everyMs);
  timer.unref();
  return { notReady, stop: () => clearInterval(timer) };
}
