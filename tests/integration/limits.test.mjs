// limits.test.mjs — partyd's limits as a client sees them: message size (1009), UTF-8 (1007), framing (1002),
// HTTP body (413) and header (431) caps, slow consumers (1008), the per-room connection cap (503 + Retry-After) and
// the ping timeout of a client that stopped answering.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startNode, Client, waitFor, kill } from './lib.mjs';

const TEST_TIMEOUT = 30000; // a test that hangs fails (and its after-hook kills what it started)

// Everything a test opened, so that a failing test cannot leave the file hanging on a live socket or process.
const opened = new Set();
function cleanup(t) {
  t.after(() => {
    for (const o of opened) {
      // keep each node's output next to its data directory, for looking into a failure
      if (o.proc) { try { fs.writeFileSync(path.join(o.dir, 'partyd.log'), `${o.stdout}\n${o.stderr}`); } catch {} }
      if (o instanceof Raw) o.destroy();
      else if (o instanceof Client) o.ws.terminate();
      else if (o.exitCode === undefined && !o.exitSignal) kill(o.proc);
    }
    opened.clear();
  });
}
async function node_(t, opts) {
  cleanup(t);
  const n = await startNode(opts);
  opened.add(n);
  return n;
}
function client(url, opts) {
  const c = new Client(url, opts);
  opened.add(c);
  return c;
}
async function openClient(url, opts) {
  const c = client(url, opts);
  await c.opened;
  return c;
}

// ---- a hand-made WebSocket client, for what `ws` will not send ------------------------------------------------------

// A raw TCP connection that records every byte the server sends and whether the server closed it.
class Raw {
  constructor(port) {
    this.buf = Buffer.alloc(0);
    this.ended = false;
    this.sock = net.connect(port, '127.0.0.1');
    this.answerClose = true; // like a real client: echo the server's close frame (the closing handshake)
    this.closeSent = false;
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      if (this.answerClose && !this.closeSent && this.upgraded) {
        const c = this.closeFrame();
        if (c) {
          this.closeSent = true;
          const payload = Buffer.alloc(2);
          payload.writeUInt16BE(c.code ?? 1000);
          this.sock.end(frame(0x8, payload)); // and, like `ws`, half-close: nothing more to say
        }
      }
    });
    opened.add(this);
    this.sock.on('error', (e) => { this.error = e; });
    this.sock.on('close', () => { this.ended = true; });
    this.connected = new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
  }
  static async open(port) {
    const r = new Raw(port);
    await r.connected;
    return r;
  }
  write(b) { this.sock.write(b); }
  // The HTTP response head (status, lower-cased headers) once it has fully arrived; its bytes are consumed.
  async response({ timeout = 5000 } = {}) {
    const end = await waitFor(() => {
      const i = this.buf.indexOf('\r\n\r\n');
      return i >= 0 ? i + 4 : (this.ended ? -1 : 0);
    }, { timeout, what: 'an HTTP response head' });
    if (end < 0) throw new Error(`connection closed before a response: ${JSON.stringify(this.buf.toString())}`);
    const head = this.buf.subarray(0, end).toString('latin1');
    this.buf = this.buf.subarray(end);
    const lines = head.split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    return { status, headers, head };
  }
  // Server frames parsed from what arrived so far (server frames are never masked).
  frames() {
    const out = [];
    let b = this.buf;
    for (;;) {
      if (b.length < 2) break;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let off = 2;
      if (b[1] & 0x80) throw new Error('the server sent a masked frame');
      if (len === 126) { if (b.length < 4) break; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) break; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (b.length < off + len) break;
      out.push({ fin, opcode, payload: b.subarray(off, off + len) });
      b = b.subarray(off + len);
    }
    return out;
  }
  closeFrame() {
    const f = this.frames().find((x) => x.opcode === 0x8);
    if (!f) return undefined;
    return { code: f.payload.length >= 2 ? f.payload.readUInt16BE(0) : undefined, reason: f.payload.subarray(2).toString() };
  }
  async waitClosed({ timeout = 5000 } = {}) {
    await waitFor(() => this.ended, { timeout, what: 'the server to close the TCP connection' });
  }
  destroy() { this.sock.destroy(); }
}

