// Multi-user chat (XEP-0045) as a service domain: which actor serves a JID on
// it — a room for room@service, the service itself for the bare domain.
import { hasLocalpart } from '../../../libs/jid/split.ts';
import type { DomainService } from '../service-domains.ts';
import { RoomActor } from './room-actor.ts';
import { MucServiceActor } from './service-actor.ts';

export const mucService: DomainService = {
  subdomain: (config) => config.muc.subdomain,
  actor: (key, shard, svc) => (hasLocalpart(key) ? new RoomActor(key, shard, svc) : new MucServiceActor(key, shard, svc)),
};
