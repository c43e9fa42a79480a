// Chaos (b): SIGKILL a c2s process while the clients chat; half of them reconnect to the other (see cases.ts).
import { chaosTest } from './cases.ts';

chaosTest('b');