function upgradeRequest(path, host, extra = '') {
  const key = crypto.randomBytes(16).toString('base64');
  return {
    key,
    text: `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
  };
}

// Opens a WebSocket by hand; resolves once the 101 has been read and checked.
async function rawWs(node, path) {
  const r = await Raw.open(node.port);
  const { key, text } = upgradeRequest(path, node.host);
  r.write(text);
  const res = await r.response();
  assert.equal(res.status, 101, `upgrade refused: ${res.head}`);
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  assert.equal(res.headers['sec-websocket-accept'], accept);
  r.upgraded = true;
  return r;
}

// One client frame. `mask` false sends it unmasked (a protocol error from a client).
function frame(opcode, payload, { fin = true, mask = true } = {}) {
  payload = Buffer.from(payload);
  const len = payload.length;
  const head = [(fin ? 0x80 : 0) | opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else throw new Error('test frames stay under 64 KiB');
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ key[i & 3];
  return Buffer.concat([Buffer.from(head), key, body]);
}

// A raw HTTP/1.1 request over its own connection; returns the parsed response head.
async function rawHttp(node, text) {
  const r = await Raw.open(node.port);
  r.write(text);
  const res = await r.response();
  r.destroy();
  return res;
}

// The HTTP response that refused a Client's upgrade. (Client.refusal() in lib.mjs waits for a 'close' that `ws` never
// emits once an 'unexpected-response' listener is installed, so this waits for the response and then aborts.)
async function refused(c) {
  const res = await waitFor(() => c.unexpected, { what: 'the refusal response' });
  c.ws.terminate();
  return res;
}

// ---- message size ---------------------------------------------------------------------------------------------------

test('a message over limits.message_bytes closes its sender with 1009; the room goes on; one at the limit passes', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { config: { limits: { message_bytes: 4096 } } });
  const a = await openClient(node.wsUrl('/parties/relay/big?_pk=a'));
  const b = await openClient(node.wsUrl('/parties/relay/big?_pk=b'));
  const c = await openClient(node.wsUrl('/parties/relay/big?_pk=c'));

  const atLimit = 'x'.repeat(4096);
  a.send(atLimit);
  const m1 = await b.waitMessage((m) => m.text?.length === 4096, { what: 'the 4096-byte message at b' });
  assert.equal(m1.text, atLimit);
  const binAtLimit = crypto.randomBytes(4096);
  a.send(binAtLimit);
  const m2 = await b.waitMessage((m) => m.binary, { what: 'the 4096-byte binary message at b' });
  assert.deepEqual(m2.data, binAtLimit);

  a.send('y'.repeat(4097));
  const { code } = await a.closed;
  assert.equal(code, 1009, 'the sender of an oversized message is closed with 1009');

  // The others are still connected and talk to each other; the oversized message went nowhere.
  c.send('after');
  await b.waitMessage((m) => m.text === 'after', { what: 'a message from c after the 1009' });
  b.send('back');
  await c.waitMessage((m) => m.text === 'back', { what: 'a message from b after the 1009' });
  assert.ok(!b.messages.some((m) => (m.text ?? m.data).length === 4097), 'the oversized message was not forwarded');
  assert.ok(!c.messages.some((m) => (m.text ?? m.data).length === 4097), 'the oversized message was not forwarded');
  assert.equal(b.ws.readyState, b.ws.OPEN);
  assert.equal(c.ws.readyState, c.ws.OPEN);
  await waitFor(async () => (await node.room('relay', 'big')).connections === 2, { what: 'the room to count 2 connections' });

  b.close(); c.close();
  const { code: exit } = await node.stop();
  assert.equal(exit, 0);
});

test('a fragmented message is reassembled under the cap and closed with 1009 once its total passes it', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { config: { limits: { message_bytes: 4096 } } });
  const a = await openClient(node.wsUrl('/parties/relay/frag?_pk=a'));
  const b = await openClient(node.wsUrl('/parties/relay/frag?_pk=b'));

  // 2 × 2000 bytes = 4000: under the cap, it arrives as one message.
  const p1 = crypto.randomBytes(2000);
  const p2 = crypto.randomBytes(2000);
  a.ws.send(p1, { binary: true, fin: false });
  a.ws.send(p2, { binary: true, fin: true });
  const m = await b.waitMessage((x) => x.binary, { what: 'the reassembled message' });
  assert.deepEqual(m.data, Buffer.concat([p1, p2]));

  // A text message whose two-byte character is split between fragments is still valid UTF-8.
  const e = Buffer.from('héllo', 'utf8'); // h c3 a9 l l o
  a.ws.send(e.subarray(0, 2), { binary: false, fin: false });
  a.ws.send(e.subarray(2), { binary: false, fin: true });
  await b.waitMessage((x) => x.text === 'héllo', { what: 'the split-UTF-8 text message' });

  // 3 × 2000 = 6000 bytes: each fragment is small, the total is over the cap.
  a.ws.send(crypto.randomBytes(2000), { binary: true, fin: false });
  a.ws.send(crypto.randomBytes(2000), { binary: true, fin: false });
  a.ws.send(crypto.randomBytes(2000), { binary: true, fin: true });
  const { code } = await a.closed;
  assert.equal(code, 1009);

  assert.equal(b.messages.filter((x) => x.binary).length, 1, 'no part of the oversized message was forwarded');
  const c = await openClient(node.wsUrl('/parties/relay/frag?_pk=c'));
  c.send('still here');
  await b.waitMessage((x) => x.text === 'still here', { what: 'b to keep receiving after the 1009' });

  b.close(); c.close();
  const { code: exit } = await node.stop();
  assert.equal(exit, 0);
});

// ---- framing and UTF-8 ----------------------------------------------------------------------------------------------

test('invalid UTF-8 in a text frame closes the sender with 1007; the same bytes in a binary frame pass', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t);
  const b = await openClient(node.wsUrl('/parties/relay/utf?_pk=b'));

  const bin = await rawWs(node, '/parties/relay/utf?_pk=rawbin');
  await waitFor(async () => (await node.room('relay', 'utf')).connections === 2, { what: 'the raw client to join' });
  bin.write(frame(0x2, [0xff, 0xfe]));
  const m = await b.waitMessage((x) => x.binary, { what: 'the binary 0xff 0xfe message' });
  assert.deepEqual(m.data, Buffer.from([0xff, 0xfe]));
  // and a valid text frame from a raw client passes too
  bin.write(frame(0x1, Buffer.from('ok ✓')));
  await b.waitMessage((x) => x.text === 'ok ✓', { what: 'the raw text message' });
  assert.equal(bin.closeFrame(), undefined, 'the binary sender was not closed');

  const bad = await rawWs(node, '/parties/relay/utf?_pk=rawtext');
  await waitFor(async () => (await node.room('relay', 'utf')).connections === 3, { what: 'the second raw client' });
  bad.write(frame(0x1, [0xff, 0xfe]));
  const close = await waitFor(() => bad.closeFrame(), { what: 'a close frame for the invalid text' });
  assert.equal(close.code, 1007);
  await bad.waitClosed();
  assert.ok(!b.messages.some((x) => !x.binary && x.text.includes('\ufffd')), 'the invalid text was not forwarded');

  // A text message whose last fragment ends in the middle of a character is invalid as a whole.
  const trunc = await rawWs(node, '/parties/relay/utf?_pk=rawtrunc');
  trunc.write(frame(0x1, Buffer.from([0x61, 0xc3]), { fin: false }));
  trunc.write(frame(0x0, Buffer.from([0x62]), { fin: true }));
  const close2 = await waitFor(() => trunc.closeFrame(), { what: 'a close frame for the truncated character' });
  assert.equal(close2.code, 1007);
  await trunc.waitClosed();

  // b and the binary sender are untouched.
  bin.write(frame(0x1, Buffer.from('still')));
  await b.waitMessage((x) => x.text === 'still', { what: 'the binary sender to keep working' });
  assert.equal(b.ws.readyState, b.ws.OPEN);

  bin.destroy(); b.close();
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('an unmasked client frame closes the connection with 1002', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t);
  const b = await openClient(node.wsUrl('/parties/relay/mask?_pk=b'));
  const r = await rawWs(node, '/parties/relay/mask?_pk=raw');
  r.write(frame(0x1, Buffer.from('unmasked'), { mask: false }));
  const close = await waitFor(() => r.closeFrame(), { what: 'a close frame for the unmasked frame' });
  assert.equal(close.code, 1002);
  await r.waitClosed();
  assert.ok(!b.messages.some((x) => x.text === 'unmasked'), 'the unmasked frame was not forwarded');
  await waitFor(async () => (await node.room('relay', 'mask')).connections === 1, { what: 'the room to drop the raw client' });
  b.close();
  const { code } = await node.stop();
  assert.equal(code, 0);
});

// ---- HTTP limits ----------------------------------------------------------------------------------------------------

test('an HTTP body over limits.body_bytes gets 413; one at the limit is served', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { config: { limits: { body_bytes: 4096 } } });
  const post = (body, headers = {}) => node.fetch('/parties/relay/body', { method: 'POST', body, headers });

  const ok = await post('a'.repeat(4096));
  assert.equal(ok.status, 200, 'a body of exactly limits.body_bytes is accepted');
  assert.deepEqual(await ok.json(), { delivered: 0 });

  // One byte over, sent whole by hand (so that nothing but the status is being tested here; see the next test).
  const big = await rawHttp(node,
    `POST /parties/relay/body HTTP/1.1\r\nHost: ${node.host}\r\nContent-Length: 4097\r\nConnection: close\r\n\r\n${'a'.repeat(4097)}`);
  assert.equal(big.status, 413);

  // A Content-Length over the cap is refused from the header alone, without waiting for the body.
  const early = await rawHttp(node,
    `POST /parties/relay/body HTTP/1.1\r\nHost: ${node.host}\r\nContent-Length: 1048576\r\n\r\n${'a'.repeat(100)}`);
  assert.equal(early.status, 413);

  // A chunked body (no Content-Length) that grows past the cap.
  const chunk = 'b'.repeat(3000);
  const res = await rawHttp(node,
    `POST /parties/relay/body HTTP/1.1\r\nHost: ${node.host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
    `${chunk.length.toString(16)}\r\n${chunk}\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`);
  assert.equal(res.status, 413, 'a chunked body over the cap gets 413');

  // The chat party sees a body at the limit too.
  const content = 'c'.repeat(4000);
  const chat = await node.fetch('/parties/main/body', { method: 'POST', body: JSON.stringify({ content }) });
  assert.equal(chat.status, 201);
  const hist = await node.json('/parties/main/body');
  assert.equal(hist.body.messages.at(-1).content, content);

  const { code } = await node.stop();
  assert.equal(code, 0);
});

