// abuse-backlog.test.mjs — what a stalled shard or a big answer may make the router and the shards hold (issue 16,
// items 13, 14 and 16). Each test floods the node as a client would and measures the resident memory of the process
// that used to grow without bound (/proc/PID/status; pids from the kernel's view of the node's children and from
// /admin/shards), while asserting that the node keeps answering other rooms, /health and the admin port throughout.
//
// 13. a shard stopped with SIGSTOP: 1 MiB POSTs and WebSocket upgrades with 15 KB of headers to a room on it are
//     answered 503 (with Retry-After) past the router's cap, or 504 after timers.request_ms; the router stays bounded;
//     after SIGCONT the room serves again and the router's memory comes back down
// 14. GET-and-close floods of a room whose GET answers ~1 MB: the shard stays bounded, and a POST to another room of
//     the same shard is answered (within a generous deadline: no speed is asserted)
// 16. the admin key page of a room with 640 keys of 2,000 bytes: several pages under the frame cap, every key once
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { tmpDir, waitFor, WebSocket } from './lib.mjs';
import { cleanupAfterEach, start, stopClean } from './helpers.mjs';

cleanupAfterEach();
const T = { timeout: 240000 };

// A node whose resident memory means something under ASan too: its quarantine (256 MB by default) keeps what was
// freed, so it is made small here; the rest is lib.mjs's ASAN_OPTIONS. A shard stopped with SIGSTOP is, to the
// supervisor, a stalled one (its loop does not turn): /ready would say 503 after timers.stall_ms and the shard would be
// killed after timers.stall_kill_ms. These tests stop a shard to measure what the router queues for it, not to see
// it stall (stall.test.mjs does that), so the stall limits are lifted.
async function startMeasured(config) {
  config = { ...config, timers: { stall_ms: 3600000, stall_kill_ms: 0, ...config.timers } };
  const dir = tmpDir();
  const sanDir = path.join(dir, 'sanitizer');
  const ASAN_OPTIONS = `log_path=${sanDir}/asan:detect_leaks=1:abort_on_error=0:verify_asan_link_order=0:quarantine_size_mb=8`;
  return start({ shards: 2, dir, config, env: { ASAN_OPTIONS } });
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no VmRSS for ${pid}`);
  return Number(m[1]);
}

// Two rooms of `party` on different shards: [{room, shard, pid}, {room, shard, pid}].
async function roomsOnTwoShards(node, party) {
  const shards = await node.shards();
  const seen = new Map();
  for (let i = 0; seen.size < 2 && i < 200; ++i) {
    const room = `r${i}`;
    const info = await node.room(party, room);
    if (!seen.has(info.shard)) seen.set(info.shard, { room, shard: info.shard, pid: shards[info.shard].pid });
  }
  assert.equal(seen.size, 2, 'no two rooms on different shards');
  return [...seen.values()];
}

// One request on its own connection → {status, headers, body}; errors (a reset) → {status: 0}; no answer within
// `ms` (a request the router holds for ever) → {status: 'no answer'}, so that a test fails instead of hanging.
function request(port, { method = 'GET', path, headers = {}, body, ms = 90000 }) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { req.destroy(); resolve({ status: 'no answer' }); }, ms);
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() });
      });
      res.on('error', () => { clearTimeout(timer); resolve({ status: 0 }); });
    });
    req.on('error', () => { clearTimeout(timer); resolve({ status: 0 }); });
    req.end(body);
  });
}

// The node still serves: a room on a shard that runs, /health, and the admin port (one room of that shard, /ready).
async function stillServes(node, party, room) {
  const r = await node.fetch(`/parties/${party}/${room}`);
  assert.equal(r.status, 200, `a room on a running shard answered ${r.status}`);
  await r.arrayBuffer();
  const h = await node.fetch('/health');
  assert.equal(h.status, 200, `/health answered ${h.status}`);
  await h.arrayBuffer();
  const a = await node.admin(`/admin/rooms/${party}/${room}`);
  assert.equal(a.status, 200, `the admin port answered ${a.status} for a room on a running shard`);
  const ready = await node.admin('/ready');
  assert.equal(ready.status, 200, `/ready answered ${ready.status}`);
}

// Writes a request and closes at once, without reading the answer.
function sendAndClose(port, text) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.end(text, () => { s.destroy(); resolve(); }));
    s.on('error', () => resolve());
  });
}

// ---- 13: a stopped shard ---------------------------------------------------------------------------------------------

test('a stopped shard: POST and upgrade floods get 503 with Retry-After or 504, the router stays bounded, and all recovers', T, async (t) => {
  const node = await startMeasured({ timers: { request_ms: 3000 } });
  const [stopped, running] = await roomsOnTwoShards(node, 'main');
  const routerPid = node.routerPid();
  // warm the router up (TLS-free h2o buffers, a first request on each shard) before measuring
  assert.equal((await request(node.port, { method: 'POST', path: `/parties/main/${stopped.room}`, body: '{"content":"hi"}' })).status, 201);
  await stillServes(node, 'main', running.room);
  const before = rssKb(routerPid);
  let peak = before;
  // the shards too: the running one serves throughout, the stopped one gets what was queued for it once it runs
  const shardsBefore = { running: rssKb(running.pid), stopped: rssKb(stopped.pid) };
  let runningPeak = shardsBefore.running;
  const sample = () => {
    peak = Math.max(peak, rssKb(routerPid));
    runningPeak = Math.max(runningPeak, rssKb(running.pid));
  };

  process.kill(stopped.pid, 'SIGSTOP');
  try {
    // 1 MiB POSTs from 32 clients at once, 400 in all: the router queued every one before (19.6 GB in 15 s)
    const body = JSON.stringify({ content: 'x'.repeat(1000000) });
    const statuses = new Map();
    let retryAfter = 0;
    let sent = 0;
    const worker = async () => {
      while (sent < 400) {
        ++sent;
        const r = await request(node.port, { method: 'POST', path: `/parties/main/${stopped.room}`, body, ms: 30000,
                                             headers: { 'content-type': 'application/json' } });
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status === 'no answer') sent = Infinity; // held for ever: the assertions below say so
        if (r.status === 503 && r.headers['retry-after'] === '1') ++retryAfter;
        sample();
      }
    };
    const workers = Array.from({ length: 32 }, worker);
    // meanwhile the node answers everything that does not need the stopped shard
    let checks = 0;
    let flooding = true;
    const checker = (async () => {
      while (flooding) {
        await stillServes(node, 'main', running.room);
        ++checks;
        sample();
      }
    })();
    await Promise.all(workers);
    flooding = false;
    await checker;
    assert.ok(checks > 0);
    const seen = [...statuses.keys()].sort();
    assert.ok(statuses.get(503) > 0, `no 503 under the flood: ${JSON.stringify([...statuses])}`);
    assert.equal(retryAfter, statuses.get(503), 'a 503 without Retry-After: 1');
    for (const s of seen) assert.ok(s === 503 || s === 504, `status ${s} while the shard was stopped: ${JSON.stringify([...statuses])}`);

    // upgrade churn with 15 KB of headers: open, then leave at once
    const big = { 'x-padding': 'p'.repeat(15000) };
    const upgrade = `GET /parties/main/${stopped.room} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Padding: ${big['x-padding']}\r\n\r\n`;
    for (let round = 0; round < 20; ++round) {
      await Promise.all(Array.from({ length: 100 }, () => sendAndClose(node.port, upgrade)));
      sample();
    }
    // one that waits is refused 503 (the cap) or 504 (timers.request_ms), never left hanging
    const ws = new WebSocket(node.wsUrl(`/parties/main/${stopped.room}`), { headers: big });
    const refusal = await new Promise((resolve) => {
      setTimeout(() => resolve('no answer in 30 s'), 30000);
      ws.on('unexpected-response', (req, res) => resolve(res.statusCode));
      ws.on('open', () => resolve('open'));
      ws.on('error', () => {});
    });
    ws.terminate();
    assert.ok(refusal === 503 || refusal === 504, `an upgrade to the stopped shard's room got ${refusal}`);
    await stillServes(node, 'main', running.room);
    sample();
  } finally {
    process.kill(stopped.pid, 'SIGCONT');
  }
  const grewMb = (peak - before) / 1024;
  t.diagnostic(`figures: 400 POSTs of 1 MiB and 2,000 upgrades of 15 KB to a stopped shard: router peak +${grewMb.toFixed(1)} MB`);
  assert.ok(grewMb < 256, `the router grew by ${grewMb.toFixed(0)} MB under the floods`);

  // the room serves again, and what the router held for it is let go
  await waitFor(async () => (await request(node.port, { method: 'POST', path: `/parties/main/${stopped.room}`,
                                                         body: '{"content":"back"}' })).status === 201,
                { timeout: 60000, what: 'the stopped room to answer again' });
  await waitFor(() => rssKb(routerPid) - before < 64 * 1024, { timeout: 60000, what: 'the router\'s memory to come back down' });
  await stillServes(node, 'main', running.room);
  sample();
  const runningMb = (runningPeak - shardsBefore.running) / 1024;
  assert.ok(runningMb < 64, `the running shard grew by ${runningMb.toFixed(0)} MB`);
  const stoppedMb = (rssKb(stopped.pid) - shardsBefore.stopped) / 1024;
  assert.ok(stoppedMb < 256, `the stopped shard grew by ${stoppedMb.toFixed(0)} MB running what was queued for it`);
  t.diagnostic(`figures: the same: running shard peak +${runningMb.toFixed(1)} MB, stopped shard +${stoppedMb.toFixed(1)} MB after SIGCONT`);
  await stopClean(node);
});

