// Chaos (a): SIGKILL a session process while the clients chat (see cases.ts).
import { chaosTest } from './cases.ts';

chaosTest('a');
