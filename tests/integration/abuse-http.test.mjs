// abuse-http.test.mjs — the HTTP front under abuse (issue 16, items 1–5 and 10): what a client sends on purpose to
// freeze, mislead or amplify the node, each sent as it would arrive (raw sockets where a real client would not send
// it). After each, the node must still answer another room, /health and the admin port; where a flood is involved the
// router's and the shards' resident memory (/proc/PID/status; the router's pid from /admin/node, the shards' from
// /admin/shards) must stay bounded.
//
//  1. a FIFO in the serve folder: 404 at once, nothing blocks
//  2. serve leaving its folder: symlinks out, dotfiles, %00 — 404; a symlink within the folder still serves
//  3. ranges: a list of thousands of "0-" ranges gets the file once (200), a single range still 206
//  4. the admin port: loopback Host only without a token, no foreign Origin, changes only by non-simple requests,
//     backups inside admin.backup_dir, wrong tokens throttled, short tokens refused at start
//  5. smuggling: two Content-Lengths, Content-Length with Transfer-Encoding → 400 and the connection closed; a chunked
//     body (bare LF or not) ends its connection, so nothing after it is read as a request
// 10. WebSocket Origin: "origins" at node and party level refuse other Origins with 403 before the room starts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { tmpDir, waitFor, WebSocket } from './lib.mjs';
import { cleanupAfterEach, start, open, refused, stopClean } from './helpers.mjs';
import { TOKEN, adm } from './adminlib.mjs';

cleanupAfterEach();
const T = { timeout: 120000 };
const NO_TOKEN = { PARTYD_ADMIN_TOKEN: '' };
const RSS_BOUND_KB = 64 * 1024; // what a flood may add to the router's resident memory

// ---- helpers ---------------------------------------------------------------------------------------------------------

// Writes `data` on a fresh connection and reads until the server closes it (closed: true) or `ms` pass with the
// connection still open (closed: false).
function raw(port, data, ms = 3000) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    s.on('connect', () => s.write(data));
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', () => finish(true)); // a reset or EPIPE: the server closed
  });
}

const statusLines = (text) => text.match(/HTTP\/1\.1 \d{3}/g) ?? [];

