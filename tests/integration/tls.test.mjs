// tls.test.mjs — listen.tls: the main listener serves HTTPS and WSS with the configured certificate. A self-signed
// certificate made here with the openssl CLI is the clients' only CA, so every connection below verifies it: HTTPS
// requests to rooms, `ws` clients over wss:// (text and large binary messages both ways through a relay room),
// partysocket with protocol "wss" on the chat party, a drain (1001) of WSS clients, and a bad certificate or key
// path refusing to start, naming listen.tls.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import PartySocket from 'partysocket';
import { WebSocket, waitFor, tmpDir } from './lib.mjs';
import { exitWithin } from './adminlib.mjs';
import { cleanupAfterEach, start, track } from './helpers.mjs';

cleanupAfterEach();

const T = { timeout: 60000 };
let certDir, CERT, KEY, ca;

before(() => {
  certDir = tmpDir('partyd-tls-');
  CERT = path.join(certDir, 'cert.pem');
  KEY = path.join(certDir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', KEY, '-out', CERT, '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
  ca = fs.readFileSync(CERT);
});

const tlsConfig = (extra = {}) => ({ listen: { tls: { cert: CERT, key: KEY } }, ...extra });

// Starts a TLS node: lib.mjs's ready() expects http://, so the ports are read here and /health is polled over HTTPS.
async function startTls(opts = {}) {
  const node = await start({ shards: 2, config: tlsConfig(), ...opts, ready: false });
  await waitFor(() => {
    if (node.exitCode !== undefined) throw new Error(`partyd exited early (${node.exitCode}):\n${node.stderr}`);
    const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(node.stdout);
    const a = /admin on http:\/\/127\.0\.0\.1:(\d+)/.exec(node.stdout);
    if (m) node.port = Number(m[1]);
    if (a) node.adminPort = Number(a[1]);
    return node.port && node.adminPort;
  }, { what: 'partyd to print https:// and its admin port' });
  await waitFor(async () => (await req(node, 'GET', '/health')).status === 200, { what: 'https /health 200' });
  return node;
}

// An HTTPS request that verifies the server against the test CA.
function req(node, method, p, body, { caCert = ca } = {}) {
  return new Promise((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port: node.port, method, path: p, ca: caCert ?? undefined, agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      const tls = { authorized: res.socket.authorized, cn: res.socket.getPeerCertificate().subject?.CN };
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try { json = JSON.parse(text); } catch {}
        resolve({ status: res.statusCode, headers: res.headers, text, body: json, tls });
      });
    });
    r.on('error', reject);
    r.setTimeout(10000, () => r.destroy(new Error('https request timed out')));
    r.end(body);
  });
}

// What partyd said that was not info, and the top of any sanitizer report, for a failure message.
function diagnose(node) {
  const warnings = node.stderr.split('\n').filter((l) => l && !/ info: /.test(l)).join('\n').slice(0, 2000);
  let reports = '';
  try {
    reports = fs.readdirSync(node.sanDir).map((f) => fs.readFileSync(path.join(node.sanDir, f), 'utf8')).join('\n');
  } catch {}
  const top = reports.split('\n').filter((l) => /ERROR: |^\s+#\d+ |freed by|allocated by|SUMMARY/.test(l)).slice(0, 24).join('\n');
  return `partyd stderr:\n${warnings}${top ? `\nsanitizer report:\n${top}` : ''}`;
}

const wss = (node, p) => `wss://127.0.0.1:${node.port}${p}`;

// A verifying wss client that records what it gets.
function client(url, opts = {}) {
  const ws = new WebSocket(url, { ca, maxPayload: 64 << 20, ...opts });
  const c = { ws, messages: [], closeCode: undefined, error: undefined };
  ws.on('message', (data, isBinary) => c.messages.push(isBinary ? { binary: true, data: Buffer.from(data) } : { binary: false, text: data.toString() }));
  ws.on('error', (e) => { c.error = e; });
  c.closed = new Promise((resolve) => ws.on('close', (code) => { c.closeCode = code; resolve(code); }));
  c.opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('close', () => reject(c.error ?? new Error('closed before open'))); });
  c.opened.catch(() => {});
  track(() => ws.terminate());
  return c;
}

async function stopTls(node) {
  const { code, signal } = await node.stop();
  assert.equal(signal, null);
  assert.equal(code, 0, node.stderr);
}

