// Chaos (c): SIGSTOP a session process for 3 × memberTtlMs, then SIGCONT, while the clients chat (see cases.ts).
import { chaosTest } from './cases.ts';

chaosTest('c');
