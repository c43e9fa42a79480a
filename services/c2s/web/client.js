// Parley's small web client: XMPP over WebSocket (RFC 7395) with no library.
// SASL SCRAM-SHA-256 / SCRAM-SHA-1 through WebCrypto, PLAIN as a fallback;
// roster (RFC 6121), subscriptions, presence, one-to-one chat, and sending a
// file through the server's HTTP upload service (XEP-0363).
'use strict';

const NS = {
  framing: 'urn:ietf:params:xml:ns:xmpp-framing', sasl: 'urn:ietf:params:xml:ns:xmpp-sasl',
  bind: 'urn:ietf:params:xml:ns:xmpp-bind', client: 'jabber:client', roster: 'jabber:iq:roster',
  ping: 'urn:xmpp:ping', stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  discoInfo: 'http://jabber.org/protocol/disco#info', discoItems: 'http://jabber.org/protocol/disco#items',
  upload: 'urn:xmpp:http:upload:0', oob: 'jabber:x:oob', data: 'jabber:x:data',
};
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
const bare = (jid) => (jid || '').split('/')[0].toLowerCase();
const enc = new TextEncoder();
const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

// ---- SASL ----

async function hmac(hash, key, data) {
  const k = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, typeof data === 'string' ? enc.encode(data) : data));
}

/** RFC 5802 SCRAM as a generator of client messages: yields each, receives the server's. */
async function* scram(hash, user, password) {
  const nonce = b64(crypto.getRandomValues(new Uint8Array(18)));
  const first = `n=${user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${nonce}`;
  const serverFirst = yield `n,,${first}`;
  const f = Object.fromEntries(serverFirst.split(',').map((p) => [p[0], p.slice(2)]));
  if (!f.r || !f.r.startsWith(nonce) || !f.s || !f.i) throw new Error('bad SCRAM challenge');
  const bits = hash === 'SHA-1' ? 160 : 256;
  const pw = await crypto.subtle.importKey('raw', enc.encode(password), 'PBKDF2', false, ['deriveBits']);
  const salted = new Uint8Array(await crypto.subtle.deriveBits({ name: 'PBKDF2', salt: unb64(f.s), iterations: Number(f.i), hash }, pw, bits));
  const clientKey = await hmac(hash, salted, 'Client Key');
  const storedKey = new Uint8Array(await crypto.subtle.digest(hash, clientKey));
  const withoutProof = `c=biws,r=${f.r}`;
  const authMessage = `${first},${serverFirst},${withoutProof}`;
  const sig = await hmac(hash, storedKey, authMessage);
  const proof = clientKey.map((b, i) => b ^ sig[i]);
  const serverSig = b64(await hmac(hash, await hmac(hash, salted, 'Server Key'), authMessage));
  const final = yield `${withoutProof},p=${b64(proof)}`;
  if (final !== `v=${serverSig}`) throw new Error('the server could not prove it knows the password');
}

// ---- the connection ----

class Xmpp {
  constructor(url, jid, password, on) {
    [this.local, this.domain] = bare(jid).split('@');
    this.password = password;
    this.on = on;
    this.waiters = new Map();
    this.nextId = 1;
    this.ws = new WebSocket(url, 'xmpp');
    this.ws.onopen = () => this.open();
    this.ws.onmessage = (e) => this.frame(e.data);
    this.ws.onclose = () => on.closed();
    this.ws.onerror = () => on.failed('cannot reach the server');
    this.step = 'features';
  }

  write(xml) { if (this.ws.readyState === WebSocket.OPEN) this.ws.send(xml); }
  open() { this.write(`<open xmlns="${NS.framing}" to="${esc(this.domain)}" version="1.0"/>`); }
  close() { this.write(`<close xmlns="${NS.framing}"/>`); }

  iq(type, body, to) {
    const id = `c${this.nextId++}`;
    this.write(`<iq xmlns="${NS.client}" type="${type}" id="${id}"${to ? ` to="${esc(to)}"` : ''}>${body}</iq>`);
    return new Promise((resolve, reject) => this.waiters.set(id, (el) => (el.getAttribute('type') === 'result' ? resolve(el) : reject(el))));
  }

  frame(text) {
    const doc = new DOMParser().parseFromString(text, 'text/xml');
    const el = doc.documentElement;
    if (el.nodeName === 'parsererror') return;
    const name = el.localName;
    if (name === 'open') return;
    if (name === 'close') return this.ws.close();
    if (name === 'error') return this.on.failed(`stream error: ${el.firstElementChild?.localName ?? 'unknown'}`);
    if (name === 'features') return this.features(el);
    if (el.namespaceURI === NS.sasl) return this.sasl(el);
    if (name === 'iq' && (el.getAttribute('type') === 'result' || el.getAttribute('type') === 'error')) {
      const w = this.waiters.get(el.getAttribute('id'));
      if (w) { this.waiters.delete(el.getAttribute('id')); return w(el); }
      return;
    }
    if (name === 'iq') return this.incomingIq(el);
    if (name === 'message') return this.on.message(el);
    if (name === 'presence') return this.on.presence(el);
  }

