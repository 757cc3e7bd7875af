// modules.test.mjs — parties loaded from shared objects (tests/modules/*.c, built next to the binary under test):
// refused at start when they cannot work (another ABI, no party, a missing function, no file, a constructor that
// aborts), found relative to
// the config file, with vars from the config and the environment; edge hooks that refuse, answer, or pass headers on
// (replacing the client's); rooms calling rooms with party_fetch across shards, with partyd's own statuses (400,
// 404, 503, 504) and a header the target can trust; and the "serve" folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import PartySocket from 'partysocket';
import { BIN, WebSocket, waitFor, tmpDir } from './lib.mjs';
import { cleanupAfterEach, start, open, refused, stopClean, track } from './helpers.mjs';

cleanupAfterEach();
const T = { timeout: 60000 };
const MOD = (name) => path.join(path.dirname(BIN), 'tests', 'modules', `${name}.so`);

function runConfig(config, { env = {}, dir = tmpDir() } = {}) {
  const file = path.join(dir, 'partyd.json');
  fs.writeFileSync(file, JSON.stringify(config));
  return spawnSync(BIN, ['--config', file, '--print-config'], {
    cwd: dir, encoding: 'utf8', env: { ...process.env, ...env, ASAN_OPTIONS: 'detect_leaks=0' },
  });
}

