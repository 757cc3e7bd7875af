// abuse-router.test.mjs — a client trying to exhaust the router (issue 16): connection floods past
// limits.connections and the per-IP caps, stalled readers past limits.output_total_bytes, a ping flood from a client
// that never reads, a chat history too big for one message, and a `_pk` that is not UTF-8. In each, the router's
// memory (VmRSS) and, where a flood is involved, the shards' (pids from /admin/shards) are measured and bounded, and
// the node keeps answering other rooms, /health and the admin port.
// Raw `net` sockets where a real client would be too polite, `ws` clients elsewhere. Nothing sleeps and hopes: every
// condition is polled with a deadline.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, test } from 'node:test';
import { Client, startNode, waitFor } from './lib.mjs';

const T = { timeout: 120000 };
const nodes = [];
after(async () => {
  for (const n of nodes) await n.stop().catch(() => {});
});

async function start(opts) {
  const node = await startNode(opts);
  nodes.push(node);
  return node;
}

// A process's resident memory in bytes.
function rss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

// Every shard's resident memory in bytes, by pid (pids from /admin/shards).
async function shardsRss(node) {
  const out = {};
  for (const s of await node.shards()) out[s.pid] = rss(s.pid);
  return out;
}

// Asserts that no shard grew by `bound` bytes since `before` (nor was restarted: its pid would be new); returns the
// largest growth.
async function assertShardsBounded(node, before, bound, what) {
  const now = await shardsRss(node);
  assert.deepEqual(Object.keys(now).sort(), Object.keys(before).sort(), `a shard restarted during ${what}`);
  let most = 0;
  for (const [pid, bytes] of Object.entries(now)) {
    most = Math.max(most, bytes - before[pid]);
    assert.ok(bytes - before[pid] < bound, `shard ${pid} grew by ${(bytes - before[pid]) >> 20} MiB during ${what}`);
  }
  return most;
}

// The node still serves: /health, the admin port and a room that has nothing to do with the abuse.
async function stillServes(node, what) {
  const h = await node.fetch('/health');
  assert.equal(h.status, 200, `/health during ${what}`);
  await h.arrayBuffer();
  const a = await node.admin('/health');
  assert.equal(a.status, 200, `the admin port during ${what}`);
  const r = await node.fetch('/parties/counter/bystander', { method: 'POST' });
  assert.equal(r.status, 200, `another room during ${what}`);
  await r.arrayBuffer();
}

// A WebSocket upgrade on a raw socket; resolves with the socket once the 101 came, or with the status it got.
function rawUpgrade(port, path, { keepReading = true } = {}) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let head = Buffer.alloc(0);
    s.on('error', (e) => resolve({ status: 0, error: e.code, socket: s }));
    s.on('close', () => resolve({ status: 0, error: 'closed', socket: s }));
    s.on('connect', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    const onData = (d) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      s.off('data', onData);
      if (!keepReading) s.pause();
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head.toString())?.[1] ?? 0), socket: s, rest: head.subarray(end + 4) });
    };
    s.on('data', onData);
    setTimeout(() => reject(new Error(`no answer to an upgrade of ${path}`)), 15000).unref();
  });
}

// A masked client frame.
function frame(op, payload = Buffer.alloc(0)) {
  const mask = Buffer.from([1, 2, 3, 4]);
  const len = payload.length;
  const hdr = len < 126 ? Buffer.from([0x80 | op, 0x80 | len]) : Buffer.from([0x80 | op, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]));
  return Buffer.concat([hdr, mask, body]);
}

test('chat: 100 messages of 4096 four-byte code points; new joiners still get state, GET answers 200', T, async () => {
  const node = await start({ shards: 1 });
  const room = '/parties/main/abuse-chat';
  const big = '\u{1F600}'.repeat(4093); // 16 KiB of UTF-8 each: 100 of them are 1.6 MB, past message_bytes (1 MiB)
  for (let i = 0; i < 100; ++i) {
    const r = await node.fetch(room, { method: 'POST', body: JSON.stringify({ content: `${i}:${big}` }) });
    assert.equal(r.status, 201, `POST ${i}`);
    await r.arrayBuffer();
  }
  const g = await node.fetch(room);
  assert.equal(g.status, 200, 'GET of a room whose history is over message_bytes');
  const body = await g.json();
  assert.ok(body.messages.length > 10 && body.messages.length < 100, `GET shows ${body.messages.length} messages`);
  // the newest are kept, in order, oldest first
  const last = body.messages.at(-1).content;
  assert.ok(last.startsWith('99:'), 'the newest message is last');
  const c = await Client.open(node.wsUrl(`${room}?_pk=late-joiner`), { maxPayload: 64 << 20 });
  const state = await c.waitJson((m) => m.type === 'state', { what: 'state for a new joiner' });
  assert.deepEqual(state.messages.map((m) => m.content.split(':')[0]), body.messages.map((m) => m.content.split(':')[0]));
  assert.ok(JSON.stringify(state).length <= 1 << 20, 'state fits in limits.message_bytes');
  await c.close();
  // the shard holds the window (under 1 MiB of JSON), not every message it was sent
  const { pid: shardPid } = await node.shardPidOf('main', 'abuse-chat');
  assert.ok(rss(shardPid) < 256 << 20, `the shard holds ${rss(shardPid) >> 20} MiB`);
  await stillServes(node, 'a chat history over message_bytes');

  // after a restart of the room (evicted and read back from storage) the window is cut the same way
  const ev = await node.admin('/admin/rooms/main/abuse-chat/evict', { method: 'POST' });
  assert.ok(ev.status === 200 || ev.status === 404, `evict: ${ev.status}`);
  const g2 = await node.json(room);
  assert.equal(g2.status, 200);
  assert.ok(g2.body.messages.length > 10 && g2.body.messages.length < 100);
  assert.ok(g2.body.messages.at(-1).content.startsWith('99:'));
  await node.stop();
});

