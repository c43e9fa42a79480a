// XEP-0377 spam reporting: a report rides in an item of a XEP-0191 block
// (`urn:xmpp:reporting:1` with a reason attribute, or the older
// `urn:xmpp:reporting:0` with a <spam/> or <abuse/> child). The block goes on
// as without it; the report is kept for the operator of the reporter's domain
// in the shared scope `$reports:<domain>` (a log, newest last, bounded) and
// read with `parley reports list`. The blocking module parses the reports of
// a request before it blocks anything, so a malformed report changes nothing.
import { pack, unpack } from 'msgpackr';
import type { Config } from '../../../libs/config/schema.ts';
import { StanzaError } from '../../../libs/errors/index.ts';
import { bareJid, domainPart } from '../../../libs/jid/split.ts';
import type { Store } from '../../../libs/store/store.ts';
import { child, children, text, type Element } from '../../../libs/xml/element.ts';
import { defineModule } from '../module.ts';

export const NS_REPORTING = 'urn:xmpp:reporting:1';
export const NS_REPORTING_0 = 'urn:xmpp:reporting:0';
const NS_SID = 'urn:xmpp:sid:0';
const REASONS: Record<string, Reason> = { 'urn:xmpp:reporting:spam': 'spam', 'urn:xmpp:reporting:abuse': 'abuse' };
const REPORTS = 'reports';

export type Reason = 'spam' | 'abuse';

export interface SpamReport {
  /** Log id: microseconds since the epoch, kept increasing by this process. */
  id: number;
  /** The reporting account (bare JID). */
  reporter: string;
  /** The JID reported (and blocked). */
  jid: string;
  reason: Reason;
  text: string;
  /** XEP-0359 stanza ids of the messages reported, as `by id`. */
  stanzaIds: string[];
  /** When it was received (ms since the epoch). */
  time: number;
}

export type ParsedReport = Omit<SpamReport, 'id' | 'reporter' | 'jid' | 'time'>;

/**
 * The reports of a block request, validated (not yet stored), each with the JID it is about (normalized by
 * `normalize`). A report sits in the item it is about; some clients (slixmpp's xep_0377 plugin) put it beside the
 * single item instead, which names its JID as clearly; beside several items it names none (bad-request).
 */
export function blockReports(block: Element, config: Config, normalize: (jid: string) => string): { jid: string; report: ParsedReport }[] {
  const items = children(block, 'item');
  const out = items.flatMap((item) => {
    const report = parseReport(item, config);
    return report ? [{ jid: normalize(item.attrs.jid ?? ''), report }] : [];
  });
  const beside = parseReport(block, config);
  if (beside) {
    if (items.length !== 1) throw new StanzaError('bad-request', 'a report beside the items of a block must be about its only item: put it inside the item');
    if (out.length === 0) out.push({ jid: normalize(items[0].attrs.jid ?? ''), report: beside });
  }
  return out;
}

/** The report an element (an item of a block request) carries, validated (not yet stored), or undefined. */
export function parseReport(item: Element, config: Config): ParsedReport | undefined {
  const r1 = child(item, 'report', NS_REPORTING);
  const r0 = r1 ? undefined : child(item, 'report', NS_REPORTING_0);
  const report = r1 ?? r0;
  if (!report || !config.spam.reports.enabled || config.modules.disabled.includes('reporting')) return undefined;
  let reason: Reason | undefined;
  if (r1) {
    reason = REASONS[report.attrs.reason ?? ''];
    if (!reason) throw new StanzaError('bad-request', `a report's reason is urn:xmpp:reporting:spam or urn:xmpp:reporting:abuse, not '${report.attrs.reason ?? ''}'`);
  } else {
    // <spam/> and <abuse/> inherit the report's namespace.
    reason = child(report, 'spam') ? 'spam' : child(report, 'abuse') ? 'abuse' : undefined;
    if (!reason) throw new StanzaError('bad-request', 'a report names its reason with <spam/> or <abuse/>');
  }
  const { maxTextLength, maxStanzaIds } = config.spam.reports;
  const body = children(report, 'text').map((t) => text(t).trim()).filter((t) => t !== '').join('\n');
  if (body.length > maxTextLength) throw new StanzaError('not-acceptable', `a report's text is limited to ${maxTextLength} characters`);
  const ids = children(report, 'stanza-id', NS_SID).map((s) => `${s.attrs.by ?? ''} ${s.attrs.id ?? ''}`);
  if (ids.length > maxStanzaIds) throw new StanzaError('not-acceptable', `a report cites at most ${maxStanzaIds} stanza ids`);
  return { reason, text: body, stanzaIds: ids };
}

let lastId = 0;

/** Keep reports of one account for its domain's operator (one batch). */
export async function storeReports(store: Store, config: Config, reporter: string, reports: { jid: string; report: ParsedReport }[]): Promise<void> {
  if (reports.length === 0) return;
  const domain = domainPart(bareJid(reporter));
  const b = store.batch(reportScope(domain));
  const time = Date.now();
  for (const { jid, report } of reports) {
    const id = (lastId = Math.max(lastId + 1, time * 1000));
    b.logAppend(REPORTS, id, pack([bareJid(reporter), jid, report.reason, report.text, report.stanzaIds, time]));
  }
  b.logTrim(REPORTS, { maxLength: config.spam.reports.maxPerDomain });
  await b.exec();
}

function reportScope(domain: string): string {
  return `$reports:${domain}`;
}

/** A domain's reports, oldest first (the CLI). */
export async function storedReports(store: Store, domain: string): Promise<SpamReport[]> {
  const entries = await store.logRange(reportScope(domain), REPORTS);
  return entries.map(({ id, value }) => {
    const [reporter, jid, reason, body, stanzaIds, time] = unpack(value) as [string, string, Reason, string, string[], number];
    return { id, reporter, jid, reason, text: body, stanzaIds, time };
  });
}

/** Forget a domain's reports: all, or the one with `id`; resolves to how many went. */
export async function clearReports(store: Store, domain: string, id?: number): Promise<number> {
  const scope = reportScope(domain);
  if (id === undefined) {
    const n = await store.logCount(scope, REPORTS);
    await store.del(scope, REPORTS);
    return n;
  }
  const found = await store.logRange(scope, REPORTS, { after: id - 1, before: id + 1 });
  if (found.length === 0) return 0;
  // A log drops only from its oldest end: drop up to this one and write back what was older, in one batch.
  const older = await store.logRange(scope, REPORTS, { before: id });
  const b = store.batch(scope).logTrim(REPORTS, { below: id + 1 });
  for (const e of older) b.logAppend(REPORTS, e.id, e.value);
  await b.exec();
  return 1;
}

export default defineModule({
  name: 'reporting',
  enabled: (config) => config.spam.reports.enabled,
  // The older form's reasons were features of their own.
  disco: { host: [NS_REPORTING, NS_REPORTING_0, 'urn:xmpp:reporting:reason:spam:0', 'urn:xmpp:reporting:reason:abuse:0'] },
});