// A client that sends its whole (oversized) body, as fetch does, must be able to read the 413: the server must not
// reset the connection under it by closing with the unread body still in its receive buffer (RFC 9112 §9.6).
test('a client uploading a body far over limits.body_bytes receives the 413, not a connection reset', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { config: { limits: { body_bytes: 4096 } } });
  const outcomes = [];
  const body = Buffer.alloc(16 << 20, 0x61); // more than the socket buffers on both sides hold
  for (let i = 0; i < 20; i++) {
    try {
      const r = await node.fetch('/parties/relay/body', { method: 'POST', body });
      await r.arrayBuffer().catch(() => {});
      outcomes.push(r.status);
    } catch (e) {
      outcomes.push(e.cause?.code ?? e.message);
    }
  }
  assert.deepEqual(outcomes, Array(20).fill(413), `20 uploads of 16 MiB: ${outcomes.join(', ')}`);
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('too many request headers or too many header bytes get 431', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { config: { limits: { header_count: 20, header_bytes: 2048 } } });
  const req = (headers) => rawHttp(node,
    `GET /parties/relay/hdr HTTP/1.1\r\nHost: ${node.host}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}Connection: close\r\n\r\n`);
  const many = (n) => Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v']);

  const fine = await req(many(5));
  assert.equal(fine.status, 200, 'a request well under both caps is served');

  const tooMany = await req(many(40));
  assert.equal(tooMany.status, 431, 'more headers than limits.header_count');

  const tooBig = await req([['x-big', 'z'.repeat(4000)]]);
  assert.equal(tooBig.status, 431, 'more header bytes than limits.header_bytes');

  const spread = await req(Array.from({ length: 10 }, (_, i) => [`x-s${i}`, 'q'.repeat(300)]));
  assert.equal(spread.status, 431, 'header bytes summed over several headers');

  // The same caps apply to a WebSocket upgrade: refused with 431, never a 101.
  const headers = Object.fromEntries(many(40));
  const c = client(node.wsUrl('/parties/relay/hdr?_pk=h'), { headers });
  const refusal = await refused(c);
  assert.equal(refusal.status, 431);
  const c2 = client(node.wsUrl('/parties/relay/hdr?_pk=h2'), { headers: { 'x-big': 'z'.repeat(4000) } });
  assert.equal((await refused(c2)).status, 431);

  // The node still serves ordinary requests.
  assert.equal((await req(many(3))).status, 200);
  const ok = await openClient(node.wsUrl('/parties/relay/hdr?_pk=ok'));
  ok.close();

  const { code } = await node.stop();
  assert.equal(code, 0);
});

