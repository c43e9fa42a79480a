// `parley`: start the server and administer accounts and domains.
import { createWriteStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { unpack } from 'msgpackr';
import { Accounts, Domains } from '../../libs/accounts/index.ts';
import { parseDuration, type RegistrationToken } from '../../libs/accounts/registration-tokens.ts';
import { ConfigError, loadConfig, type Config } from '../../libs/config/index.ts';
import { parseJid } from '../../libs/jid/index.ts';
import { setLogContext, setLogFormat, setLogLevel } from '../../libs/log/index.ts';
import type { Store } from '../../libs/store/store.ts';
import type { MessageArchive } from '../../libs/archive/archive.ts';
import { requestDrain } from '../c2s/drain.ts';
import { removeAccountThroughActor } from '../session/admin.ts';
import { decodeItem } from '../session/im/roster.ts';
import { storedBlocklist } from '../session/modules/blocking.ts';
import { clearReports, storedReports } from '../session/modules/reporting.ts';
import { storedVcard } from '../session/modules/vcard.ts';
import type { Metrics } from '../../libs/metrics/index.ts';
import { ListenError } from '../listen-error.ts';
import { AdminClientError, adminClient } from '../admin/client.ts';
import type { AnnounceResult, KickResult, LogLevelResult, NodeInfo, ReloadResult, SessionInfo, Stats } from '../admin/operations.ts';
import { guardProcess, type ProcessFault } from '../process-faults.ts';
import { isEmbedded, openConfiguredStore, startServer } from '../server.ts';
// Loaded by the commands that use them (`config check`, `export`, `import`), not by every command.
import type { PieDocument } from '../portability/pie.ts';
import type { Finding } from './config-check.ts';

const USAGE = `usage: parley <command> [options]

  start [--config FILE] [--role all|c2s|session|s2s]   run the server (no config: everything in one process)
  user add JID [--password PW]                      create an account (password also from $PARLEY_PASSWORD)
  user passwd JID [--password PW]                   change a password
  user del JID                                      delete an account with all its data, telling its contacts
                                                    (embedded mode: stop the server first)
  user disable|enable JID                           stop an account logging in (its sessions end) or let it again
                                                    (through the running server's admin API)
  user list DOMAIN                                  list a domain's accounts
  user roster JID                                   a user's contacts: JID, subscription, name, groups
  user blocks JID                                   a user's block list
  user vcard JID                                    a user's vCard (XML)
  user bulk-add --domain D --prefix P --count N --password PW
                                                    create P1…PN@D (benchmarks, tests)
  domain add|del DOMAIN                             serve a domain, or stop serving it
  domain list                                       the domains added at run time
  reports list [--domain D]                         spam and abuse reports users sent with a block (XEP-0377),
                                                    oldest first: id, time, reporter, reported JID, reason,
                                                    stanza ids, text (every served domain without --domain)
  reports clear --domain D [--id ID]                forget a domain's reports, or the one with this id
  register-token create [--domain D] [--uses N] [--ttl 7d]
                                                    a token that lets N accounts (default 1) be created in-band on
                                                    D (default the first served domain) until it expires (90s,
                                                    30m, 12h, 7d; 0 never); prints it and its xmpp: URI (XEP-0445)
  register-token list [--domain D]                  the tokens: token, domain, uses taken/allowed, expiry, state
  register-token revoke TOKEN                       stop accepting a token
  c2s drain NODE                                    stop a c2s node accepting and close its streams; clients
                                                    resume their sessions on the other nodes (rolling restart)

 Administration of a running server (through its admin API; --url URL to name one):
  sessions list [--domain D] [--json]               the bound sessions: JID, node, address, since, transport, TLS, SM
  sessions kick JID[/RESOURCE] [--reason TEXT]      close the session(s) with <policy-violation/> and the text
  stats [--json]                                    users online, sessions per node and transport, logins/s, stanzas/s
  announce --domain D --body TEXT [--subject S] [--type headline|normal]
                                                    a message from D to every online session of D
  log-level [LEVEL] [--node N]                      show, or change at run time, the log level (every process, or N)
  reload [--node N]                                 re-read the configuration file (as SIGHUP does); says which
                                                    changed keys need a restart
  nodes                                             the live processes
  config check [--resolver IP[:PORT]]               check a configuration before starting it: certificates and
                                                    keys, DNS SRV records of each domain (asking --resolver
                                                    instead of the system's DNS servers), listener ports,
                                                    NATS and Redis; one line per finding (ok, warn, error);
                                                    exit status 1 when there is an error
  export [--domain D] [--out FILE]                  accounts with their credentials, rosters, vCards, offline
                                                    messages and archives as XEP-0227 XML (all served domains
                                                    by default; stdout without --out); the server may be running
  import FILE [FILE…]                               create the accounts of XEP-0227 files (Parley's export,
                                                    ejabberd's export_piefxis, prosody-migrator's xep0227
                                                    store); all or nothing: a file with an error, or an
                                                    account that exists already, imports nothing. The server
                                                    may be running

  help                                              this text (also --help, -h)

Every command takes --config FILE (or $PARLEY_CONFIG).`;

/** Exit status of a command refused for what it was given (usage, configuration, input). */
const USAGE_ERROR = 2;

function die(msg: string, status = USAGE_ERROR): never {
  process.stderr.write(`parley: ${msg}\n`);
  process.exit(status);
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  role: { type: 'string' },
  password: { type: 'string', short: 'p' },
  domain: { type: 'string' },
  prefix: { type: 'string' },
  count: { type: 'string' },
  start: { type: 'string' },
  concurrency: { type: 'string' },
  id: { type: 'string' },
  out: { type: 'string', short: 'o' },
  resolver: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  url: { type: 'string' },
  json: { type: 'boolean' },
  node: { type: 'string' },
  body: { type: 'string' },
  subject: { type: 'string' },
  type: { type: 'string' },
  reason: { type: 'string' },
  uses: { type: 'string' },
  ttl: { type: 'string' },
} as const;

function parseCommandLine() {
  try {
    return parseArgs({ allowPositionals: true, options: OPTIONS });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const message = e instanceof Error ? e.message : String(e);
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const option = /'([^']+)'/.exec(message)?.[1] ?? message;
      die(`unknown option '${option}' (parley --help lists the options)`);
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      // "Option '-c, --config <value>' argument missing", "… argument is ambiguous" (the next word starts with '-'),
      // or "Option '-h, --help' does not take an argument".
      const option = /--[\w-]+/.exec(message)?.[0] ?? message;
      if (/does not take an argument/.test(message)) die(`option '${option}' takes no value (parley --help lists the options)`);
      if (/ambiguous/.test(message)) die(`option '${option}' needs a value; one that starts with '-' is written ${option}=VALUE`);
      die(`option '${option}' needs a value (parley --help lists the options)`);
    }
    throw e;
  }
}

