// partyctl.test.mjs — the command line over the admin endpoint: every command's table (for people) and --json (the
// endpoint's JSON) output, the token from PARTYD_ADMIN_TOKEN, and the exit status: 0 done, 1 the node refused or
// failed (401, 404, 409, 400), 2 usage (checked before the node is asked), 3 the node is unreachable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from './lib.mjs';
import { cleanupAfterEach, start, open, stopClean } from './helpers.mjs';
import { TOKEN, CTL, adm, partyctl, parseMetrics } from './adminlib.mjs';

cleanupAfterEach();

const T = { timeout: 60000 };
const PARTIES = { main: { kind: 'chat' }, relay: { kind: 'relay' }, counter: { kind: 'counter' }, kv: { kind: 'kv' } };
const cfg = (extra = {}) => ({ admin: { token: TOKEN, backup_dir: '.' }, parties: PARTIES, ...extra });
const ws = (node, party, room, pk, query = '') => node.wsUrl(`/parties/${party}/${room}?_pk=${encodeURIComponent(pk)}${query}`);
const UNREACHABLE = 'http://127.0.0.1:1';

assert.ok(fs.existsSync(CTL), `no partyctl next to the partyd binary (${CTL})`);

// partyctl against this node
const ctl = (node, args, opts) => partyctl(['--admin', `http://127.0.0.1:${node.adminPort}`, ...args], opts);
async function ctlOk(node, args, opts) {
  const r = await ctl(node, args, opts);
  assert.equal(r.code, 0, `partyctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}
async function ctlJson(node, args, opts) {
  const r = await ctlOk(node, ['--json', ...args], opts);
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    assert.fail(`partyctl --json ${args.join(' ')} printed no JSON: ${e.message}\n${r.stdout}`);
  }
}
// A failure: the exit status, a reason on stderr. With `problems`, what is wrong is collected there instead of thrown
// (table-driven checks report every case at once).
function assertFails(r, code, what, problems = null) {
  const found = [];
  if (r.code !== code) found.push(`${what}: exit ${r.code}, expected ${code} (stdout ${JSON.stringify(r.stdout.slice(0, 200))}, stderr ${JSON.stringify(r.stderr.slice(0, 200))})`);
  if (r.stderr.trim().length === 0) found.push(`${what}: nothing on stderr (stdout ${JSON.stringify(r.stdout.slice(0, 200))})`);
  if (problems) problems.push(...found);
  else assert.deepEqual(found, []);
}
async function api(node, p, init) {
  const r = await adm(node, p, init);
  assert.equal(r.status, 200, `${p}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
async function bump(node, room) {
  const r = await node.json(`/parties/counter/${room}`, { method: 'POST' });
  assert.equal(r.status, 200);
  return r.body.count;
}
async function kvPut(node, room, key, value) {
  const r = await node.fetch(`/parties/kv/${room}?key=${encodeURIComponent(key)}`, { method: 'PUT', body: value });
  assert.equal(r.status, 200, await r.text());
}

// A table: a header line of column names, then one line per row, cells separated by spaces. → [{col: cell}]
function parseTable(text, { trailer = 0 } = {}) {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const body = trailer ? lines.slice(0, -trailer) : lines;
  assert.ok(body.length >= 1, `no table in:\n${text}`);
  const cols = body[0].trim().split(/\s+/);
  return body.slice(1).map((l) => {
    const cells = l.trim().split(/\s+/);
    assert.equal(cells.length, cols.length, `a row with ${cells.length} cells under ${cols.length} columns: "${l}"\n${text}`);
    return Object.fromEntries(cols.map((c, i) => [c, cells[i]]));
  });
}
const yesNo = (v) => (v === true ? 'yes' : v === false ? 'no' : String(v));

// ---- status, shards, metrics ----------------------------------------------------------------------------------------

test('status, shards and metrics: tables for people, --json as the endpoints answer', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  const conns = await Promise.all(['a', 'b', 'c'].map((pk) => open(ws(node, 'relay', 'ctl-status', pk))));
  await bump(node, 'ctl-status-c');
  const nodeInfo = await api(node, '/admin/node');

  // status
  const st = await ctlOk(node, ['status']);
  assert.ok(st.stdout.includes(nodeInfo.version), `status shows the version:\n${st.stdout}`);
  assert.ok(st.stdout.includes(nodeInfo.config.data_dir), `status shows the data dir:\n${st.stdout}`);
  assert.match(st.stdout, /\b2\/2 up\b|\bup\b/, `status shows the shards up:\n${st.stdout}`);
  assert.match(st.stdout, /connections\D{0,5}3\b/, `status shows 3 connections:\n${st.stdout}`);
  assert.equal(st.stderr, '');
  const sj = await ctlJson(node, ['status']);
  assert.equal(sj.node.version, nodeInfo.version);
  assert.equal(sj.node.router_pid, nodeInfo.router_pid);
  assert.deepEqual(sj.node.config, nodeInfo.config);
  assert.equal(sj.shards.length, 2);
  assert.equal(sj.shards.reduce((a, s) => a + s.connections, 0), 3);

  // shards
  const shards = await api(node, '/admin/shards');
  const table = parseTable((await ctlOk(node, ['shards'])).stdout);
  assert.equal(table.length, 2);
  for (const s of shards) {
    const row = table.find((r) => r.id === String(s.id));
    assert.ok(row, `no row for shard ${s.id}`);
    assert.equal(row.state, 'up');
    assert.equal(row.pid, String(s.pid));
    assert.equal(row.slots, String(s.slots));
    assert.equal(row.connections, String(s.connections));
    assert.equal(row.rooms, String(s.rooms));
    assert.equal(row.restarts, String(s.restarts));
  }
  const shj = await ctlJson(node, ['shards']);
  assert.equal(shj.length, 2);
  for (const [i, s] of shj.entries()) {
    for (const k of ['id', 'pid', 'state', 'slots', 'restarts', 'rooms', 'connections', 'rooms_hibernating', 'failed_commits']) {
      assert.equal(s[k], shards[i][k], `--json shards[${i}].${k}`);
    }
  }

  // metrics: the Prometheus text as the node serves it
  const m = await ctlOk(node, ['metrics']);
  const parsed = parseMetrics(m.stdout);
  assert.ok(parsed.families.has('partyd_connections_open'));
  assert.equal(parsed.samples.find((x) => x.name === 'partyd_connections_open').value, 3);

  await stopClean(node, conns);
});

// ---- rooms -----------------------------------------------------------------------------------------------------------

test('rooms: a table with the next page\'s cursor last, --json pages, --party/--prefix/--limit/--cursor', T, async () => {
  const node = await start({ shards: 3, config: cfg() });
  const counters = Array.from({ length: 14 }, (_, i) => `ctl-${String(i).padStart(2, '0')}`);
  for (const r of counters) await bump(node, r);
  await kvPut(node, 'ctl-kv-1', 'k', 'v');
  await kvPut(node, 'other-kv', 'k', 'v');
  const all = new Set([...counters.map((r) => `counter/${r}`), 'kv/ctl-kv-1', 'kv/other-kv']);

  // one page with everything: a table row per room, no cursor line
  const full = await api(node, '/admin/rooms?limit=1000');
  const t = (await ctlOk(node, ['rooms', '--limit', '1000'])).stdout;
  const rows = parseTable(t);
  assert.deepEqual(new Set(rows.map((r) => `${r.party}/${r.room}`)), all);
  for (const e of full.rooms) {
    const row = rows.find((r) => r.party === e.party && r.room === e.room);
    assert.equal(row.shard, String(e.shard));
    assert.equal(row.slot, String(e.slot));
    assert.equal(row.connections, String(e.connections));
    assert.equal(row.in_memory, yesNo(e.in_memory));
    assert.equal(row.stored, yesNo(e.stored));
  }
  assert.deepEqual(await ctlJson(node, ['rooms', '--limit', '1000']), full);
  assert.deepEqual(await ctlJson(node, ['rooms']), await api(node, '/admin/rooms'));

  // pages of 5: --json carries the endpoint's cursor; the table prints it on its last line
  const seen = [];
  let cursor = null, pages = 0;
  for (;;) {
    const args = ['rooms', '--limit', '5', ...(cursor !== null ? ['--cursor', cursor] : [])];
    const page = await ctlJson(node, args);
    const q = new URLSearchParams({ limit: '5', ...(cursor !== null ? { cursor } : {}) });
    assert.deepEqual(page, await api(node, `/admin/rooms?${q}`));
    seen.push(...page.rooms.map((r) => `${r.party}/${r.room}`));
    const text = (await ctlOk(node, args)).stdout;
    const lines = text.trim().split('\n');
    if (page.cursor !== null) {
      assert.ok(lines[lines.length - 1].includes(page.cursor), `the table's last line does not carry the cursor ${page.cursor}:\n${text}`);
      assert.equal(parseTable(text, { trailer: 1 }).length, page.rooms.length);
    } else {
      assert.equal(parseTable(text).length, page.rooms.length);
    }
    ++pages;
    assert.ok(pages < 20);
    if (page.cursor === null) break;
    cursor = page.cursor;
  }
  assert.equal(seen.length, all.size);
  assert.deepEqual(new Set(seen), all);

  // filters
  const kvOnly = await ctlJson(node, ['rooms', '--party', 'kv']);
  assert.deepEqual(kvOnly.rooms.map((r) => r.room).sort(), ['ctl-kv-1', 'other-kv']);
  const pre = await ctlJson(node, ['rooms', '--prefix', 'ctl-1']);
  assert.deepEqual(pre.rooms.map((r) => r.room).sort(), counters.filter((r) => r.startsWith('ctl-1')));
  const both = parseTable((await ctlOk(node, ['rooms', '--party', 'kv', '--prefix', 'ctl-'])).stdout);
  assert.deepEqual(both.map((r) => r.room), ['ctl-kv-1']);

  // the node refuses a bad limit or cursor: exit 1
  assertFails(await ctl(node, ['rooms', '--limit', '0']), 1, 'rooms --limit 0');
  assertFails(await ctl(node, ['rooms', '--limit', '5000']), 1, 'rooms --limit 5000');
  assertFails(await ctl(node, ['rooms', '--cursor', 'garbage']), 1, 'rooms --cursor garbage');
  await stopClean(node);
});

// ---- room, evict, delete ---------------------------------------------------------------------------------------------

test('room PARTY ROOM: the table shows where it lives, its clients and keys; --json is the endpoint\'s answer', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  const a = await open(ws(node, 'relay', 'ctl-room', 'alice-id', '&tags=red,green'));
  const b = await open(ws(node, 'relay', 'ctl-room', 'bob-id'));
  const d = await api(node, '/admin/rooms/relay/ctl-room');
  const j = await ctlJson(node, ['room', 'relay', 'ctl-room']);
  assert.deepEqual(j, d);
  const t = (await ctlOk(node, ['room', 'relay', 'ctl-room'])).stdout;
  for (const s of ['relay', 'ctl-room', 'alice-id', 'bob-id', 'red', 'green']) assert.ok(t.includes(s), `"${s}" not in:\n${t}`);
  assert.match(t, new RegExp(`\\b${d.slot}\\b`), `the slot ${d.slot} is not in:\n${t}`);
  assert.match(t, new RegExp(`shard\\D{0,3}${d.shard}\\b`), `the shard ${d.shard} is not in:\n${t}`);
  assert.match(t, /\b2\b/, 'the connection count');

  for (let i = 0; i < 3; ++i) await kvPut(node, 'ctl-keys', `key-${i}`, 'x'.repeat(7 + i));
  const kt = (await ctlOk(node, ['room', 'kv', 'ctl-keys'])).stdout;
  for (let i = 0; i < 3; ++i) {
    assert.ok(kt.includes(`key-${i}`), `key-${i} not in:\n${kt}`);
    assert.match(kt, new RegExp(`key-${i}\\D*${7 + i}\\b`), `key-${i}'s size not in:\n${kt}`);
  }
  const kj = await ctlJson(node, ['room', 'kv', 'ctl-keys']);
  assert.deepEqual(kj.keys, [0, 1, 2].map((i) => ({ key: `key-${i}`, bytes: 7 + i })));

  // alarm shown
  const set = await node.json('/parties/counter/ctl-alarm?alarm=600000', { method: 'POST' });
  assert.equal((await ctlJson(node, ['room', 'counter', 'ctl-alarm'])).alarmAt, set.body.alarmAt);

  // unknown party: the node says 404 → exit 1
  const nf = await ctl(node, ['room', 'nosuchparty', 'x']);
  assertFails(nf, 1, 'room in an unknown party');
  assert.equal(nf.stdout, '');
  assert.match(nf.stderr, /404|unknown party/);
  await stopClean(node, [a, b]);
});