// ---- slow consumers -------------------------------------------------------------------------------------------------

for (const [how, env] of [['io_uring', {}], ['writev', { PARTYD_IO_URING: '0' }]]) test(`a client that stops reading is closed with 1008 once its output passes limits.output_bytes; others get everything — ${how}`, { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { env, config: { limits: { message_bytes: 4096, output_bytes: 65536 } } });
  const slow = await openClient(node.wsUrl('/parties/relay/slow?_pk=slow'));
  const sender = await openClient(node.wsUrl('/parties/relay/slow?_pk=sender'));
  const watcher = await openClient(node.wsUrl('/parties/relay/slow?_pk=watcher'));
  // two more readers: with 4 recipients per message the router's batched (io_uring) path writes them
  const more = [await openClient(node.wsUrl('/parties/relay/slow?_pk=w2')), await openClient(node.wsUrl('/parties/relay/slow?_pk=w3'))];
  slow.ws._socket.pause();

  // Flood in small batches (each well under output_bytes, so the reading watcher is never a slow consumer itself)
  // until the room has dropped the paused reader: the kernel's socket buffers absorb the first megabytes.
  const payload = (i) => `${String(i).padStart(8, '0')}:${'m'.repeat(3900)}`;
  let sent = 0;
  const maxMessages = 10000; // ~40 MB: far beyond any socket buffer
  let dropped = false;
  while (!dropped && sent < maxMessages) {
    for (let k = 0; k < 8; k++) sender.send(payload(sent++));
    await waitFor(() => watcher.messages.length >= sent && more.every((m) => m.messages.length >= sent), { timeout: 10000, what: `the watchers to get message ${sent - 1}` });
    if (sent % 80 === 0) dropped = !(await node.room('relay', 'slow')).ids.includes('slow');
  }
  assert.ok(dropped, `the paused reader was never dropped after ${sent} messages`);
  assert.equal(sender.ws.readyState, sender.ws.OPEN, 'the sender is not closed');
  assert.equal(watcher.ws.readyState, watcher.ws.OPEN, 'the watcher is not closed');

  // The watcher received every message, in order.
  await waitFor(() => watcher.messages.length >= sent, { timeout: 15000, what: `the watcher to get all ${sent} messages` });
  assert.equal(watcher.messages.length, sent);
  for (let i = 0; i < sent; i++) {
    if (watcher.messages[i].text !== payload(i)) assert.fail(`watcher message ${i} is wrong`);
  }

  slow.ws._socket.resume();
  const { code } = await slow.closed;
  assert.equal(code, 1008, 'the slow reader sees close code 1008');
  assert.ok(slow.messages.length < sent, 'the slow reader did not get everything');

  // The room goes on.
  sender.send('after');
  await watcher.waitMessage((m) => m.text === 'after', { what: 'a message after the 1008' });

  await waitFor(() => more.every((m) => m.messages.length >= sent + 1), { what: 'the other readers to get "after"' });
  for (const m of more) assert.equal(m.messages.length, sent + 1, 'every other reader got everything, once');
  sender.close(); watcher.close();
  for (const m of more) m.close();
  const { code: exit } = await node.stop();
  assert.equal(exit, 0);
});