const { values, positionals } = parseCommandLine();

/** A whole-number option, at least `min`; anything else ends the command naming the option. */
function integerOption(name: 'count' | 'start' | 'concurrency', fallback: number | undefined, min: 0 | 1): number {
  const raw = values[name];
  if (raw === undefined) {
    if (fallback === undefined) die(`give --${name}`);
    return fallback;
  }
  const n = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) die(`--${name} needs a ${min === 1 ? 'positive' : 'non-negative'} integer, not '${raw}'`);
  return n;
}

function config(): Config {
  try {
    return loadConfig(values.config, process.env, values.role ? { role: values.role } : {});
  } catch (e) {
    if (e instanceof ConfigError) die(e.message);
    throw e;
  }
}

function password(): string {
  const pw = values.password ?? process.env.PARLEY_PASSWORD;
  if (!pw) die('give the password with --password or $PARLEY_PASSWORD');
  return pw;
}

async function withStore<T>(fn: (accounts: Accounts, domains: Domains, store: Store, cfg: Config) => Promise<T>): Promise<T> {
  const cfg = config();
  setLogLevel('warn');
  const store = await openConfiguredStore(cfg);
  try {
    return await fn(new Accounts(store, cfg.auth.scramIterations), new Domains(store), store, cfg);
  } finally {
    await store.close();
  }
}