test('evict and delete: clients get 1012, evict keeps the data, delete needs --yes and removes exactly that room', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  for (let i = 0; i < 3; ++i) await bump(node, 'ctl-ev');
  const c = await open(ws(node, 'counter', 'ctl-ev', 'x'));
  const r = await ctlOk(node, ['evict', 'counter', 'ctl-ev']);
  assert.equal((await c.closed).code, 1012);
  assert.match(r.stdout, /evicted/);
  assert.equal((await api(node, '/admin/rooms/counter/ctl-ev')).in_memory, false);
  assert.equal((await node.json('/parties/counter/ctl-ev')).body.count, 3);
  assert.deepEqual(await ctlJson(node, ['evict', 'counter', 'ctl-ev']), { evicted: true });
  assertFails(await ctl(node, ['evict', 'nosuchparty', 'x']), 1, 'evict in an unknown party');

  // delete: without --yes nothing happens (usage, 2)
  for (let i = 0; i < 4; ++i) await kvPut(node, 'ctl-del', `k${i}`, 'v');
  const w = await open(ws(node, 'kv', 'ctl-del', 'w'));
  assertFails(await ctl(node, ['delete', 'kv', 'ctl-del']), 2, 'delete without --yes');
  assertFails(await ctl(node, ['delete', 'kv', 'ctl-del', '--no']), 2, 'delete with --no');
  assert.equal((await api(node, '/admin/rooms/kv/ctl-del')).keys.length, 4);
  assert.equal(w.ws.readyState, 1);
  const del = await ctlOk(node, ['delete', 'kv', 'ctl-del', '--yes']);
  assert.match(del.stdout, /\b4\b/, `the number of keys deleted:\n${del.stdout}`);
  assert.equal((await w.closed).code, 1012);
  assert.deepEqual((await api(node, '/admin/rooms/kv/ctl-del')).keys, []);
  assert.deepEqual(await ctlJson(node, ['delete', 'kv', 'ctl-del', '--yes']), { deleted: true, keys: 0 });

  // a room id that is percent-encoded is its own room: deleting "a%20b" leaves "a b"'s neighbours alone
  await kvPut(node, 'pc%20room', 'x', '1');
  await kvPut(node, 'pc%2520room', 'y', '2');
  await kvPut(node, 'pc', 'z', '3');
  assert.deepEqual(await ctlJson(node, ['delete', 'kv', 'pc%20room', '--yes']), { deleted: true, keys: 1 });
  assert.deepEqual((await api(node, '/admin/rooms/kv/pc%20room')).keys, []);
  assert.deepEqual((await api(node, '/admin/rooms/kv/pc%2520room')).keys.map((k) => k.key), ['y']);
  assert.deepEqual((await api(node, '/admin/rooms/kv/pc')).keys.map((k) => k.key), ['z']);
  await stopClean(node);
});

