// Chaos (e): SIGKILL one of the three NATS servers while the clients chat (see cases.ts).
import { chaosTest } from './cases.ts';

chaosTest('e');