/** Why `domain` is not served (neither configured nor added at run time), or undefined when it is. */
async function notServed(domain: string, cfg: Config, domains: Domains): Promise<string | undefined> {
  const added = await domains.list();
  if (cfg.domains.includes(domain) || added.includes(domain)) return undefined;
  return `${domain} is not a served domain (configured: ${cfg.domains.join(', ') || 'none'}; added at run time: ${added.join(', ') || 'none'})`;
}

/** Creating or changing an account needs a served domain; otherwise the command ends, having written nothing. */
async function requireServed(domain: string, cfg: Config, domains: Domains): Promise<void> {
  const why = await notServed(domain, cfg, domains);
  if (why) die(why);
}

/**
 * The bare JID of an existing account, or the command dies. An account left in a domain no longer served still
 * counts; with none, a domain that is not served is named as the reason.
 */
async function existing(arg: string, accounts: Accounts, domains: Domains, cfg: Config): Promise<string> {
  const j = parseJid(arg);
  if (!(await accounts.exists(j.bare))) die((await notServed(j.domain, cfg, domains)) ?? `no account ${arg}`);
  return j.bare;
}

async function roster(arg: string): Promise<void> {
  const lines = await withStore(async (a, d, store, cfg) => {
    const bare = await existing(arg, a, d, cfg);
    const out: string[] = [];
    for (const [jid, raw] of [...(await store.hgetall(bare, 'roster'))].sort(([x], [y]) => x.localeCompare(y))) {
      const i = decodeItem(raw);
      if (!i.inRoster) continue;
      const sub = i.subscription + (i.ask ? '+ask' : '') + (i.pendingIn ? '+pending-in' : '');
      out.push([jid, sub, i.name, i.groups.join(',')].join('\t'));
    }
    const ver = (await store.hget(bare, 'account', 'rosterver'));
    out.push(`# ${out.length} contacts, roster version ${ver ? String(unpack(ver)) : '0'}`);
    return out;
  });
  for (const l of lines) console.log(l);
}

