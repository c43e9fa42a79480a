// slixmpp's XEP-0377 plugin against Parley, embedded: a user blocks a spammer
// with a report, the block holds, and `parley reports list` shows the report.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import type { RunningServer } from '../../services/server.ts';
import { cli } from '../scenarios/account-services.ts';
import { startEmbedded, type Deployment } from '../support/parley.ts';

const run = promisify(execFile);

describe('slixmpp spam report (XEP-0377), embedded', () => {
  let d: Deployment & { server: RunningServer };
  let config = '';
  before(async () => {
    d = await startEmbedded();
    config = join(d.server.config.dataDir, 'cli.yaml');
    writeFileSync(config, stringify({ dataDir: d.server.config.dataDir, domains: ['localhost'], log: { level: 'warn' } }));
  });
  after(async () => { await d.stop(); });

  test('slixmpp blocks with a spam report; the CLI lists it', async () => {
    await d.addUser('slixrep');
    const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_report.py', '127.0.0.1', String(d.ports[0]), 'slixrep@localhost', 'secret', 'offers@spam.example'], { timeout: 60_000 });
    const r = JSON.parse(stdout.trim().split('\n').pop()!) as { feature: boolean; sent: string; result: string; blocked: string[] };
    assert.equal(r.feature, true, 'the server advertises urn:xmpp:reporting:0');
    assert.match(r.sent, /urn:xmpp:reporting:0/, 'slixmpp sent a report');
    assert.equal(r.result, 'result');
    assert.deepEqual(r.blocked, ['offers@spam.example']);
    const lines = (await cli(config, 'reports', 'list')).stdout.trim().split('\n');
    assert.equal(lines.at(-1), '# 1 reports');
    const [domain, , , reporter, jid, reason, ids, text] = lines[0].split('\t');
    assert.deepEqual([domain, reporter, jid, reason, ids, JSON.parse(text)], ['localhost', 'slixrep@localhost', 'offers@spam.example', 'spam', '-', 'Unsolicited offers, again and again']);
  });
});
