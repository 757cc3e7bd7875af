// lifecycle.test.mjs — partyd as a set of processes: configuration errors, --help/--version, the data directory's
// lock, a shard or the router dying (SIGKILL) and being restarted, the supervisor stopped (SIGSTOP) while a shard is
// dead, clean drains on SIGTERM and SIGINT, and the children following a supervisor that was SIGKILLed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startNode, Client, waitFor, tmpDir, BIN, kill } from './lib.mjs';

const TEST_TIMEOUT = 30000; // a test that hangs fails (and its after-hook kills what it started)

// Everything a test opened, so that a failing test cannot leave the file hanging (or a supervisor stopped).
const opened = new Set();
function cleanup(t) {
  t.after(() => {
    for (const o of opened) {
      // keep each node's output next to its data directory, for looking into a failure
      if (o.proc) { try { fs.writeFileSync(path.join(o.dir, 'partyd.log'), `${o.stdout}\n${o.stderr}`); } catch {} }
      if (o instanceof Client) { o.ws.terminate(); continue; }
      if (o.exitCode === undefined && !o.exitSignal) kill(o.proc); // SIGCONT first: the supervisor may be stopped
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
async function openClient(url, opts) {
  const c = new Client(url, opts);
  opened.add(c);
  await c.opened;
  return c;
}

// A process has exited: /proc has no such pid, or only its zombie (the container's init may not reap orphans).
function gone(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^\d+ \(.*\) Z /.test(stat);
  } catch {
    return true;
  }
}

// Room names of `party` that live on two different shards: [{room, shard}, {room, shard}].
async function roomsOnTwoShards(node, party, prefix) {
  const found = new Map();
  for (let i = 0; i < 200 && found.size < 2; i++) {
    const room = `${prefix}${i}`;
    const info = await node.room(party, room);
    if (!found.has(info.shard)) found.set(info.shard, room);
  }
  assert.equal(found.size, 2, 'found rooms on two different shards');
  return [...found].map(([shard, room]) => ({ shard, room }));
}

async function shardInfo(node, id) {
  return (await node.shards()).find((s) => s.id === id);
}

function writeConfig(text) {
  const dir = tmpDir('partyd-config-');
  const file = path.join(dir, 'partyd.json');
  fs.writeFileSync(file, text);
  return { dir, file };
}

// Runs the binary directly (no node started) with a config file holding `text`.
function runWithConfig(text) {
  const { dir, file } = writeConfig(text);
  const r = spawnSync(BIN, ['--config', file, '--port', '0', '--admin', 'off', '--data-dir', path.join(dir, 'data'), '--shards', '1'],
    { cwd: dir, encoding: 'utf8', timeout: 10000, env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1' } });
  return { ...r, file };
}

// ---- configuration --------------------------------------------------------------------------------------------------

test('a bad configuration exits 2 naming the field, and starts nothing', { timeout: TEST_TIMEOUT }, () => {
  const cases = [
    { what: 'unknown top-level key', config: { bogus: 1 }, field: 'bogus' },
    { what: 'unknown nested key', config: { limits: { mesage_bytes: 4096 } }, field: 'limits.mesage_bytes' },
    { what: 'wrong type', config: { limits: { message_bytes: 'big' } }, field: 'limits.message_bytes' },
    { what: 'below the minimum', config: { limits: { message_bytes: 10 } }, field: 'limits.message_bytes' },
    { what: 'wrong type of a timer', config: { timers: { ping_ms: true } }, field: 'timers.ping_ms' },
    { what: 'ping below its minimum', config: { timers: { ping_ms: 50 } }, field: 'timers.ping_ms' },
    { what: 'output_bytes not above message_bytes', config: { limits: { message_bytes: 1048576, output_bytes: 65536 } }, field: 'output_bytes' },
    { what: 'header_count over 100', config: { limits: { header_count: 101 } }, field: 'limits.header_count' },
    { what: 'unknown party kind', config: { parties: { main: { kind: 'nope' } } }, field: 'parties.main.kind' },
    { what: 'party kind of the wrong type', config: { parties: { main: { kind: 7 } } }, field: 'parties.main.kind' },
    { what: 'unknown key in a party', config: { parties: { relay: { kind: 'relay', colour: 'red' } } }, field: 'parties.relay.colour' },
    { what: 'wrong type of a section', config: { limits: 5 }, field: 'limits' },
    { what: 'shards of the wrong type', config: { shards: 'two' }, field: 'shards' },
  ];
  for (const c of cases) {
    const r = runWithConfig(JSON.stringify(c.config));
    assert.equal(r.status, 2, `${c.what}: exit status (stderr: ${r.stderr})`);
    assert.ok(r.stderr.includes(c.field), `${c.what}: stderr names ${c.field}: ${JSON.stringify(r.stderr)}`);
    assert.doesNotMatch(r.stdout, /listening on/, `${c.what}: nothing was started`);
  }
  for (const text of ['{"limits": {"message_bytes": 4096}', '{"limits": nope}', '', '[1, 2']) {
    const r = runWithConfig(text);
    assert.equal(r.status, 2, `malformed JSON ${JSON.stringify(text)}: exit status (stderr: ${r.stderr})`);
    assert.ok(r.stderr.trim().length > 0, `malformed JSON ${JSON.stringify(text)}: an error on stderr`);
    assert.ok(r.stderr.includes(r.file) || /json/i.test(r.stderr), `malformed JSON names the file or JSON: ${r.stderr}`);
    assert.doesNotMatch(r.stdout, /listening on/);
  }
  // A valid configuration is accepted (so the failures above are the configuration's), and applied.
  const ok = spawnSync(BIN, ['--config', writeConfig('{"limits": {"message_bytes": 4096}}').file, '--print-config'],
    { encoding: 'utf8', timeout: 10000 });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).limits.message_bytes, 4096);
});

test('--help and --version exit 0 with text on stdout', { timeout: TEST_TIMEOUT }, () => {
  const help = spawnSync(BIN, ['--help'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /usage/i);
  assert.match(help.stdout, /--config/);
  const version = spawnSync(BIN, ['--version'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^partyd \d+\.\d+\.\d+/);
  const bad = spawnSync(BIN, ['--no-such-flag'], { encoding: 'utf8', timeout: 10000 });
  assert.notEqual(bad.status, 0, 'an unknown flag is an error');
  assert.ok(bad.stderr.length > 0);
});

// ---- the data directory's lock --------------------------------------------------------------------------------------

test('a second partyd on the same data directory refuses to start while the first runs', { timeout: TEST_TIMEOUT }, async (t) => {
  const first = await node_(t, {});
  const second = await node_(t, { dir: first.dir, ready: false });
  const { code } = await waitFor(() => second.exitCode !== undefined || second.exitSignal ? second.exited : null,
    { what: 'the second node to exit' });
  assert.notEqual(code, 0, 'the second node exits with an error');
  assert.equal(second.exitSignal, null);
  assert.match(second.stderr, /in use/i);
  assert.doesNotMatch(second.stdout, /listening on/);

  // The first is untouched and keeps serving.
  assert.equal((await first.fetch('/health')).status, 200);
  const a = await openClient(first.wsUrl('/parties/relay/lock?_pk=a'));
  const b = await openClient(first.wsUrl('/parties/relay/lock?_pk=b'));
  a.send('x');
  await b.waitMessage((m) => m.text === 'x');
  a.close(); b.close();
  assert.equal((await first.stop()).code, 0);

  // Once the first has exited the lock is free again.
  const third = await node_(t, { dir: first.dir });
  assert.equal((await third.fetch('/health')).status, 200);
  assert.equal((await third.stop()).code, 0);
});

// ---- a shard dies ---------------------------------------------------------------------------------------------------

test('a SIGKILLed shard is restarted: its clients get 1011, the other shard\'s are unaffected, reconnecting works', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { shards: 2 });
  const [A, B] = await roomsOnTwoShards(node, 'relay', 'sk');
  const a1 = await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a1`));
  const a2 = await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a2`));
  const b1 = await openClient(node.wsUrl(`/parties/relay/${B.room}?_pk=b1`));
  const b2 = await openClient(node.wsUrl(`/parties/relay/${B.room}?_pk=b2`));
  const before = await node.shards();
  const victim = before.find((s) => s.id === A.shard);
  const bystander = before.find((s) => s.id === B.shard);
  assert.equal(victim.restarts, 0);
  assert.equal((await node.shardPidOf('relay', A.room)).pid, victim.pid);
  assert.ok(node.children().some((c) => c.pid === victim.pid && c.comm === 'partyd-shard'));

  process.kill(victim.pid, 'SIGKILL');
  const [c1, c2] = await Promise.all([a1.closed, a2.closed]);
  assert.equal(c1.code, 1011);
  assert.equal(c2.code, 1011);

  // The other shard's clients never noticed.
  b1.send('still here');
  await b2.waitMessage((m) => m.text === 'still here', { what: 'b2 to keep receiving' });
  assert.equal(b1.closeCode, undefined);
  assert.equal(b2.closeCode, undefined);

  // Restarted: a new pid, the restart counted, the other shard untouched.
  const after = await waitFor(async () => {
    const s = await shardInfo(node, A.shard);
    return s.state === 'up' && s.pid !== victim.pid && s.pid > 0 ? s : null;
  }, { what: 'the shard to be up again with a new pid' });
  assert.equal(after.restarts, 1);
  assert.ok(gone(victim.pid), 'the old shard process is gone');
  assert.ok(node.children().some((c) => c.pid === after.pid && c.comm === 'partyd-shard'), 'the new shard is a child of the supervisor');
  const other = await shardInfo(node, B.shard);
  assert.equal(other.pid, bystander.pid);
  assert.equal(other.restarts, 0);
  await waitFor(async () => (await node.fetch('/health')).status === 200, { what: '/health 200 after the restart' });

  // Its rooms work again.
  const n1 = await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a1`));
  const n2 = await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a2`));
  n1.send('back');
  await n2.waitMessage((m) => m.text === 'back', { what: 'a message in the restarted shard\'s room' });
  assert.equal((await node.room('relay', A.room)).connections, 2);
  assert.equal(b1.closeCode, undefined);

  n1.close(); n2.close(); b1.close(); b2.close();
  assert.equal((await node.stop()).code, 0);
});