test('chat: a message whose broadcast is over message_bytes is refused before it is stored', T, async () => {
  // 4096 three-byte code points: 12,288 bytes of content. The client's message ({"type":"chat","content":...}) is
  // 12,316 bytes, within the limit; the broadcast adds the sender's id and a timestamp and is not.
  const node = await start({ shards: 1, config: { limits: { message_bytes: 12330, output_bytes: 1 << 20 } } });
  const room = '/parties/main/abuse-chat-small';
  const c = await Client.open(node.wsUrl(`${room}?_pk=${'s'.repeat(128)}`));
  await c.waitJson((m) => m.type === 'state');
  const content = '\u20ac'.repeat(4096);
  c.send(JSON.stringify({ type: 'chat', content }));
  const e = await c.waitJson((m) => m.type === 'error', { what: 'the refusal' });
  assert.match(e.error, /message_bytes/);
  const p = await node.fetch(room, { method: 'POST', body: JSON.stringify({ content }) });
  assert.equal(p.status, 413);
  await p.arrayBuffer();
  const g = await node.json(room);
  assert.equal(g.status, 200);
  assert.equal(g.body.messages.length, 0, 'nothing was kept');
  await c.close();
  await node.stop();
});

test('_pk=%ff is U+FFFD, as URLSearchParams decodes it', T, async () => {
  const node = await start({ shards: 1 });
  assert.equal(new URLSearchParams('_pk=%ff').get('_pk'), '\ufffd');
  const c = await Client.open(node.wsUrl('/parties/main/abuse-pk?_pk=%ff'));
  const w = await c.waitJson((m) => m.type === 'welcome');
  assert.equal(w.id, '\ufffd');
  await c.close();
  await node.stop();
});

// Resolves every raw upgrade of `paths` at once: {ok: sockets that got a 101, refused: [{status, error}]}.
async function upgradeMany(port, paths) {
  const rs = await Promise.all(paths.map((p) => rawUpgrade(port, p)));
  return { ok: rs.filter((r) => r.status === 101).map((r) => r.socket), refused: rs.filter((r) => r.status !== 101) };
}

// An HTTP GET on a fresh raw connection: its status, or 0 when the server closed without answering. Never hangs.
function rawGet(port, path) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => { got += d; });
    s.on('error', () => {});
    s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(got)?.[1] ?? 0), body: got }));
    setTimeout(() => { s.destroy(); reject(new Error(`a connection to ${path} hung`)); }, 15000).unref();
  });
}

test('a connection flood past limits.connections is refused at once; /health and the admin port answer; it recovers', T, async (t) => {
  const node = await start({ shards: 1, config: { limits: { connections: 20 } } });
  const pid = node.routerPid();
  const before = rss(pid);
  const shardsBefore = await shardsRss(node);
  const paths = Array.from({ length: 60 }, (_, i) => `/parties/relay/flood?_pk=f${i}`);
  const { ok, refused } = await upgradeMany(node.port, paths);
  assert.ok(ok.length <= 20, `${ok.length} connections past limits.connections (20)`);
  assert.ok(ok.length >= 15, `only ${ok.length} of 20 connections were taken`);
  for (const r of refused) assert.ok(r.status === 503 || r.status === 0, `a refused upgrade got ${r.status}`);
  assert.ok(refused.some((r) => r.status === 503), 'refused connections are told 503');
  // at the limit: new room requests are refused at once, never left hanging; /health and the admin port answer
  const more = await Promise.all(Array.from({ length: 80 }, () => rawGet(node.port, '/parties/counter/flood-http')));
  for (const r of more) assert.ok(r.status === 503 || r.status === 0, `a request past the limit got ${r.status}`);
  const h = await rawGet(node.port, '/health');
  assert.equal(h.status, 200, `/health at the limit: ${h.body}`);
  assert.equal((await node.admin('/health')).status, 200);
  assert.ok(rss(pid) - before < 32 << 20, 'the router stays small');
  const shardGrew = await assertShardsBounded(node, shardsBefore, 32 << 20, 'a connection flood');
  t.diagnostic(`figures: 60 upgrades and 80 requests past limits.connections: router +${((rss(pid) - before) / 1048576).toFixed(1)} MB, shards +${(shardGrew / 1048576).toFixed(1)} MB`);
  // the flood leaves: new connections are taken again
  for (const s of ok) s.destroy();
  await waitFor(async () => (await rawGet(node.port, '/parties/counter/flood-http')).status === 200,
    { what: 'connections accepted again after the flood', timeout: 20000 });
  await node.stop();
});

