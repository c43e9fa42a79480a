// XEP-0363 HTTP file upload: the service `<upload.subdomain>.<domain>` of every
// served domain (services/session/upload/), listed in the domain's
// disco#items, and the sweep that deletes expired files (libs/upload/).
import { logger } from '../../../libs/log/index.ts';
import { Slots, uploadFiles, uploadOffered } from '../../../libs/upload/index.ts';
import { defineModule, type ServerContext } from '../module.ts';
import { uploadService } from '../upload/index.ts';

const log = logger('upload');
/** Expired slots handled per store round trip. */
const SWEEP_PAGE = 500;

/** Delete the files whose lifetime is over and forget their slots (their bytes stop counting toward quotas). */
export async function sweepUploads(ctx: ServerContext, now = Date.now()): Promise<number> {
  const files = await uploadFiles(ctx.config);
  let n = 0;
  for (const host of ctx.hosts.list()) {
    const service = `${ctx.config.upload.subdomain}.${host}`;
    const slots = new Slots(ctx.store, service);
    for (;;) {
      const due = await slots.expired(now, SWEEP_PAGE);
      if (due.length === 0) break;
      await files.remove(service, due);
      await slots.forget(due);
      n += due.length;
      if (due.length < SWEEP_PAGE) break;
    }
  }
  if (n) log.info('expired files deleted', { files: n });
  return n;
}

export default defineModule({
  name: 'upload',
  enabled: uploadOffered,
  service: uploadService,
  disco: { hostItems: (config, domain) => [{ jid: `${config.upload.subdomain}.${domain}`, name: config.upload.name }] },
  periodic: { everyMs: (config) => config.upload.sweepSeconds * 1000, run: async (ctx) => void (await sweepUploads(ctx)) },
});
