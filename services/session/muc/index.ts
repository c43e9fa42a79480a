// Multi-user chat (XEP-0045): which actor serves a JID on a MUC service
// domain — a room for room@service, the service itself for the bare domain.
import { domainPart, hasLocalpart } from '../../../libs/jid/split.ts';
import type { SessionServices } from '../services.ts';
import type { MucActor } from './muc-actor.ts';
import { RoomActor } from './room-actor.ts';
import { MucServiceActor } from './service-actor.ts';

export { MucDomains } from './domains.ts';

/** The actor for a bare JID on a MUC service, or undefined when the JID is an account's. */
export function mucActor(key: string, shard: number, svc: SessionServices): MucActor | undefined {
  if (!svc.muc.has(domainPart(key))) return undefined;
  return hasLocalpart(key) ? new RoomActor(key, shard, svc) : new MucServiceActor(key, shard, svc);
}