// 13, last part: what a departed client queued is dropped. Clients POST 1 MiB to a counter room on a stopped shard and
// hang up; the router takes back every frame it had not yet written to the shard's socket, so after SIGCONT the room
// counts none of them but the one the socket's kernel buffer had already taken part of when the link filled (a frame
// written in part is the shard's: the rest must follow), and the router's memory comes back down.
test('a stopped shard: 1 MiB POSTs whose clients hung up are dropped from the link, not run after SIGCONT', T, async (t) => {
  const node = await startMeasured({ timers: { request_ms: 60000 } });
  const [stopped, running] = await roomsOnTwoShards(node, 'counter');
  const routerPid = node.routerPid();
  const count = async () => {
    const r = await request(node.port, { path: `/parties/counter/${stopped.room}`, ms: 30000 });
    assert.equal(r.status, 200);
    return JSON.parse(r.body).count;
  };
  const post = await request(node.port, { method: 'POST', path: `/parties/counter/${stopped.room}`, body: 'warm' });
  assert.equal(post.status, 200);
  assert.equal(await count(), 1);
  await stillServes(node, 'counter', running.room);
  const before = rssKb(routerPid);
  const shardBefore = rssKb(stopped.pid);
  const backlog = async () => (await node.shards())[stopped.shard].link_backlog_bytes;
  const dropped = async () => (await node.admin('/admin/node')).body.requests_dropped;
  const droppedBefore = await dropped();

  process.kill(stopped.pid, 'SIGSTOP');
  const clients = [];
  let peak = before;
  try {
    // 12 clients, each 1 MiB: under the link's cap (HTTP_SHARD_BACKLOG_MAX, 16 MiB), so every one is queued, none 503
    const body = 'x'.repeat(1 << 20);
    const head = `POST /parties/counter/${stopped.room} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${body.length}\r\n\r\n`;
    const answers = [];
    for (let i = 0; i < 12; ++i) {
      const s = net.connect(node.port, '127.0.0.1', () => s.write(head + body));
      s.on('data', (d) => answers.push(d.toString('latin1')));
      s.on('error', () => {});
      clients.push(s);
    }
    await waitFor(async () => (await backlog()) >= 10 << 20, { timeout: 60000, what: 'the router to queue the POSTs for the stopped shard' });
    peak = Math.max(peak, rssKb(routerPid));
    assert.deepEqual(answers, [], 'a POST was answered while its shard was stopped');
    // every client hangs up: the frames go from the link's queue, the router lets their memory go
    for (const s of clients) s.destroy();
    await waitFor(async () => (await backlog()) < 2 << 20, { timeout: 60000, what: 'the queued POSTs to be dropped' });
    assert.ok((await dropped()) - droppedBefore >= 10, `only ${(await dropped()) - droppedBefore} requests dropped`);
    // and their memory is let go while the shard is still stopped
    await waitFor(() => rssKb(routerPid) - before < 32 * 1024, { timeout: 60000, what: 'the router to let the dropped POSTs go' });
    t.diagnostic(`figures: the same, once dropped and the shard still stopped: router +${((rssKb(routerPid) - before) / 1024).toFixed(1)} MB`);
    await stillServes(node, 'counter', running.room);
  } finally {
    for (const s of clients) s.destroy();
    process.kill(stopped.pid, 'SIGCONT');
  }
  // the room serves again and ran at most the one POST the kernel had taken part of
  await waitFor(async () => (await request(node.port, { path: `/parties/counter/${stopped.room}`, ms: 5000 })).status === 200,
                { timeout: 60000, what: 'the stopped room to answer again' });
  const ran = (await count()) - 1;
  assert.ok(ran <= 1, `the shard ran ${ran} requests whose clients had gone`);
  assert.ok(rssKb(stopped.pid) - shardBefore < 64 * 1024, `the shard grew by ${(rssKb(stopped.pid) - shardBefore) >> 10} MB`);
  const grewMb = (peak - before) / 1024;
  t.diagnostic(`figures: 12 POSTs of 1 MiB to a stopped shard, clients gone: ${(await dropped()) - droppedBefore} dropped, ${ran} run after SIGCONT; router peak +${grewMb.toFixed(1)} MB`);
  assert.ok(grewMb < 64, `the router grew by ${grewMb.toFixed(0)} MB with 12 MiB queued`);
  await waitFor(() => rssKb(routerPid) - before < 32 * 1024, { timeout: 60000, what: 'the router\'s memory to come back down' });
  await stillServes(node, 'counter', running.room);
  await stopClean(node);
});