test('a module that cannot work stops partyd at start, naming the field and the reason', T, () => {
  const cases = [
    [{ module: MOD('bad_abi') }, /parties\.x\.module: .*bad_abi\.so was built for party ABI 3; this partyd has ABI 2/],
    [{ module: MOD('no_symbol') }, /parties\.x\.module: .*no_symbol\.so defines no partyd_party/],
    [{ module: MOD('missing_function') }, /parties\.x\.module: cannot load .*missing_function\.so: .*undefined symbol: party_function_that_does_not_exist/],
    [{ module: '/nonexistent/x.so' }, /parties\.x\.module: \/nonexistent\/x\.so: No such file or directory/],
    // its constructor aborts: the child that tries it dies, the supervisor says which module and how
    [{ module: MOD('aborts') }, /parties\.x\.module: loading .*aborts\.so killed the process that tried it with signal 6 \(Aborted\)/],
    // which kinds exist is known where parties live, not by the config's syntax check: still refused at start
    [{ kind: 'pizza' }, /parties\.x\.kind: unknown kind "pizza": expected one of .*chat/],
    [{ module: MOD('echo'), kind: 'relay' }, /parties\.x: needs either "kind" .* or "module" .*, not both/],
    [{ hibernate: true }, /parties\.x: needs either "kind" .* or "module" .*, not neither/],
    [{ module: MOD('echo'), vars: { 'bad-name': 'v' } }, /parties\.x\.vars\.bad-name: a var name is 1 to 64 of A-Z a-z 0-9 _/],
    [{ module: MOD('echo'), vars: { K: 42 } }, /parties\.x\.vars\.K: expected a string or \{"env": NAME\}/],
    [{ module: MOD('echo'), vars: { K: { env: 'A', other: 1 } } }, /parties\.x\.vars\.K: expected a string or \{"env": NAME\}/],
  ];
  for (const [party, want] of cases) {
    const r = runConfig({ parties: { x: party } });
    assert.equal(r.status, 2, `${JSON.stringify(party)}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, want, JSON.stringify(party));
    assert.equal(r.stdout, '', 'nothing printed, nothing started');
  }
  const serve = runConfig({ serve: 'no-such-folder' });
  assert.equal(serve.status, 2);
  assert.match(serve.stderr, /serve: .*no-such-folder: No such file or directory/);
});

test('module and serve paths are relative to the config file; vars from the environment are shown as such', T, () => {
  const dir = tmpDir();
  fs.mkdirSync(path.join(dir, 'conf', 'public'), { recursive: true });
  fs.copyFileSync(MOD('echo'), path.join(dir, 'conf', 'echo-copy.so'));
  const config = {
    parties: { e: { module: './echo-copy.so', vars: { GREETING: 'hi', SECRET: { env: 'MODULES_TEST_SECRET' } } } },
    serve: 'public',
  };
  fs.writeFileSync(path.join(dir, 'conf', 'partyd.json'), JSON.stringify(config));
  // started from another folder: the paths follow the file, not the working directory
  const r = spawnSync(BIN, ['--config', 'conf/partyd.json', '--print-config'], {
    cwd: dir, encoding: 'utf8', env: { ...process.env, MODULES_TEST_SECRET: 's3cret', ASAN_OPTIONS: 'detect_leaks=0' },
  });
  assert.equal(r.status, 0, r.stderr);
  const printed = JSON.parse(r.stdout);
  assert.equal(printed.parties.e.module, path.join(fs.realpathSync(dir), 'conf', 'echo-copy.so'));
  assert.deepEqual(printed.parties.e.vars, { GREETING: 'hi', SECRET: { env: 'MODULES_TEST_SECRET' } });
  assert.ok(!r.stdout.includes('s3cret'), 'a secret from the environment is not printed');
  assert.equal(printed.serve, path.join(fs.realpathSync(dir), 'conf', 'public'));
});

// ---- edge hooks --------------------------------------------------------------------------------------------------

async function echoNode(extra = {}) {
  return start({
    shards: 2,
    config: { parties: { echo: { module: MOD('echo'), vars: { GREETING: { env: 'ECHO_GREETING' } } } }, ...extra },
    env: { ECHO_GREETING: 'hello-from-env' },
  });
}

test('before_request: passes headers on (replacing the client\'s), refuses with its own body and headers, is guarded', T, async () => {
  const node = await echoNode();
  // through: the hook's x-user replaces the client's; the client cannot send x-partyd-from
  let r = await node.fetch('/parties/echo/r1/sub?user=alice&q=1', { headers: { 'x-user': 'mallory', 'x-partyd-from': 'forged' } });
  assert.equal(r.status, 200);
  let b = await r.json();
  assert.equal(b.user, 'alice');
  assert.equal(b.edge, 'ran', 'the hook ran, and a hook cannot set x-partyd-from');
  assert.equal(b.from, '', 'x-partyd-from from a client never reaches a room');
  assert.equal(b.var, 'hello-from-env');
  assert.equal(b.path, '/parties/echo/r1/sub');
  assert.equal(b.query, 'user=alice&q=1');
  // without ?user the client's own x-user passes (the hook only replaces what it sets)
  b = await (await node.fetch('/parties/echo/r1', { headers: { 'x-user': 'dave' } })).json();
  assert.equal(b.user, 'dave');
  // refused at the edge: the hook's status, body, content type and header; the room never saw it
  r = await node.fetch('/parties/echo/r2/x', { method: 'POST', headers: { 'x-deny': '1' }, body: 'ignored' });
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.headers.get('x-denied-by'), 'hello-from-env');
  assert.deepEqual(await r.json(), { denied: 'echo/r2', method: 'POST', path: '/parties/echo/r2/x' });
  assert.equal((await node.room('echo', 'r2')).in_memory, false, 'a refused request does not start the room');
  // a status without a body: >= 400 gets a JSON error, below that an empty body
  r = await node.fetch('/parties/echo/r3', { headers: { 'x-edge-status': '429' } });
  assert.equal(r.status, 429);
  assert.deepEqual(await r.json(), { error: 'refused by the party' });
  r = await node.fetch('/parties/echo/r3', { headers: { 'x-edge-status': '204' } });
  assert.equal(r.status, 204);
  // a hook returning something that is not a status: 500, logged, the node goes on
  for (const bad of ['99', '600', '-1']) {
    r = await node.fetch('/parties/echo/r3', { headers: { 'x-edge-status': bad } });
    assert.equal(r.status, 500, `hook returned ${bad}`);
    assert.deepEqual(await r.json(), { error: 'the party\'s edge hook failed' });
  }
  await waitFor(() => /before_request returned 600, which is neither 0 nor an HTTP status/.test(node.stderr), { what: 'the log line' });
  await waitFor(() => /edge echo\/r2: denied/.test(node.stderr), { what: 'party_edge_log' });
  await stopClean(node);
});

test('before_connect: refuses an upgrade before any room sees it, or passes the user id to on_connect', T, async () => {
  const node = await echoNode();
  const denied = await refused(node.wsUrl('/parties/echo/w1'), { headers: { 'x-deny': '1' } });
  assert.equal(denied.status, 403);
  assert.equal(JSON.parse(denied.body).denied, 'echo/w1');
  // the room refuses, with its own reason (quotes and all) as the JSON error
  const no = await refused(node.wsUrl(`/parties/echo/w1?${new URLSearchParams({ refuse: 'no entry for "you" \\ ünïcode' })}`));
  assert.equal(no.status, 403);
  assert.deepEqual(JSON.parse(no.body), { error: 'no entry for "you" \\ ünïcode' });
  const c = await open(node.wsUrl('/parties/echo/w1?user=bob'), { headers: { 'x-user': 'mallory' } });
  assert.deepEqual(await c.waitJson((m) => m.type === 'hello'), { type: 'hello', user: 'bob' });
  c.send('ping');
  await c.waitMessage((m) => m.text === 'ping');
  c.send('max');
  const max = await c.waitMessage((m) => m.text?.startsWith('{"message_max"'));
  assert.deepEqual(JSON.parse(max.text), { message_max: 1048576 });
  // a client that leaves is not the node stopping; the drain's closes are
  const leaver = await open(node.wsUrl('/parties/echo/w1?_pk=leaver'));
  await leaver.close(1001, 'going away');
  await waitFor(() => /room echo\/w1: on_close leaver code=1001 clean=1 stopping=0/.test(node.stderr), { what: 'the leaver\'s on_close' });
  const stayer = await open(node.wsUrl('/parties/echo/w1?_pk=stayer'));
  // partysocket, with the user in its query
  const ps = new PartySocket({ host: node.host, party: 'echo', room: 'w2', query: { user: 'carol' }, WebSocket });
  track(() => ps.close());
  const seen = [];
  ps.addEventListener('message', (e) => seen.push(e.data));
  await waitFor(() => seen.length > 0, { what: 'partysocket hello' });
  assert.deepEqual(JSON.parse(seen[0]), { type: 'hello', user: 'carol' });
  ps.close();
  await stopClean(node, [c]);
  assert.match(node.stderr, /room echo\/w1: on_close stayer code=1001 clean=\d stopping=1/, 'the drain\'s close says the node stops');
  // the client sees its close event when its socket closes, which may come after partyd's exit is seen: wait for it
  await waitFor(() => stayer.closeCode !== undefined, { what: 'the stayer\'s close' });
  assert.equal(stayer.closeCode, 1001);
});

// ---- rooms calling rooms -----------------------------------------------------------------------------------------

async function fetchNode(extra = {}) {
  return start({
    shards: 2,
    config: {
      parties: {
        fetcher: { module: MOD('fetcher') },
        echo: { module: MOD('echo'), vars: { GREETING: 'hi' } },
        counter: { kind: 'counter' },
      },
      ...extra,
    },
  });
}

async function via(node, room, params) {
  const r = await node.fetch(`/parties/fetcher/${room}?${new URLSearchParams(params)}`);
  assert.equal(r.status, 200, `fetcher ${room} ${JSON.stringify(params)}`);
  return r.json();
}

test('party_fetch reaches rooms on either shard, with method, sub-path, query, body and a trusted x-partyd-from', T, async () => {
  const node = await fetchNode();
  // targets on both shards
  const targets = [];
  for (let i = 0; targets.length < 2 && i < 50; ++i) {
    const shard = (await node.room('echo', `t${i}`)).shard;
    if (!targets.some((t) => t.shard === shard)) targets.push({ room: `t${i}`, shard });
  }
  assert.equal(targets.length, 2, 'echo rooms on both shards');
  for (const t of targets) {
    const a = await via(node, 'f1', { party: 'echo', room: t.room, path: '/sub/path?x=1&y=two', method: 'POST', body: 'payload' });
    assert.equal(a.status, 200);
    assert.equal(a.echo, 'yes', 'the target\'s response headers come back');
    assert.equal(a.type, 'application/json');
    const e = JSON.parse(a.body);
    assert.equal(e.method, 'POST');
    assert.equal(e.path, `/parties/echo/${t.room}/sub/path`);
    assert.equal(e.query, 'x=1&y=two');
    assert.equal(e.body, 'payload');
    assert.equal(e.from, 'fetcher/f1', 'x-partyd-from names the calling room, not what the party tried to forge');
    assert.equal(e.user, 'fetcher', 'the party\'s own headers pass');
    assert.equal(e.edge, '', 'edge hooks do not run for room-to-room requests');
  }
  // the target's status passes through; a built-in party is reachable too, and its write is done
  assert.equal((await via(node, 'f1', { party: 'echo', room: 't0', path: '?status=418' })).status, 418);
  const c1 = JSON.parse((await via(node, 'f2', { party: 'counter', room: 'shared', method: 'POST' })).body);
  const c2 = JSON.parse((await via(node, 'f3', { party: 'counter', room: 'shared', method: 'POST' })).body);
  assert.deepEqual([c1.count, c2.count], [1, 2]);
  assert.equal((await (await node.fetch('/parties/counter/shared')).json()).count, 2);
  // a room calling a room that calls a room
  const nested = await via(node, 'outer', { party: 'fetcher', room: 'inner', path: `?${new URLSearchParams({ party: 'echo', room: 't1' })}` });
  assert.equal(nested.status, 200);
  assert.equal(JSON.parse(JSON.parse(nested.body).body).from, 'fetcher/inner');
  // from a WebSocket message: the answer goes to the connection
  const ws = await open(node.wsUrl('/parties/fetcher/f4'));
  ws.send('echo t0 /over-ws?z=9');
  const got = await ws.waitJson((m) => m.status !== undefined);
  assert.equal(JSON.parse(got.body).path, '/parties/echo/t0/over-ws');
  await stopClean(node, [ws]);
});

test('party_fetch answers: 404 unknown party, 400 bad room, 504 no answer in time, 503 the target shard died; a bad call fails at once', T, async () => {
  const node = await fetchNode({ timers: { fetch_ms: 500 }, limits: { body_bytes: 1024 } });
  assert.equal((await via(node, 'g1', { party: 'nope', room: 'x' })).status, 404);
  assert.equal((await via(node, 'g1', { party: 'bad party!', room: 'x' })).status, 400);
  assert.equal((await via(node, 'g1', { party: 'echo', room: 'a/b' })).status, 400, 'a room id is one path segment');
  assert.equal((await via(node, 'g1', { party: 'echo', room: 'x'.repeat(257) })).status, 400, 'a room id over 256 bytes');
  const t0 = Date.now();
  const late = await via(node, 'g1', { party: 'echo', room: 'slow', path: '?hang' });
  assert.equal(late.status, 504);
  assert.ok(Date.now() - t0 >= 450, 'after timers.fetch_ms');
  // the call itself refused: a body over limits.body_bytes, a path that is not a path
  let r = await node.fetch(`/parties/fetcher/g1?${new URLSearchParams({ party: 'echo', room: 'x', body: 'b'.repeat(2000) })}`);
  assert.equal(r.status, 500);
  assert.deepEqual(await r.json(), { fetch: -90 }, '-EMSGSIZE');
  r = await node.fetch(`/parties/fetcher/g1?${new URLSearchParams({ party: 'echo', room: 'x', path: 'no-slash' })}`);
  assert.deepEqual(await r.json(), { fetch: -22 }, '-EINVAL');
  // the target's shard dies while the call waits: 503 (the calling room is on the other shard)
  let caller = 'h0';
  const slowShard = (await node.room('echo', 'slow')).shard;
  for (let i = 0; (await node.room('fetcher', caller)).shard === slowShard; ++i) caller = `h${i + 1}`;
  const pending = node.fetch(`/parties/fetcher/${caller}?${new URLSearchParams({ party: 'echo', room: 'slow', path: '?hang' })}`);
  await waitFor(async () => (await node.room('echo', 'slow')).in_memory, { what: 'the slow room to hold the call' });
  const victim = (await node.shards()).find((s) => s.id === slowShard).pid;
  process.kill(victim, 'SIGKILL');
  const answer = await (await pending).json();
  assert.equal(answer.status, 503);
  await waitFor(async () => (await node.shards()).every((s) => s.state === 'up'), { what: 'the shard to be back' });
  await stopClean(node, [], { allowRestarts: true });
});

// ---- serve ------------------------------------------------------------------------------------------------------

test('"serve": the folder\'s files at /, with content types and index.html; rooms and /health still routed; no escape', T, async () => {
  const dir = tmpDir();
  const pub = path.join(dir, 'public');
  fs.mkdirSync(path.join(pub, 'js'), { recursive: true });
  fs.writeFileSync(path.join(pub, 'index.html'), '<!doctype html><title>app</title>');
  fs.writeFileSync(path.join(pub, 'js', 'app.js'), 'console.log(1)');
  fs.writeFileSync(path.join(pub, 'style.css'), 'body{}');
  fs.writeFileSync(path.join(pub, 'data.json'), '{"a":1}');
  fs.writeFileSync(path.join(dir, 'secret.txt'), 'not for the web');
  const node = await start({ shards: 1, dir, config: { serve: 'public', parties: { counter: { kind: 'counter' } } } });
  const get = async (p, init) => {
    const r = await node.fetch(p, init);
    return { status: r.status, type: r.headers.get('content-type'), etag: r.headers.get('etag'), text: await r.text() };
  };
  let r = await get('/');
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/html/);
  assert.equal(r.text, '<!doctype html><title>app</title>');
  assert.match((await get('/js/app.js')).type, /javascript/);
  assert.match((await get('/style.css')).type, /^text\/css/);
  assert.match((await get('/data.json')).type, /^application\/json/);
  r = await get('/style.css');
  assert.ok(r.etag);
  assert.equal((await node.fetch('/style.css', { headers: { 'if-none-match': r.etag } })).status, 304);
  assert.equal((await get('/missing.html')).status, 404);
  for (const p of ['/../secret.txt', '/js/../../secret.txt', '/%2e%2e/secret.txt']) {
    const x = await get(p);
    assert.notEqual(x.text, 'not for the web', `${p} escaped the folder`);
  }
  assert.equal((await get('/health')).status, 200);
  assert.equal(JSON.parse((await get('/health')).text).status, 'ok');
  const c = await node.fetch('/parties/counter/served', { method: 'POST' });
  assert.equal(c.status, 200);
  assert.equal((await c.json()).count, 1);
  assert.equal((await get('/parties/nope/x')).status, 404, 'a room path is never a file');
  await stopClean(node);
});