// A request to the admin port with headers node's fetch will not set (Host) → {status, body}.
function adminRaw(node, { method = 'GET', path: p, headers = {}, body }) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: node.adminPort, method, path: p, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function routerPid(node, token) {
  const r = token ? await adm(node, '/admin/node', {}, token) : await node.admin('/admin/node');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.router_pid;
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no VmRSS for ${pid}`);
  return Number(m[1]);
}

// The resident memory of the router and of every shard: {router: kB, shards: {pid: kB}}.
async function memory(node, token) {
  const r = token ? await adm(node, '/admin/shards', {}, token) : await node.admin('/admin/shards');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const shards = {};
  for (const s of r.body) shards[s.pid] = rssKb(s.pid);
  return { router: rssKb(await routerPid(node, token)), shards };
}

// Asserts that neither the router nor any shard grew by RSS_BOUND_KB since `before` (a shard restarted meanwhile
// has another pid: that is a failure too). Returns the growth in kB, for the test's diagnostics.
async function assertBounded(node, before, what, token) {
  const now = await memory(node, token);
  const grew = { router: now.router - before.router, shards: 0 };
  assert.ok(grew.router < RSS_BOUND_KB, `the router grew by ${grew.router} kB under ${what}`);
  assert.deepEqual(Object.keys(now.shards).sort(), Object.keys(before.shards).sort(), `a shard restarted under ${what}`);
  for (const [pid, kb] of Object.entries(now.shards)) {
    grew.shards = Math.max(grew.shards, kb - before.shards[pid]);
    assert.ok(kb - before.shards[pid] < RSS_BOUND_KB, `shard ${pid} grew by ${kb - before.shards[pid]} kB under ${what}`);
  }
  return grew;
}

// The node still serves: another room (a counter POST), /health on both listeners, and the admin API.
let aliveRoom = 0;
async function assertAlive(node, token) {
  const room = `alive-${++aliveRoom}`;
  const c = await node.fetch(`/parties/counter/${room}`, { method: 'POST', signal: AbortSignal.timeout(5000) });
  assert.equal(c.status, 200, 'another room stopped answering');
  assert.equal((await c.json()).count, 1);
  assert.equal((await node.fetch('/health', { signal: AbortSignal.timeout(5000) })).status, 200, '/health stopped answering');
  assert.equal((await node.admin('/health')).status, 200, 'the admin port stopped answering');
  const shards = token ? await adm(node, '/admin/shards', {}, token) : await node.admin('/admin/shards');
  assert.equal(shards.status, 200, 'the admin API stopped answering');
}

// A folder to serve: index.html, a 1 MB file, a FIFO, a dotfile, symlinks within and out of the folder.
function servedDir() {
  const dir = tmpDir();
  const pub = path.join(dir, 'public');
  fs.mkdirSync(path.join(pub, 'sub'), { recursive: true });
  fs.mkdirSync(path.join(pub, '.git'));
  fs.mkdirSync(path.join(dir, 'outside'));
  fs.writeFileSync(path.join(pub, 'index.html'), '<!doctype html><title>ok</title>');
  fs.writeFileSync(path.join(pub, 'sub', 'page.html'), 'sub page');
  fs.writeFileSync(path.join(pub, '.env'), 'SECRET=1');
  fs.writeFileSync(path.join(pub, '.git', 'config'), '[core]');
  fs.writeFileSync(path.join(dir, 'outside', 'secret.txt'), 'not for the web');
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; ++i) big[i] = i % 251;
  fs.writeFileSync(path.join(pub, 'big.bin'), big);
  fs.symlinkSync('/etc/passwd', path.join(pub, 'passwd'));
  fs.symlinkSync(path.join(dir, 'outside'), path.join(pub, 'out'));
  fs.symlinkSync(path.join(dir, 'outside', 'secret.txt'), path.join(pub, 'secret.txt'));
  fs.symlinkSync('sub/page.html', path.join(pub, 'inside.html'));
  execFileSync('mkfifo', [path.join(pub, 'fifo')]);
  execFileSync('mkfifo', [path.join(pub, 'sub', 'fifo.html')]);
  return { dir, big };
}

// ---- 1, 2: what serve opens --------------------------------------------------------------------------------------------

test('serve: a FIFO is a 404 at once and blocks nothing; symlinks out of the folder, dotfiles and %00 are 404s', T, async () => {
  const { dir } = servedDir();
  const node = await start({ shards: 1, dir, env: NO_TOKEN, config: { serve: 'public' } });
  const get = async (p) => {
    const r = await node.fetch(p, { signal: AbortSignal.timeout(5000) });
    return { status: r.status, type: r.headers.get('content-type'), text: await r.text() };
  };
  // a FIFO opened with a blocking open(2) would hold the router's loop until a writer came: it must answer now
  for (const p of ['/fifo', '/sub/fifo.html']) assert.equal((await get(p)).status, 404, p);
  // and many at once, while the node serves everything else
  const before = await memory(node);
  const fifos = await Promise.all(Array.from({ length: 50 }, () => raw(node.port, 'GET /fifo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')));
  for (const r of fifos) assert.deepEqual(statusLines(r.text), ['HTTP/1.1 404']);
  await assertAlive(node);
  await assertBounded(node, before, '50 FIFO requests');

  for (const p of ['/passwd', '/out/secret.txt', '/secret.txt', '/.env', '/.git/config', '/index.html%00.png', '/%00', '/sub/%2e%2e/.env']) {
    const r = await get(p);
    assert.equal(r.status, 404, `${p}: ${r.status} ${r.text.slice(0, 80)}`);
    assert.doesNotMatch(r.text, /root:|SECRET|not for the web|\[core\]|<title>/, `${p} served what it must not`);
  }
  // raw: paths a client would normalize itself
  for (const p of ['/../outside/secret.txt', '/sub/../../outside/secret.txt', '/out/../../outside/secret.txt']) {
    const r = await raw(node.port, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.doesNotMatch(r.text, /not for the web/, `${p} left the folder`);
  }
  // what the folder holds is still served, a symlink within it too
  let r = await get('/');
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/html/);
  r = await get('/inside.html');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'sub page');
  assert.equal((await get('/sub/page.html')).text, 'sub page');
  assert.equal((await node.fetch('/sub', { redirect: 'manual' })).status, 301, 'a folder without its / is redirected, as before');
  assert.equal((await get('/sub/')).status, 404, 'a folder without index.html');
  await assertAlive(node);
  await stopClean(node);
});

test('serve: {"dir", "dotfiles": true} serves dotfiles, still nothing out of the folder', T, async () => {
  const { dir } = servedDir();
  const node = await start({ shards: 1, dir, env: NO_TOKEN, config: { serve: { dir: 'public', dotfiles: true } } });
  assert.equal(await (await node.fetch('/.env')).text(), 'SECRET=1');
  assert.equal(await (await node.fetch('/.git/config')).text(), '[core]');
  for (const p of ['/passwd', '/out/secret.txt', '/fifo']) assert.equal((await node.fetch(p)).status, 404, p);
  await stopClean(node);
});

// ---- 3: ranges -----------------------------------------------------------------------------------------------------

test('ranges: thousands of overlapping ranges get the file once (200); one range is still a 206; a flood stays bounded', T, async (t) => {
  const { dir, big } = servedDir();
  const node = await start({ shards: 1, dir, env: NO_TOKEN, config: { serve: 'public', limits: { header_bytes: 65536 } } });
  const many = `bytes=${Array.from({ length: 3000 }, () => '0-').join(',')}`;
  const req = `GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: ${many}\r\nConnection: close\r\n\r\n`;
  assert.ok(req.length < 10000);
  let r = await raw(node.port, req, 10000);
  assert.deepEqual(statusLines(r.text), ['HTTP/1.1 200']);
  assert.ok(r.text.length <= big.length + 1024, `${req.length} bytes asked for ${r.text.length} bytes`);

  const one = await node.fetch('/big.bin', { headers: { Range: 'bytes=100-199' } });
  assert.equal(one.status, 206);
  assert.deepEqual(Buffer.from(await one.arrayBuffer()), big.subarray(100, 200));
  const two = await node.fetch('/big.bin', { headers: { Range: 'bytes=0-0,5-5' } });
  assert.equal(two.status, 200, 'a list of ranges is answered with the whole file');
  assert.equal((await two.arrayBuffer()).byteLength, big.length);

  const before = await memory(node);
  for (let round = 0; round < 4; ++round) {
    const got = await Promise.all(Array.from({ length: 25 }, () => raw(node.port, req, 20000)));
    for (const x of got) assert.ok(x.text.length <= big.length + 1024);
    await assertAlive(node);
  }
  const grew = await assertBounded(node, before, '100 range requests');
  t.diagnostic(`figures: 100 requests of 3,000 ranges: router +${grew.router} kB, shards +${grew.shards} kB`);
  await stopClean(node);
});

// ---- 4: the admin port ---------------------------------------------------------------------------------------------

test('admin without a token: a foreign Origin, a foreign Host and a simple POST are refused; backups stay in their folder', T, async () => {
  const node = await start({ shards: 1, env: NO_TOKEN });
  const outside = path.join(node.dir, 'chosen-by-a-page');
  const backup = (headers, dir = outside) => adminRaw(node, { method: 'POST', path: '/admin/backup', headers, body: JSON.stringify({ dir }) });

  // what a page on another site can send without a preflight: text/plain, with its Origin
  let r = await backup({ 'Content-Type': 'text/plain', Origin: 'http://evil.example' });
  assert.equal(r.status, 403, r.text);
  // the same without Origin (a page's no-cors form post may omit it) is still a simple request
  r = await backup({ 'Content-Type': 'text/plain' });
  assert.equal(r.status, 403, r.text);
  // a foreign Origin is refused even with the marker and on reads
  r = await backup({ 'X-Partyd-Admin': '1', Origin: 'http://evil.example' });
  assert.equal(r.status, 403, r.text);
  r = await adminRaw(node, { path: '/admin/node', headers: { Origin: 'http://evil.example' } });
  assert.equal(r.status, 403, r.text);
  // DNS rebinding: the page's own name as Host
  r = await adminRaw(node, { path: '/admin/node', headers: { Host: `evil.example:${node.adminPort}` } });
  assert.equal(r.status, 403, r.text);
  r = await adminRaw(node, { path: '/metrics', headers: { Host: 'evil.example' } });
  assert.equal(r.status, 403, r.text);
  assert.ok(!fs.existsSync(outside), 'a refused request wrote a backup');

  // loopback names and the admin page's own Origin are fine
  for (const host of [`127.0.0.1:${node.adminPort}`, `localhost:${node.adminPort}`, 'localhost']) {
    r = await adminRaw(node, { path: '/admin/node', headers: { Host: host } });
    assert.equal(r.status, 200, `Host ${host}: ${r.text}`);
  }
  r = await adminRaw(node, { path: '/admin/node', headers: { Origin: `http://127.0.0.1:${node.adminPort}` } });
  assert.equal(r.status, 200, r.text);

  // with the marker (partyctl) or a JSON body: the default backup folder is DATA_DIR/backups; a path out of it is 400
  r = await backup({ 'X-Partyd-Admin': '1' });
  assert.equal(r.status, 400, r.text);
  assert.match(r.text, /backup/);
  assert.ok(!fs.existsSync(outside));
  r = await backup({ 'Content-Type': 'application/json' }, 'nightly');
  assert.equal(r.status, 200, r.text);
  assert.ok(fs.existsSync(path.join(node.dir, 'data', 'backups', 'nightly', 'node.json')));
  r = await backup({ 'X-Partyd-Admin': '1' }, path.join(node.dir, 'data', 'backups', 'by-path'));
  assert.equal(r.status, 200, r.text);
  for (const bad of ['../escape', '.hidden', path.join(node.dir, 'data', 'backups', '..', 'escape')]) {
    r = await backup({ 'X-Partyd-Admin': '1' }, bad);
    assert.equal(r.status, 400, `${bad}: ${r.text}`);
  }
  assert.ok(!fs.existsSync(path.join(node.dir, 'data', 'escape')));
  await assertAlive(node);
  await stopClean(node);
});