// ---- 14: big answers, asked for and left -------------------------------------------------------------------------------

test('GET-and-close floods of a ~1 MB answer: the shard stays bounded and another room of it is answered', T, async (t) => {
  const node = await startMeasured({ parties: { main: { kind: 'chat' }, kv: { kind: 'kv' } } });
  const [big, other] = await roomsOnTwoShards(node, 'kv');
  // a second room on the same shard as `big`
  let neighbour;
  for (let i = 0; !neighbour && i < 400; ++i) {
    const room = `n${i}`;
    if ((await node.room('kv', room)).shard === big.shard) neighbour = room;
  }
  assert.ok(neighbour, 'no second room on the big room\'s shard');
  const value = 'v'.repeat(120 * 1024);
  for (let i = 0; i < 8; ++i) {
    const r = await node.fetch(`/parties/kv/${big.room}?key=k${i}`, { method: 'PUT', body: value });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
  }
  const whole = await node.fetch(`/parties/kv/${big.room}`);
  assert.equal(whole.status, 200);
  assert.ok((await whole.arrayBuffer()).byteLength > 900 * 1024);
  await stillServes(node, 'kv', other.room);
  const before = rssKb(big.pid);
  let peak = before;

  const get = `GET /parties/kv/${big.room} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
  let flooding = true;
  const flood = (async () => {
    for (let round = 0; round < 15; ++round) {
      await Promise.all(Array.from({ length: 200 }, () => sendAndClose(node.port, get)));
      peak = Math.max(peak, rssKb(big.pid));
    }
  })();
  // a POST to another room of the same shard is answered while the flood is served
  let answered = 0;
  const neighbourly = (async () => {
    for (let i = 0; i < 3; ++i) {
      const r = await request(node.port, { method: 'POST', path: `/parties/kv/${neighbour}`, ms: 60000,
                                           body: JSON.stringify({ put: { [`p${i}`]: 'x' } }) });
      assert.equal(r.status, 200, `a POST to another room of the flooded shard: ${r.status}`);
      ++answered;
      peak = Math.max(peak, rssKb(big.pid));
    }
  })();
  const watcher = (async () => {
    while (flooding) {
      await stillServes(node, 'kv', other.room);
      peak = Math.max(peak, rssKb(big.pid));
    }
  })();
  await flood;
  await neighbourly;
  flooding = false;
  await watcher;
  assert.equal(answered, 3);
  const grewMb = (peak - before) / 1024;
  t.diagnostic(`figures: 3,000 GET-and-close requests of a ~1 MB answer: shard peak +${grewMb.toFixed(1)} MB`);
  assert.ok(grewMb < 256, `the shard grew by ${grewMb.toFixed(0)} MB under 3,000 GET-and-close requests`);
  // and it still serves the room itself
  await waitFor(async () => (await node.fetch(`/parties/kv/${big.room}?key=k0`)).status === 200, { timeout: 60000, what: 'the big room' });
  await stopClean(node);
});

// ---- 16: the admin key page --------------------------------------------------------------------------------------------

test('the admin key page of 640 keys of 2,000 bytes comes in several pages, every key once', T, async () => {
  const node = await start({ shards: 2, config: { parties: { main: { kind: 'chat' }, kv: { kind: 'kv' } } } });
  const room = 'longkeys';
  const keyOf = (i) => String(i).padStart(4, '0') + 'k'.repeat(1996);
  for (let b = 0; b < 5; ++b) {
    const put = {};
    for (let i = b * 128; i < (b + 1) * 128; ++i) put[keyOf(i)] = 'v';
    const r = await node.fetch(`/parties/kv/${room}`, { method: 'POST', body: JSON.stringify({ put }) });
    assert.equal(r.status, 200, await r.text());
  }
  const keys = [];
  let cursor = null;
  let pages = 0;
  do {
    const q = `limit=1000${cursor != null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await node.admin(`/admin/rooms/kv/${room}?${q}`);
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
    assert.ok(r.body.keys.length > 0);
    keys.push(...r.body.keys.map((k) => k.key));
    cursor = r.body.next;
    ++pages;
    assert.ok(pages < 100, 'the pages do not end');
  } while (cursor != null);
  assert.ok(pages >= 2, `${pages} page(s) for 640 keys of 2,000 bytes`);
  assert.equal(keys.length, 640);
  assert.deepEqual(keys, Array.from({ length: 640 }, (_, i) => keyOf(i)));
  await stopClean(node);
});