test('HTTPS: room requests over TLS with the certificate verified; plain HTTP is not served on that port', T, async () => {
  const node = await startTls();
  const h = await req(node, 'GET', '/health');
  assert.equal(h.status, 200);
  assert.equal(h.body.status, 'ok');
  assert.equal(h.tls.authorized, true);
  assert.equal(h.tls.cn, '127.0.0.1');

  const g = await req(node, 'GET', '/parties/counter/tls-c');
  assert.equal(g.status, 200);
  assert.deepEqual(g.body, { room: 'tls-c', count: 0, alarmAt: null });
  for (let i = 1; i <= 3; ++i) {
    const p = await req(node, 'POST', '/parties/counter/tls-c');
    assert.equal(p.status, 200);
    assert.equal(p.body.count, i);
  }
  const post = await req(node, 'POST', '/parties/main/tls-chat', JSON.stringify({ content: 'over https' }));
  assert.equal(post.status, 201);
  assert.deepEqual((await req(node, 'GET', '/parties/main/tls-chat')).body.messages.map((m) => m.content), ['over https']);
  assert.equal((await req(node, 'GET', '/parties/nosuchparty/x')).status, 404);
  assert.equal((await req(node, 'GET', '/parties/relay/tls-r')).body.connections, 0);

  // without the CA the certificate does not verify (it really is the self-signed one)
  await assert.rejects(req(node, 'GET', '/health', undefined, { caCert: null }), /self[- ]signed|unable to verify|certificate/i);
  // the port speaks TLS only: a plain HTTP request gets no HTTP answer
  const plain = await fetch(`http://127.0.0.1:${node.port}/health`, { signal: AbortSignal.timeout(5000) }).then((r) => r.status, (e) => e);
  assert.ok(plain instanceof Error || plain >= 400, `plain HTTP on the TLS port answered ${plain}`);
  // the admin listener stays plain HTTP
  assert.equal((await node.admin('/health')).status, 200);
  assert.equal((await req(node, 'GET', '/health')).status, 200, 'the TLS listener still serves after the plain request');
  await stopTls(node);
});

test('WSS: ws clients verifying the certificate relay text and large binary messages both ways; SIGTERM closes them with 1001', T, async () => {
  const node = await startTls();
  const a = client(wss(node, '/parties/relay/tls-relay?_pk=a'));
  const b = client(wss(node, '/parties/relay/tls-relay?_pk=b'));
  await Promise.all([a.opened, b.opened]);
  assert.equal(a.ws._socket.authorized, true);
  const info = await node.room('relay', 'tls-relay');
  assert.deepEqual([...info.ids].sort(), ['a', 'b']);

  // text, including multi-byte UTF-8, both ways
  a.ws.send('hello from a');
  b.ws.send('grüße von b — ✓');
  await waitFor(() => b.messages.length === 1 && a.messages.length === 1, { what: 'the text messages' });
  assert.deepEqual(b.messages[0], { binary: false, text: 'hello from a' });
  assert.deepEqual(a.messages[0], { binary: false, text: 'grüße von b — ✓' });

  // large binary (larger than TLS records and socket buffers), both ways, and a burst of small ones in order
  const big1 = crypto.randomBytes(700 * 1024), big2 = crypto.randomBytes(900 * 1024 + 17);
  a.ws.send(big1);
  b.ws.send(big2);
  await waitFor(() => b.messages.length === 2 && a.messages.length === 2, { timeout: 20000, what: 'the large binary messages' });
  assert.equal(b.messages[1].binary, true);
  assert.ok(b.messages[1].data.equals(big1), 'the 700 KiB message arrived changed');
  assert.equal(a.messages[1].binary, true);
  assert.ok(a.messages[1].data.equals(big2), 'the 900 KiB message arrived changed');
  for (let i = 0; i < 200; ++i) a.ws.send(`n${i}`);
  await waitFor(() => b.messages.length === 202, { timeout: 20000, what: 'the burst' });
  assert.deepEqual(b.messages.slice(2).map((m) => m.text), Array.from({ length: 200 }, (_, i) => `n${i}`));
  assert.equal(a.messages.length, 2, 'the relay sent the sender its own messages');

  // an HTTP POST to the room reaches both WSS clients
  const p = await req(node, 'POST', '/parties/relay/tls-relay', 'from https');
  assert.deepEqual(p.body, { delivered: 2 });
  await waitFor(() => a.messages.some((m) => m.text === 'from https') && b.messages.some((m) => m.text === 'from https'), { what: 'the POST at both' });

  // a client that does not trust the certificate cannot connect
  const untrusting = client(wss(node, '/parties/relay/tls-relay?_pk=c'), { ca: undefined });
  await assert.rejects(untrusting.opened, /self[- ]signed|unable to verify|certificate/i);
  assert.equal((await node.room('relay', 'tls-relay')).connections, 2);

  // drain: both get 1001 and the node exits 0
  await stopTls(node);
  assert.equal(await a.closed, 1001);
  assert.equal(await b.closed, 1001);
});

