// The two log formats as an operator reads them: JSON entries with a fixed set of keys and the fields beside
// them, text lines whose values split cleanly, and nothing at all below the level.
import { afterEach, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatRecord, logger, setLogContext, setLogFormat, setLogLevel, textValue, throttledWarn } from './index.ts';

const at = new Date('2026-03-04T05:06:07.089Z');

let written: string[] = [];
const write = process.stderr.write.bind(process.stderr);
beforeEach(() => {
  written = [];
  process.stderr.write = ((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
});
afterEach(() => {
  process.stderr.write = write;
  setLogLevel('info');
  setLogFormat('text');
});

test('json: one object per line, the fixed keys first, the fields as top-level keys', () => {
  const line = formatRecord({
    time: at, level: 'warn', role: 'c2s', node: 'c2s-1', logger: 'c2s', msg: 'stream closed',
    fields: { event: 'stream-close', count: 3, ok: false, none: null, nested: { a: [1, 'two'], b: { c: true } }, skipped: undefined },
  }, 'json');
  assert.ok(!line.includes('\n'));
  assert.deepEqual(Object.keys(JSON.parse(line)), ['time', 'level', 'role', 'node', 'logger', 'msg', 'event', 'count', 'ok', 'none', 'nested']);
  assert.deepEqual(JSON.parse(line), {
    time: '2026-03-04T05:06:07.089Z', level: 'warn', role: 'c2s', node: 'c2s-1', logger: 'c2s', msg: 'stream closed',
    event: 'stream-close', count: 3, ok: false, none: null, nested: { a: [1, 'two'], b: { c: true } },
  });
});

test('json: errors as name and message, with their code when they have one, also nested', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
  const o = JSON.parse(formatRecord({ time: at, level: 'error', role: 'session', node: 's1', logger: 'redis', msg: 'failed', fields: {
    error: refused, plain: new TypeError('bad'), inside: { cause: new RangeError('far') }, big: 12n,
  } }, 'json'));
  assert.deepEqual(o.error, { name: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:6379', code: 'ECONNREFUSED' });
  assert.deepEqual(o.plain, { name: 'TypeError', message: 'bad' });
  assert.deepEqual(o.inside, { cause: { name: 'RangeError', message: 'far' } });
  assert.equal(o.big, '12');
});

test('json: a field named like a fixed key keeps the fixed one: left out when equal, else written with _ in front', () => {
  const o = JSON.parse(formatRecord({ time: at, level: 'info', role: 'all', node: 'embedded', logger: 'server', msg: 'cleanup failed',
    fields: { node: 'c2s-9', msg: 'x', level: 'y', role: 'all' } }, 'json'));
  assert.equal(o.node, 'embedded');
  assert.equal(o.msg, 'cleanup failed');
  assert.equal(o.level, 'info');
  assert.deepEqual([o._node, o._msg, o._level], ['c2s-9', 'x', 'y']);
  assert.ok(!('_role' in o), 'the same role is not repeated');
});

test('json: a value that cannot be encoded (a cycle) still gives a line', () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const line = formatRecord({ time: at, level: 'info', role: null, node: null, logger: 'x', msg: 'm', fields: { cyclic } }, 'json');
  assert.equal(typeof line, 'string');
});

test('text: the line as before; values with a space, a quote, = or a line break quoted', () => {
  const line = formatRecord({ time: at, level: 'info', role: 'c2s', node: 'c2s-1', logger: 'c2s', msg: 'auth failed', fields: {
    address: '203.0.113.7', account: 'alice@example.com', reason: 'no session process is alive', quote: 'say "hi"', eq: 'a=b',
    nl: 'one\ntwo', empty: '', n: 6, list: ['a', 'b'], error: new Error('went away'), gone: undefined,
  } }, 'text');
  assert.equal(line, '2026-03-04T05:06:07.089Z info  c2s: auth failed address=203.0.113.7 account=alice@example.com'
    + ' reason="no session process is alive" quote="say \\"hi\\"" eq="a=b" nl="one\\ntwo" empty="" n=6 list="[\\"a\\",\\"b\\"]" error="went away"');
  assert.equal(textValue('plain-value_1.2:3/4'), 'plain-value_1.2:3/4');
  assert.equal(textValue({ a: 1 }), '"{\\"a\\":1}"');
  assert.equal(textValue(null), 'null');
});

test('text: a value cannot forge another key (a client-chosen account with spaces and =)', () => {
  const line = formatRecord({ time: at, level: 'info', role: null, node: null, logger: 'c2s', msg: 'auth failed',
    fields: { address: '203.0.113.7', account: 'x address=198.51.100.1 y' } }, 'text');
  // Split as a logfmt reader does: key=value or key="JSON string".
  const pairs = [...line.matchAll(/ (\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)].map((m) => [m[1], m[2].startsWith('"') ? JSON.parse(m[2]) : m[2]]);
  assert.deepEqual(pairs, [['address', '203.0.113.7'], ['account', 'x address=198.51.100.1 y']]);
});

test('the logger writes the configured format with the process context; nothing below the level', () => {
  const log = logger('bus');
  setLogContext({ role: 'session', node: 'session-7' });
  setLogLevel('warn');
  log.debug('d', { k: 1 });
  log.info('i', { k: 2 });
  assert.equal(log.enabled('info'), false);
  assert.equal(log.enabled('warn'), true);
  assert.equal(written.length, 0, 'below the level nothing is written');

  log.warn('disconnected; reconnecting', { event: 'bus-disconnected', server: 'nats://127.0.0.1:4222' });
  assert.equal(written.length, 1);
  assert.match(written[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z warn  bus: disconnected; reconnecting event=bus-disconnected server=nats:\/\/127\.0\.0\.1:4222\n$/);

  setLogFormat('json');
  log.error('failed', { error: new Error('boom') });
  assert.equal(written.length, 2);
  assert.ok(written[1].endsWith('}\n'));
  const o = JSON.parse(written[1]);
  assert.ok(!Number.isNaN(Date.parse(o.time)) && o.time.endsWith('Z'));
  assert.deepEqual({ ...o, time: undefined }, { time: undefined, level: 'error', role: 'session', node: 'session-7', logger: 'bus', msg: 'failed', error: { name: 'Error', message: 'boom' } });

  setLogLevel('error');
  log.warn('w');
  assert.equal(written.length, 2);
});

test('a field that formats expensively is not looked at below the level', () => {
  setLogLevel('info');
  let read = 0;
  const fields = { get costly() { read++; return 'x'; } };
  logger('x').debug('d', fields);
  assert.equal(read, 0);
  logger('x').info('i', fields);
  assert.equal(read, 1);
});

test('throttledWarn: repeats held back, an `always` one written at once and counting the held', () => {
  const warn = throttledWarn(logger('redis'), 60_000);
  warn('connection error', { n: 1 });
  warn('connection error', { n: 2 });
  warn('connection error', { n: 3 });
  warn('connection error', { n: 4, event: 'store-disconnected' }, true);
  warn('connection error', { n: 5 });
  assert.equal(written.length, 2);
  assert.match(written[0], / n=1\n$/);
  assert.match(written[1], / n=4 event=store-disconnected suppressed=2\n$/);
});
