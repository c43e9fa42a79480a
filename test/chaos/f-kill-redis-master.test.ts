// Chaos (f): SIGKILL a Redis master (its replica takes over) while the clients chat (see cases.ts).
// It can still deliver a few messages twice (0–12 of ~1,450 per run): an account's actor on the dying master's side
// sends a delivery to its client before the delivery's write is on a replica; when the account changes owner and the
// write did not survive, the new owner applies the message again when its sender sends it again. Up to 30 are
// tolerated and reported (a known defect, docs/architecture.md); PARLEY_CHAOS_FAILOVER=1 fails on any. Nothing
// acknowledged may be lost, nothing reordered, never two actors for one account.
import { chaosTest } from './cases.ts';

chaosTest('f', process.env.PARLEY_CHAOS_FAILOVER === '1' ? {} : { knownDuplicates: 30 });
