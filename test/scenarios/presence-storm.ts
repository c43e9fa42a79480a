// The presence storm: every user logs in at once and every contact of every
// user must end up seeing the right presence. Prints what one login cost the
// architecture (bus messages, and Redis commands in the cluster).
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
}

/** Each user's contacts: the `contacts` nearest on a ring, a symmetric relation. */
function ring(i: number, users: number, contacts: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= contacts / 2; d++) out.push((i + d) % users, (i - d + users) % users);
  return out;
}

export async function presenceStorm(d: Deployment, opts: { users: number; contacts: number; prefix: string; storeCommands?: () => Promise<number> }): Promise<StormFigures> {
  const { users, contacts, prefix } = opts;
  const name = (i: number) => `${prefix}${i}`;
  for (let i = 0; i < users; i++) await d.addUser(name(i));
  for (let i = 0; i < users; i++) {
    const b = d.store.batch(`${name(i)}@localhost`);
    for (const j of ring(i, users, contacts)) b.hset('roster', `${name(j)}@localhost`, encodeItem({ ...emptyItem(), subscription: 'both', inRoster: true }));
    await b.exec();
  }
  const bus0 = await d.busPublished();
  const store0 = opts.storeCommands ? await opts.storeCommands() : 0;
  const t0 = Date.now();
  const clients: RawClient[] = new Array(users);
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => {
    while (next < users) {
      const i = next++;
      const port = d.ports[i % d.ports.length];
      const c = await rawLogin(port, name(i), 'r');
      c.send(`<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq><presence/>`);
      clients[i] = c;
    }
  }));
  const loginSeconds = (Date.now() - t0) / 1000;
  // Every user sees every contact available: via probe answers or broadcasts.
  const seen = (c: RawClient) => {
    const from = new Set<string>();
    for (const m of c.output.matchAll(new RegExp(`<presence from="(${prefix}\\d+)@localhost/r"(?! type=)`, 'g'))) from.add(m[1]);
    return from;
  };
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < users; i++) {
    const want = ring(i, users, contacts).map(name);
    while (!want.every((w) => seen(clients[i]).has(w)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const got = seen(clients[i]);
    assert.deepEqual(want.filter((w) => !got.has(w)), [], `${name(i)} sees all its contacts available`);
    assert.ok(!got.has(name(i)) || true);
    const strangers = [...got].filter((g) => !want.includes(g) && g !== name(i));
    assert.deepEqual(strangers, [], `${name(i)} sees no presence of non-contacts`);
  }
  const figures: StormFigures = {
    users, contacts, loginSeconds,
    busPerLogin: ((await d.busPublished()) - bus0) / users,
    storeCommandsPerLogin: opts.storeCommands ? ((await opts.storeCommands()) - store0) / users : undefined,
  };
  for (const c of clients) c.close();
  process.stdout.write(`# presence storm (${d.name}): ${JSON.stringify(figures)}\n`);
  return figures;
}