// ---- many connections read at once ----------------------------------------------------------------------------------

// With the router stopped (SIGSTOP), nine connections send; on SIGCONT its first pass finds them all readable and reads
// them together (one io_uring submission of 4 KiB per connection, or one read each with PARTYD_IO_URING=0).
for (const [how, env] of [['io_uring', {}], ['writev', { PARTYD_IO_URING: '0' }]]) test(`bytes arriving on many connections at once are read whole: large, fragmented, several per write; an unmasked frame or a hang-up ends only its own connection — ${how}`, { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { env });
  const rx = await openClient(node.wsUrl('/parties/relay/many?_pk=rx'));
  const s = [];
  for (let i = 0; i < 7; i++) s.push(await rawWs(node, `/parties/relay/many?_pk=s${i}`));
  const bad = await rawWs(node, '/parties/relay/many?_pk=bad');
  const gone = await rawWs(node, '/parties/relay/many?_pk=gone');
  for (const r of [...s, bad, gone]) opened.add(r);
  await waitFor(async () => (await node.room('relay', 'many')).ids.length === 10, { what: 'all ten in the room' });

  const big = crypto.randomBytes(20000); // five times one batched read's 4 KiB
  const mid = crypto.randomBytes(3000);
  const router = node.routerPid();
  process.kill(router, 'SIGSTOP');
  try {
    s[0].write(frame(0x1, 'small'));
    s[1].write(frame(0x2, big));
    s[2].write(Buffer.concat([frame(0x1, 'frag', { fin: false }), frame(0x0, 'ment')]));
    s[3].write(Buffer.concat([frame(0x9, 'are you there'), frame(0x1, 'after a ping')]));
    s[4].write(Buffer.concat([frame(0x1, 'one'), frame(0x1, 'two'), frame(0x1, 'three')]));
    s[5].write(Buffer.concat([frame(0x2, mid), frame(0x1, 'after 3000 bytes')]));
    s[6].write(frame(0x1, 'x'.repeat(4090))); // 4096 bytes with its header: exactly one batched read
    bad.write(frame(0x1, 'unmasked', { mask: false }));
    gone.sock.end(frame(0x1, 'sent, then gone'));
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    process.kill(router, 'SIGCONT');
  }

  const want = ['small', 'fragment', 'after a ping', 'one', 'two', 'three', 'after 3000 bytes', 'x'.repeat(4090), 'sent, then gone'];
  await waitFor(() => rx.messages.length >= want.length + 2, { what: `rx to get all ${want.length + 2} messages` });
  const texts = rx.messages.filter((m) => !m.binary).map((m) => m.text);
  assert.deepEqual([...texts].sort(), [...want].sort(), 'every text message, once');
  assert.deepEqual(texts.filter((x) => ['one', 'two', 'three'].includes(x)), ['one', 'two', 'three'], 'in order per sender');
  const bins = rx.messages.filter((m) => m.binary).map((m) => m.data);
  assert.equal(bins.length, 2);
  assert.ok(bins.some((b) => b.equals(big)), 'the 20000-byte message arrived whole');
  assert.ok(bins.some((b) => b.equals(mid)), 'the 3000-byte message arrived whole');
  await waitFor(() => s[3].frames().some((f) => f.opcode === 0xa && f.payload.toString() === 'are you there'), { what: 'the pong' });
  await waitFor(() => bad.closeFrame(), { what: "bad's close frame" });
  assert.equal(bad.closeFrame().code, 1002);
  await gone.waitClosed();
  // the others are still open and in the room
  await waitFor(async () => (await node.room('relay', 'many')).ids.length === 8, { what: 'bad and gone to leave the room' });
  s[0].write(frame(0x1, 'still here'));
  await rx.waitMessage((m) => m.text === 'still here', { what: 'a message after the batch' });
  rx.close();
  const { code: exit } = await node.stop();
  assert.equal(exit, 0);
});