  async features(el) {
    if (this.step === 'features') {
      const offered = [...el.getElementsByTagNameNS(NS.sasl, 'mechanism')].map((m) => m.textContent);
      const mech = ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'].find((m) => offered.includes(m));
      if (!mech) return this.on.failed('no usable authentication mechanism (TLS required?)');
      this.step = 'sasl';
      if (mech === 'PLAIN') {
        this.scram = null;
        const msg = enc.encode(`\0${this.local}\0${this.password}`);
        return this.write(`<auth xmlns="${NS.sasl}" mechanism="PLAIN">${b64(msg)}</auth>`);
      }
      this.scram = scram(mech === 'SCRAM-SHA-1' ? 'SHA-1' : 'SHA-256', this.local, this.password);
      const first = (await this.scram.next()).value;
      return this.write(`<auth xmlns="${NS.sasl}" mechanism="${mech}">${b64(enc.encode(first))}</auth>`);
    }
    if (this.step === 'bind') {
      this.step = 'binding';
      const res = await this.iq('set', `<bind xmlns="${NS.bind}"><resource>web-${Math.random().toString(36).slice(2, 8)}</resource></bind>`);
      this.jid = res.getElementsByTagNameNS(NS.bind, 'jid')[0].textContent;
      this.step = 'online';
      this.on.online(this.jid);
    }
  }

  async sasl(el) {
    const data = el.textContent ? new TextDecoder().decode(unb64(el.textContent)) : '';
    try {
      if (el.localName === 'challenge') {
        const r = await this.scram.next(data);
        return this.write(`<response xmlns="${NS.sasl}">${b64(enc.encode(r.value))}</response>`);
      }
      if (el.localName === 'success') {
        if (this.scram) await this.scram.next(data);
        this.step = 'bind';
        return this.open();
      }
    } catch (e) {
      return this.on.failed(e.message);
    }
    this.on.failed('wrong username or password');
    this.close();
  }

  incomingIq(el) {
    const id = esc(el.getAttribute('id') ?? '');
    const from = el.getAttribute('from');
    const to = from ? ` to="${esc(from)}"` : '';
    const child = el.firstElementChild;
    if (el.getAttribute('type') === 'get' && child?.namespaceURI === NS.ping) return this.write(`<iq xmlns="${NS.client}" type="result" id="${id}"${to}/>`);
    if (el.getAttribute('type') === 'set' && child?.namespaceURI === NS.roster && (!from || bare(from) === bare(this.jid))) {
      for (const item of child.getElementsByTagName('item')) this.on.rosterItem(item);
      return this.write(`<iq xmlns="${NS.client}" type="result" id="${id}"${to}/>`);
    }
    this.write(`<iq xmlns="${NS.client}" type="error" id="${id}"${to}><error type="cancel"><service-unavailable xmlns="${NS.stanzas}"/></error></iq>`);
  }
}

// ---- the page ----

const state = { xmpp: null, hasRoster: false, roster: new Map(), presence: new Map(), chats: new Map(), current: '', unread: new Set(), upload: null };

function setStatus(text, s) {
  $('status').textContent = text;
  $('status').dataset.state = s;
}

function renderRoster() {
  const ul = $('roster');
  ul.textContent = '';
  if (state.hasRoster) $('roster-note').textContent = state.roster.size ? '' : 'No contacts yet.';
  const jids = new Set([...state.roster.keys()]);
  for (const jid of [...jids].sort()) {
    const item = state.roster.get(jid);
    const resources = state.presence.get(jid);
    const show = resources && resources.size ? [...resources.values()][0] : null;
    const li = document.createElement('li');
    li.dataset.jid = jid;
    li.dataset.presence = show === null ? 'offline' : show || 'available';
    li.className = `${show === null ? '' : show ? 'away' : 'online'}${jid === state.current ? ' selected' : ''}${state.unread.has(jid) ? ' unread' : ''}`;
    const sub = item.ask ? `${item.subscription}, asked` : item.subscription;
    li.innerHTML = `<span class="dot"></span><span class="name"></span><span class="sub"></span>`;
    li.querySelector('.name').textContent = item.name || jid;
    li.querySelector('.sub').textContent = sub;
    li.onclick = () => openChat(jid);
    ul.appendChild(li);
  }
}

function openChat(jid) {
  state.current = bare(jid);
  state.unread.delete(state.current);
  $('chat-to').value = state.current;
  renderMessages();
  renderRoster();
}

