// Chaos (f): SIGKILL the Redis master that holds the lease table (its replica takes over) while the clients chat
// (see cases.ts). Every account changes owner; writes the dying master acknowledged but did not replicate are gone.
// A new owner asks each connection what it already wrote (services/session/tracked.ts), so what its predecessor
// delivered but lost is neither applied again nor given a number the connection already used.
import { chaosTest } from './cases.ts';

chaosTest('f');
