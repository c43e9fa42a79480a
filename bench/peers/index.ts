import type { Peer, PeerOptions } from './common.ts';
import { ejabberd } from './ejabberd.ts';
import { parley } from './parley.ts';
import { parleyCluster } from './parley-cluster.ts';
import { prosody } from './prosody.ts';

export const PEERS: Record<string, (o: Partial<PeerOptions>) => Peer> = { ejabberd, prosody, parley, 'parley-cluster': parleyCluster };
