// XEP-0050 ad-hoc commands carrying the XEP-0133 service administration set,
// for the accounts listed in `admins`: add, delete, disable and re-enable a
// user, change a password, count and list online and active users, announce,
// and the message of the day. Every command calls the administration
// operations (services/admin/operations.ts) the HTTP API and the CLI call, so
// each checks its input and reaches the other processes the same way.
//
// Each command is two steps: `execute` answers a form, the submitted form runs
// it. A client may also submit the form with its first request. The step
// between lives in the process that answered the form (`sessionid`, at most
// `admin.maxCommandSessions`, for `admin.commandSessionSeconds`).
import { randomBytes } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import type { Config } from '../../../libs/config/schema.ts';
import { StanzaError, type StanzaErrorCondition } from '../../../libs/errors/index.ts';
import { bareJid } from '../../../libs/jid/split.ts';
import { tryParseJid } from '../../../libs/jid/index.ts';
import { child, el, type Element } from '../../../libs/xml/element.ts';
import { AdminError, type AdminErrorCode, type AdminOperations } from '../../admin/operations.ts';
import { formElement, hidden, integerField, NS_DATA, parseSubmitted, textField, type FormField } from '../muc/forms.ts';
import { defineAccountState, defineModule, type DiscoItem, type HostIqRequest, type ServerContext } from '../module.ts';

export const NS_COMMANDS = 'http://jabber.org/protocol/commands';
const NS_ADMIN = 'http://jabber.org/protocol/admin';
const MOTD_SCOPE = (domain: string) => `$motd:${domain}`;
const MOTD = 'motd';

/** What a command's run answers: a note for the user and, for queries, a result form. */
interface Outcome {
  note: string;
  result?: FormField[];
}

interface RunContext {
  ops: AdminOperations;
  config: Config;
  server: ServerContext;
  /** The served domain the command was sent to. */
  domain: string;
  /** The admin's bare JID. */
  admin: string;
}

interface AdminCommand {
  /** The part after `http://jabber.org/protocol/admin#`. */
  id: string;
  name: string;
  instructions: string;
  form(rc: RunContext): FormField[] | Promise<FormField[]>;
  run(values: ReadonlyMap<string, string[]>, rc: RunContext): Promise<Outcome>;
}

const text = (v: string, label: string, type: FormField['type'] = 'text-single'): FormField => ({ var: v, type, label });

/** A user JID of the domain the command was sent to; anything else is refused before anything changes. */
function userOf(name: string, raw: string, rc: RunContext): string {
  const j = tryParseJid(raw.trim());
  if (!j || !j.local || j.resource) throw new StanzaError('bad-request', `field ${name}: '${raw}' is not a user JID (user@domain)`);
  if (j.domain !== rc.domain) throw new StanzaError('not-acceptable', `field ${name}: ${j.bare} is not an account of ${rc.domain}; send the command to ${j.domain}`);
  return j.bare;
}

function required(values: ReadonlyMap<string, string[]>, name: string): string[] {
  const v = (values.get(name) ?? []).filter((x) => x !== '');
  if (!v.length) throw new StanzaError('bad-request', `field ${name} is required`);
  return v;
}

function single(values: ReadonlyMap<string, string[]>, name: string, max = 3071): string {
  return textField(name, required(values, name), max);
}

function users(values: ReadonlyMap<string, string[]>, name: string, rc: RunContext): string[] {
  const v = required(values, name);
  if (v.length > rc.config.admin.maxCommandJids) throw new StanzaError('not-acceptable', `field ${name}: at most ${rc.config.admin.maxCommandJids} accounts at once`);
  return [...new Set(v.map((x) => userOf(name, x, rc)))];
}

function newPassword(values: ReadonlyMap<string, string[]>, verify: boolean): string {
  const password = single(values, 'password', 1024);
  if (verify && values.has('password-verify') && single(values, 'password-verify', 1024) !== password) {
    throw new StanzaError('not-acceptable', 'the two passwords differ');
  }
  return password;
}

/** Online users of the domain, each once, sorted. */
async function onlineUsers(rc: RunContext): Promise<string[]> {
  const { sessions } = await rc.ops.listSessions({ domain: rc.domain });
  return [...new Set(sessions.map((s) => bareJid(s.jid)))].sort();
}

/** Online now, or gone within `admin.activeDays` (the time XEP-0012 last activity keeps). */
async function activeUsers(rc: RunContext): Promise<string[]> {
  const online = new Set(await onlineUsers(rc));
  const since = Date.now() - rc.config.admin.activeDays * 86_400_000;
  const active: string[] = [];
  for (const user of await rc.ops.listUsers(rc.domain)) {
    if (online.has(user)) { active.push(user); continue; }
    const raw = await rc.server.store.hget(user, 'last', 'gone');
    if (raw && (unpack(raw) as [number, string])[0] >= since) active.push(user);
  }
  return active;
}