test('WSS: a client going away, and many clients on one TLS listener', T, async () => {
  const node = await startTls();
  const clients = Array.from({ length: 20 }, (_, i) => client(wss(node, `/parties/relay/tls-many?_pk=p${i}`)));
  await Promise.all(clients.map((c) => c.opened));
  assert.equal((await node.room('relay', 'tls-many')).connections, 20);
  clients[0].ws.send('to all');
  await waitFor(() => clients.slice(1).every((c) => c.messages.length === 1), { what: 'the broadcast at 19 clients' });
  // some go away abruptly, some cleanly
  for (const c of clients.slice(10, 15)) c.ws.terminate();
  await Promise.all(clients.slice(15).map((c) => { c.ws.close(1000); return c.closed; }));
  await waitFor(async () => (await node.room('relay', 'tls-many')).connections === 10, { what: '10 connections left' });
  clients[1].ws.send('still here');
  await waitFor(() => clients[2].messages.length === 2, { what: 'a message after the others left' });
  await Promise.all(clients.slice(0, 10).map((c) => { c.ws.close(1000); return c.closed; }));
  await waitFor(async () => (await node.room('relay', 'tls-many')).connections === 0, { what: 'no connections left' });
  await stopTls(node);
});

test('WSS limits: a message over message_bytes is closed with 1009, pings keep a quiet client, a reader that stops gets 1008', T, async () => {
  const node = await startTls({ config: tlsConfig({ limits: { message_bytes: 4096, output_bytes: 65536 }, timers: { ping_ms: 300 } }) });
  // 1009: the room goes on for the others
  const big = client(wss(node, '/parties/relay/tls-lim?_pk=big'));
  const other = client(wss(node, '/parties/relay/tls-lim?_pk=other'));
  await Promise.all([big.opened, other.opened]);
  big.ws.send(Buffer.alloc(5000, 1));
  assert.equal(await big.closed, 1009);
  assert.equal(other.messages.length, 0);

  // a quiet client answers pings (ws does) and stays connected over several ping periods
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(other.ws.readyState, 1, 'a quiet WSS client was dropped');

  // slow consumers, one after another: a reader that stops reading is closed with 1008 (its queued output dropped,
  // possibly while a TLS write of it is in flight); the sender and the room go on
  const payload = (i) => `${String(i).padStart(8, '0')}:${'m'.repeat(3900)}`;
  for (let round = 0; round < 4; ++round) {
    const slow = client(wss(node, `/parties/relay/tls-lim?_pk=slow${round}`));
    await slow.opened;
    slow.ws._socket.pause();
    let sent = 0, dropped = false;
    while (!dropped && sent < 10000) {
      for (let k = 0; k < 8; ++k) other.ws.send(payload(sent++));
      if (sent % 40 === 0) {
        const info = await node.room('relay', 'tls-lim').catch((e) => ({ ids: [], error: e.message }));
        assert.ok(info.ids.includes('other'), `round ${round}: the sender is gone after ${sent} messages: ${JSON.stringify(info)} (its close code ${other.closeCode}); ${diagnose(node)}`);
        dropped = !info.ids.includes(`slow${round}`);
      } else {
        await new Promise((r) => setImmediate(r));
      }
    }
    assert.ok(dropped, `round ${round}: the paused WSS reader was never dropped after ${sent} messages`);
    assert.equal(other.ws.readyState, 1, `round ${round}: the sender was closed`);
    slow.ws._socket.resume();
    assert.equal(await slow.closed, 1008, `round ${round}`);
  }
  const after = client(wss(node, '/parties/relay/tls-lim?_pk=after'));
  await after.opened;
  other.ws.send('still serving');
  await waitFor(() => after.messages.some((m) => m.text === 'still serving'), { what: 'a message after the 1008' });
  const m = (await node.admin('/metrics')).body;
  assert.match(m, /partyd_websocket_slow_consumers_total 4\b/);
  other.ws.close();
  after.ws.close();
  await Promise.all([other.closed, after.closed]);
  await stopTls(node);
});

