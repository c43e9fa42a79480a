// Chaos (f): SIGKILL a Redis master (its replica takes over) while the clients chat (see cases.ts).
import { chaosTest } from './cases.ts';

chaosTest('f');
