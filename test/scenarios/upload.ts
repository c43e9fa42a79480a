// HTTP file upload (XEP-0363) seen by a real client (@xmpp/client) and an
// HTTP client (fetch): the service in disco, a slot, the PUT and the GET of
// the same bytes, and each refusal — on the slot request (too large, over
// quota, a content type not allowed, bad attributes) and on the PUT (another
// size or content type than the slot said, after the slot expired, an
// altered URL) — with nothing stored for any of them. Run against the
// embedded server (disk store, bytes through Parley's HTTP listener) and the
// cluster (S3 store, bytes straight to the bucket).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, xml, type Stanza, type TestClient } from '../support/clients.ts';
import { DOMAIN, type Deployment } from '../support/parley.ts';

export const NS_UPLOAD = 'urn:xmpp:http:upload:0';
export const SERVICE = `upload.${DOMAIN}`;
const NS_INFO = 'http://jabber.org/protocol/disco#info';
const NS_ITEMS = 'http://jabber.org/protocol/disco#items';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

/** Small limits, so the refusals are quick to reach; slots live 3 s, files 6 s, swept every half second. */
export const UPLOAD_LIMITS = {
  maxFileBytes: 400_000, quotaBytes: 1_000_000, slotSeconds: 3, fileLifetimeSeconds: 6, sweepSeconds: 0.5,
  allowedContentTypes: ['image/*', 'text/plain', 'application/octet-stream'],
};

export interface UploadTarget {
  /** Whether the bytes of a GET URL are still kept by the store (the disk or the bucket), asked past HTTP. */
  stored(getUrl: string): Promise<boolean>;
  /** A slot takes one file (disk); object storage lets the PUT URL replace it until the URL expires. */
  putOnce: boolean;
}

let n = 0;
const fresh = (tag: string) => `${tag}${++n}u`;

interface IqFailure { condition?: string; element?: Stanza }

export interface SlotUrls { put: string; get: string; headers: Record<string, string> }

export function requestSlot(c: TestClient, attrs: Record<string, string>): Promise<Stanza> {
  return c.xmpp.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('request', { xmlns: NS_UPLOAD, ...attrs })), 30_000);
}

export async function slot(c: TestClient, fileName: string, size: number, contentType?: string): Promise<SlotUrls> {
  const r = await requestSlot(c, { filename: fileName, size: String(size), ...(contentType ? { 'content-type': contentType } : {}) });
  const s = r.getChild('slot', NS_UPLOAD);
  assert.ok(s, `a slot: ${r.toString()}`);
  const put = s.getChild('put')!;
  const headers: Record<string, string> = {};
  for (const h of put.getChildren('header')) headers[h.attrs.name as string] = h.getText();
  return { put: put.attrs.url as string, get: s.getChild('get')!.attrs.url as string, headers };
}

const refused = (c: TestClient, attrs: Record<string, string>): Promise<IqFailure> =>
  requestSlot(c, attrs).then((r) => { throw new Error(`expected an error, got ${r.toString()}`); }, (e: IqFailure) => e);

/** The error element's defined condition, its text, and the error type. */
function errorOf(f: IqFailure): { condition: string; type: string; text: string; error: Stanza } {
  const error = f.element?.is('error') ? f.element : f.element?.getChild('error');
  assert.ok(error, `an error reply: ${f.element?.toString()}`);
  const condition = error.getChildElements().find((c) => c.attrs.xmlns === NS_STANZAS && c.name !== 'text')!;
  return { condition: condition.name, type: error.attrs.type as string, text: error.getChildText('text', NS_STANZAS) ?? '', error };
}

export async function putFile(url: string, body: Uint8Array, contentType?: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'PUT', body: new Blob([body as BlobPart]), headers: { ...headers, ...(contentType ? { 'content-type': contentType } : {}) } });
}

const slotsHeld = async (d: Deployment): Promise<number> => (await d.store.hgetall(`$upload:${SERVICE}`, 'slots')).size;