test('while the supervisor is stopped a dead shard stays dead: its rooms get 503 + Retry-After until SIGCONT', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { shards: 2 });
  const [A, B] = await roomsOnTwoShards(node, 'relay', 'ss');
  const victim = await shardInfo(node, A.shard);
  const a = await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a`));
  const b = await openClient(node.wsUrl(`/parties/relay/${B.room}?_pk=b`));

  node.signal('SIGSTOP');
  try {
    process.kill(victim.pid, 'SIGKILL');
    assert.equal((await a.closed).code, 1011);

    const res = await waitFor(async () => {
      const r = await node.fetch(`/parties/relay/${A.room}`);
      await r.arrayBuffer();
      return r.status === 503 ? r : null;
    }, { what: 'a 503 for the dead shard\'s room' });
    assert.ok(res.headers.get('retry-after'), 'the 503 carries Retry-After');
    assert.match(res.headers.get('retry-after'), /^\d+$/);

    // A WebSocket upgrade to that room is refused the same way, before any 101.
    const c = new Client(node.wsUrl(`/parties/relay/${A.room}?_pk=c`));
    opened.add(c);
    const refusal = await waitFor(() => c.unexpected, { what: 'the upgrade to be refused' });
    c.ws.terminate();
    assert.equal(refusal.status, 503);
    assert.ok(refusal.headers['retry-after']);

    // Still down a little later (nobody restarts it), and /health says so; the other shard's rooms work.
    assert.equal((await shardInfo(node, A.shard)).state, 'down');
    assert.equal((await node.fetch('/health')).status, 503);
    const r2 = await node.fetch(`/parties/relay/${A.room}`);
    assert.equal(r2.status, 503);
    await r2.arrayBuffer();
    const rb = await node.json(`/parties/relay/${B.room}`);
    assert.equal(rb.status, 200);
    assert.equal(rb.body.connections, 1);
    assert.equal(b.closeCode, undefined);
  } finally {
    node.signal('SIGCONT');
  }

  await waitFor(async () => {
    const r = await node.fetch(`/parties/relay/${A.room}`);
    await r.arrayBuffer();
    return r.status === 200;
  }, { what: 'the room to be served after SIGCONT' });
  const s = await shardInfo(node, A.shard);
  assert.notEqual(s.pid, victim.pid);
  assert.equal(s.restarts, 1);
  const a2 = await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a`));
  const a3 = await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a3`));
  a2.send('up');
  await a3.waitMessage((m) => m.text === 'up');

  a2.close(); a3.close(); b.close();
  assert.equal((await node.stop()).code, 0);
});

// ---- the router dies ------------------------------------------------------------------------------------------------

test('a SIGKILLed router is restarted on the same port; clients are dropped; the shards keep their rooms', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { shards: 2 });
  const port = node.port;
  const adminPort = node.adminPort;
  const post = await node.fetch('/parties/main/hist', { method: 'POST', body: JSON.stringify({ content: 'before the crash' }) });
  assert.equal(post.status, 201);
  await post.arrayBuffer();
  const chat = await openClient(node.wsUrl('/parties/main/hist?_pk=chat'));
  await chat.waitJson((m) => m.type === 'state', { what: 'the chat state' });
  const r1 = await openClient(node.wsUrl('/parties/relay/rk?_pk=r1'));
  const r2 = await openClient(node.wsUrl('/parties/relay/rk?_pk=r2'));
  const shardsBefore = await node.shards();
  const router = node.routerPid();
  assert.ok(router, 'a router process');

  process.kill(router, 'SIGKILL');
  const closes = await Promise.all([chat.closed, r1.closed, r2.closed]);
  for (const c of closes) assert.equal(c.code, 1006, 'dropped without a close frame');

  await waitFor(() => { const p = node.routerPid(); return p && p !== router; }, { what: 'a new router process' });
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/health`)).status === 200, { what: '/health 200 on the same port' });
  const h = await node.json('/health');
  assert.equal(h.body.status, 'ok');
  assert.ok(gone(router), 'the old router is gone');

  // The shards were not restarted and still hold the room: the history is there.
  const shardsAfter = await node.shards();
  assert.equal(node.adminPort, adminPort);
  assert.deepEqual(shardsAfter.map((s) => [s.id, s.pid, s.restarts]), shardsBefore.map((s) => [s.id, s.pid, s.restarts]));
  const hist = await node.json('/parties/main/hist');
  assert.equal(hist.status, 200);
  assert.deepEqual(hist.body.messages.map((m) => m.content), ['before the crash']);

  // New connections work.
  const chat2 = await openClient(node.wsUrl('/parties/main/hist?_pk=chat2'));
  const state = await chat2.waitJson((m) => m.type === 'state', { what: 'the chat state after the restart' });
  assert.deepEqual(state.messages.map((m) => m.content), ['before the crash']);
  const n1 = await openClient(node.wsUrl('/parties/relay/rk?_pk=r1'));
  const n2 = await openClient(node.wsUrl('/parties/relay/rk?_pk=r2'));
  n1.send('again');
  await n2.waitMessage((m) => m.text === 'again');
  await waitFor(async () => (await node.room('relay', 'rk')).connections === 2, { what: 'the room to count only the new connections' });

  chat2.close(); n1.close(); n2.close();
  assert.equal((await node.stop()).code, 0);
});