const MAX_ITEMS: FormField = { var: 'max_items', type: 'list-single', label: 'Maximum number of items to show', values: ['100'], options: ['25', '50', '75', '100', '150', '200', 'none'].map((value) => ({ value })) };

function limited(list: string[], values: ReadonlyMap<string, string[]>): string[] {
  const raw = values.get('max_items')?.[0];
  if (!raw || raw === 'none') return list;
  return list.slice(0, integerField('max_items', [raw], 1, 1_000_000));
}

async function motdOf(rc: RunContext): Promise<{ subject: string; body: string } | undefined> {
  const raw = await rc.server.store.hget(MOTD_SCOPE(rc.domain), MOTD, 'current');
  return raw ? (unpack(raw) as { subject: string; body: string }) : undefined;
}

const COMMANDS: readonly AdminCommand[] = [
  {
    id: 'add-user', name: 'Add a User', instructions: 'Fill out this form to add a user.',
    form: () => [{ ...text('accountjid', 'The Jabber ID for the account to be added', 'jid-single') }, text('password', 'The password for this account', 'text-private'), text('password-verify', 'Retype password', 'text-private')],
    async run(values, rc) {
      const user = userOf('accountjid', single(values, 'accountjid'), rc);
      await rc.ops.addUser(user, newPassword(values, true));
      return { note: `${user} added` };
    },
  },
  {
    id: 'delete-user', name: 'Delete a User', instructions: 'Fill out this form to delete a user (with all of its data; its contacts are told).',
    form: () => [text('accountjids', 'The Jabber ID(s) to delete', 'jid-multi')],
    async run(values, rc) {
      const list = users(values, 'accountjids', rc);
      // The command runs in the admin's own account actor, which removal would wait for.
      if (list.includes(rc.admin)) throw new StanzaError('not-allowed', 'an admin cannot delete its own account with this command; use in-band unregistration or the CLI');
      for (const u of list) await rc.ops.removeUser(u);
      return { note: `deleted: ${list.join(', ')}` };
    },
  },
  {
    id: 'disable-user', name: 'Disable a User', instructions: 'Fill out this form to disable a user: its sessions end and it cannot log in until re-enabled.',
    form: () => [text('accountjids', 'The Jabber ID(s) to disable', 'jid-multi')],
    async run(values, rc) {
      const list = users(values, 'accountjids', rc);
      if (list.includes(rc.admin)) throw new StanzaError('not-allowed', 'an admin cannot disable its own account');
      for (const u of list) await rc.ops.disableUser(u, true);
      return { note: `disabled: ${list.join(', ')}` };
    },
  },
  {
    id: 'reenable-user', name: 'Re-Enable a User', instructions: 'Fill out this form to re-enable a disabled user.',
    form: () => [text('accountjids', 'The Jabber ID(s) to re-enable', 'jid-multi')],
    async run(values, rc) {
      const list = users(values, 'accountjids', rc);
      for (const u of list) await rc.ops.disableUser(u, false);
      return { note: `re-enabled: ${list.join(', ')}` };
    },
  },
  {
    id: 'change-user-password', name: 'Change User Password', instructions: 'Fill out this form to change a user\'s password.',
    form: () => [text('accountjid', 'The Jabber ID for this account', 'jid-single'), text('password', 'The password for this account', 'text-private')],
    async run(values, rc) {
      const user = userOf('accountjid', single(values, 'accountjid'), rc);
      await rc.ops.setPassword(user, newPassword(values, false));
      return { note: `password of ${user} changed` };
    },
  },
  {
    id: 'get-online-users-num', name: 'Get Number of Online Users', instructions: '',
    form: () => [],
    async run(_values, rc) {
      return { note: '', result: [{ var: 'onlineusersnum', type: 'text-single', label: 'The number of online users', values: [String((await onlineUsers(rc)).length)] }] };
    },
  },
  {
    id: 'get-online-users-list', name: 'Get List of Online Users', instructions: 'Fill out this form to get the list of online users.',
    form: () => [MAX_ITEMS],
    async run(values, rc) {
      return { note: '', result: [{ var: 'onlineuserjids', type: 'text-multi', label: 'The list of all online users', values: limited(await onlineUsers(rc), values) }] };
    },
  },
  {
    id: 'get-active-users-num', name: 'Get Number of Active Users', instructions: '',
    form: () => [],
    async run(_values, rc) {
      return { note: '', result: [{ var: 'activeusersnum', type: 'text-single', label: `Users online or seen within ${rc.config.admin.activeDays} days`, values: [String((await activeUsers(rc)).length)] }] };
    },
  },
  {
    id: 'get-active-users', name: 'Get List of Active Users', instructions: 'Fill out this form to get the list of active users.',
    form: () => [MAX_ITEMS],
    async run(values, rc) {
      return { note: '', result: [{ var: 'activeuserjids', type: 'text-multi', label: `Users online or seen within ${rc.config.admin.activeDays} days`, values: limited(await activeUsers(rc), values) }] };
    },
  },
  {
    id: 'announce', name: 'Send Announcement to Online Users', instructions: 'Fill out this form to make an announcement to all active users of this service.',
    form: () => [text('subject', 'Subject'), text('announcement', 'Announcement', 'text-multi')],
    async run(values, rc) {
      const body = required(values, 'announcement').join('\n');
      const subject = values.get('subject')?.[0] || undefined;
      const r = await rc.ops.announce({ domain: rc.domain, body, subject, type: 'headline' });
      return { note: `sent to ${r.sessions} sessions of ${r.users} users` };
    },
  },
  {
    id: 'set-motd', name: 'Set Message of the Day', instructions: 'Fill out this form to set the message of the day, sent to users when they log in.',
    form: () => [text('subject', 'Subject'), text('motd', 'Message of the Day', 'text-multi')],
    run: (values, rc) => setMotd(values, rc),
  },
  {
    id: 'edit-motd', name: 'Edit Message of the Day', instructions: 'Edit the message of the day.',
    async form(rc) {
      const m = await motdOf(rc);
      return [{ ...text('subject', 'Subject'), values: m?.subject ? [m.subject] : [] }, { ...text('motd', 'Message of the Day', 'text-multi'), values: m ? m.body.split('\n') : [] }];
    },
    run: (values, rc) => setMotd(values, rc),
  },
  {
    id: 'delete-motd', name: 'Delete Message of the Day', instructions: '',
    form: () => [],
    async run(_values, rc) {
      await rc.server.store.hdel(MOTD_SCOPE(rc.domain), MOTD, 'current');
      motdCache.delete(rc.domain);
      return { note: 'message of the day deleted' };
    },
  },
];