// ---- connections per room -------------------------------------------------------------------------------------------

test('an upgrade beyond limits.connections_per_room gets 503 with Retry-After', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { config: { limits: { connections_per_room: 3 } } });
  const cs = [];
  for (const id of ['a', 'b', 'c']) cs.push(await openClient(node.wsUrl(`/parties/relay/full?_pk=${id}`)));

  const extra = client(node.wsUrl('/parties/relay/full?_pk=d'));
  let opened = false;
  extra.ws.on('open', () => { opened = true; });
  const refusal = await refused(extra);
  assert.equal(refusal.status, 503);
  assert.ok(refusal.headers['retry-after'], 'a Retry-After header');
  assert.match(refusal.headers['retry-after'], /^\d+$/);
  assert.equal(opened, false, 'no 101 before the 503');

  // Also by hand: the first thing on the wire is the 503.
  const r = await Raw.open(node.port);
  r.write(upgradeRequest('/parties/relay/full?_pk=e', node.host).text);
  const res = await r.response();
  assert.equal(res.status, 503);
  assert.ok(res.headers['retry-after']);
  r.destroy();

  // The room's members still talk, and another room is not affected.
  cs[0].send('hi');
  await cs[1].waitMessage((m) => m.text === 'hi');
  const other = await openClient(node.wsUrl('/parties/relay/other?_pk=d'));
  other.close();
  assert.equal((await node.room('relay', 'full')).connections, 3);

  // When a member leaves there is room again.
  await cs[2].close();
  const again = await waitFor(async () => {
    const c = client(node.wsUrl('/parties/relay/full?_pk=d'));
    await waitFor(() => c.ws.readyState !== c.ws.CONNECTING || c.unexpected, { what: 'the upgrade to be answered' });
    if (c.ws.readyState === c.ws.OPEN) return c;
    c.ws.terminate();
    return null;
  }, { what: 'a connection to be accepted once the room has space' });
  cs[0].send('hello d');
  await again.waitMessage((m) => m.text === 'hello d');

  cs[0].close(); cs[1].close(); again.close();
  const { code } = await node.stop();
  assert.equal(code, 0);
});