function addMessage(peer, from, body, dir) {
  if (!state.chats.has(peer)) state.chats.set(peer, []);
  state.chats.get(peer).push({ from, body, dir });
  if (!state.current) state.current = peer;
  if (peer !== state.current) state.unread.add(peer);
  renderMessages();
  renderRoster();
}

function renderMessages() {
  const box = $('messages');
  box.textContent = '';
  for (const m of state.chats.get(state.current) ?? []) {
    const div = document.createElement('div');
    div.className = `msg ${m.dir}`;
    div.innerHTML = '<span class="from"></span><span class="body"></span>';
    div.querySelector('.from').textContent = m.dir === 'out' ? 'me' : m.from;
    // A message that is only a web address (a shared file) is shown as a link; anything else stays text.
    if (/^https?:\/\/\S+$/.test(m.body)) {
      const a = document.createElement('a');
      a.href = m.body;
      a.textContent = m.body;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      div.querySelector('.body').appendChild(a);
    } else {
      div.querySelector('.body').textContent = m.body;
    }
    box.appendChild(div);
  }
  box.scrollTop = box.scrollHeight;
}

function rosterItem(item) {
  const jid = bare(item.getAttribute('jid'));
  if (item.getAttribute('subscription') === 'remove') state.roster.delete(jid);
  else state.roster.set(jid, { subscription: item.getAttribute('subscription') || 'none', ask: item.getAttribute('ask'), name: item.getAttribute('name') });
  renderRoster();
}

function subscriptionRequest(from) {
  const x = state.xmpp;
  // Someone we asked for presence asks back: that is "adding each other".
  if (state.roster.has(from)) return x.write(`<presence xmlns="${NS.client}" to="${esc(from)}" type="subscribed"/>`);
  if (document.querySelector(`#requests li[data-jid="${CSS.escape(from)}"]`)) return;
  const li = document.createElement('li');
  li.dataset.jid = from;
  li.innerHTML = '<span></span> wants to see your presence <button class="accept">Accept</button> <button class="secondary deny">Deny</button>';
  li.querySelector('span').textContent = from;
  li.querySelector('.accept').onclick = () => {
    x.write(`<presence xmlns="${NS.client}" to="${esc(from)}" type="subscribed"/>`);
    x.write(`<presence xmlns="${NS.client}" to="${esc(from)}" type="subscribe"/>`);
    li.remove();
  };
  li.querySelector('.deny').onclick = () => {
    x.write(`<presence xmlns="${NS.client}" to="${esc(from)}" type="unsubscribed"/>`);
    li.remove();
  };
  $('requests').appendChild(li);
}

const handlers = {
  online: async (jid) => {
    setStatus(`online as ${jid}`, 'online');
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = false;
    try {
      const res = await state.xmpp.iq('get', `<query xmlns="${NS.roster}"/>`);
      state.hasRoster = true;
      for (const item of res.getElementsByTagName('item')) rosterItem(item);
      renderRoster();
    } catch {
      $('roster-note').textContent = 'The server offers no roster: type a JID to chat.';
    }
    state.xmpp.write(`<presence xmlns="${NS.client}"/>`);
    findUploadService();
  },
  message: (el) => {
    const body = el.getElementsByTagName('body')[0];
    if (!body || el.getAttribute('type') === 'error') return;
    const from = bare(el.getAttribute('from'));
    addMessage(from, from, body.textContent, 'in');
  },
  presence: (el) => {
    const from = el.getAttribute('from') || '';
    const type = el.getAttribute('type');
    const jid = bare(from);
    if (type === 'subscribe') return subscriptionRequest(jid);
    if (type && type !== 'unavailable') return;
    if (!state.presence.has(jid)) state.presence.set(jid, new Map());
    const resources = state.presence.get(jid);
    if (type === 'unavailable') resources.delete(from);
    else resources.set(from, el.getElementsByTagName('show')[0]?.textContent ?? '');
    renderRoster();
  },
  rosterItem,
  failed: (why) => {
    setStatus('offline', 'error');
    $('login-error').textContent = why;
  },
  closed: () => {
    setStatus('offline', 'offline');
    $('app').hidden = true;
    $('login').hidden = false;
    $('logout').hidden = true;
  },
};

