// prelude.cpp — the JavaScript side of the binding, run once in every party's realm before the party's bundle.
//
// It is a function expression: engine.cpp calls it with the object of native functions (N below), which no other
// code of the realm can reach, and gets back the host object whose methods the party_t callbacks call (start,
// connect, message, close, error, request, alarm, stop). It also defines the web globals of this slice (console,
// TextEncoder/TextDecoder, Headers/Request/Response, queueMicrotask, structuredClone).
//
// Why in JavaScript: the room, connection and storage objects are thin wrappers over natives that take the room's
// token (a host object whose private pointer engine.cpp clears when the room stops); writing them here keeps the C++
// small and every JS value reachable from the token, so nothing here needs manual rooting.
extern "C" {
extern const char js_prelude[];
}
const char js_prelude[] = R"PRELUDE((function (N) {
'use strict';
const G = globalThis;
const fmt = (args) => args.map((a) => {
  if (typeof a === 'string') return a;
  if (a instanceof Error) return `${a}${a.stack ? '\n' + a.stack : ''}`;
  try { const s = JSON.stringify(a); return s === undefined ? String(a) : s; } catch { return String(a); }
}).join(' ');
// ---- source maps: stack positions in the bundle mapped back to the script's lines ----
let mapPath = null, mapJson = null, mapCwd = '', mapLines = null, mapSources = null;
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const normalize = (p) => {
  const out = [];
  for (const part of p.split('/')) {
    if (part === '..') out.pop();
    else if (part !== '.' && part !== '') out.push(part);
  }
  return '/' + out.join('/');
};
// The map's "mappings", decoded once at the first use: per generated line, [genCol, source, line, col] sorted by genCol.
const decodeMap = () => {
  const m = JSON.parse(mapJson);
  mapSources = (m.sources || []).map((s) => (s.startsWith('/') ? s : normalize(`${mapCwd}/${m.sourceRoot || ''}/${s}`)));
  mapLines = [];
  let src = 0, line = 0, col = 0;
  for (const text of String(m.mappings || '').split(';')) {
    const segs = [];
    let gcol = 0;
    for (const seg of text.split(',')) {
      if (seg === '') continue;
      const v = [];
      let shift = 0, acc = 0;
      for (const ch of seg) {
        const d = B64.indexOf(ch);
        acc += (d & 31) << shift;
        if (d & 32) { shift += 5; continue; }
        v.push(acc & 1 ? -(acc >>> 1) : acc >>> 1);
        shift = 0;
        acc = 0;
      }
      gcol += v[0];
      if (v.length >= 4) { src += v[1]; line += v[2]; col += v[3]; segs.push([gcol, src, line, col]); }
    }
    mapLines.push(segs);
  }
};
const mapPos = (line, col) => {
  if (mapLines === null) decodeMap();
  const segs = mapLines[line - 1];
  if (!segs || segs.length === 0) return null;
  let best = segs[0];
  for (const s of segs) if (s[0] <= col - 1) best = s;
  return `${mapSources[best[1]]}:${best[2] + 1}:${best[3] + 1}`;
};
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const mapStack = (text) => {
  text = text.split('\n').filter((l) => !l.includes('@partyd:prelude:')).join('\n'); // partyd's own frames say nothing
  if (mapPath === null || !mapJson) return text;
  try {
    return text.replace(new RegExp(`${escapeRe(mapPath)}:(\\d+)(?::(\\d+))?`, 'g'), (all, l, c) => mapPos(Number(l), Number(c ?? 1)) ?? all);
  } catch {
    return text;
  }
};
const logError = (what, e) => {
  const stack = e && typeof e === 'object' && e.stack ? '\n' + mapStack(String(e.stack).trimEnd()) : '';
  N.log(0, `${what}: ${e instanceof Error ? `${e.name}: ${e.message}` : `uncaught ${fmt([e])}`}${stack}`);
};
G.console = {
  log: (...a) => N.log(2, fmt(a)), info: (...a) => N.log(2, fmt(a)), debug: (...a) => N.log(3, fmt(a)),
  warn: (...a) => N.log(1, fmt(a)), error: (...a) => N.log(0, fmt(a)),
};
G.queueMicrotask = (f) => { Promise.resolve().then(() => f()).catch((e) => logError('queueMicrotask', e)); };
G.structuredClone = (v) => N.deserialize(N.serialize(v));
G.performance = { now: () => N.monoMs(), timeOrigin: Date.now() - N.monoMs() };
const B64C = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
G.btoa = (s) => {
  s = String(s);
  let out = '';
  for (let i = 0; i < s.length; i += 3) {
    const a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
    if (a > 255 || b > 255 || c > 255) throw new DOMExceptionLike('btoa: a character is outside Latin-1', 'InvalidCharacterError');
    const n = (a << 16) | ((b || 0) << 8) | (c || 0);
    out += B64C[n >> 18] + B64C[(n >> 12) & 63] + (i + 1 < s.length ? B64C[(n >> 6) & 63] : '=') + (i + 2 < s.length ? B64C[n & 63] : '=');
  }
  return out;
};
G.atob = (s) => {
  s = String(s).replace(/[\t\n\f\r ]/g, '');
  if (s.length % 4 === 0) s = s.replace(/==?$/, '');
  if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) throw new DOMExceptionLike('atob: not base64', 'InvalidCharacterError');
  let out = '', acc = 0, bits = 0;
  for (const ch of s) {
    acc = (acc << 6) | B64C.indexOf(ch);
    bits += 6;
    if (bits >= 8) { bits -= 8; out += String.fromCharCode((acc >> bits) & 255); }
  }
  return out;
};
class DOMExceptionLike extends Error {
  constructor(message, name) { super(message); this.name = name; }
}
G.crypto = {
  getRandomValues(a) {
    if (!ArrayBuffer.isView(a) || a instanceof Float32Array || a instanceof Float64Array) throw new TypeError('getRandomValues: expected an integer typed array');
    if (a.byteLength > 65536) throw new DOMExceptionLike('getRandomValues: at most 65536 bytes', 'QuotaExceededError');
    N.randomFill(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    return a;
  },
  randomUUID() {
    const b = G.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  },
};

const bytes = (b) => {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return null;
};
class TextEncoder {
  get encoding() { return 'utf-8'; }
  encode(s = '') { return N.utf8Encode(String(s)); }
  encodeInto(s, dest) {
    const b = N.utf8Encode(String(s));
    let n = Math.min(b.length, dest.length);
    while (n > 0 && n < b.length && (b[n] & 0xc0) === 0x80) --n; // whole characters only
    dest.set(b.subarray(0, n));
    return { read: N.utf8Decode(b.subarray(0, n), false).length, written: n };
  }
}
class TextDecoder {
  constructor(label = 'utf-8', opts = {}) {
    if (!/^\s*(utf-?8|unicode-1-1-utf-8)\s*$/i.test(label)) throw new RangeError(`TextDecoder: only utf-8 is supported, not ${label}`);
    this.fatal = !!opts.fatal;
    this.ignoreBOM = !!opts.ignoreBOM;
  }
  get encoding() { return 'utf-8'; }
  decode(b) {
    if (b === undefined) return '';
    const u = bytes(b);
    if (u === null) throw new TypeError('TextDecoder.decode: expected an ArrayBuffer or a view');
    let s = N.utf8Decode(u, this.fatal);
    if (s === null) throw new TypeError('TextDecoder: the data is not valid UTF-8');
    if (!this.ignoreBOM && s.charCodeAt(0) === 0xfeff) s = s.slice(1);
    return s;
  }
}
G.TextEncoder = TextEncoder;
G.TextDecoder = TextDecoder;

class Headers {
  constructor(init) {
    this._m = new Map();
    if (init instanceof Headers) init.forEach((v, k) => this.append(k, v));
    else if (Array.isArray(init)) for (const [k, v] of init) this.append(k, v);
    else if (init) for (const k of Object.keys(init)) this.append(k, init[k]);
  }
  append(k, v) { k = String(k).toLowerCase(); const o = this._m.get(k); this._m.set(k, o === undefined ? String(v) : `${o}, ${v}`); }
  set(k, v) { this._m.set(String(k).toLowerCase(), String(v)); }
  get(k) { const v = this._m.get(String(k).toLowerCase()); return v === undefined ? null : v; }
  has(k) { return this._m.has(String(k).toLowerCase()); }
  delete(k) { this._m.delete(String(k).toLowerCase()); }
  forEach(f, self) { for (const [k, v] of this.entries()) f.call(self, v, k, this); }
  *entries() { yield* [...this._m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); }
  *keys() { for (const [k] of this.entries()) yield k; }
  *values() { for (const [, v] of this.entries()) yield v; }
  [Symbol.iterator]() { return this.entries(); }
}
// A body as bytes, with what Content-Type it implies when none is given.
const bodyOf = (body) => {
  if (body === undefined || body === null) return [null, null];
  if (typeof body === 'string') return [N.utf8Encode(body), 'text/plain;charset=UTF-8'];
  const u = bytes(body);
  if (u !== null) return [u.slice(), null];
  return [N.utf8Encode(String(body)), 'text/plain;charset=UTF-8'];
};
class Body {
  _initBody(body, headers) {
    const [b, type] = bodyOf(body);
    this._body = b;
    this.bodyUsed = false;
    if (type !== null && !headers.has('content-type')) headers.set('content-type', type);
  }
  _take() {
    if (this.bodyUsed) return Promise.reject(new TypeError('the body was already read'));
    this.bodyUsed = true;
    return Promise.resolve(this._body ?? new Uint8Array(0));
  }
  async arrayBuffer() { const b = await this._take(); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); }
  async text() { return N.utf8Decode(await this._take(), false); }
  async json() { return JSON.parse(await this.text()); }
  get body() { return this._body; } // bytes, not a ReadableStream (streams come later)
}
class Request extends Body {
  constructor(input, init = {}) {
    super();
    const from = input instanceof Request ? input : null;
    this.url = from ? from.url : String(input);
    this.method = String(init.method ?? (from ? from.method : 'GET')).toUpperCase();
    this.headers = new Headers(init.headers ?? (from ? from.headers : undefined));
    this._initBody(init.body !== undefined ? init.body : from ? from._body : null, this.headers);
    this.cf = {};
  }
  clone() { return new Request(this); }
}
class Response extends Body {
  constructor(body = null, init = {}) {
    super();
    this.status = init.status ?? 200;
    if (!Number.isInteger(this.status) || this.status < 200 || this.status > 599) throw new RangeError(`Response: status ${init.status} is not in 200..599`);
    this.statusText = init.statusText ?? '';
    this.headers = new Headers(init.headers);
    this._initBody(body, this.headers);
  }
  get ok() { return this.status >= 200 && this.status < 300; }
  clone() { return new Response(this._body, this); }
  static json(data, init = {}) {
    const headers = new Headers(init.headers);
    if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    return new Response(JSON.stringify(data), { ...init, headers });
  }
}
G.Headers = Headers;
G.Request = Request;
G.Response = Response;

