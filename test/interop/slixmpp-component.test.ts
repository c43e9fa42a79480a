// slixmpp's ComponentXMPP (Debian's python3-slixmpp), a component library
// nobody here wrote: it greets a user (@xmpp/client) and echoes what the user writes,
// embedded and across a cluster (component and user on different connection
// managers); a wrong secret and a forged `from` end its stream with the
// errors XEP-0114 and RFC 6120 name.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { connect, isMessageWithBody, xml } from '../support/clients.ts';
import { startCluster, startEmbedded, type Deployment } from '../support/parley.ts';
import { freePort } from '../support/servers.ts';

const run = promisify(execFile);

const SECRET = 'slixmpp-component-secret';
const COMPONENTS = [{ domain: 'echo.localhost', secret: SECRET }];

interface Talk { component: { from: string; to: string; body: string }[]; stream_errors: unknown[] }
interface Refusal { connected: boolean; stream_errors: { condition: string; text: string }[] }

/** The echo component in its own process: resolves once it is connected, and with what it saw once it is done. */
async function echoComponent(componentPort: number, user: string): Promise<{ done: Promise<Talk> }> {
  const child = spawn('/usr/bin/python3', ['test/interop/slixmpp_component.py', 'talk', '127.0.0.1', String(componentPort), 'echo.localhost', SECRET, user],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const done = new Promise<Talk>((resolve, reject) => child.once('exit', (code) => {
    clearTimeout(killer);
    if (code === 0) resolve(JSON.parse(out.trim().split('\n').pop()!) as Talk);
    else reject(new Error(`the component exited with ${code}: ${err}`));
  }));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    done.catch(reject);
  });
  return { done };
}

async function script<T>(...args: string[]): Promise<T> {
  const { stdout } = await run('/usr/bin/python3', ['test/interop/slixmpp_component.py', ...args], { timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

function scenarios(name: string, setup: () => Promise<{ d: Deployment; c2sPort: number; componentPort: number }>): void {
  describe(`slixmpp ComponentXMPP, ${name}`, () => {
    let d: Deployment;
    let c2sPort: number;
    let componentPort: number;
    before(async () => {
      ({ d, c2sPort, componentPort } = await setup());
      await d.addUser('slixuser');
    });
    after(async () => { await d?.stop(); });

    test('the component greets a user, the user writes to it and gets its echo', async () => {
      const user = await connect(c2sPort, 'slixuser');
      try {
        await user.send(xml('presence'));
        const { done } = await echoComponent(componentPort, 'slixuser@localhost');
        const greeting = await user.waitFor(isMessageWithBody('hello from the component'));
        assert.equal(greeting.attrs.from, 'news@echo.localhost');
        await user.send(xml('message', { to: 'bot@echo.localhost', type: 'chat' }, xml('body', {}, 'hello component')));
        const echo = await user.waitFor(isMessageWithBody('echo: hello component'));
        assert.equal(echo.attrs.from, 'bot@echo.localhost');
        const r = await done;
        const seen = r.component.find((m) => m.body === 'hello component');
        assert.match(seen?.from ?? '', /^slixuser@localhost\//);
        assert.equal(seen?.to, 'bot@echo.localhost');
        assert.deepEqual(r.stream_errors, []);
      } finally {
        await user.stop();
      }
    });

    test('a wrong secret: not-authorized, never connected', async () => {
      const r = await script<Refusal>('refuse', '127.0.0.1', String(componentPort), 'echo.localhost', 'a-wrong-secret-here', 'bot@echo.localhost');
      assert.equal(r.connected, false);
      assert.deepEqual(r.stream_errors.map((e) => e.condition), ['not-authorized']);
      assert.match(r.stream_errors[0].text, /the handshake does not match the secret configured for echo.localhost/);
    });

    test('a from outside its domain: invalid-from', async () => {
      const r = await script<Refusal>('refuse', '127.0.0.1', String(componentPort), 'echo.localhost', SECRET, 'mallory@localhost');
      assert.equal(r.connected, true);
      assert.deepEqual(r.stream_errors.map((e) => e.condition), ['invalid-from']);
    });
  });
}

scenarios('embedded', async () => {
  const componentPort = await freePort();
  const d = await startEmbedded({ components: { listen: { host: '127.0.0.1', port: componentPort }, services: COMPONENTS } });
  return { d, c2sPort: d.ports[0], componentPort };
});

scenarios('cluster', async () => {
  const d = await startCluster({ c2s: 1, session: 2, config: { components: { services: COMPONENTS } } });
  const componentPort = await freePort();
  await d.add('c2s', 'c2s-components', { components: { listen: { host: '127.0.0.1', port: componentPort }, services: COMPONENTS } });
  // The user on the first connection manager, the component on the second.
  return { d, c2sPort: d.ports[0], componentPort };
});
