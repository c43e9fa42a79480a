// Chaos (d): cut a session process off the network (its own namespace) for 3 × memberTtlMs, then heal, while the clients chat (see cases.ts).
import { chaosTest } from './cases.ts';

chaosTest('d');
