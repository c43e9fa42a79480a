// Session directory upkeep outside the actors: the sessions a connection
// manager held when it died.
import { unpack } from 'msgpackr';
import type { Store } from '../../libs/store/store.ts';
import { bareJid, resourcePart } from '../../libs/jid/split.ts';

/** Full JID → session id of every session a c2s node registered. */
export async function nodeSessions(store: Store, node: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const [full, raw] of await store.hgetall(`$node:${node}`, 'sessions')) out.set(full, unpack(raw) as string);
  return out;
}

/**
 * Remove a dead node's sessions straight from the store. Only for a process
 * that runs no actors yet (the embedded mode at start-up); a live cluster goes
 * through the actors instead, so their in-memory view stays right.
 */
export async function purgeNodeSessionsOffline(store: Store, node: string): Promise<number> {
  const sessions = await nodeSessions(store, node);
  for (const full of sessions.keys()) await store.hdel(bareJid(full), 'sessions', resourcePart(full));
  await store.del(`$node:${node}`, 'sessions');
  return sessions.size;
}
