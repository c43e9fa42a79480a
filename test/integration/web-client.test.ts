// The web client in a real browser (headless Chromium through playwright-core):
// two pages log in over WebSocket, add each other, see each other's presence
// and chat; one sends a file through the HTTP upload service (XEP-0363) and
// the other gets a link to the same bytes. Screenshots go to .test-artifacts/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startEmbedded, PASSWORD, type Deployment } from '../support/parley.ts';
import type { RunningServer } from '../../services/server.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = '.test-artifacts';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

describe('web client in Chromium', { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (.ci/run installs it)` }, () => {
  let d: Deployment & { server: RunningServer };
  let browser: Browser;
  let base: string;
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    d = await startEmbedded({ c2s: { http: { enabled: true, port: 0 }, webClient: { enabled: true } }, upload: { maxFileBytes: 2_000_000 } });
    base = `http://127.0.0.1:${d.server.c2s!.httpPort()}`;
    await d.addUser('webalice');
    await d.addUser('webbob');
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS, timeout: 30_000 });
  });
  after(async () => {
    await browser?.close();
    await d?.stop();
  });

  async function login(user: string): Promise<Page> {
    const page = await (await browser.newContext({ viewport: { width: 1000, height: 640 } })).newPage();
    page.setDefaultTimeout(10_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/`);
    await page.fill('#login-jid', `${user}@localhost`);
    await page.fill('#login-password', PASSWORD);
    await page.click('#login-button');
    await page.waitForSelector('#status[data-state="online"]');
    assert.deepEqual(errors, []);
    return page;
  }

  test('two pages log in, add each other, see each other online and chat', async (t) => {
    const alice = await login('webalice');
    const bob = await login('webbob');
    assert.match(await alice.textContent('#status') ?? '', /^online as webalice@localhost\//);

    // Rosters and subscriptions, where the server has them (it answers the roster get).
    await alice.waitForFunction(() => document.querySelector('#roster-note')?.textContent !== '');
    const rosterNote = await alice.textContent('#roster-note') ?? '';
    if (/offers no roster/.test(rosterNote)) {
      t.diagnostic('the server has no roster yet: chatting by JID only');
    } else {
      await alice.fill('#add-jid', 'webbob@localhost');
      await alice.click('#add-button');
      await alice.waitForSelector('#roster li[data-jid="webbob@localhost"]');
      // Bob is asked, accepts, and (adding Alice back) is accepted automatically.
      await bob.waitForSelector('#requests li[data-jid="webalice@localhost"] .accept');
      await bob.screenshot({ path: `${ARTIFACTS}/web-client-bob-request.png` });
      await bob.click('#requests li[data-jid="webalice@localhost"] .accept');
      await alice.waitForSelector('#roster li[data-jid="webbob@localhost"][data-presence="available"]');
      await bob.waitForSelector('#roster li[data-jid="webalice@localhost"][data-presence="available"]');
      assert.equal(await alice.textContent('#roster li[data-jid="webbob@localhost"] .sub'), 'both');
      assert.equal(await bob.textContent('#roster li[data-jid="webalice@localhost"] .sub'), 'both');
    }

    await alice.fill('#chat-to', 'webbob@localhost');
    await alice.fill('#message-input', 'Hello Bob, from a browser');
    await alice.click('#send-button');
    await bob.waitForSelector('#messages .msg.in:has-text("Hello Bob, from a browser")');
    await bob.fill('#message-input', 'Hi Alice!');
    await bob.click('#send-button');
    await alice.waitForSelector('#messages .msg.in:has-text("Hi Alice!")');
    assert.equal(await alice.textContent('#messages .msg.in .from'), 'webbob@localhost');

    await alice.screenshot({ path: `${ARTIFACTS}/web-client-alice.png` });
    await bob.screenshot({ path: `${ARTIFACTS}/web-client-bob.png` });

    // Logging out is seen by the other side.
    if (!/offers no roster/.test(rosterNote)) {
      await bob.click('#logout');
      await bob.waitForSelector('#status[data-state="offline"]');
      await alice.waitForSelector('#roster li[data-jid="webbob@localhost"][data-presence="offline"]');
    }
  });

  test('a file sent through the upload service reaches the other page as a link to the same bytes', async () => {
    await d.addUser('webcarol');
    await d.addUser('webdave');
    const carol = await login('webcarol');
    const dave = await login('webdave');
    // The form shows once the page has found the upload service in the server's disco#items.
    await carol.waitForSelector('#file-form:not([hidden])');
    await carol.fill('#chat-to', 'webdave@localhost');
    const bytes = randomBytes(1_500_000);
    await carol.setInputFiles('#file-input', { name: 'photo from the browser.png', mimeType: 'image/png', buffer: bytes });
    await carol.click('#file-button');
    const link = await dave.waitForSelector('#messages .msg.in a');
    const url = await link.getAttribute('href') ?? '';
    assert.match(url, new RegExp(`^${base}/upload/upload\\.localhost/[A-Za-z0-9_-]{22}/photo%20from%20the%20browser\\.png$`));
    assert.equal(await dave.textContent('#messages .msg.in .from'), 'webcarol@localhost');
    await carol.waitForSelector(`#messages .msg.out a[href="${url}"]`);
    assert.equal(await carol.textContent('#file-status'), '');
    const got = await fetch(url);
    assert.equal(got.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes), 'the same bytes');
    await dave.screenshot({ path: `${ARTIFACTS}/web-client-file-received.png` });

    // A type the service does not take: the page says why, and nothing is sent.
    await carol.setInputFiles('#file-input', { name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<h1>hi</h1>') });
    await carol.click('#file-button');
    await carol.waitForFunction(() => /not accepted/.test(document.querySelector('#file-status')?.textContent ?? ''));
    assert.match(await carol.textContent('#file-status') ?? '', /text\/html/);
    assert.equal(await dave.locator('#messages .msg.in').count(), 1);
  });

  test('the page is served with a restrictive content security policy', async () => {
    const r = await fetch(`${base}/`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    assert.match(await r.text(), /<script src="\/client.js"><\/script>/);
  });
});
