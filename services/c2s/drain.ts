// `parley c2s drain NODE`, the requesting side: from a process outside the
// deployment, ask a c2s node over the bus to drain (C2sNode.drain) and wait
// for its count of closed streams.
import { randomBytes } from 'node:crypto';
import { Subjects } from '../../libs/bus/bus.ts';
import { envelope } from '../../libs/bus/envelope.ts';
import { NatsBus, natsServers } from '../../libs/bus/nats.ts';
import type { Config } from '../../libs/config/schema.ts';
import { OP_DRAIN, OP_DRAINED, type DrainResult } from './c2s-node.ts';

export async function requestDrain(config: Config, node: string): Promise<DrainResult> {
  if (config.bus.kind !== 'nats') throw new Error('the embedded mode has one c2s node and nowhere to send its clients: stop the server instead');
  const self = `admin-${randomBytes(4).toString('hex')}`;
  const subjects = new Subjects(config.bus.subjectPrefix);
  const bus = await NatsBus.connect(natsServers(config.bus), self, undefined, { timeoutMs: config.bus.connectTimeoutMs });
  try {
    const sid = randomBytes(9).toString('base64url');
    return await new Promise<DrainResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new Error(`c2s node '${node}' did not answer within ${config.session.requestTimeoutMs} ms; is it running?`));
      }, config.session.requestTimeoutMs);
      const sub = bus.subscribe(subjects.c2s(self), (env) => {
        if (env.op !== OP_DRAINED || env.sid !== sid) return;
        clearTimeout(timer);
        sub.unsubscribe();
        resolve(env.data as DrainResult);
      });
      bus.flush().then(() => bus.publish(subjects.c2s(node), envelope({ kind: 'ctl', dir: 'deliver', op: OP_DRAIN, sid, data: { reply: self } }))).catch((e: unknown) => {
        clearTimeout(timer);
        sub.unsubscribe();
        reject(e instanceof Error ? e : new Error(String(e)));
      });
    });
  } finally {
    await bus.close();
  }
}
