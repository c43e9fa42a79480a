// Client State Indication (XEP-0352): while a client says it is inactive (a
// phone in a pocket), what it need not see at once is held and collapsed —
// the newest presence per sender replaces the older one — and flushed, in
// order, when it turns active or when something urgent must go out.
import { emptyMap, filledMap } from '../../libs/lazy/index.ts';
import type { Envelope } from '../../libs/bus/envelope.ts';

export const NS_CSI = 'urn:xmpp:csi:0';

/** Held stanzas past which the queue is flushed anyway (memory stays bounded). */
const MAX_HELD = 500;

function carriesBody(xml: string | Uint8Array): boolean {
  return typeof xml === 'string' ? xml.includes('<body') : Buffer.from(xml.buffer, xml.byteOffset, xml.byteLength).includes('<body');
}

/** What may wait: presence (not subscription requests) and messages without a body (chat states, receipts). */
function canWait(env: Envelope): boolean {
  if (env.kind === 'presence') return env.type === '' || env.type === 'unavailable';
  if (env.kind === 'message') return env.type !== 'error' && !carriesBody(env.xml);
  return false;
}

export class CsiQueue {
  inactive = false;
  private held: Envelope[] = [];
  /** sender → index in `held` of its latest held presence; the shared empty Map (libs/lazy) while none is held */
  private presenceAt: ReadonlyMap<string, number> = emptyMap();
  /** Stanzas collapsed away while inactive (what CSI saved). */
  collapsed = 0;

  /** Take the stanza if it can wait; false means send it now (after flushing what is held). */
  hold(env: Envelope): boolean {
    if (!this.inactive || !canWait(env) || this.held.length >= MAX_HELD) return false;
    if (env.kind === 'presence') {
      const i = this.presenceAt.get(env.from);
      if (i !== undefined) {
        this.held[i] = env;
        this.collapsed++;
        return true;
      }
      (this.presenceAt = filledMap(this.presenceAt)).set(env.from, this.held.length);
    }
    this.held.push(env);
    return true;
  }

  /** Everything held, in order; the queue is empty afterwards. */
  drain(): Envelope[] {
    const out = this.held;
    this.held = [];
    this.presenceAt = emptyMap();
    return out;
  }

  get size(): number {
    return this.held.length;
  }
}