// ---- backup ----------------------------------------------------------------------------------------------------------

test('backup DIR: 0 with the checkpoint written; the same DIR again is refused (409 → exit 1)', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  await bump(node, 'ctl-bk');
  const dir = path.join(node.dir, 'ctl-backup');
  const r = await ctlOk(node, ['backup', dir]);
  assert.ok(r.stdout.includes(dir), `the backup dir is not in:\n${r.stdout}`);
  assert.ok(fs.existsSync(path.join(dir, 'node.json')));
  for (const s of ['shard-0', 'shard-1']) assert.ok(r.stdout.includes(s), `${s} not in:\n${r.stdout}`);
  const again = await ctl(node, ['backup', dir]);
  assertFails(again, 1, 'backup into an existing dir');
  assert.match(again.stderr, /409|exist/);
  const dir2 = path.join(node.dir, 'ctl-backup-2');
  const j = await ctlJson(node, ['backup', dir2]);
  assert.equal(j.dir, dir2);
  assert.equal(j.shards.length, 2);
  for (const p of j.shards) assert.ok(fs.statSync(p).isDirectory());
  await stopClean(node);
});

// ---- add-shard, drain ------------------------------------------------------------------------------------------------

test('add-shard and drain SHARD: rooms move live and keep their data; shards, rooms and room follow the new ids', { timeout: 90000 }, async () => {
  const node = await start({ shards: 2, config: cfg() });
  const rooms = Array.from({ length: 30 }, (_, i) => `rs-${i}`);
  for (const r of rooms) await bump(node, r);
  const listAll = async () => {
    const seen = [];
    let cursor = null;
    for (let pages = 0; pages < 50; ++pages) {
      const page = await ctlJson(node, ['rooms', '--limit', '4', ...(cursor !== null ? ['--cursor', cursor] : [])]);
      seen.push(...page.rooms);
      if (page.cursor === null) return seen;
      cursor = page.cursor;
    }
    assert.fail('the cursor never ended');
  };
  const check = async (ids) => {
    const shards = await ctlJson(node, ['shards']);
    assert.deepEqual(shards.map((s) => s.id), ids);
    assert.equal(shards.reduce((a, s) => a + s.slots, 0), 16384);
    assert.ok(shards.every((s) => s.state === 'up'));
    const table = parseTable((await ctlOk(node, ['shards'])).stdout);
    assert.deepEqual(table.map((r) => Number(r.id)), ids);
    const listed = await listAll();
    assert.deepEqual(listed.map((r) => r.room).sort(), [...rooms].sort(), `the rooms listed over shards ${ids}`);
    assert.ok(listed.every((r) => ids.includes(r.shard)));
    for (const r of rooms.slice(0, 6)) {
      const d = await ctlJson(node, ['room', 'counter', r]);
      assert.ok(ids.includes(d.shard));
      assert.deepEqual(d.keys.map((k) => k.key), ['count']);
    }
    for (const r of rooms) assert.equal((await node.json(`/parties/counter/${r}`)).body.count, 1, `${r} after re-sharding to ${ids}`);
  };

  const add = await ctlOk(node, ['add-shard']);
  assert.match(add.stdout, /\b2\b/, `add-shard names the new shard:\n${add.stdout}`);
  await check([0, 1, 2]);
  const addJson = await ctlJson(node, ['add-shard']);
  assert.equal(typeof addJson, 'object');
  await check([0, 1, 2, 3]);

  const drain = await ctlOk(node, ['drain', '1']);
  assert.ok(drain.stdout.trim().length > 0);
  await check([0, 2, 3]);
  const drainJson = await ctlJson(node, ['drain', '0']);
  assert.equal(typeof drainJson, 'object');
  await check([2, 3]);

  // the node refuses: a shard that is not there, one that was drained
  const nf = await ctl(node, ['drain', '7']);
  assertFails(nf, 1, 'drain 7');
  assertFails(await ctl(node, ['drain', '1']), 1, 'drain a drained shard');
  await ctlOk(node, ['drain', '2']);
  await check([3]);
  const last = await ctl(node, ['drain', '3']);
  assertFails(last, 1, 'drain the last shard');
  assert.match(last.stderr, /409/);
  await check([3]);
  assert.equal((await node.admin('/ready')).status, 200);
  // usage
  assertFails(await ctl(node, ['drain']), 2, 'drain without a shard');
  assertFails(await ctl(node, ['drain', 'abc']), 2, 'drain abc');
  assertFails(await ctl(node, ['add-shard', 'extra']), 2, 'add-shard extra');
  await stopClean(node);
});