// ---- rooms, connections, storage ----
const MAX_STATE = 2048;
class Connection {
  constructor(tok, id, uri) { this._tok = tok; this.id = id; this.uri = uri; this._state = undefined; }
  send(m) {
    const u = typeof m === 'string' ? null : bytes(m);
    if (typeof m !== 'string' && u === null) m = String(m);
    N.send(this._tok, this.id, u ?? m);
  }
  close(code, reason) { N.close(this._tok, this.id, code === undefined ? 1000 : code, reason === undefined ? null : String(reason)); }
  get state() {
    if (this._state === undefined) {
      const s = N.getState(this._tok, this.id);
      this._state = s === null ? null : JSON.parse(s);
    }
    return this._state;
  }
  setState(s) {
    if (typeof s === 'function') s = s(this.state);
    if (s === undefined || s === null) { N.setState(this._tok, this.id, null); this._state = null; return null; }
    const json = JSON.stringify(s);
    if (json === undefined) throw new TypeError('setState: the state must be JSON');
    N.setState(this._tok, this.id, json);
    this._state = JSON.parse(json);
    return this._state;
  }
}
const keyOf = (k) => { if (typeof k !== 'string') throw new TypeError('storage keys are strings'); return k; };
const attempt = (f) => { try { return Promise.resolve(f()); } catch (e) { return Promise.reject(e); } };
class Storage {
  constructor(tok) { this._tok = tok; }
  get(k) {
    return attempt(() => {
      if (!Array.isArray(k)) return N.get(this._tok, keyOf(k));
      const m = new Map();
      for (const key of k) { const v = N.get(this._tok, keyOf(key)); if (v !== undefined) m.set(key, v); }
      return m;
    });
  }
  put(k, v) {
    return attempt(() => {
      if (typeof k === 'object' && k !== null) { for (const key of Object.keys(k)) N.put(this._tok, key, k[key]); return; }
      if (v === undefined) throw new TypeError('storage.put: the value is undefined');
      N.put(this._tok, keyOf(k), v);
    });
  }
  delete(k) {
    return attempt(() => {
      if (!Array.isArray(k)) return N.del(this._tok, keyOf(k));
      let n = 0;
      for (const key of k) n += N.del(this._tok, keyOf(key)) ? 1 : 0;
      return n;
    });
  }
  list(o = {}) {
    return attempt(() => {
      const s = (v) => (v === undefined || v === null ? null : String(v));
      const l = N.list(this._tok, s(o.prefix), s(o.start), s(o.end), o.limit ?? 0, !!o.reverse);
      return new Map(l);
    });
  }
  getAlarm() { return attempt(() => N.getAlarm(this._tok)); }
  setAlarm(t) { return attempt(() => N.setAlarm(this._tok, t instanceof Date ? t.getTime() : Number(t))); }
  deleteAlarm() { return attempt(() => N.deleteAlarm(this._tok)); }
  deleteAll() { return attempt(() => { N.deleteAll(this._tok); }); }
  // The closure's writes are kept aside (its reads see them) and written all at once when it settles, or not at all
  // when it throws or calls txn.rollback() — so it may await anything in between.
  async transaction(fn) {
    const txn = new Transaction(this);
    let result;
    try {
      result = await fn(txn);
    } catch (e) {
      txn._done = true;
      throw e;
    }
    txn._done = true;
    if (!txn._rolledBack && txn._ops.size !== 0) N.commit(this._tok, [...txn._ops.entries()]);
    return result;
  }
}
const DELETED = Symbol('deleted');
class Transaction {
  constructor(storage) { this._s = storage; this._ops = new Map(); this._done = false; this._rolledBack = false; }
  _check() { if (this._done) throw new Error('the transaction is over'); }
  async get(k) {
    this._check();
    if (!Array.isArray(k)) {
      if (this._ops.has(keyOf(k))) { const v = this._ops.get(k); return v === DELETED ? undefined : structuredClone(v); }
      return this._s.get(k);
    }
    const m = new Map();
    for (const key of k) { const v = await this.get(key); if (v !== undefined) m.set(key, v); }
    return m;
  }
  async put(k, v) {
    this._check();
    if (typeof k === 'object' && k !== null) { for (const key of Object.keys(k)) await this.put(key, k[key]); return; }
    if (v === undefined) throw new TypeError('storage.put: the value is undefined');
    this._ops.set(keyOf(k), structuredClone(v));
  }
  async delete(k) {
    this._check();
    if (Array.isArray(k)) { let n = 0; for (const key of k) n += (await this.delete(key)) ? 1 : 0; return n; }
    const had = (await this.get(k)) !== undefined;
    this._ops.set(keyOf(k), DELETED);
    return had;
  }
  async list(o = {}) {
    this._check();
    const base = await this._s.list({ ...o, limit: undefined });
    for (const [k, v] of this._ops) {
      const inRange = (o.prefix === undefined || k.startsWith(o.prefix)) && (o.start === undefined || k >= o.start) && (o.end === undefined || k < o.end);
      if (!inRange) continue;
      if (v === DELETED) base.delete(k); else base.set(k, structuredClone(v));
    }
    const keys = [...base.keys()].sort((a, b) => (N.cmpKeys(a, b)));
    if (o.reverse) keys.reverse();
    const out = new Map();
    for (const k of keys) { if (o.limit && out.size >= o.limit) break; out.set(k, base.get(k)); }
    return out;
  }
  rollback() { this._check(); this._rolledBack = true; }
  getAlarm() { return this._s.getAlarm(); }
  setAlarm(t) { return this._s.setAlarm(t); }
  deleteAlarm() { return this._s.deleteAlarm(); }
}
class Room {
  constructor(tok, id, party, env) {
    this._tok = tok;
    this._conns = new Map();
    this.id = id;
    this.internalID = `${party}/${id}`;
    this.name = party;
    this.env = env;
    this.storage = new Storage(tok);
  }
  _conn(id, uri) {
    let c = this._conns.get(id);
    if (c === undefined) { c = new Connection(this._tok, id, uri); this._conns.set(id, c); }
    return c;
  }
  broadcast(m, without = []) {
    const u = typeof m === 'string' ? null : bytes(m);
    N.broadcast(this._tok, u ?? String(m), Array.from(without ?? [], String));
  }
  getConnection(id) { return N.hasConn(this._tok, String(id)) ? this._conn(String(id)) : undefined; }
  *getConnections(tag) { for (const id of N.connIds(this._tok, tag === undefined ? null : String(tag))) yield this._conn(id); }
  get connections() { return new Map([...this.getConnections()].map((c) => [c.id, c])); }
  // Events already run one at a time and storage settles at once, so this only runs fn (docs/javascript.md).
  blockConcurrencyWhile(fn) { return attempt(fn); }
}

