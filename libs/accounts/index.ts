// Accounts and hosted domains on top of the store.
// Keys: {alice@example.com}:account  creds → msgpack(StoredCredentials), created → ms, disabled → ms (while disabled)
//       {$domain:example.com}:users   alice → ''   (the per-domain user index)
//       {$domains}:list               example.com → msgpack({added})
import { pack, unpack } from 'msgpackr';
import { deriveCredentials, type StoredCredentials } from '../auth/credentials.ts';
import { FAST_COLLECTION } from '../auth/fast.ts';
import { parseJid } from '../jid/index.ts';
import type { Store } from '../store/store.ts';
import { RegistrationTokens } from './registration-tokens.ts';

const EMPTY = new Uint8Array(0);

export class Accounts {
  /** Pre-authenticated registration tokens (XEP-0445), in the same store. */
  readonly registrationTokens: RegistrationTokens;

  constructor(private readonly store: Store, private readonly iterations = 4096) {
    this.registrationTokens = new RegistrationTokens(store);
  }

  /** The account's credentials, and whether an administrator disabled it (one read). */
  async credentials(bare: string): Promise<(StoredCredentials & { disabled?: boolean }) | undefined> {
    const account = await this.store.hgetall(bare, 'account');
    const v = account.get('creds');
    if (!v) return undefined;
    const creds = unpack(v) as StoredCredentials;
    return account.has('disabled') ? { ...creds, disabled: true } : creds;
  }

  /**
   * Disable an account (it cannot log in until enabled again; live sessions are the caller's to end) or enable it.
   * False when there is no such account.
   */
  async setDisabled(jid: string, disabled: boolean): Promise<boolean> {
    const j = parseJid(jid);
    if (!(await this.exists(j.bare))) return false;
    // Disabling drops the FAST tokens (XEP-0484) too: a client must use its password again, and gets <account-disabled/>.
    if (disabled) await this.store.batch(j.bare).hset('account', 'disabled', pack(Date.now())).del(FAST_COLLECTION).exec();
    else await this.store.hdel(j.bare, 'account', 'disabled');
    return true;
  }

  async exists(bare: string): Promise<boolean> {
    return (await this.store.hget(bare, 'account', 'creds')) !== undefined;
  }

  /** Creates the account; false when it exists already. */
  async add(jid: string, password: string): Promise<boolean> {
    const j = parseJid(jid);
    if (!j.local || j.resource) throw new Error(`not a user JID: ${jid}`);
    const creds = await deriveCredentials(password, this.iterations);
    const created = await this.store.hsetnx(j.bare, 'account', 'creds', pack(creds));
    if (!created) return false;
    await this.store.batch(j.bare).hset('account', 'created', pack(Date.now())).exec();
    await this.store.hset(`$domain:${j.domain}`, 'users', j.local, EMPTY);
    return true;
  }

  async setPassword(jid: string, password: string): Promise<boolean> {
    const j = parseJid(jid);
    if (!(await this.exists(j.bare))) return false;
    // A new password logs out the clients that held FAST tokens (XEP-0484): they log in with it again.
    await this.store.batch(j.bare).hset('account', 'creds', pack(await deriveCredentials(password, this.iterations))).del(FAST_COLLECTION).exec();
    return true;
  }

  /** Removes the account and every collection named; false when absent. */
  async remove(jid: string, collections: readonly string[] = []): Promise<boolean> {
    const j = parseJid(jid);
    if (!(await this.exists(j.bare))) return false;
    const b = this.store.batch(j.bare).del('account').del(FAST_COLLECTION);
    for (const c of collections) b.del(c);
    await b.exec();
    await this.store.hdel(`$domain:${j.domain}`, 'users', j.local);
    return true;
  }

  async list(domain: string): Promise<string[]> {
    const users = await this.store.hgetall(`$domain:${domain}`, 'users');
    return [...users.keys()].sort().map((u) => `${u}@${domain}`);
  }
}

export class Domains {
  constructor(private readonly store: Store) {}

  async add(domain: string): Promise<void> {
    await this.store.hset('$domains', 'list', parseJid(domain).domain, pack({ added: Date.now() }));
  }

  async remove(domain: string): Promise<boolean> {
    return this.store.hdel('$domains', 'list', parseJid(domain).domain);
  }

  async list(): Promise<string[]> {
    return [...(await this.store.hgetall('$domains', 'list')).keys()].sort();
  }
}