test('admin with a token: wrong tokens are throttled, the node keeps answering; a token under 16 bytes is refused', T, async (t) => {
  const node = await start({ shards: 1, env: NO_TOKEN, config: { admin: { token: TOKEN } } });
  const before = await memory(node, TOKEN);
  const began = Date.now();
  const counts = {};
  for (let round = 0; round < 20; ++round) {
    const got = await Promise.all(Array.from({ length: 50 }, (_, i) => adm(node, '/admin/node', {}, `wrong-token-${round}-${i}-padding`)));
    for (const g of got) counts[g.status] = (counts[g.status] ?? 0) + 1;
  }
  const seconds = Math.ceil((Date.now() - began) / 1000) + 1;
  assert.equal((counts[401] ?? 0) + (counts[429] ?? 0), 1000, JSON.stringify(counts));
  assert.ok((counts[401] ?? 0) <= 10 * seconds, `${counts[401]} wrong tokens were checked in ${seconds} s: ${JSON.stringify(counts)}`);
  assert.ok((counts[429] ?? 0) > 0);
  // the right token works again once the second is over; /health never stopped
  assert.equal((await node.admin('/health')).status, 200);
  await waitFor(async () => (await adm(node, '/admin/shards')).status === 200, { what: 'the token to be accepted again' });
  const grew = await assertBounded(node, before, '1,000 wrong tokens', TOKEN);
  t.diagnostic(`figures: 1,000 wrong admin tokens: router +${grew.router} kB, shards +${grew.shards} kB`);
  await assertAlive(node, TOKEN);
  await stopClean(node);

  const short = await start({ shards: 1, env: NO_TOKEN, config: { admin: { token: 'fifteen-bytes!!' } }, ready: false });
  const { code } = await short.exited;
  assert.equal(code, 2);
  assert.match(short.stderr, /admin\.token: at least 16 bytes/);
});