async function start(): Promise<void> {
  const cfg = config();
  setLogLevel(cfg.log.level);
  setLogFormat(cfg.log.format);
  setLogContext({ role: cfg.role, node: cfg.nodeId });
  // Faults nobody handled (services/process-faults.ts): counted from the start, into the metric once it exists.
  const early = new Map<ProcessFault, number>();
  let metrics: Metrics | undefined;
  guardProcess((kind) => {
    if (metrics) metrics.processFaults.labels(kind).inc();
    else early.set(kind, (early.get(kind) ?? 0) + 1);
  });
  // `parley reload` and SIGHUP read the same file (and variables) again.
  const server = await startServer(cfg, { readConfig: () => loadConfig(values.config, process.env, values.role ? { role: values.role } : {}) });
  metrics = server.metrics;
  process.on('SIGHUP', () => void server.reload());
  for (const [kind, n] of early) metrics.processFaults.labels(kind).inc(n);
  if (isEmbedded(cfg) && !values.config && !process.env.PARLEY_CONFIG) {
    const port = server.c2s?.tcpPort();
    process.stdout.write(`
Parley is running in one process (embedded bus and store in ${cfg.dataDir}).
  domain:  ${cfg.domains.join(', ')}
  clients: ${cfg.c2s.tcp.host}:${port} (${cfg.c2s.tcp.allowPlainOnLoopback ? 'STARTTLS; plain authentication allowed on loopback' : 'STARTTLS required before authentication'})
  metrics: http://${cfg.metrics.host}:${server.metricsPort()}/metrics

Add a user, in another terminal:
  npx parley user add alice@${cfg.domains[0]} --password secret
then connect any XMPP client (Gajim, Conversations, profanity) as alice@${cfg.domains[0]}
to ${cfg.c2s.tcp.host} port ${port}. Ctrl-C stops the server.
`);
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    process.stderr.write(`${signal}: stopping\n`);
    server.stop(true).then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
}

async function user(sub: string | undefined, arg: string | undefined): Promise<void> {
  switch (sub) {
    case 'add': {
      if (!arg) die('user add JID');
      const pw = password();
      if (!(await withStore(async (a, d, _, cfg) => {
        await requireServed(parseJid(arg).domain, cfg, d);
        return a.add(arg, pw);
      }))) die(`${arg} exists already`);
      return console.log(`created ${arg}`);
    }
    case 'passwd': {
      if (!arg) die('user passwd JID');
      const pw = password();
      if (!(await withStore(async (a, d, _, cfg) => {
        await requireServed(parseJid(arg).domain, cfg, d);
        return a.setPassword(arg, pw);
      }))) die(`no account ${arg}`);
      return console.log(`password changed for ${arg}`);
    }
    case 'del': {
      if (!arg) die('user del JID');
      // An account of a domain no longer served can still be deleted; with none there, say the domain is not served.
      await withStore((a, d, _, cfg) => existing(arg, a, d, cfg));
      const cfg = config();
      const { existed } = await removeAccountThroughActor(cfg, parseJid(arg).bare, () => openConfiguredStore(cfg));
      if (!existed) die(`no account ${arg}`);
      return console.log(`deleted ${arg} and all its data; its contacts were told`);
    }
    case 'disable':
    case 'enable': {
      // Through the running server: its sessions must end, on whichever process holds them.
      if (!arg) die(`user ${sub} JID`);
      await api('PUT', `/users/${encodeURIComponent(arg)}/disabled`, { disabled: sub === 'disable' });
      return console.log(sub === 'disable' ? `disabled ${arg}: its sessions ended; it cannot log in until enabled` : `enabled ${arg}`);
    }
    case 'roster':
      if (!arg) die('user roster JID');
      return roster(arg);
    case 'blocks':
      if (!arg) die('user blocks JID');
      for (const j of await withStore(async (a, d, store, cfg) => storedBlocklist(store, await existing(arg, a, d, cfg)))) console.log(j);
      return;
    case 'vcard': {
      if (!arg) die('user vcard JID');
      const xml = await withStore(async (a, d, store, cfg) => storedVcard(store, await existing(arg, a, d, cfg)));
      return console.log(xml ?? `# ${arg} has no vCard`);
    }
    case 'list': {
      if (!arg) die('user list DOMAIN');
      const users = await withStore(async (a, d, _, cfg) => {
        const list = await a.list(arg);
        // Accounts left in a domain no longer served are listed; none there, and the domain is named.
        const why = list.length ? undefined : await notServed(parseJid(arg).domain, cfg, d);
        if (why) die(why);
        return list;
      });
      for (const u of users) console.log(u);
      return;
    }
    case 'bulk-add': {
      const domain = values.domain ?? die('give --domain');
      const prefix = values.prefix ?? 'user';
      const count = integerOption('count', undefined, 1);
      const first = integerOption('start', 1, 0);
      const concurrency = integerOption('concurrency', 64, 1);
      const pw = password();
      const made = await withStore(async (a, d, _, cfg) => {
        await requireServed(parseJid(domain).domain, cfg, d);
        let next = first;
        let n = 0;
        await Promise.all(Array.from({ length: concurrency }, async () => {
          while (next < first + count) {
            const i = next++;
            if (await a.add(`${prefix}${i}@${domain}`, pw)) n++;
          }
        }));
        return n;
      });
      return console.log(`created ${made} accounts (${count - made} existed)`);
    }
    default:
      die(`unknown user command '${sub ?? ''}'\n${USAGE}`);
  }
}

async function domain(sub: string | undefined, arg: string | undefined): Promise<void> {
  switch (sub) {
    case 'add':
      if (!arg) die('domain add DOMAIN');
      await withStore((_, d) => d.add(arg));
      return console.log(`added ${arg}`);
    case 'del':
      if (!arg) die('domain del DOMAIN');
      if (!(await withStore((_, d) => d.remove(arg)))) die(`${arg} was not added at run time`);
      return console.log(`removed ${arg}`);
    case 'list':
      for (const d of await withStore((_, d) => d.list())) console.log(d);
      return;
    default:
      die(`unknown domain command '${sub ?? ''}'\n${USAGE}`);
  }
}

/** The archive engine of the configuration while `fn` runs: PostgreSQL with archive.postgres, else undefined (the store's). */
async function withArchive<T>(cfg: Config, fn: (archive: MessageArchive | undefined) => Promise<T>): Promise<T> {
  const { openConfiguredArchive } = await import('../../libs/archive/index.ts');
  const archive = await openConfiguredArchive(cfg);
  try {
    return await fn(archive);
  } finally {
    await archive?.close();
  }
}

async function exportAccounts(): Promise<void> {
  const { exportDomains } = await import('../portability/transfer.ts');
  const { count, domains } = await withStore(async (a, d, store, cfg) => {
    let domains: string[];
    if (values.domain !== undefined) {
      const domain = parseJid(values.domain).domain;
      // A domain no longer served still exports the accounts left in it.
      if (!(await a.list(domain)).length) {
        const why = await notServed(domain, cfg, d);
        if (why) die(why);
      }
      domains = [domain];
    } else {
      domains = [...new Set([...cfg.domains, ...(await d.list())])].sort();
    }
    const out = values.out === undefined ? process.stdout : createWriteStream(values.out, { flags: 'wx' });
    const opened = new Promise<void>((resolve, reject) => {
      if (out === process.stdout) return resolve();
      out.once('open', () => resolve());
      out.once('error', reject);
    });
    try {
      await opened;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      die(`cannot write ${values.out}: ${code === 'EEXIST' ? 'the file exists (give another --out, or remove it)' : code === 'ENOENT' ? 'no such directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
    }
    const write = (chunk: string) => new Promise<void>((resolve, reject) => out.write(chunk, (e) => (e ? reject(e) : resolve())));
    const count = await withArchive(cfg, (archive) => exportDomains(store, domains, (domain) => a.list(domain), write, archive));
    if (out !== process.stdout) await new Promise<void>((resolve) => out.end(resolve));
    return { count, domains };
  });
  process.stderr.write(`exported ${count} accounts of ${domains.join(', ') || 'no domain'}${values.out ? ` to ${values.out}` : ''}\n`);
}

async function importAccounts(files: string[]): Promise<void> {
  if (!files.length) die('import FILE [FILE…]');
  const [{ PieError, readPieFile }, { ImportRefused, planImport, runImport }] = await Promise.all([import('../portability/pie.ts'), import('../portability/transfer.ts')]);
  const docs: Array<{ file: string; doc: PieDocument }> = [];
  for (const file of files) {
    try {
      docs.push({ file, doc: readPieFile(file) });
    } catch (e) {
      if (e instanceof PieError) die(`${e.message}; nothing imported`);
      throw e;
    }
  }
  const { count, notes } = await withStore(async (_, d, store, cfg) => {
    try {
      const plan = await planImport(docs, store, cfg, (domain) => notServed(domain, cfg, d));
      return { count: await withArchive(cfg, (archive) => runImport(plan, store, cfg, archive)), notes: plan.notes };
    } catch (e) {
      if (e instanceof ImportRefused) die(`${e.message}; nothing imported`);
      throw e;
    }
  });
  for (const n of notes) console.log(n);
  console.log(`imported ${count} accounts from ${files.join(', ')}`);
}

/** One line per report: tab-separated, the text last with its line breaks escaped. */
function reportLine(domain: string, r: Awaited<ReturnType<typeof storedReports>>[number]): string {
  return [domain, r.id, new Date(r.time).toISOString(), r.reporter, r.jid, r.reason, r.stanzaIds.join(',') || '-', JSON.stringify(r.text)].join('\t');
}

/** One token as `register-token list` prints it. */
function tokenLine(t: RegistrationToken, now: number): string {
  const state = t.used >= t.uses ? 'used up' : t.expiresAt > 0 && now >= t.expiresAt ? 'expired' : 'valid';
  return `${t.token} ${t.domain} ${t.used}/${t.uses} ${t.expiresAt > 0 ? new Date(t.expiresAt).toISOString() : 'never'} ${state}`;
}

async function registerToken(sub: string | undefined, arg: string | undefined): Promise<void> {
  switch (sub) {
    case 'create': {
      const uses = values.uses === undefined ? 1 : /^\d+$/.test(values.uses) && Number(values.uses) >= 1 && Number(values.uses) <= 1_000_000 ? Number(values.uses) : die(`--uses needs a number of accounts from 1 to 1000000, not '${values.uses}'`);
      const ttl = values.ttl === undefined ? 7 * 86_400_000 : parseDuration(values.ttl) ?? die(`--ttl needs a duration such as 90s, 30m, 12h or 7d (0: never), not '${values.ttl}'`);
      const t = await withStore(async (accounts, d, _store, cfg) => {
        const domain = values.domain ?? cfg.domains[0] ?? die('register-token create --domain D: no domain is served');
        await requireServed(domain, cfg, d);
        return accounts.registrationTokens.create(domain, uses, ttl);
      });
      console.log(t.token);
      console.log(`xmpp:${t.domain}?register;preauth=${t.token}`);
      console.log(`# ${t.uses} account${t.uses === 1 ? '' : 's'} on ${t.domain}, ${t.expiresAt > 0 ? `until ${new Date(t.expiresAt).toISOString()}` : 'no expiry'}`);
      return;
    }
    case 'list': {
      const lines = await withStore(async (accounts, d, _store, cfg) => {
        if (values.domain !== undefined) await requireServed(values.domain, cfg, d);
        const now = Date.now();
        const all = await accounts.registrationTokens.list(values.domain);
        return [...all.map((t) => tokenLine(t, now)), `# ${all.length} tokens`];
      });
      for (const l of lines) console.log(l);
      return;
    }
    case 'revoke': {
      const token = arg ?? die('register-token revoke TOKEN');
      const gone = await withStore((accounts) => accounts.registrationTokens.revoke(token));
      if (!gone) die(`no registration token '${token}'`, 1);
      return console.log(`revoked ${token}`);
    }
    default:
      die(`unknown register-token command '${sub ?? ''}'\n${USAGE}`);
  }
}

async function reports(sub: string | undefined): Promise<void> {
  switch (sub) {
    case 'list': {
      const lines = await withStore(async (_, d, store, cfg) => {
        if (values.domain !== undefined) await requireServed(values.domain, cfg, d);
        const domains = values.domain !== undefined ? [values.domain] : [...new Set([...cfg.domains, ...(await d.list())])];
        const out: string[] = [];
        for (const domain of domains) for (const r of await storedReports(store, domain)) out.push(reportLine(domain, r));
        out.push(`# ${out.length} reports`);
        return out;
      });
      for (const l of lines) console.log(l);
      return;
    }
    case 'clear': {
      const domain = values.domain ?? die('reports clear --domain D [--id ID]');
      const raw = values.id;
      const id = raw === undefined ? undefined : /^\d+$/.test(raw) && Number.isSafeInteger(Number(raw)) ? Number(raw) : die(`--id needs a report id as \`reports list\` shows it, not '${raw}'`);
      const n = await withStore(async (_, d, store, cfg) => {
        await requireServed(domain, cfg, d);
        return clearReports(store, domain, id);
      });
      if (id !== undefined && n === 0) die(`no report ${id} for ${domain}`);
      return console.log(`cleared ${n} report${n === 1 ? '' : 's'} of ${domain}`);
    }
    default:
      die(`unknown reports command '${sub ?? ''}'\n${USAGE}`);
  }
}

async function configCheck(): Promise<void> {
  let cfg: Config | undefined;
  let findings: Finding[];
  try {
    cfg = loadConfig(values.config, process.env, values.role ? { role: values.role } : {});
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    findings = e.message.split('\n').map((line) => ({ level: 'error', text: line.trim() }));
  }
  if (cfg) {
    const { checkConfig } = await import('./config-check.ts');
    const resolvers = values.resolver?.split(',').map((r) => r.trim()).filter(Boolean);
    findings = [{ level: 'ok', text: `configuration ${values.config ?? process.env.PARLEY_CONFIG ?? '(defaults)'}: role ${cfg.role}, domains ${cfg.domains.join(', ')}` },
      ...await checkConfig(cfg, { resolvers })];
  }
  for (const f of findings!) console.log(`${f.level.padEnd(5)} ${f.text}`);
  const errors = findings!.filter((f) => f.level === 'error').length;
  const warnings = findings!.filter((f) => f.level === 'warn').length;
  console.log(`${errors} ${errors === 1 ? 'error' : 'errors'}, ${warnings} ${warnings === 1 ? 'warning' : 'warnings'}`);
  process.exit(errors ? 1 : 0);
}

/** A call to the running server's admin API; an error answer ends the command with its message (4xx: status 2, else 1). */
async function api<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  try {
    return await adminClient(config(), values.url).call<T>(method, path, body);
  } catch (e) {
    if (e instanceof AdminClientError) die(e.message, e.status >= 400 && e.status < 500 ? USAGE_ERROR : 1);
    throw e;
  }
}

function unreachable(nodes: string[]): void {
  if (nodes.length) process.stderr.write(`parley: no answer from ${nodes.join(', ')}: what they hold is missing\n`);
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

async function admin(command: string, sub: string | undefined, arg: string | undefined): Promise<void> {
  switch (command) {
    case 'sessions': {
      if (sub === 'list') {
        const q = values.domain ? `?domain=${encodeURIComponent(values.domain)}` : '';
        const r = await api<{ sessions: SessionInfo[]; unreachable: string[] }>('GET', `/sessions${q}`);
        if (values.json) console.log(JSON.stringify(r.sessions, null, 2));
        else {
          console.log(table([['JID', 'NODE', 'ADDRESS', 'SINCE', 'TRANSPORT', 'TLS', 'SM'],
            ...r.sessions.map((s) => [s.jid, s.node, s.address, s.since, s.transport, yesNo(s.tls), yesNo(s.sm)])]));
          console.log(`# ${r.sessions.length} sessions`);
        }
        return unreachable(r.unreachable);
      }
      if (sub === 'kick') {
        if (!arg) die('sessions kick JID[/RESOURCE]');
        const r = await api<KickResult>('POST', '/sessions/kick', { jid: arg, text: values.reason });
        for (const s of r.kicked) console.log(`kicked ${s.jid} on ${s.node}`);
        return unreachable(r.unreachable);
      }
      return die(`unknown sessions command '${sub ?? ''}': sessions list|kick`);
    }
    case 'stats': {
      const s = await api<Stats>('GET', '/stats');
      if (values.json) return console.log(JSON.stringify(s, null, 2));
      console.log(`users online: ${s.usersOnline}   sessions: ${s.sessions}   logins/s: ${s.loginsPerSecond}   stanzas/s: ${s.stanzasPerSecond}`);
      console.log(table([['NODE', 'ROLE', 'SESSIONS', 'TCP', 'TLS', 'WS', 'BOSH', 'USERS', 'LOGINS/S', 'STANZAS/S'],
        ...s.nodes.map((n) => [n.node, n.role, String(n.sessions), String(n.sessionsByTransport.tcp), String(n.sessionsByTransport.tls), String(n.sessionsByTransport.ws),
          String(n.sessionsByTransport.bosh), String(n.usersOnline), String(n.logins.perSecond), String(n.stanzas.perSecond)])]));
      console.log(`# rates over the last ${s.nodes[0]?.intervalSeconds ?? 0} s`);
      return unreachable(s.unreachable);
    }
    case 'announce': {
      if (!values.domain) die('give --domain');
      if (values.body === undefined) die('give --body');
      const r = await api<AnnounceResult>('POST', '/announce', { domain: values.domain, body: values.body, subject: values.subject, type: values.type });
      console.log(`announced to ${r.sessions} sessions of ${r.users} users`);
      return unreachable(r.unreachable);
    }
    case 'log-level': {
      if (sub === undefined) {
        if (values.node) die('log-level LEVEL --node N (without LEVEL: every process\'s level)');
        const r = await api<{ nodes: NodeInfo[] }>('GET', '/log-level');
        for (const n of r.nodes) console.log(`${n.node}\t${n.role}\t${n.logLevel}\t${n.logFormat}`);
        return;
      }
      const r = await api<LogLevelResult>('PUT', '/log-level', { level: sub, node: values.node });
      for (const n of r.nodes) console.log(`${n.node}: ${n.previous} -> ${n.level}`);
      return unreachable(r.unreachable);
    }
    case 'reload': {
      // A process whose file is bad makes the answer an error (status 2), naming why; it changed nothing.
      const r = await api<ReloadResult>('POST', '/reload', values.node ? { node: values.node } : {});
      for (const n of r.nodes) {
        console.log(`${n.node}: applied: ${n.applied.join(', ') || 'none'}; needs a restart: ${n.notApplied.join(', ') || 'none'}${n.certificatesReloaded ? '; certificates re-read' : ''}`);
      }
      return unreachable(r.unreachable);
    }
    case 'nodes': {
      const r = await api<{ nodes: NodeInfo[] }>('GET', '/nodes');
      for (const n of r.nodes) console.log(`${n.node}\t${n.role}`);
      return;
    }
  }
}

const ADMIN_COMMANDS = new Set(['sessions', 'stats', 'announce', 'log-level', 'reload', 'nodes']);

const [cmd, sub, arg] = positionals;
if (values.help || cmd === 'help') {
  console.log(USAGE);
  process.exit(0);
}
if (!cmd) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(USAGE_ERROR);
}
try {
  if (cmd === 'start') await start();
  else if (cmd === 'user') await user(sub, arg);
  else if (cmd === 'domain') await domain(sub, arg);
  else if (ADMIN_COMMANDS.has(cmd)) await admin(cmd, sub, arg);
  else if (cmd === 'reports') await reports(sub);
  else if (cmd === 'register-token') await registerToken(sub, arg);
  else if (cmd === 'config') {
    if (sub !== 'check') die(`unknown config command '${sub ?? ''}': config check [--config FILE]`);
    await configCheck();
  } else if (cmd === 'export') {
    if (sub !== undefined) die(`export takes no argument ('${sub}'): export [--domain D] [--out FILE]`);
    await exportAccounts();
  } else if (cmd === 'import') await importAccounts(positionals.slice(1));
  else if (cmd === 'c2s' && sub === 'drain' && arg) {
    setLogLevel('warn');
    const r = await requestDrain(config(), arg);
    console.log(`drained ${arg}: ${r.resumable} sessions wait to be resumed elsewhere, ${r.ended} ended; stop the process now`);
  } else if (cmd === 'c2s') die('c2s drain NODE');
  else die(`unknown command '${cmd}'\n${USAGE}`);
} catch (e) {
  // A listener that cannot bind: the command was right but could not run here (status 1).
  die(e instanceof Error ? e.message : String(e), e instanceof ListenError ? 1 : USAGE_ERROR);
}