async function setMotd(values: ReadonlyMap<string, string[]>, rc: RunContext): Promise<Outcome> {
  const body = required(values, 'motd').join('\n');
  if (body.length > rc.config.admin.maxAnnounceLength) throw new StanzaError('not-acceptable', `the message of the day is longer than ${rc.config.admin.maxAnnounceLength} characters`);
  const subject = values.get('subject')?.[0] ?? '';
  await rc.server.store.hset(MOTD_SCOPE(rc.domain), MOTD, 'current', pack({ subject, body }));
  motdCache.delete(rc.domain);
  return { note: 'message of the day set' };
}

const BY_NODE = new Map(COMMANDS.map((c) => [`${NS_ADMIN}#${c.id}`, c]));

/** The step between the form and its submission, by `${admin} ${sessionid}`. */
const pending = new Map<string, { node: string; expires: number }>();

function remember(config: Config, admin: string, node: string): string {
  const now = Date.now();
  for (const [k, v] of pending) if (v.expires < now) pending.delete(k);
  if (pending.size >= config.admin.maxCommandSessions) throw new StanzaError('resource-constraint', 'too many commands in progress; try again later');
  const sessionid = randomBytes(12).toString('base64url');
  pending.set(`${admin} ${sessionid}`, { node, expires: now + config.admin.commandSessionSeconds * 1000 });
  return sessionid;
}

const STANZA_CONDITION: Record<AdminErrorCode, StanzaErrorCondition> = {
  'bad-request': 'bad-request', unauthorized: 'forbidden', 'not-found': 'item-not-found', conflict: 'conflict', unavailable: 'service-unavailable',
};

/** An admin operation's refusal as the stanza error XEP-0050 answers with. */
function asStanzaError(e: unknown): never {
  if (e instanceof AdminError) throw new StanzaError(STANZA_CONDITION[e.code], e.message);
  throw e;
}

function commandError(condition: 'bad-request', specific: string, msg: string): StanzaError {
  return new StanzaError(condition, msg, undefined, undefined, el(specific, { xmlns: `${NS_COMMANDS}#errors` }));
}

export function isAdmin(config: Config, from: string): boolean {
  return config.admins.includes(bareJid(from));
}

function runContext(req: HostIqRequest, ctx: ServerContext): RunContext {
  if (!req.account || !isAdmin(ctx.config, req.from)) throw new StanzaError('forbidden', 'only the administrators named in the configuration (admins) may run this command');
  if (!ctx.admin) throw new StanzaError('service-unavailable', 'administration is not available in this process');
  return { ops: ctx.admin, config: ctx.config, server: ctx, domain: req.to, admin: bareJid(req.from) };
}