// ---- what engine.cpp calls ----
let Klass, env, partyName;
const instances = new WeakMap(); // token -> {room, obj}
const handled = (what, r) => {
  // an async handler: its rejection is logged as a thrown exception is
  if (r && typeof r.then === 'function') return Promise.resolve(r).catch((e) => { logError(what, e); throw e; });
  return r;
};
const call = (tok, name, what, args) => {
  const it = instances.get(tok);
  const f = it && it.obj[name];
  if (typeof f !== 'function') return undefined;
  try {
    return handled(what, f.apply(it.obj, args));
  } catch (e) {
    logError(what, e);
    return Promise.reject(e);
  }
};
const quiet = (p) => { if (p && typeof p.catch === 'function') p.catch(() => {}); return p; };
const requestOf = (method, url, headers, body) => new Request(url, { method, headers, body: method === 'GET' || method === 'HEAD' ? null : body });
return {
  sourceMap(path, json, cwd) { mapPath = path; mapJson = json; mapCwd = cwd; },
  mapStack,
  // Returns options.hibernate: the class's (static, or a getter), else — in the start check only (probing) — an
  // instance field's, read from an instance made with a room whose every function throws (no room exists yet).
  init(klass, envJson, name, probing) {
    Klass = klass;
    env = JSON.parse(envJson);
    partyName = name;
    G.process = { env: Object.freeze({ ...env }) };
    let o = klass.options ?? (klass.prototype && klass.prototype.options);
    if (o === undefined && probing) {
      try { o = new Klass(new Room({}, '', name, env)).options; } catch { o = undefined; }
    }
    return !!(o && o.hibernate);
  },
  start(tok, id) {
    const room = new Room(tok, id, partyName, env);
    let obj;
    try { obj = new Klass(room); } catch (e) { logError('constructor', e); return Promise.reject(e); }
    instances.set(tok, { room, obj });
    return quiet(call(tok, 'onStart', 'onStart', []));
  },
  connect(tok, id, method, url, headers) {
    const it = instances.get(tok);
    const conn = it.room._conn(id, url);
    const ctx = { request: requestOf(method, url, headers, null) };
    // tags are set before onConnect runs (still inside partyd's on_connect, where they may be set), as on PartyKit
    const tagged = typeof it.obj.getConnectionTags === 'function'
      ? Promise.resolve(call(tok, 'getConnectionTags', 'getConnectionTags', [conn, ctx])).then((tags) => {
        if (tags !== undefined && tags !== null) N.setTags(tok, id, Array.from(tags, String));
      })
      : Promise.resolve();
    return quiet(tagged.then(() => call(tok, 'onConnect', 'onConnect', [conn, ctx]), (e) => {
      logError('getConnectionTags', e);
      return call(tok, 'onConnect', 'onConnect', [conn, ctx]);
    }));
  },
  message(tok, id, data) {
    const it = instances.get(tok);
    quiet(call(tok, 'onMessage', 'onMessage', [data, it.room._conn(id)]));
  },
  close(tok, id, state) {
    const it = instances.get(tok);
    const conn = it.room._conn(id);
    it.room._conns.delete(id);
    if (conn._state === undefined) conn._state = state === null ? null : JSON.parse(state);
    quiet(call(tok, 'onClose', 'onClose', [conn]));
  },
  error(tok, id, msg) {
    const it = instances.get(tok);
    quiet(call(tok, 'onError', 'onError', [it.room._conn(id), new Error(msg)]));
  },
  request(tok, rid, method, url, headers, body) {
    const it = instances.get(tok);
    const answer = (res) => {
      if (!(res instanceof Response)) {
        logError('onRequest', new TypeError(`onRequest returned ${res === undefined ? 'nothing' : typeof res}, not a Response`));
        return N.respond(tok, rid, 500, [], 'onRequest did not return a Response');
      }
      const hs = [];
      res.headers.forEach((v, k) => hs.push(k, v));
      N.respond(tok, rid, res.status, hs, res._body);
    };
    if (typeof it.obj.onRequest !== 'function') return N.respond(tok, rid, 404, [], 'this party has no onRequest');
    Promise.resolve(call(tok, 'onRequest', 'onRequest', [requestOf(method, url, headers, body)]))
      .then(answer, () => N.respond(tok, rid, 500, [], 'the room failed to answer'))
      .catch((e) => { logError('onRequest', e); N.respond(tok, rid, 500, [], 'the room failed to answer'); });
  },
  alarm(tok) { return quiet(call(tok, 'onAlarm', 'onAlarm', [])); },
  stop(tok) { instances.delete(tok); },
};
}))PRELUDE";
