// A stream-managed client on the raw wire (SASL PLAIN on loopback, bind,
// <enable resume/>): what the server acknowledged is exactly the highest
// <a h/> it sent, with nothing in between to hide it.
import { rawLogin } from './im.ts';
import type { RawClient } from './raw.ts';

export interface ManagedSender extends RawClient {
  /** The highest `h` the server has acknowledged so far. */
  acked(): number;
}

export async function managedSender(port: number, user: string, resource = 'r'): Promise<ManagedSender> {
  const c = await rawLogin(port, user, resource);
  c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  await c.waitFor(/<enabled /);
  return Object.assign(c, {
    acked(): number {
      let h = 0;
      for (const m of c.output.matchAll(/<a xmlns='urn:xmpp:sm:3' h='(\d+)'\/>/g)) h = Math.max(h, Number(m[1]));
      return h;
    },
  });
}