test('partysocket over wss (protocol "wss", a WebSocket that trusts the test CA): chat welcome, state, join and chat', T, async () => {
  const node = await startTls();
  await req(node, 'POST', '/parties/main/tls-ps', JSON.stringify({ content: 'earlier' }));
  class TrustingWebSocket extends WebSocket {
    constructor(url, protocols) { super(url, protocols, { ca }); }
  }
  const recs = [];
  function party(id) {
    const s = new PartySocket({ host: `127.0.0.1:${node.port}`, room: 'tls-ps', id, protocol: 'wss', WebSocket: TrustingWebSocket, minReconnectionDelay: 50, maxReconnectionDelay: 200 });
    const rec = { s, messages: [], urls: [] };
    s.addEventListener('open', () => rec.urls.push(s.url));
    s.addEventListener('message', (e) => rec.messages.push(JSON.parse(e.data)));
    track(() => s.close());
    recs.push(rec);
    return rec;
  }
  const alice = party('tls-alice');
  await waitFor(() => alice.messages.length >= 2, { what: 'welcome and state' });
  assert.match(alice.urls[0], new RegExp(`^wss://127\\.0\\.0\\.1:${node.port}/parties/main/tls-ps\\?_pk=tls-alice$`));
  assert.deepEqual(alice.messages[0], { type: 'welcome', id: 'tls-alice' });
  assert.equal(alice.messages[1].type, 'state');
  assert.deepEqual(alice.messages[1].users, []);
  assert.deepEqual(alice.messages[1].messages.map((m) => m.content), ['earlier']);

  alice.s.send(JSON.stringify({ type: 'join', name: 'Alice' }));
  const bob = party('tls-bob');
  await waitFor(() => bob.messages.length >= 2, { what: 'bob welcome and state' });
  await waitFor(() => alice.messages.some((m) => m.type === 'user-joined'), { what: 'alice joined' });
  alice.s.send(JSON.stringify({ type: 'chat', content: 'hello over wss' }));
  const m = await waitFor(() => bob.messages.find((x) => x.type === 'chat'), { what: 'the chat at bob' });
  assert.equal(m.senderId, 'tls-alice');
  assert.equal(m.content, 'hello over wss');
  const info = await node.room('main', 'tls-ps');
  assert.deepEqual([...info.ids].sort(), ['tls-alice', 'tls-bob']);

  for (const r of recs) {
    r.s.close();
    await waitFor(() => r.s.readyState === 3, { what: 'PartySocket closed' });
  }
  await stopTls(node);
});

test('a bad certificate or key stops partyd at start, naming listen.tls', T, async () => {
  const garbage = path.join(certDir, 'garbage.pem');
  fs.writeFileSync(garbage, 'this is not a PEM file\n');
  const otherKey = path.join(certDir, 'other-key.pem');
  execFileSync('openssl', ['genrsa', '-out', otherKey, '2048'], { stdio: 'pipe' });
  const cases = [
    ['a missing certificate file', { cert: path.join(certDir, 'nope.pem'), key: KEY }],
    ['a missing key file', { cert: CERT, key: path.join(certDir, 'nope-key.pem') }],
    ['a certificate that is not PEM', { cert: garbage, key: KEY }],
    ['a key that is not PEM', { cert: CERT, key: garbage }],
    ['a key that does not match the certificate', { cert: CERT, key: otherKey }],
  ];
  const problems = [];
  for (const [what, tls] of cases) {
    const node = await start({ shards: 1, config: { listen: { tls } }, ready: false });
    const r = await exitWithin(node, 20000);
    if (r === null) {
      problems.push(`${what}: partyd is still running after 20 s (stdout: ${node.stdout.trim()})`);
      node.signal('SIGKILL');
      await node.exited;
      continue;
    }
    if (r.code === 0 || r.code === null) problems.push(`${what}: exit ${r.code} signal ${r.signal}`);
    if (!/listen\.tls/.test(node.stderr)) problems.push(`${what}: stderr does not name listen.tls: ${node.stderr.trim()}`);
    if (/\(null\)/.test(node.stderr)) problems.push(`${what}: stderr says (null): ${node.stderr.trim()}`);
    if (/missing/.test(what) && !/No such file or directory/.test(node.stderr)) problems.push(`${what}: stderr does not say why: ${node.stderr.trim()}`);
    if (/listening on/.test(node.stdout)) problems.push(`${what}: it said it was listening`);
    try { node.checkSanitizers(); } catch (e) { problems.push(`${what}: ${e.message}`); }
  }
  // cert without key is a config error
  const half = await start({ shards: 1, config: { listen: { tls: { cert: CERT } } }, ready: false });
  const hr = await half.exited;
  if (hr.code !== 2 || !/listen\.tls/.test(half.stderr)) problems.push(`cert without key: exit ${hr.code}, stderr ${half.stderr.trim()}`);
  assert.deepEqual(problems, [], problems.join('\n'));
});
