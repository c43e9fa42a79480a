// `parley`: start the server and administer accounts and domains.
import { parseArgs } from 'node:util';
import { unpack } from 'msgpackr';
import { Accounts, Domains } from '../../libs/accounts/index.ts';
import { ConfigError, loadConfig, type Config } from '../../libs/config/index.ts';
import { parseJid } from '../../libs/jid/index.ts';
import { setLogLevel } from '../../libs/log/index.ts';
import type { Store } from '../../libs/store/store.ts';
import { requestDrain } from '../c2s/drain.ts';
import { removeAccountThroughActor } from '../session/admin.ts';
import { decodeItem } from '../session/im/roster.ts';
import { storedBlocklist } from '../session/modules/blocking.ts';
import { storedVcard } from '../session/modules/vcard.ts';
import type { Metrics } from '../../libs/metrics/index.ts';
import { guardProcess, type ProcessFault } from '../process-faults.ts';
import { isEmbedded, openConfiguredStore, startServer } from '../server.ts';

const USAGE = `usage: parley <command> [options]

  start [--config FILE] [--role all|c2s|session|s2s]   run the server (no config: everything in one process)
  user add JID [--password PW]                      create an account (password also from $PARLEY_PASSWORD)
  user passwd JID [--password PW]                   change a password
  user del JID                                      delete an account with all its data, telling its contacts
                                                    (embedded mode: stop the server first)
  user list DOMAIN                                  list a domain's accounts
  user roster JID                                   a user's contacts: JID, subscription, name, groups
  user blocks JID                                   a user's block list
  user vcard JID                                    a user's vCard (XML)
  user bulk-add --domain D --prefix P --count N --password PW
                                                    create P1…PN@D (benchmarks, tests)
  domain add|del DOMAIN                             serve a domain, or stop serving it
  domain list                                       the domains added at run time
  c2s drain NODE                                    stop a c2s node accepting and close its streams; clients
                                                    resume their sessions on the other nodes (rolling restart)

Every command takes --config FILE (or $PARLEY_CONFIG).`;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    config: { type: 'string', short: 'c' },
    role: { type: 'string' },
    password: { type: 'string', short: 'p' },
    domain: { type: 'string' },
    prefix: { type: 'string' },
    count: { type: 'string' },
    start: { type: 'string' },
    concurrency: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

function die(msg: string): never {
  process.stderr.write(`parley: ${msg}\n`);
  process.exit(2);
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

async function withStore<T>(fn: (accounts: Accounts, domains: Domains, store: Store) => Promise<T>): Promise<T> {
  const cfg = config();
  setLogLevel('warn');
  const store = await openConfiguredStore(cfg);
  try {
    return await fn(new Accounts(store, cfg.auth.scramIterations), new Domains(store), store);
  } finally {
    await store.close();
  }
}

/** The bare JID of an existing account, or the command dies. */
async function existing(arg: string, accounts: Accounts): Promise<string> {
  const bare = parseJid(arg).bare;
  if (!(await accounts.exists(bare))) die(`no account ${arg}`);
  return bare;
}

async function roster(arg: string): Promise<void> {
  const lines = await withStore(async (a, _, store) => {
    const bare = await existing(arg, a);
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
  // Faults nobody handled (services/process-faults.ts): counted from the start, into the metric once it exists.
  const early = new Map<ProcessFault, number>();
  let metrics: Metrics | undefined;
  guardProcess((kind) => {
    if (metrics) metrics.processFaults.labels(kind).inc();
    else early.set(kind, (early.get(kind) ?? 0) + 1);
  });
  const server = await startServer(cfg);
  metrics = server.metrics;
  for (const [kind, n] of early) metrics.processFaults.labels(kind).inc(n);
  if (isEmbedded(cfg) && !values.config && !process.env.PARLEY_CONFIG) {
    const port = server.c2s?.tcpPort();
    process.stdout.write(`
Parley is running in one process (embedded bus and store in ${cfg.dataDir}).
  domain:  ${cfg.domains.join(', ')}
  clients: ${cfg.c2s.tcp.host}:${port} (STARTTLS; plain authentication allowed on loopback)
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
    case 'add':
      if (!arg) die('user add JID');
      if (!(await withStore((a) => a.add(arg, password())))) die(`${arg} exists already`);
      return console.log(`created ${arg}`);
    case 'passwd':
      if (!arg) die('user passwd JID');
      if (!(await withStore((a) => a.setPassword(arg, password())))) die(`no account ${arg}`);
      return console.log(`password changed for ${arg}`);
    case 'del': {
      if (!arg) die('user del JID');
      const cfg = config();
      setLogLevel('warn');
      const { existed } = await removeAccountThroughActor(cfg, parseJid(arg).bare, () => openConfiguredStore(cfg));
      if (!existed) die(`no account ${arg}`);
      return console.log(`deleted ${arg} and all its data; its contacts were told`);
    }
    case 'roster':
      if (!arg) die('user roster JID');
      return roster(arg);
    case 'blocks':
      if (!arg) die('user blocks JID');
      for (const j of await withStore(async (a, _, store) => storedBlocklist(store, await existing(arg, a)))) console.log(j);
      return;
    case 'vcard': {
      if (!arg) die('user vcard JID');
      const xml = await withStore(async (a, _, store) => storedVcard(store, await existing(arg, a)));
      return console.log(xml ?? `# ${arg} has no vCard`);
    }
    case 'list':
      if (!arg) die('user list DOMAIN');
      for (const u of await withStore((a) => a.list(arg))) console.log(u);
      return;
    case 'bulk-add': {
      const domain = values.domain ?? die('--domain');
      const prefix = values.prefix ?? 'user';
      const count = Number(values.count ?? die('--count'));
      const first = Number(values.start ?? 1);
      const pw = password();
      const concurrency = Number(values.concurrency ?? 64);
      const made = await withStore(async (a) => {
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

const [cmd, sub, arg] = positionals;
if (values.help || !cmd) {
  console.log(USAGE);
  process.exit(cmd ? 0 : 2);
}
try {
  if (cmd === 'start') await start();
  else if (cmd === 'user') await user(sub, arg);
  else if (cmd === 'domain') await domain(sub, arg);
  else if (cmd === 'c2s' && sub === 'drain' && arg) {
    setLogLevel('warn');
    const r = await requestDrain(config(), arg);
    console.log(`drained ${arg}: ${r.resumable} sessions wait to be resumed elsewhere, ${r.ended} ended; stop the process now`);
  } else if (cmd === 'c2s') die('c2s drain NODE');
  else die(`unknown command '${cmd}'\n${USAGE}`);
} catch (e) {
  die(e instanceof Error ? e.message : String(e));
}