async function endpoint() {
  try {
    const meta = await (await fetch('/.well-known/host-meta.json')).json();
    const ws = meta.links.find((l) => l.rel === 'urn:xmpp:alt-connections:websocket');
    if (ws) return ws.href;
  } catch { /* fall back to the default path */ }
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/xmpp-websocket`;
}

$('login-form').onsubmit = async (e) => {
  e.preventDefault();
  $('login-error').textContent = '';
  setStatus('connecting…', 'connecting');
  state.xmpp = new Xmpp(await endpoint(), $('login-jid').value.trim(), $('login-password').value, handlers);
};

$('logout').onclick = () => {
  state.xmpp?.write(`<presence xmlns="${NS.client}" type="unavailable"/>`);
  state.xmpp?.close();
};

$('add-form').onsubmit = (e) => {
  e.preventDefault();
  const jid = bare($('add-jid').value.trim());
  if (!jid.includes('@')) return;
  state.xmpp.iq('set', `<query xmlns="${NS.roster}"><item jid="${esc(jid)}"/></query>`).catch(() => {
    $('roster-note').textContent = `Could not add ${jid}.`;
  });
  state.xmpp.write(`<presence xmlns="${NS.client}" to="${esc(jid)}" type="subscribe"/>`);
  $('add-jid').value = '';
};

// ---- sending a file (XEP-0363) ----

/** The server's upload service: the item of its disco#items with identity store/file; the file form shows once found. */
async function findUploadService() {
  const x = state.xmpp;
  try {
    const items = await x.iq('get', `<query xmlns="${NS.discoItems}"/>`, x.domain);
    for (const item of items.getElementsByTagNameNS(NS.discoItems, 'item')) {
      const jid = item.getAttribute('jid');
      const info = await x.iq('get', `<query xmlns="${NS.discoInfo}"/>`, jid).catch(() => null);
      if (!info) continue;
      const isStore = [...info.getElementsByTagNameNS(NS.discoInfo, 'identity')].some((i) => i.getAttribute('category') === 'store' && i.getAttribute('type') === 'file');
      const speaks = [...info.getElementsByTagNameNS(NS.discoInfo, 'feature')].some((f) => f.getAttribute('var') === NS.upload);
      if (!isStore || !speaks) continue;
      const max = [...info.getElementsByTagNameNS(NS.data, 'field')].find((f) => f.getAttribute('var') === 'max-file-size');
      state.upload = { jid, maxSize: max ? Number(max.textContent.trim()) : Infinity };
      $('file-form').hidden = false;
      return;
    }
  } catch { /* no upload service: no file form */ }
}

const errorText = (el) => {
  const err = el.getElementsByTagName('error')[0];
  const text = err?.getElementsByTagNameNS(NS.stanzas, 'text')[0]?.textContent;
  return text || err?.firstElementChild?.localName || 'refused';
};

/** Ask for a slot, PUT the file, then send its GET URL as a message (with XEP-0066 out-of-band data, as mobile clients expect). */
async function sendFile(to, file) {
  const x = state.xmpp;
  if (file.size > state.upload.maxSize) throw new Error(`the file is larger than the server accepts (${state.upload.maxSize} bytes)`);
  const type = file.type || 'application/octet-stream';
  let res;
  try {
    res = await x.iq('get', `<request xmlns="${NS.upload}" filename="${esc(file.name)}" size="${file.size}" content-type="${esc(type)}"/>`, state.upload.jid);
  } catch (el) {
    throw new Error(`no upload slot: ${errorText(el)}`);
  }
  const put = res.getElementsByTagNameNS(NS.upload, 'put')[0];
  const get = res.getElementsByTagNameNS(NS.upload, 'get')[0].getAttribute('url');
  const headers = { 'content-type': type };
  for (const h of put.getElementsByTagNameNS(NS.upload, 'header')) {
    if (['authorization', 'cookie', 'expires'].includes(h.getAttribute('name').toLowerCase())) headers[h.getAttribute('name')] = h.textContent;
  }
  const r = await fetch(put.getAttribute('url'), { method: 'PUT', body: file, headers });
  if (!r.ok) throw new Error(`the upload failed (HTTP ${r.status})`);
  x.write(`<message xmlns="${NS.client}" to="${esc(to)}" type="chat"><body>${esc(get)}</body><x xmlns="${NS.oob}"><url>${esc(get)}</url></x></message>`);
  addMessage(to, 'me', get, 'out');
}

$('file-form').onsubmit = async (e) => {
  e.preventDefault();
  const to = bare($('chat-to').value.trim()) || state.current;
  const file = $('file-input').files[0];
  if (!to || !file || !state.upload) return;
  state.current = to;
  $('file-status').textContent = `sending ${file.name}…`;
  try {
    await sendFile(to, file);
    $('file-status').textContent = '';
    $('file-input').value = '';
  } catch (err) {
    $('file-status').textContent = err.message;
  }
};

$('open-form').onsubmit = (e) => {
  e.preventDefault();
  openChat($('chat-to').value.trim());
};

$('send-form').onsubmit = (e) => {
  e.preventDefault();
  const to = bare($('chat-to').value.trim()) || state.current;
  const body = $('message-input').value;
  if (!to || !body) return;
  state.current = to;
  state.xmpp.write(`<message xmlns="${NS.client}" to="${esc(to)}" type="chat"><body>${esc(body)}</body></message>`);
  addMessage(to, 'me', body, 'out');
  $('message-input').value = '';
};
