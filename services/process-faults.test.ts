// The last line of defence, in a process of its own: an unhandled rejection is
// logged with its stack and counted, and the process goes on; an uncaught
// exception is logged and counted, and the process exits with status 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tempDir } from '../test/support/servers.ts';

const here = (p: string) => pathToFileURL(join(import.meta.dirname, p)).href;

function run(body: string): { status: number | null; stdout: string; stderr: string } {
  const file = join(tempDir('parley-faults'), 'child.ts');
  writeFileSync(file, `
import { Metrics } from ${JSON.stringify(here('../libs/metrics/index.ts'))};
import { guardProcess } from ${JSON.stringify(here('process-faults.ts'))};
const metrics = new Metrics(false);
guardProcess((kind) => {
  metrics.processFaults.labels(kind).inc();
  process.stdout.write('counted ' + kind + '\\n');
});
const counted = async () => (await metrics.registry.getSingleMetricAsString('parley_process_faults_total')).split('\\n').filter((l) => l.startsWith('parley_')).join(' ');
${body}
`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PARLEY_LOG_LEVEL: 'info' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('an unhandled rejection is logged with its stack and counted, and the process keeps running', () => {
  const r = run(`
async function persistRecord(): Promise<void> { throw new Error('redis went away'); }
void persistRecord();
setTimeout(async () => {
  process.stdout.write('still running; ' + await counted() + '\\n');
  process.exit(0);
}, 50);
`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /still running; parley_process_faults_total\{kind="unhandledRejection"\} 1/);
  assert.match(r.stderr, /error process: unhandled promise rejection .* error="Error: redis went away"/);
  assert.match(r.stderr, /at persistRecord/, 'the stack says where');
});

test('an uncaught exception is logged with its stack and counted, and the process exits with status 1', () => {
  const r = run(`
setTimeout(function corrupt() { throw new TypeError('state is half-changed'); }, 20);
setTimeout(() => process.stdout.write('never printed\\n'), 200);
`);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /counted uncaughtException/);
  assert.doesNotMatch(r.stdout, /never printed/);
  assert.match(r.stderr, /error process: uncaught exception; exiting.* error="TypeError: state is half-changed"/);
  assert.match(r.stderr, /at Timeout\.corrupt|at corrupt/);
});