// ---- shutting down --------------------------------------------------------------------------------------------------

async function drainTest(t, sig) {
  const node = await node_(t, { shards: 2 });
  const [A, B] = await roomsOnTwoShards(node, 'relay', 'dr');
  const clients = [
    await openClient(node.wsUrl(`/parties/relay/${A.room}?_pk=a`)),
    await openClient(node.wsUrl(`/parties/relay/${B.room}?_pk=b`)),
    await openClient(node.wsUrl('/parties/main/drain?_pk=c')),
  ];
  const pids = [node.proc.pid, ...node.children().map((c) => c.pid)];
  assert.equal(pids.length, 4, 'a supervisor, a router and two shards');

  node.signal(sig);
  const codes = await Promise.all(clients.map((c) => c.closed));
  for (const c of codes) assert.equal(c.code, 1001, `a client closed with ${c.code} on ${sig}`);
  const { code, signal } = await node.exited;
  assert.equal(signal, null, `the supervisor exited by itself on ${sig}`);
  assert.equal(code, 0);
  await waitFor(() => pids.every(gone), { timeout: 5000, what: 'every partyd process to be gone' });
  assert.equal((await node.stop()).code, 0); // checks the sanitizer logs
}

test('SIGTERM drains: every client gets 1001, exit 0, every process gone', { timeout: TEST_TIMEOUT }, (t) => drainTest(t, 'SIGTERM'));
test('SIGINT drains like SIGTERM', { timeout: TEST_TIMEOUT }, (t) => drainTest(t, 'SIGINT'));

test('the router and shards exit when the supervisor is SIGKILLed; clients hear 1001, not a shard restart', { timeout: TEST_TIMEOUT }, async (t) => {
  const node = await node_(t, { shards: 2 });
  const c = await openClient(node.wsUrl('/parties/relay/orphan?_pk=c'));
  const kids = node.children();
  assert.equal(kids.filter((k) => k.comm === 'partyd-shard').length, 2);
  assert.equal(kids.filter((k) => k.comm === 'partyd-router').length, 1);

  process.kill(node.proc.pid, 'SIGKILL');
  await node.exited;
  await waitFor(() => kids.every((k) => gone(k.pid)), { timeout: 10000, what: 'the router and shards to exit' });
  const { code, reason } = await c.closed;
  assert.equal(code, 1001, `close ${code} "${reason}": the node is going away, no shard is restarting`);
  await waitFor(async () => {
    try { await fetch(`http://127.0.0.1:${node.port}/health`); return false; } catch { return true; }
  }, { what: 'the port to be closed' });

  // Nothing holds the data directory any more: a new node starts on it.
  const again = await node_(t, { dir: node.dir });
  assert.equal((await again.fetch('/health')).status, 200);
  assert.equal((await again.stop()).code, 0);
  node.checkSanitizers();
});
