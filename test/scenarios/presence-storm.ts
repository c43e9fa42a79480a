// The presence storm: every user logs in at once and every contact of every
// user must end up seeing the right presence; then every user changes its
// presence and every contact must see the change. What one login and one
// change cost the architecture (bus messages, and Redis commands in the
// cluster) is measured, and `presenceScaling` asserts that it grows no faster
// than the number of contacts online (RFC 2779 §2.2.6: hundreds of subscriptions).
import assert from 'node:assert/strict';
import { encodeItem, emptyItem } from '../../services/session/im/roster.ts';
import { rawLogin } from '../support/im.ts';
import type { Deployment } from '../support/parley.ts';
import type { RawClient } from '../support/raw.ts';

export interface StormFigures {
  users: number;
  contacts: number;
  loginSeconds: number;
  busPerLogin: number;
  storeCommandsPerLogin?: number;
  changeSeconds: number;
  busPerChange: number;
  storeCommandsPerChange?: number;
}

interface StormOptions {
  users: number;
  contacts: number;
  prefix: string;
  /** Commands the store (Redis) has processed so far, when the deployment has one to ask. */
  storeCommands?: () => Promise<number>;
}

/** Each user's contacts: the `contacts` nearest on a ring, a symmetric relation. */
function ring(i: number, users: number, contacts: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= contacts / 2; d++) out.push((i + d) % users, (i - d + users) % users);
  return out;
}

const WAIT_MS = 60_000;

export async function presenceStorm(d: Deployment, opts: StormOptions): Promise<StormFigures> {
  const { users, contacts, prefix } = opts;
  assert.ok(users > contacts, 'a ring of contacts needs more users than contacts');
  const name = (i: number) => `${prefix}${i}`;
  for (let i = 0; i < users; i++) await d.addUser(name(i));
  for (let i = 0; i < users; i++) {
    const b = d.store.batch(`${name(i)}@localhost`);
    for (const j of ring(i, users, contacts)) b.hset('roster', `${name(j)}@localhost`, encodeItem({ ...emptyItem(), subscription: 'both', inRoster: true }));
    await b.exec();
  }
  const counters = async () => ({ bus: await d.busPublished(), store: opts.storeCommands ? await opts.storeCommands() : 0 });

  // Every user sees every contact in the presence `shown` (initial: available without <show/>), via probe answers or broadcasts.
  const seen = (c: RawClient, shown: RegExp) => {
    const from = new Set<string>();
    for (const m of c.output.matchAll(new RegExp(`<presence from="(${prefix}\\d+)@localhost/r"(?! type=)[^>]*(?<!/)>(.*?)</presence>|<presence from="(${prefix}\\d+)@localhost/r"(?! type=)[^>]*/>`, 'g'))) {
      if (shown.test(m[2] ?? '')) from.add(m[1] ?? m[3]);
    }
    return from;
  };
  const everyoneSees = async (clients: RawClient[], shown: RegExp, what: string) => {
    const deadline = Date.now() + WAIT_MS;
    for (let i = 0; i < users; i++) {
      const want = ring(i, users, contacts).map(name);
      while (!want.every((w) => seen(clients[i], shown).has(w)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const got = seen(clients[i], shown);
      assert.deepEqual(want.filter((w) => !got.has(w)), [], `${name(i)} sees all its contacts ${what}`);
      // RFC 6121 §4.2.2 / §4.4.2: the server sends a user's presence to all of its available resources, the sender's included.
      assert.ok(got.has(name(i)), `${name(i)} gets its own presence ${what}`);
      const strangers = [...got].filter((g) => !want.includes(g) && g !== name(i));
      assert.deepEqual(strangers, [], `${name(i)} sees no presence of non-contacts`);
    }
  };

  const c0 = await counters();
  const t0 = Date.now();
  const clients: RawClient[] = new Array(users);
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < users) {
      const i = next++;
      const port = d.ports[i % d.ports.length];
      // A login waits behind the presence its contacts' logins fan out (200 contacts × 50 in flight): give it time.
      const c = await rawLogin(port, name(i), 'r', 30_000);
      c.send(`<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq><presence/>`);
      clients[i] = c;
    }
  }));
  const loginSeconds = (Date.now() - t0) / 1000;
  await everyoneSees(clients, /^(?![\s\S]*<show>)/, 'available');
  const c1 = await counters();

  const t1 = Date.now();
  for (const c of clients) c.send(`<presence><show>away</show></presence>`);
  await everyoneSees(clients, /<show>away<\/show>/, 'away');
  const changeSeconds = (Date.now() - t1) / 1000;
  const c2 = await counters();
  for (const c of clients) c.close();

  const figures: StormFigures = {
    users, contacts, loginSeconds,
    busPerLogin: (c1.bus - c0.bus) / users,
    storeCommandsPerLogin: opts.storeCommands ? (c1.store - c0.store) / users : undefined,
    changeSeconds,
    busPerChange: (c2.bus - c1.bus) / users,
    storeCommandsPerChange: opts.storeCommands ? (c2.store - c1.store) / users : undefined,
  };
  process.stdout.write(`# presence storm (${d.name}): ${JSON.stringify(figures)}\n`);
  return figures;
}

/**
 * Two storms on one deployment, with `small` and then `large` contacts per user (every contact online), and the
 * assertion that each cost per login and per presence change grows no faster than the contacts: at most
 * large/small times the small figure, with `slack` for what does not depend on the contacts.
 */
export async function presenceScaling(d: Deployment, opts: { users: number; small: number; large: number; storeCommands?: () => Promise<number>; slack?: number }): Promise<[StormFigures, StormFigures]> {
  const slack = opts.slack ?? 1.2;
  const small = await presenceStorm(d, { users: opts.users, contacts: opts.small, prefix: `s${opts.small}x`, storeCommands: opts.storeCommands });
  const large = await presenceStorm(d, { users: opts.users, contacts: opts.large, prefix: `s${opts.large}x`, storeCommands: opts.storeCommands });
  const factor = opts.large / opts.small;
  for (const key of ['busPerLogin', 'storeCommandsPerLogin', 'busPerChange', 'storeCommandsPerChange'] as const) {
    const a = small[key];
    const b = large[key];
    if (a === undefined || b === undefined) continue;
    assert.ok(a > 0 && b > 0, `${key} was counted (${a}, ${b})`);
    assert.ok(b <= a * factor * slack, `${key} grows no faster than the contacts online: ${b.toFixed(1)} at ${opts.large} contacts against ${a.toFixed(1)} at ${opts.small} (bound ${(a * factor * slack).toFixed(1)})`);
  }
  return [small, large];
}