export function uploadScenarios(get: () => Deployment, target: () => UploadTarget): void {
  const user = async (tag: string): Promise<TestClient> => {
    const local = fresh(tag);
    await get().addUser(local);
    return connect(get().ports[0], local);
  };

  test('the served domain lists the upload service; its disco#info has identity store/file and max-file-size', async () => {
    const c = await user('disco');
    try {
      const items = await c.xmpp.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: NS_ITEMS })));
      assert.ok(items.getChild('query', NS_ITEMS)!.getChildren('item').some((i) => i.attrs.jid === SERVICE), items.toString());
      const info = (await c.xmpp.iqCaller.request(xml('iq', { type: 'get', to: SERVICE }, xml('query', { xmlns: NS_INFO })))).getChild('query', NS_INFO)!;
      assert.ok(info.getChildren('identity').some((i) => i.attrs.category === 'store' && i.attrs.type === 'file'), info.toString());
      assert.ok(info.getChildren('feature').some((f) => f.attrs.var === NS_UPLOAD));
      const form = info.getChild('x', 'jabber:x:data')!;
      const field = (v: string) => form.getChildren('field').find((f) => f.attrs.var === v)?.getChildText('value');
      assert.equal(field('FORM_TYPE'), NS_UPLOAD);
      assert.equal(field('max-file-size'), String(UPLOAD_LIMITS.maxFileBytes));
    } finally {
      await c.stop();
    }
  });

  test('a slot, the PUT of a file, and the GET of the same bytes with its content type', async () => {
    const c = await user('put');
    try {
      const bytes = randomBytes(300_000);
      const s = await slot(c, 'holiday photo é.png', bytes.length, 'image/png');
      assert.notEqual(s.put, s.get, 'who may read the file may not write it');
      const put = await putFile(s.put, bytes, 'image/png', s.headers).catch((e: Error) => { throw new Error(`PUT: ${e.message} ${String(e.cause)}`); });
      assert.ok(put.status === 200 || put.status === 201, `PUT answered ${put.status}: ${await put.text()}`);
      const got = await fetch(s.get).catch((e: Error) => { throw new Error(`GET: ${e.message} ${String(e.cause)}`); });
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('content-type'), 'image/png');
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(bytes), 'the same bytes back');
      assert.ok(await target().stored(s.get));
      if (target().putOnce) {
        // A second PUT to a used slot does not replace the file.
        const again = await putFile(s.put, randomBytes(bytes.length), 'image/png', s.headers);
        assert.equal(again.status, 409);
        assert.ok(Buffer.from(await (await fetch(s.get)).arrayBuffer()).equals(bytes), 'the first file stays');
      }
    } finally {
      await c.stop();
    }
  });

  test('slots are unguessable and each slot has its own URLs', async () => {
    const c = await user('unguess');
    try {
      const a = await slot(c, 'a.txt', 10, 'text/plain');
      const b = await slot(c, 'a.txt', 10, 'text/plain');
      assert.notEqual(a.get, b.get);
      const id = (u: string) => new URL(u).pathname.split('/').slice(-2, -1)[0];
      assert.ok(id(a.get).length >= 22, `a slot id of 128 bits or more: ${a.get}`);
    } finally {
      await c.stop();
    }
  });

  test('a PUT with another size or content type than the slot said is refused, and nothing is stored', async () => {
    const c = await user('mismatch');
    try {
      const s = await slot(c, 'notes.txt', 100, 'text/plain');
      const bigger = await putFile(s.put, Buffer.alloc(150, 1), 'text/plain', s.headers);
      assert.ok(bigger.status >= 400 && bigger.status < 500, `another size: ${bigger.status}`);
      const smaller = await putFile(s.put, Buffer.alloc(50, 1), 'text/plain', s.headers);
      assert.ok(smaller.status >= 400 && smaller.status < 500, `another size: ${smaller.status}`);
      const otherType = await putFile(s.put, Buffer.alloc(100, 1), 'image/png', s.headers);
      assert.ok(otherType.status >= 400 && otherType.status < 500, `another content type: ${otherType.status}`);
      assert.equal(await target().stored(s.get), false);
      assert.equal((await fetch(s.get)).status >= 400, true, 'nothing to GET');
      // The slot itself is still good for what it said.
      const right = await putFile(s.put, Buffer.alloc(100, 2), 'text/plain', s.headers);
      assert.ok(right.status < 300, `the right PUT: ${right.status}`);
    } finally {
      await c.stop();
    }
  });

  test('an altered PUT URL is refused', async () => {
    const c = await user('altered');
    try {
      const s = await slot(c, 'x.txt', 10, 'text/plain');
      const u = new URL(s.put);
      const other = await slot(c, 'y.txt', 20, 'text/plain');
      // The first slot's signature on the second slot's path: not a grant for that path.
      const swapped = new URL(other.put);
      swapped.search = u.search;
      const r = await putFile(swapped.toString(), Buffer.alloc(10, 1), 'text/plain', s.headers);
      assert.ok(r.status >= 400 && r.status < 500, `altered URL: ${r.status}`);
      assert.equal(await target().stored(other.get), false);
    } finally {
      await c.stop();
    }
  });

  test('a PUT after the slot expired is refused', async () => {
    const c = await user('late');
    try {
      const s = await slot(c, 'late.txt', 10, 'text/plain');
      await new Promise((r) => setTimeout(r, UPLOAD_LIMITS.slotSeconds * 1000 + 1200));
      const r = await putFile(s.put, Buffer.alloc(10, 1), 'text/plain', s.headers);
      assert.ok(r.status >= 400 && r.status < 500, `expired slot: ${r.status}`);
      assert.equal(await target().stored(s.get), false);
    } finally {
      await c.stop();
    }
  });

  test('a file over the size limit: not-acceptable with <file-too-large/> and the max-file-size; no slot kept', async () => {
    const c = await user('large');
    try {
      const before = await slotsHeld(get());
      const f = errorOf(await refused(c, { filename: 'big.bin', size: String(UPLOAD_LIMITS.maxFileBytes + 1), 'content-type': 'application/octet-stream' }));
      assert.equal(f.condition, 'not-acceptable');
      assert.equal(f.type, 'modify');
      assert.match(f.text, /too large/);
      const tooLarge = f.error.getChild('file-too-large', NS_UPLOAD);
      assert.ok(tooLarge, f.error.toString());
      assert.equal(tooLarge.getChildText('max-file-size'), String(UPLOAD_LIMITS.maxFileBytes));
      assert.equal(await slotsHeld(get()), before);
    } finally {
      await c.stop();
    }
  });

  test('over the quota: resource-constraint (wait) until files expire; another user is not affected', async () => {
    const c = await user('quota');
    const other = await user('quota');
    try {
      await slot(c, 'one.bin', 400_000);
      await slot(c, 'two.bin', 400_000);
      const before = await slotsHeld(get());
      const f = errorOf(await refused(c, { filename: 'three.bin', size: '400000' }));
      assert.equal(f.condition, 'resource-constraint');
      assert.equal(f.type, 'wait');
      assert.match(f.text, /quota/);
      // <retry stamp/>: when the oldest file expires and leaves room (XEP-0082 UTC).
      const stamp = f.error.getChild('retry', NS_UPLOAD)?.attrs.stamp as string;
      assert.match(stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const wait = Date.parse(stamp) - Date.now();
      assert.ok(wait > 0 && wait <= UPLOAD_LIMITS.fileLifetimeSeconds * 1000, `retry in ${wait} ms`);
      assert.equal(await slotsHeld(get()), before);
      // The quota is the requester's own.
      await slot(other, 'three.bin', 400_000);
    } finally {
      await Promise.all([c.stop(), other.stop()]);
    }
  });

  test('a content type not allowed is not-acceptable; bad attributes are bad-request; nothing is kept', async () => {
    const c = await user('types');
    try {
      const before = await slotsHeld(get());
      const html = errorOf(await refused(c, { filename: 'page.html', size: '100', 'content-type': 'text/html' }));
      assert.equal(html.condition, 'not-acceptable');
      assert.match(html.text, /text\/html/);
      const svg = errorOf(await refused(c, { filename: 'a.svg', size: '100', 'content-type': 'image/svg+xml' }));
      assert.equal(svg.condition, 'not-acceptable', 'image/* does not cover SVG, which can carry scripts');
      for (const attrs of <Record<string, string>[]>[
        { filename: 'a.txt', 'content-type': 'text/plain' },
        { filename: 'a.txt', size: '-5', 'content-type': 'text/plain' },
        { filename: 'a.txt', size: '0', 'content-type': 'text/plain' },
        { size: '10', 'content-type': 'text/plain' },
        { filename: '../etc/passwd', size: '10', 'content-type': 'text/plain' },
        { filename: 'a.txt', size: '10', 'content-type': 'not a type' },
      ]) {
        assert.equal(errorOf(await refused(c, attrs)).condition, 'bad-request', JSON.stringify(attrs));
      }
      assert.equal(await slotsHeld(get()), before);
    } finally {
      await c.stop();
    }
  });

  test('the sweep deletes a file once its lifetime is over', async () => {
    const c = await user('sweep');
    try {
      const s = await slot(c, 'short-lived.txt', 5, 'text/plain');
      const put = await putFile(s.put, Buffer.from('hello'), 'text/plain', s.headers);
      assert.ok(put.status < 300);
      assert.ok(await target().stored(s.get));
      const deadline = Date.now() + UPLOAD_LIMITS.fileLifetimeSeconds * 1000 + 5000;
      while (await target().stored(s.get)) {
        assert.ok(Date.now() < deadline, 'the file outlived its lifetime');
        await new Promise((r) => setTimeout(r, 250));
      }
      const slotId = new URL(s.get).pathname.split('/').slice(-2, -1)[0];
      assert.equal(await get().store.hget(`$upload:${SERVICE}`, 'slots', slotId), undefined, 'its slot is forgotten');
    } finally {
      await c.stop();
    }
  });
}
