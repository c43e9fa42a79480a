// A listener that cannot bind: which one, where, why, and the key that moves it.
import { createServer } from 'node:net';

/** Thrown when a listener cannot bind; `parley start` prints the message alone. */
export class ListenError extends Error {
  constructor(
    message: string,
    /** The configuration key to change, e.g. `metrics.port`. */
    readonly key: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

const WHY: Record<string, string> = {
  EADDRINUSE: 'address in use',
  EACCES: 'permission denied',
  EADDRNOTAVAIL: 'no such local address',
  ENOTFOUND: 'no such host',
  EAI_AGAIN: 'host name not resolved',
};

/**
 * The error of `listener` (e.g. 'the metrics listener') failing to bind host:port, pointing at `<section>.port`, or at
 * `<section>.host` when the address itself is the trouble.
 */
export function listenError(listener: string, section: string, host: string, port: number, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const why = (code && WHY[code]) ?? (e instanceof Error ? e.message : String(e));
  const key = code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? `${section}.host` : `${section}.port`;
  const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return new ListenError(`${listener} cannot bind ${where} (${why}): set ${key}`, key, code);
}

/** Why host:port cannot be bound, found by trying (for servers that report no reason); undefined if it can be now. */
export function bindProbe(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e) => resolve(e));
    s.listen(port, host, () => s.close(() => resolve(undefined)));
  });
}