// ---- exit status -----------------------------------------------------------------------------------------------------

test('exit status: 1 for 401 (no or wrong token) and 404, 2 for usage, 3 for an unreachable node; --help is 0', T, async () => {
  const node = await start({ shards: 1, config: cfg() });
  await bump(node, 'ex');

  const problems = [];
  // the token comes from PARTYD_ADMIN_TOKEN; a refusal prints its reason on stderr and nothing on stdout
  for (const token of [null, '', 'wrong']) {
    for (const args of [['status'], ['shards'], ['rooms'], ['room', 'counter', 'ex'], ['evict', 'counter', 'ex'], ['delete', 'counter', 'ex', '--yes'], ['metrics'], ['backup', path.join(node.dir, 'never')]]) {
      const r = await ctl(node, args, { token });
      const what = `partyctl ${args.join(' ')} with PARTYD_ADMIN_TOKEN=${JSON.stringify(token)}`;
      assertFails(r, 1, what, problems);
      if (!/401|token|auth/i.test(r.stderr)) problems.push(`${what}: the 401 is not explained on stderr: ${JSON.stringify(r.stderr)}`);
      if (r.stdout !== '') problems.push(`${what}: the refusal went to stdout: ${JSON.stringify(r.stdout.slice(0, 200))}`);
    }
  }
  assert.ok(!fs.existsSync(path.join(node.dir, 'never')));
  assert.equal((await node.json('/parties/counter/ex')).body.count, 1, 'a refused delete deleted');

  // usage: 2, before any request (so also against an unreachable node)
  const usage = [
    [], ['bogus'], ['--bogus', 'status'], ['status', 'extra'], ['shards', 'extra'], ['room'], ['room', 'counter'],
    ['room', 'counter', 'a', 'b'], ['evict'], ['evict', 'counter'], ['delete'], ['delete', 'counter'], ['delete', 'counter', 'ex'],
    ['delete', 'counter', 'ex', 'yes'], ['backup'], ['backup', 'a', 'b'], ['metrics', 'extra'], ['drain'], ['drain', 'x'],
    ['rooms', 'extra'], ['rooms', '--bogus'], ['rooms', '--limit'],
  ];
  for (const args of usage) {
    assertFails(await ctl(node, args), 2, `partyctl ${args.join(' ')}`, problems);
    assertFails(await partyctl(['--admin', UNREACHABLE, ...args]), 2, `partyctl ${args.join(' ')} (unreachable node)`, problems);
  }
  assert.equal((await node.json('/parties/counter/ex')).body.count, 1);

  // unreachable: 3
  for (const args of [['status'], ['shards'], ['rooms'], ['room', 'counter', 'x'], ['evict', 'counter', 'x'], ['delete', 'counter', 'x', '--yes'], ['backup', '/tmp/never-written-by-partyctl'], ['metrics'], ['add-shard'], ['drain', '0']]) {
    for (const json of [[], ['--json']]) {
      const r = await partyctl(['--admin', UNREACHABLE, ...json, ...args]);
      const what = `partyctl ${[...json, ...args].join(' ')} against ${UNREACHABLE}`;
      assertFails(r, 3, what, problems);
      if (r.stdout !== '') problems.push(`${what}: printed on stdout: ${JSON.stringify(r.stdout.slice(0, 200))}`);
    }
  }
  assert.deepEqual(problems, [], `partyctl exit status:\n${problems.join('\n')}`);

  // 0: --help; a trailing slash on --admin
  const h = await partyctl(['--help']);
  assert.equal(h.code, 0);
  for (const c of ['status', 'shards', 'rooms', 'room', 'evict', 'delete', 'backup', 'metrics', 'add-shard', 'drain']) {
    assert.match(h.stdout, new RegExp(`\\b${c}\\b`), `--help does not mention ${c}`);
  }
  assert.equal((await partyctl(['--admin', `http://127.0.0.1:${node.adminPort}/`, 'status'])).code, 0);
  await stopClean(node);
});

test('a node without a token: partyctl works with PARTYD_ADMIN_TOKEN unset', T, async () => {
  const node = await start({ shards: 1, env: { PARTYD_ADMIN_TOKEN: '' } });
  assert.equal((await node.admin('/admin/node')).status, 200, 'the node has a token');
  const r = await ctl(node, ['--json', 'shards'], { token: null });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).length, 1);
  await waitFor(async () => (await ctl(node, ['status'], { token: null })).code === 0, { what: 'status' });
  await stopClean(node);
});
