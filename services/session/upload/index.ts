// HTTP file upload (XEP-0363) as a service domain: one actor per service
// domain answers for it; JIDs with a local part there exist for nobody.
import type { DomainService } from '../service-domains.ts';
import { UploadServiceActor } from './service-actor.ts';

export const uploadService: DomainService = {
  subdomain: (config) => config.upload.subdomain,
  actor: (key, shard, svc) => new UploadServiceActor(key, shard, svc),
};