async function execute(req: HostIqRequest, ctx: ServerContext): Promise<Element> {
  const cmd = req.payload;
  const node = cmd.attrs.node ?? '';
  const command = BY_NODE.get(node);
  if (!command) throw new StanzaError('item-not-found', `no command '${node}'`);
  const rc = runContext(req, ctx);
  const action = cmd.attrs.action ?? 'execute';
  if (!['execute', 'complete', 'cancel', 'next', 'prev'].includes(action)) throw commandError('bad-request', 'malformed-action', `unknown action '${action}'`);
  const sid = cmd.attrs.sessionid;
  const answer = (sessionid: string, status: string, ...children: (Element | undefined)[]) => el('command', { xmlns: NS_COMMANDS, node, sessionid, status }, ...children);
  if (sid !== undefined) {
    const key = `${rc.admin} ${sid}`;
    const step = pending.get(key);
    if (!step || step.node !== node || step.expires < Date.now()) throw commandError('bad-request', 'bad-sessionid', 'no such command session (it may have expired)');
    pending.delete(key);
    if (action === 'cancel') return answer(sid, 'canceled');
    if (action === 'next' || action === 'prev') throw commandError('bad-request', 'bad-action', `this command has one step; '${action}' does not apply`);
  } else if (action === 'cancel') {
    throw commandError('bad-request', 'bad-sessionid', 'nothing to cancel without a sessionid');
  }
  const x = child(cmd, 'x', NS_DATA);
  const submitted = x?.attrs.type === 'submit' ? parseSubmitted(x) : undefined;
  if (submitted && submitted.formType !== undefined && submitted.formType !== NS_ADMIN) throw new StanzaError('bad-request', `FORM_TYPE must be ${NS_ADMIN}`);
  const fields = await command.form(rc);
  if (!submitted && fields.length && sid === undefined) {
    // The first step: the form to fill in.
    return answer(remember(ctx.config, rc.admin, node), 'executing',
      el('actions', { execute: 'complete' }, el('complete')),
      formWith('form', command.name, command.instructions, fields));
  }
  const outcome = await command.run(submitted?.fields ?? new Map(), rc).catch(asStanzaError);
  return answer(sid ?? randomBytes(12).toString('base64url'), 'completed',
    outcome.note ? el('note', { type: 'info' }, outcome.note) : undefined,
    outcome.result ? formWith('result', command.name, '', outcome.result) : undefined);
}

function formWith(type: 'form' | 'result', title: string, instructions: string, fields: readonly FormField[]): Element {
  const x = formElement(type, [hidden('FORM_TYPE', NS_ADMIN), ...fields], title);
  if (instructions) x.children.splice(1, 0, el('instructions', {}, instructions));
  return x;
}

/** disco#items of the commands node: every command for an admin, none for anyone else (XEP-0050 §2.2). */
function commandItems(req: HostIqRequest, ctx: ServerContext): DiscoItem[] {
  if (!req.account || !isAdmin(ctx.config, req.from)) return [];
  return COMMANDS.map((c) => ({ jid: req.to, node: `${NS_ADMIN}#${c.id}`, name: c.name }));
}

// The message of the day reaches a user's resource when it first goes available (XEP-0133 §4.23).
const motdCache = new Map<string, { at: number; motd: { subject: string; body: string } | undefined }>();
const MOTD_CACHE_MS = 5000;

async function currentMotd(ctx: ServerContext, domain: string): Promise<{ subject: string; body: string } | undefined> {
  const hit = motdCache.get(domain);
  if (hit && Date.now() - hit.at < MOTD_CACHE_MS) return hit.motd;
  const raw = await ctx.store.hget(MOTD_SCOPE(domain), MOTD, 'current');
  const motd = raw ? (unpack(raw) as { subject: string; body: string }) : undefined;
  if (motdCache.size > 10_000) motdCache.clear();
  motdCache.set(domain, { at: Date.now(), motd });
  return motd;
}

const motdOnLogin = defineAccountState<null>({
  name: 'message of the day',
  collections: [],
  load: () => null,
  hooks: {
    async available(_state, account, resource, initial) {
      if (!initial) return;
      const domain = account.bare.slice(account.bare.indexOf('@') + 1);
      const motd = await currentMotd(account.server, domain);
      if (!motd) return;
      account.sendStanza(el('message', { from: domain, to: `${account.bare}/${resource}`, type: 'normal' },
        motd.subject ? el('subject', {}, motd.subject) : undefined, el('body', {}, motd.body)));
    },
  },
});

export default defineModule({
  name: 'admin-commands',
  enabled: (config) => config.admins.length > 0,
  disco: { host: [NS_COMMANDS], nodeItems: { [NS_COMMANDS]: commandItems } },
  state: [motdOnLogin],
  iq: {
    'set/host/http://jabber.org/protocol/commands:command': execute,
  },
});
