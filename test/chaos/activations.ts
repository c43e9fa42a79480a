// What the session processes' logs say about who acted for an account: each
// actor activation is logged at debug level as `actor started account=<bare>
// token=<fencing token of its shard's lease>`, and any other line naming both
// an account and a token is evidence of acting for it under that token.
//
// Two checks, "as far as the logs show":
// - tokens only grow: once any process acted for an account under token T, no
//   process acts for it under a smaller one later (a stale owner after a pause
//   or a partition), and no two processes act under the same token;
// - hence never two actors for one bare JID at once: the older one would show
//   up acting under its smaller token after the newer one started.

export interface LogSource {
  nodeId: string;
  text: string;
}

export interface ActivationReport {
  /** `actor started` lines seen, over all processes and accounts. */
  activations: number;
  /** Activations of the accounts asked about, and on how many different processes those happened. */
  watchedActivations: number;
  /** Accounts activated on more than one process (their shard moved). */
  moved: number;
  violations: string[];
}

interface Act { t: string; node: string; token: number; started: boolean; line: string }

const TS = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) /;

export function checkActivations(logs: readonly LogSource[], watched: ReadonlySet<string>): ActivationReport {
  const byAccount = new Map<string, Act[]>();
  let activations = 0;
  for (const { nodeId, text } of logs) {
    for (const line of text.split('\n')) {
      const account = / account=(\S+)/.exec(line)?.[1];
      const token = / token=(\d+)/.exec(line)?.[1];
      if (!account || token === undefined) continue;
      const t = TS.exec(line)?.[1];
      if (!t) continue;
      const started = line.includes(' actor started ');
      if (started) activations++;
      let list = byAccount.get(account);
      if (!list) byAccount.set(account, (list = []));
      list.push({ t, node: nodeId, token: Number(token), started, line });
    }
  }
  const violations: string[] = [];
  let watchedActivations = 0;
  let moved = 0;
  for (const [account, acts] of byAccount) {
    // ISO timestamps of one machine's clock sort as strings; a stable sort keeps each process's own order.
    acts.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
    if (watched.has(account)) {
      watchedActivations += acts.filter((a) => a.started).length;
      if (new Set(acts.filter((a) => a.started).map((a) => a.node)).size > 1) moved++;
    }
    let top: Act | undefined;
    for (const a of acts) {
      if (top && a.token < top.token) {
        violations.push(`${account}: ${a.node} acted under token ${a.token} at ${a.t}, after ${top.node} had token ${top.token} (${top.t}): ${a.line.slice(0, 200)}`);
      } else if (top && a.token === top.token && a.node !== top.node) {
        violations.push(`${account}: ${a.node} and ${top.node} both acted under token ${a.token} (${top.t}, ${a.t})`);
      }
      if (!top || a.token > top.token) top = a;
    }
  }
  if (activations === 0) {
    violations.push('no `actor started account=… token=…` line in any session log (log.level debug): nothing shows which process acted for an account under which lease');
  } else if (watchedActivations === 0) {
    violations.push('the session logs show no activation of any chatting account');
  }
  return { activations, watchedActivations, moved, violations };
}