test('per-address caps: limits.connections_per_ip and limits.connects_per_ip_per_s', T, async () => {
  const node = await start({ shards: 1, config: { limits: { connections_per_ip: 10, connects_per_ip_per_s: 1000 } } });
  const { ok, refused } = await upgradeMany(node.port, Array.from({ length: 25 }, (_, i) => `/parties/relay/perip?_pk=p${i}`));
  assert.ok(ok.length <= 10 && ok.length >= 8, `${ok.length} connections from one address (cap 10)`);
  const seen = refused.filter((r) => r.status === 503).length;
  assert.ok(seen > 0, 'refusals are answered 503');
  assert.equal((await node.admin('/health')).status, 200);
  for (const s of ok) s.destroy();
  await node.stop();

  const rate = await start({ shards: 1, config: { limits: { connects_per_ip_per_s: 20 } } });
  const t0 = Date.now();
  const rs = await Promise.all(Array.from({ length: 100 }, () => rawGet(rate.port, '/parties/counter/rate')));
  const secs = Math.ceil((Date.now() - t0) / 1000) + 1;
  const taken = rs.filter((r) => r.status === 200).length;
  assert.ok(taken <= 20 * secs, `${taken} connections in ${secs} s (cap 20 a second)`);
  assert.ok(rs.some((r) => r.status === 503 && /new connections/.test(r.body)), 'the refusal says why');
  for (const r of rs) assert.ok(r.status === 200 || r.status === 503 || r.status === 0);
  assert.equal((await rate.admin('/health')).status, 200);
  await rate.stop();
});

// Reads again on a stalled raw WebSocket socket; the returned object counts its data frames and keeps its close code
// as they arrive (closed: the socket ended).
function drainFrames(sock, rest) {
  const st = { messages: 0, code: null, closed: false };
  let buf = rest ?? Buffer.alloc(0);
  const parse = () => {
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf.length < off + len) return;
      const op = buf[0] & 0x0f;
      if (op === 8) st.code = len >= 2 ? buf.readUInt16BE(off) : 1005;
      else if (op === 1 || op === 2) ++st.messages;
      buf = buf.subarray(off + len);
    }
  };
  parse();
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); parse(); });
  sock.on('close', () => { st.closed = true; });
  sock.on('end', () => sock.end());
  sock.resume();
  return st;
}