// ---- pings ----------------------------------------------------------------------------------------------------------

test('a client that does not answer pings is dropped; a ws client that does stays connected', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { config: { timers: { ping_ms: 200 } } });
  const live = await openClient(node.wsUrl('/parties/relay/ping?_pk=live'));
  let pings = 0;
  live.ws.on('ping', () => { pings++; });

  const t0 = Date.now();
  const dead = await rawWs(node, '/parties/relay/ping?_pk=dead');
  dead.answerClose = false; // silent: answers nothing at all
  await waitFor(async () => (await node.room('relay', 'ping')).connections === 2, { what: 'the raw client to join' });
  await dead.waitClosed({ timeout: 1500 }); // a few ping intervals (a ping after 200 ms idle, ~200 ms to answer)
  const took = Date.now() - t0;
  assert.ok(took >= 200, `dropped after ${took} ms: before a ping could even have been sent`);
  assert.ok(dead.frames().some((f) => f.opcode === 0x9), 'the server pinged the silent client before dropping it');
  await waitFor(async () => (await node.room('relay', 'ping')).connections === 1, { what: 'the room to forget the dead client' });

  // The answering client stays through at least 5 ping intervals (it has been pinged 6 times).
  await waitFor(() => pings >= 6, { timeout: 5000, what: 'six pings at the ws client' });
  assert.equal(live.ws.readyState, live.ws.OPEN);
  assert.equal(live.closeCode, undefined);
  const other = await openClient(node.wsUrl('/parties/relay/ping?_pk=other'));
  other.send('still alive');
  await live.waitMessage((m) => m.text === 'still alive');

  live.close(); other.close();
  const { code } = await node.stop();
  assert.equal(code, 0);
});
