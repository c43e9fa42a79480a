// Listen backlogs: each listener asks the kernel for the queue its key names, read back from the socket itself
// (ss: a listening socket's Send-Q is its backlog, after Linux's cap at net.core.somaxconn).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../libs/config/index.ts';
import { startEmbedded, type Deployment } from '../support/parley.ts';
import type { RunningServer } from '../../services/server.ts';

/** The backlog the kernel holds for the socket listening on 127.0.0.1:port. */
function backlogOf(port: number): number {
  const line = execFileSync('ss', ['-ltnH', `sport = :${port}`]).toString().trim().split('\n')[0] ?? '';
  // State Recv-Q Send-Q Local Peer
  const sendQ = Number(line.trim().split(/\s+/)[2]);
  assert.ok(Number.isInteger(sendQ), `no listening socket on ${port}: '${line}'`);
  return sendQ;
}

const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));

describe('listen backlog', () => {
  let d: Deployment & { server: RunningServer };
  before(async () => {
    d = await startEmbedded({
      c2s: { tcp: { backlog: 1234 }, directTls: { enabled: true, port: 0, backlog: 777 }, http: { enabled: true, port: 0 } },
      components: { listen: { port: 0, backlog: 333 }, services: [{ domain: 'bridge.localhost', secret: 'a-long-enough-secret' }] },
    });
  });
  after(() => d?.stop());

  test('the client, direct TLS and component listeners queue what their keys say', () => {
    assert.equal(backlogOf(d.server.c2s!.tcpPort()), Math.min(1234, somaxconn));
    assert.equal(backlogOf(d.server.c2s!.directTlsPort()), Math.min(777, somaxconn));
    assert.equal(backlogOf(d.server.components!.port()), Math.min(333, somaxconn));
  });

  test('the HTTP listener (uWebSockets.js) keeps its own fixed backlog, which no key changes', () => {
    assert.equal(backlogOf(d.server.c2s!.httpPort()), Math.min(512, somaxconn));
  });

  test('by default a listener queues 4,096 connections', () => {
    const c = loadConfig(undefined, {}, {});
    assert.equal(c.c2s.tcp.backlog, 4096);
    assert.equal(c.c2s.directTls.backlog, 4096);
    assert.equal(c.components.listen.backlog, 4096);
  });
});