test('stalled readers past limits.output_total_bytes: the furthest behind is closed first with 1008, the rest go on', T, async (t) => {
  const TOTAL = 4 << 20;
  const node = await start({
    shards: 1,
    config: { limits: { message_bytes: 1 << 20, output_bytes: 64 << 20, output_total_bytes: TOTAL } },
  });
  const pid = node.routerPid();
  const before = rss(pid);
  const shardsBefore = await shardsRss(node);
  let peak = before;
  const room = '/parties/relay/stall';
  const fast = await Client.open(node.wsUrl(`${room}?_pk=fast`));
  const sender = await Client.open(node.wsUrl(`${room}?_pk=sender`));
  const msg = Buffer.alloc(128 << 10, 7);
  let sent = 0;
  const segment = async () => {
    for (let i = 0; i < 16; ++i) { sender.send(msg); ++sent; }
    await waitFor(() => { peak = Math.max(peak, rss(pid)); return fast.messages.length >= sent; },
      { what: `the fast reader to have ${sent} messages`, timeout: 30000 });
  };
  // three readers that stop reading, each joining 2 MiB after the one before: the first is furthest behind
  const stalled = [];
  for (let k = 0; k < 3; ++k) {
    const u = await rawUpgrade(node.port, `${room}?_pk=stalled${k}`, { keepReading: false });
    assert.equal(u.status, 101);
    stalled.push(u);
    await segment();
  }
  const connections = async () => (await node.json(room)).body.connections;
  for (let i = 0; i < 10 && (await connections()) === 5; ++i) await segment();
  assert.equal(await connections(), 4, 'exactly one stalled reader was closed');
  // the first (furthest behind) got 1008; the others, reading again, get every message sent since they joined
  const results = stalled.map((u) => drainFrames(u.socket, u.rest));
  await waitFor(() => results[0].closed, { what: 'the furthest behind to be closed', timeout: 20000 });
  assert.equal(results[0].code, 1008, `the furthest behind closed with ${results[0].code}`);
  const all = sent;
  for (const k of [1, 2]) {
    await waitFor(() => results[k].messages === all - 16 * k,
      { what: `stalled reader ${k} to read ${all - 16 * k} messages (has ${results[k].messages})`, timeout: 30000 });
    assert.equal(results[k].code, null, `stalled reader ${k} was closed too (${results[k].code})`);
  }
  assert.equal(fast.messages.length, all, 'the fast reader got everything');
  assert.equal(fast.closeCode, undefined);
  assert.ok(peak - before < TOTAL + (48 << 20), `the router grew by ${(peak - before) >> 20} MiB`);
  const shardGrew = await assertShardsBounded(node, shardsBefore, 64 << 20, 'stalled readers');
  t.diagnostic(`figures: 3 stalled readers, output_total_bytes 4 MiB: router peak +${((peak - before) / 1048576).toFixed(1)} MB, shard +${(shardGrew / 1048576).toFixed(1)} MB`);
  await stillServes(node, 'stalled readers');
  for (const u of stalled) u.socket.destroy();
  await node.stop();
});

test('a ping flood from a client that never reads: one pong is kept, the router stays small and gives memory back', T, async (t) => {
  const node = await start({ shards: 1 });
  const pid = node.routerPid();
  const before = rss(pid);
  const shardsBefore = await shardsRss(node);
  let peak = before;
  const room = '/parties/relay/pingflood';
  const u = await rawUpgrade(node.port, `${room}?_pk=pinger`, { keepReading: false });
  assert.equal(u.status, 101);
  // 16 MiB of empty masked pings (2.8 million), never reading a pong: one pong each took 264 bytes of the router
  const ping = frame(9);
  const chunk = Buffer.concat(Array.from({ length: (1 << 20) / ping.length | 0 }, () => ping));
  const sampler = setInterval(() => { peak = Math.max(peak, rss(pid)); }, 10);
  for (let i = 0; i < 16; ++i) {
    if (!u.socket.write(chunk)) await new Promise((r) => u.socket.once('drain', r));
  }
  // a ping with a payload last: the pong that is finally read answers it
  u.socket.write(frame(9, Buffer.from('last')));
  await stillServes(node, 'a ping flood');
  // the router has read it all once the connection's end is seen: the room loses its connection
  u.socket.end();
  await waitFor(async () => (await node.json(room)).body.connections === 0, { what: 'the router to read the whole flood', timeout: 60000 });
  clearInterval(sampler);
  peak = Math.max(peak, rss(pid));
  assert.ok(peak - before < 32 << 20, `the router grew by ${(peak - before) >> 20} MiB during a ping flood`);
  u.socket.destroy();
  await waitFor(() => rss(pid) - before < 16 << 20, { what: 'the router to give memory back' });
  const shardGrew = await assertShardsBounded(node, shardsBefore, 32 << 20, 'a ping flood');
  t.diagnostic(`figures: 16 MiB of pings never read: router peak +${((peak - before) / 1048576).toFixed(1)} MB, shard +${(shardGrew / 1048576).toFixed(1)} MB`);
  await stillServes(node, 'after a ping flood');
  await node.stop();
});

test('pongs answer the latest ping while the client reads slowly', T, async () => {
  const node = await start({ shards: 1 });
  const u = await rawUpgrade(node.port, '/parties/relay/pong-latest?_pk=p', { keepReading: false });
  const pings = [];
  for (let i = 0; i < 2000; ++i) pings.push(frame(9, Buffer.from(`p${i}`)));
  u.socket.write(Buffer.concat(pings));
  await stillServes(node, 'pings');
  // read: pongs arrive, fewer than the pings, the last one answering the last ping
  let buf = u.rest ?? Buffer.alloc(0);
  const pongs = [];
  u.socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + (buf[1] & 0x7f)) {
      const len = buf[1] & 0x7f;
      if ((buf[0] & 0x0f) === 10) pongs.push(buf.subarray(2, 2 + len).toString());
      buf = buf.subarray(2 + len);
    }
  });
  u.socket.resume();
  await waitFor(() => pongs.at(-1) === 'p1999', { what: 'the pong of the last ping' });
  assert.ok(pongs.length <= 2000);
  u.socket.destroy();
  await node.stop();
});