// ---- 5: request smuggling ------------------------------------------------------------------------------------------

const HIDDEN = 'GET /parties/counter/smuggled HTTP/1.1\r\nHost: x\r\n\r\n';

test('smuggling: two Content-Lengths, or one with Transfer-Encoding, get 400 and a closed connection; a chunked body ends its connection', T, async (t) => {
  const node = await start({ shards: 1, env: NO_TOKEN });
  const cases = [
    ['two lengths', `POST /parties/relay/s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`],
    ['two equal lengths', `POST /parties/relay/s HTTP/1.1\r\nHost: x\r\nContent-Length: ${HIDDEN.length}\r\nContent-Length: ${HIDDEN.length}\r\n\r\n${HIDDEN}`],
    ['length and chunked', `POST /parties/relay/s HTTP/1.1\r\nHost: x\r\nContent-Length: ${5 + HIDDEN.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${HIDDEN}`],
    ['chunked and length', `POST /parties/relay/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n${HIDDEN}`],
  ];
  for (const port of [node.port, node.adminPort]) {
    for (const [what, req] of cases) {
      const r = await raw(port, req);
      assert.ok(r.closed, `${what} (port ${port}): the connection stayed open`);
      assert.deepEqual(statusLines(r.text), ['HTTP/1.1 400'], `${what} (port ${port}): ${r.text}`);
    }
  }
  // chunked bodies, with CRLF or the bare LF h2o's decoder accepts: one answer, then the connection closes
  for (const [what, body] of [['CRLF', '1\r\nA\r\n0\r\n\r\n'], ['bare LF', '1\nA\n0\n\n'], ['bare LF in the size line', '1\nA\r\n0\r\n\r\n']]) {
    const r = await raw(node.port, `POST /parties/relay/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}${HIDDEN}`);
    assert.ok(r.closed, `chunked, ${what}: the connection stayed open`);
    assert.ok(statusLines(r.text).length <= 1, `chunked, ${what}: more than one answer: ${r.text}`);
    assert.doesNotMatch(r.text, /"count"/, `chunked, ${what}: the hidden request was served`);
  }
  // nothing hidden ran: the smuggled room was never counted
  assert.equal((await (await node.fetch('/parties/counter/smuggled')).json()).count, 0);
  // a plain keep-alive connection still carries two requests
  const ka = await raw(node.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.deepEqual(statusLines(ka.text), ['HTTP/1.1 200', 'HTTP/1.1 200']);

  // a flood of them leaves the router's memory where it was
  const before = await memory(node);
  for (let round = 0; round < 10; ++round) {
    await Promise.all(Array.from({ length: 50 }, (_, i) => raw(node.port, cases[i % cases.length][1])));
    await assertAlive(node);
  }
  const grew = await assertBounded(node, before, '500 smuggling attempts');
  t.diagnostic(`figures: 500 smuggling attempts: router +${grew.router} kB, shards +${grew.shards} kB`);
  await stopClean(node);
});

// ---- 10: WebSocket Origin ------------------------------------------------------------------------------------------

test('origins: an upgrade from another Origin gets 403 before the room starts; the party\'s list overrides the node\'s', T, async (t) => {
  const node = await start({
    shards: 1,
    env: NO_TOKEN,
    config: {
      origins: ['https://app.example'],
      parties: {
        relay: { kind: 'relay' },
        counter: { kind: 'counter' },
        widget: { kind: 'relay', origins: ['https://widget.example', 'http://localhost:5173'] },
      },
    },
  });
  const room = (party, r) => node.wsUrl(`/parties/${party}/${r}`);
  for (const [party, origin] of [['relay', 'https://evil.example'], ['relay', 'https://app.example.evil.example'], ['widget', 'https://app.example'], ['relay', 'null']]) {
    const r = await refused(room(party, `o-${party}-refused`), { origin });
    assert.equal(r.status, 403, `${party} from ${origin}`);
    const info = await node.admin(`/admin/rooms/${party}/o-${party}-refused`);
    assert.equal(info.body.in_memory, false, `${party}: the room started for a refused Origin`);
  }
  const opened = [
    await open(room('relay', 'o-1'), { origin: 'https://app.example' }),
    await open(room('relay', 'o-2'), { origin: 'HTTPS://APP.EXAMPLE' }),
    await open(room('widget', 'o-3'), { origin: 'http://localhost:5173' }),
    await open(room('relay', 'o-4')), // no Origin: not a browser
  ];
  // a flood of refused upgrades: the node keeps serving
  const before = await memory(node);
  for (let round = 0; round < 5; ++round) {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const req = `GET /parties/relay/o-flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n`;
    const got = await Promise.all(Array.from({ length: 50 }, () => raw(node.port, req, 2000)));
    for (const g of got) assert.deepEqual(statusLines(g.text), ['HTTP/1.1 403']);
    await assertAlive(node);
  }
  const grew = await assertBounded(node, before, '250 refused upgrades');
  t.diagnostic(`figures: 250 upgrades from a refused Origin: router +${grew.router} kB, shards +${grew.shards} kB`);
  await stopClean(node, opened);
});

// the admin endpoint's WebSocket is none: an upgrade there is an admin request like any other
test('origins: the admin port refuses a cross-origin upgrade attempt like any request', T, async () => {
  const node = await start({ shards: 1, env: NO_TOKEN });
  const ws = new WebSocket(`ws://127.0.0.1:${node.adminPort}/admin/node`, { origin: 'https://evil.example' });
  const status = await new Promise((resolve) => {
    ws.on('unexpected-response', (req, res) => { resolve(res.statusCode); ws.terminate(); });
    ws.on('error', () => resolve('error'));
  });
  assert.equal(status, 403);
  await stopClean(node);
});
