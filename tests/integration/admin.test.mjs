// admin.test.mjs — the admin listener: /health and /ready, the bearer token (401s), /admin/node, /admin/shards (and a
// shard that is down), the paged room listing over several shards, one room's detail (clients, alarm, paged keys),
// evict, delete, backup and a restore from it, /metrics parsed strictly and moving with the traffic, and the
// dashboard page served as one self-contained HTML document.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from './lib.mjs';
import { cleanupAfterEach, start, open, stopClean } from './helpers.mjs';
import { TOKEN, adm, scrape, metric, metricSum, exitWithin } from './adminlib.mjs';

cleanupAfterEach();

const T = { timeout: 60000 };
const DEFAULT_PARTIES = { main: { kind: 'chat' }, relay: { kind: 'relay' }, counter: { kind: 'counter' } };
const cfg = (extra = {}, parties = {}) => ({ admin: { token: TOKEN, backup_dir: '.' }, ...extra, parties: { ...DEFAULT_PARTIES, ...parties } });
const KV = { kv: { kind: 'kv' } };

const ws = (node, party, room, pk, query = '') => node.wsUrl(`/parties/${party}/${room}?_pk=${encodeURIComponent(pk)}${query}`);

async function ok(node, p, init) {
  const r = await adm(node, p, init);
  assert.equal(r.status, 200, `${init?.method ?? 'GET'} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
async function bump(node, room) {
  const r = await node.json(`/parties/counter/${room}`, { method: 'POST' });
  assert.equal(r.status, 200, `POST counter ${room}: ${JSON.stringify(r.body)}`);
  return r.body.count;
}
async function count(node, room) {
  const r = await node.json(`/parties/counter/${room}`);
  assert.equal(r.status, 200);
  return r.body;
}
async function kvPut(node, room, key, value) {
  const r = await node.fetch(`/parties/kv/${room}?key=${encodeURIComponent(key)}`, { method: 'PUT', body: value });
  assert.equal(r.status, 200, `PUT kv ${room} ${key}: ${r.status} ${await r.text()}`);
}
async function kvEntries(node, room) {
  const r = await node.json(`/parties/kv/${room}`);
  assert.equal(r.status, 200);
  return r.body.entries;
}
// Runs fns with at most n at a time.
async function pool(items, n, fn) {
  const queue = [...items];
  await Promise.all(Array.from({ length: n }, async () => {
    while (queue.length) await fn(queue.shift());
  }));
}
function assertJsonError(r, status, what) {
  assert.equal(r.status, status, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body, 'object', `${what}: the body is not JSON: ${r.body}`);
  assert.equal(typeof r.body.error, 'string', `${what}: no "error" in ${JSON.stringify(r.body)}`);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
}

// ---- health, ready, the token ----------------------------------------------------------------------------------------

test('the token: /health, /ready and the dashboard page are open; every other admin path needs the bearer token', T, async () => {
  const node = await start({ shards: 2, config: cfg({}, KV) });
  assert.equal(await bump(node, 'tok-room'), 1);
  await kvPut(node, 'tok-kv', 'k', 'v');

  const h = await node.admin('/health');
  assert.equal(h.status, 200);
  assert.equal(h.body.status, 'ok');
  const rd = await node.admin('/ready');
  assert.equal(rd.status, 200);
  assert.deepEqual(rd.body, { ready: true });
  const dash = await node.admin('/admin/');
  assert.equal(dash.status, 200);
  assert.match(dash.headers.get('content-type'), /^text\/html/);

  const backupDir = path.join(node.dir, 'unauthorized-backup');
  const guarded = [
    ['GET', '/admin/node'],
    ['GET', '/admin/shards'],
    ['GET', '/admin/rooms'],
    ['GET', '/admin/rooms?party=counter&limit=5'],
    ['GET', '/admin/rooms/counter/tok-room'],
    ['POST', '/admin/rooms/counter/tok-room/evict'],
    ['DELETE', '/admin/rooms/kv/tok-kv?confirm=tok-kv'],
    ['POST', '/admin/backup', JSON.stringify({ dir: backupDir })],
    ['GET', '/metrics'],
    ['GET', '/admin/nonexistent'],
  ];
  const wrong = [
    null, // no header
    `Bearer wrong`,
    `Bearer ${TOKEN}x`,
    `Bearer ${TOKEN.slice(0, -1)}`,
    `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
    TOKEN,
    'Bearer ',
  ];
  for (const [method, p, body] of guarded) {
    for (const auth of wrong) {
      const headers = auth === null ? {} : { Authorization: auth };
      // more than 10 wrong tokens a second get 429 (Retry-After: 1) until the next second: then the 401
      const r = await waitFor(async () => {
        const x = await node.admin(p, { method, headers, body });
        return x.status === 429 ? null : x;
      }, { what: `${method} ${p} past the wrong-token throttle` });
      const what = `${method} ${p} with ${auth === null ? 'no Authorization' : `Authorization: ${auth}`}`;
      assertJsonError(r, 401, what);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/, `${what}: no WWW-Authenticate: Bearer`);
    }
    // and with the token it is not a 401
    const r = await adm(node, p, { method, body: body && JSON.stringify({ dir: path.join(node.dir, 'authorized-backup') }) });
    assert.notEqual(r.status, 401, `${method} ${p} with the token: 401`);
  }

  // nothing that was refused happened: the unauthorized backup dir is not there; the kv room kept its key until the
  // authorized delete above; the counter room was evicted only by the authorized request
  assert.ok(!fs.existsSync(backupDir), 'a backup ran without the token');
  assert.ok(fs.existsSync(path.join(node.dir, 'authorized-backup')), 'the authorized backup did not run');
  assert.equal((await count(node, 'tok-room')).count, 1);

  await stopClean(node);
});

test('the token from the environment ({"env": NAME}); a non-loopback admin listener without a token refuses to start', T, async () => {
  const node = await start({ shards: 1, config: { admin: { token: { env: 'MY_ADMIN_TOKEN' } } }, env: { MY_ADMIN_TOKEN: 'from-env-token-0042' } });
  assert.equal((await node.admin('/admin/node')).status, 401);
  assert.equal((await adm(node, '/admin/node', {}, TOKEN)).status, 401);
  const r = await adm(node, '/admin/node', {}, 'from-env-token-0042');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(typeof r.body.version, 'string');
  await stopClean(node);

  // 0.0.0.0 with no token: refused, exit 2, the error names the admin setting
  const bad = await start({ shards: 1, args: ['--admin', '0.0.0.0:0'], env: { PARTYD_ADMIN_TOKEN: '' }, ready: false });
  const { code } = (await exitWithin(bad, 20000)) ?? { code: 'still running' };
  assert.equal(code, 2, `partyd did not refuse a non-loopback admin listener without a token (stderr: ${bad.stderr})`);
  assert.match(bad.stderr, /admin/);
  // the flag is named, not the configuration it was laid over
  assert.match(bad.stderr, /--admin 0\.0\.0\.0:0: /);
  assert.doesNotMatch(bad.stderr, /embedded default/);
  assert.doesNotMatch(bad.stdout, /listening on/);
  bad.checkSanitizers();

  // the same listener with a token starts (it is only bound here, never reached from outside this machine)
  const withToken = await start({ shards: 1, args: ['--admin', '0.0.0.0:0'], env: { PARTYD_ADMIN_TOKEN: 'tok-from-env-000042' }, ready: false });
  const port = await waitFor(() => {
    if (withToken.exitCode !== undefined) throw new Error(`partyd exited: ${withToken.stderr}`);
    return Number(/admin on http:\/\/[^:/]+:(\d+)/.exec(withToken.stdout)?.[1]);
  }, { what: 'the admin port' });
  withToken.adminPort = port;
  await waitFor(async () => (await withToken.admin('/health')).status === 200, { what: '/health on the 0.0.0.0 admin listener' });
  assert.equal((await withToken.admin('/admin/shards')).status, 401);
  assert.equal((await adm(withToken, '/admin/shards', {}, 'tok-from-env-000042')).status, 200);
  await stopClean(withToken);
});

// ---- /admin/node, /admin/shards --------------------------------------------------------------------------------------

test('/admin/node: version, protocol, uptime, router pid and the effective configuration', T, async () => {
  const before = Date.now();
  const node = await start({
    shards: 3,
    config: cfg({
      durability: 'relaxed',
      limits: { message_bytes: 65536, body_bytes: 200000, connections_per_room: 77, rooms_in_memory: 5000 },
      timers: { idle_ms: 12345, ping_ms: 23456, alarm_retry_ms: 3456, drain_ms: 4567 },
    }, { kv: { kind: 'kv', hibernate: true }, lobby: { kind: 'chat' } }),
  });
  const n = await ok(node, '/admin/node');
  assert.equal(typeof n.version, 'string');
  assert.ok(n.version.length > 0);
  assert.ok(Number.isInteger(n.protocol) && n.protocol > 0, `protocol ${n.protocol}`);
  assert.ok(Number.isInteger(n.party_abi) && n.party_abi > 0, `party_abi ${n.party_abi}`);
  assert.ok(Number.isInteger(n.started_at), `started_at ${n.started_at}`);
  assert.ok(n.started_at >= before - 2000 && n.started_at <= Date.now() + 1000, `started_at ${n.started_at} is not about now`);
  assert.ok(Number.isInteger(n.uptime_s) && n.uptime_s >= 0 && n.uptime_s < 60, `uptime_s ${n.uptime_s}`);
  assert.equal(n.router_pid, node.routerPid());
  assert.equal(n.draining, false);
  const c = n.config;
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, node.port, 'config.port is the bound port');
  assert.equal(c.admin_port, node.adminPort, 'config.admin_port is the bound admin port');
  assert.deepEqual(n.shard_ids, [0, 1, 2]);
  assert.equal(n.migration.phase, 'idle');
  assert.equal(c.prefix, 'parties');
  assert.equal(c.shards, 3);
  assert.equal(c.data_dir, path.join(node.dir, 'data'));
  assert.equal(c.durability, 'relaxed');
  assert.equal(typeof c.source, 'string');
  assert.match(c.source, /partyd\.json/, 'config.source names the config file');
  assert.deepEqual(c.parties, {
    main: { kind: 'chat', hibernate: false },
    relay: { kind: 'relay', hibernate: false },
    counter: { kind: 'counter', hibernate: true },
    kv: { kind: 'kv', hibernate: true },
    lobby: { kind: 'chat', hibernate: false },
  });
  assert.equal(c.limits.message_bytes, 65536);
  assert.equal(c.limits.body_bytes, 200000);
  assert.equal(c.limits.connections_per_room, 77);
  assert.equal(c.limits.rooms_in_memory, 5000);
  assert.deepEqual(c.timers, { idle_ms: 12345, ping_ms: 23456, alarm_retry_ms: 3456, drain_ms: 4567 });

  // uptime moves
  await waitFor(async () => (await ok(node, '/admin/node')).uptime_s >= 1, { timeout: 5000, what: 'uptime_s to reach 1' });
  await stopClean(node);
});

test('/admin/shards: one entry per shard with its pid, slots summing to 16384, and counters that follow the traffic', T, async () => {
  const node = await start({ shards: 3, config: cfg() });
  const s0 = await ok(node, '/admin/shards');
  assert.equal(s0.length, 3);
  const kids = node.children().filter((c) => c.comm === 'partyd-shard').map((c) => c.pid).sort();
  assert.deepEqual(s0.map((s) => s.pid).sort(), kids);
  let slots = 0;
  for (const [i, s] of s0.entries()) {
    assert.equal(s.id, i);
    assert.equal(s.state, 'up');
    assert.equal(s.restarts, 0);
    assert.ok(Number.isInteger(s.slots) && s.slots > 3000, `shard ${i} owns ${s.slots} slots`);
    slots += s.slots;
    for (const k of ['rooms', 'rooms_hibernating', 'evictions', 'connections', 'messages_in', 'messages_out', 'bytes_in', 'bytes_out', 'storage_bytes', 'commits', 'writes', 'failed_commits']) {
      assert.ok(Number.isInteger(s[k]) && s[k] >= 0, `shard ${i}.${k} = ${s[k]}`);
    }
    assert.equal(s.rooms, 0);
    assert.equal(s.connections, 0);
    assert.equal(s.failed_commits, 0);
  }
  assert.equal(slots, 16384);

  // a relay room with 3 connections on one shard; 5 messages in, each to 2 others
  const room = 'shards-relay';
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((pk) => open(ws(node, 'relay', room, pk))));
  const info = await ok(node, `/admin/rooms/relay/${room}`);
  const sh = info.shard;
  const s1 = (await ok(node, '/admin/shards'))[sh];
  assert.equal(s1.connections, 3);
  assert.ok(s1.rooms >= 1);
  for (let i = 0; i < 5; ++i) a.send(`m${i}`);
  await waitFor(() => b.messages.length === 5 && c.messages.length === 5, { what: 'the relayed messages' });
  const s2 = await waitFor(async () => {
    const s = (await ok(node, '/admin/shards'))[sh];
    return s.messages_in - s1.messages_in >= 5 && s.messages_out - s1.messages_out >= 10 ? s : null;
  }, { what: 'messages_in/out to move' });
  assert.equal(s2.messages_in - s1.messages_in, 5);
  assert.equal(s2.messages_out - s1.messages_out, 10);
  // payload bytes: "m0".."m4" are 2 bytes each, in once and out to 2 others
  assert.equal(s2.bytes_in - s1.bytes_in, 10);
  assert.equal(s2.bytes_out - s1.bytes_out, 20);

  // writes: 3 POSTs to a counter → commits and writes move on its shard
  const cinfo = await ok(node, '/admin/rooms/counter/shards-count');
  const w1 = (await ok(node, '/admin/shards'))[cinfo.shard];
  for (let i = 0; i < 3; ++i) await bump(node, 'shards-count');
  const w2 = (await ok(node, '/admin/shards'))[cinfo.shard];
  assert.ok(w2.commits - w1.commits >= 1, `commits ${w1.commits} → ${w2.commits}`);
  assert.ok(w2.writes - w1.writes >= 3, `writes ${w1.writes} → ${w2.writes}`);
  assert.ok(w2.storage_bytes > 0);

  await Promise.all([a, b, c].map((x) => x.close()));
  await waitFor(async () => (await ok(node, '/admin/shards'))[sh].connections === 0, { what: 'connections back to 0' });
  await stopClean(node);
});

test('a shard that is down: state not "up", its counters null, /ready 503; it comes back with restarts counted', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  const victim = 1;
  const firstPid = (await ok(node, '/admin/shards'))[victim].pid;
  let seenDown = null, seenNotReady = false;
  // The supervisor restarts a young shard after a backoff (50 ms, doubling while it keeps dying): kill it until a
  // window is caught in which it is down.
  for (let attempt = 0; attempt < 8 && !(seenDown && seenNotReady); ++attempt) {
    const shards = await waitFor(async () => {
      const s = await ok(node, '/admin/shards');
      return s[victim].state === 'up' ? s : null;
    }, { timeout: 20000, what: 'the shard to be up before a kill' });
    process.kill(shards[victim].pid, 'SIGKILL');
    const end = Date.now() + 3000;
    while (Date.now() < end) {
      const [ready, s] = await Promise.all([node.admin('/ready'), ok(node, '/admin/shards')]);
      if (ready.status === 503) {
        seenNotReady = true;
        assert.deepEqual(ready.body, { ready: false });
      }
      if (s[victim].state !== 'up') {
        seenDown = s[victim];
        assert.ok(['down', 'starting'].includes(s[victim].state), `state ${s[victim].state}`);
        assert.equal(s[0].state, 'up');
        assert.ok(Number.isInteger(s[0].rooms), 'the other shard still reports');
      }
      if (seenDown && seenNotReady) break;
      if (s[victim].state === 'up' && s[victim].pid !== shards[victim].pid) break;
    }
  }
  assert.ok(seenDown, 'never saw the killed shard as not up');
  assert.ok(seenNotReady, 'never saw /ready answer 503 while a shard was down');
  for (const k of ['rooms', 'rooms_hibernating', 'evictions', 'connections', 'messages_in', 'messages_out', 'bytes_in', 'bytes_out', 'storage_bytes', 'commits', 'writes', 'failed_commits']) {
    assert.equal(seenDown[k], null, `a down shard's ${k} is ${seenDown[k]}, not null`);
  }
  assert.equal(typeof seenDown.id, 'number');
  assert.equal(typeof seenDown.restarts, 'number');

  const back = await waitFor(async () => {
    const s = await ok(node, '/admin/shards');
    return s[victim].state === 'up' && Number.isInteger(s[victim].rooms) ? s : null;
  }, { timeout: 20000, what: 'the shard to come back' });
  assert.ok(back[victim].restarts >= 1);
  assert.notEqual(back[victim].pid, firstPid);
  await waitFor(async () => (await node.admin('/ready')).status === 200, { what: '/ready 200 again' });
  const m = await scrape(node);
  assert.equal(metric(m, 'partyd_shard_restarts_total', { shard: String(victim) }), back[victim].restarts);
  assert.equal(metric(m, 'partyd_shards', { state: 'up' }), 2);
  await stopClean(node, [], { allowRestarts: true });
});

// ---- the room listing ------------------------------------------------------------------------------------------------

async function allPages(node, query, limit) {
  const rooms = [];
  let cursor = null, pages = 0;
  for (;;) {
    const q = new URLSearchParams(query);
    q.set('limit', String(limit));
    if (cursor !== null) q.set('cursor', cursor);
    const page = await ok(node, `/admin/rooms?${q}`);
    assert.ok(Array.isArray(page.rooms));
    assert.ok(page.rooms.length <= limit, `a page of ${page.rooms.length} rooms for limit ${limit}`);
    assert.ok(page.cursor === null || typeof page.cursor === 'string', `cursor ${JSON.stringify(page.cursor)}`);
    rooms.push(...page.rooms);
    ++pages;
    assert.ok(pages < 500, 'the cursor never ends');
    if (page.cursor === null) break;
    cursor = page.cursor;
  }
  return { rooms, pages };
}
const roomId = (r) => `${r.party}/${r.room}`;

function assertOrdered(rooms) {
  for (let i = 1; i < rooms.length; ++i) {
    const p = rooms[i - 1], r = rooms[i];
    assert.ok(r.shard >= p.shard, `shards out of order at ${roomId(r)}`);
    if (r.shard === p.shard) assert.ok(r.slot >= p.slot, `slots out of order in shard ${r.shard}: ${roomId(p)} ${p.slot}, ${roomId(r)} ${r.slot}`);
  }
}

test('/admin/rooms: 218 rooms over 3 shards, paged with cursors (every room exactly once, in order), filters, bad input', { timeout: 90000 }, async () => {
  const node = await start({ shards: 3, config: cfg({}, KV) });
  const counters = Array.from({ length: 160 }, (_, i) => `pg-${String(i).padStart(3, '0')}`);
  await pool(counters, 16, (r) => bump(node, r));
  const kvRooms = Array.from({ length: 12 }, (_, i) => `kvroom-${i}`);
  await pool(kvRooms, 6, (r) => kvPut(node, r, 'k', `v-${r}`));
  // two rooms whose ids differ only by percent-encoding: distinct rooms
  await bump(node, '%41x');
  await bump(node, 'Ax');
  // relay rooms in memory only (nothing stored), with connections
  const relays = ['rl-a', 'rl-b', 'rl-c', 'rl-d'];
  const sockets = await Promise.all(relays.map((r, i) => open(ws(node, 'relay', r, `p${i}`))));
  // and rooms in memory only, without connections (a GET starts a relay room, which stores nothing)
  const memOnly = Array.from({ length: 40 }, (_, i) => `mem-${String(i).padStart(2, '0')}`);
  await pool(memOnly, 8, async (r) => assert.equal((await node.json(`/parties/relay/${r}`)).status, 200));
  // some counters evicted: stored, not in memory
  const evicted = counters.slice(0, 5);
  for (const r of evicted) assert.deepEqual(await ok(node, `/admin/rooms/counter/${r}/evict`, { method: 'POST' }), { evicted: true });

  const expected = new Set([...counters.map((r) => `counter/${r}`), ...kvRooms.map((r) => `kv/${r}`), 'counter/%41x', 'counter/Ax',
    ...relays.map((r) => `relay/${r}`), ...memOnly.map((r) => `relay/${r}`)]);
  assert.equal(expected.size, 218);

  // one big page
  const full = await ok(node, '/admin/rooms?limit=1000');
  assert.equal(full.cursor, null);
  assert.equal(full.rooms.length, expected.size);
  assert.deepEqual(new Set(full.rooms.map(roomId)), expected);
  assertOrdered(full.rooms);
  assert.deepEqual(new Set(full.rooms.map((r) => r.shard)), new Set([0, 1, 2]), 'the rooms are spread over the 3 shards');
  for (const r of full.rooms) {
    assert.deepEqual(Object.keys(r).sort(), ['connections', 'hibernating', 'in_memory', 'party', 'room', 'shard', 'slot', 'stored'].sort(), JSON.stringify(r));
    assert.ok(Number.isInteger(r.slot) && r.slot >= 0 && r.slot < 16384);
    assert.equal(typeof r.in_memory, 'boolean');
    assert.equal(typeof r.hibernating, 'boolean');
    assert.equal(typeof r.stored, 'boolean');
    assert.ok(Number.isInteger(r.connections));
  }
  const by = new Map(full.rooms.map((r) => [roomId(r), r]));
  for (const r of relays) {
    const e = by.get(`relay/${r}`);
    assert.equal(e.in_memory, true);
    assert.equal(e.stored, false);
    assert.equal(e.connections, 1);
  }
  for (const r of memOnly) {
    const e = by.get(`relay/${r}`);
    assert.deepEqual([e.in_memory, e.stored, e.connections], [true, false, 0], `relay/${r}`);
  }
  for (const r of evicted) {
    const e = by.get(`counter/${r}`);
    assert.equal(e.in_memory, false, `${r} was evicted`);
    assert.equal(e.stored, true);
  }
  assert.equal(by.get('counter/pg-100').in_memory, true);
  assert.equal(by.get('counter/pg-100').stored, true);
  assert.equal(by.get('kv/kvroom-3').stored, true);
  // the listing agrees with the room detail and the shard list
  for (const id of ['counter/pg-000', 'counter/pg-077', 'counter/%41x', 'counter/Ax', 'kv/kvroom-5', 'relay/rl-c']) {
    const d = await ok(node, `/admin/rooms/${id}`);
    assert.equal(d.shard, by.get(id).shard, id);
    assert.equal(d.slot, by.get(id).slot, id);
  }
  const shards = await ok(node, '/admin/shards');
  for (const s of shards) {
    assert.equal(full.rooms.filter((r) => r.shard === s.id && r.in_memory).length, s.rooms, `shard ${s.id}: rooms in memory`);
  }

  // the default page is 100 rooms, with a cursor
  const def = await ok(node, '/admin/rooms');
  assert.equal(def.rooms.length, 100);
  assert.equal(typeof def.cursor, 'string');
  assert.deepEqual(def.rooms, full.rooms.slice(0, 100));

  // pages of every size see every room exactly once, in the same order as the full listing
  for (const limit of [1, 7, 50, 99, 217, 218, 219]) {
    const { rooms, pages } = await allPages(node, {}, limit);
    const ids = rooms.map(roomId);
    assert.equal(new Set(ids).size, ids.length, `limit ${limit}: a room was listed twice`);
    assert.deepEqual(ids, full.rooms.map(roomId), `limit ${limit}: pages differ from the full listing`);
    assert.ok(pages >= Math.ceil(expected.size / limit), `limit ${limit}: ${pages} pages`);
  }

  // filters
  const onlyCounters = await allPages(node, { party: 'counter' }, 13);
  assert.deepEqual(new Set(onlyCounters.rooms.map(roomId)), new Set([...expected].filter((x) => x.startsWith('counter/'))));
  assert.ok(onlyCounters.rooms.every((r) => r.party === 'counter'));
  const onlyKv = await ok(node, '/admin/rooms?party=kv');
  assert.deepEqual(new Set(onlyKv.rooms.map(roomId)), new Set(kvRooms.map((r) => `kv/${r}`)));
  assert.equal(onlyKv.cursor, null);
  const pre = await allPages(node, { prefix: 'pg-1' }, 9);
  assert.deepEqual(new Set(pre.rooms.map(roomId)), new Set(counters.filter((r) => r.startsWith('pg-1')).map((r) => `counter/${r}`)));
  assert.equal(pre.rooms.length, 60);
  assertOrdered(pre.rooms);
  const mem = await allPages(node, { party: 'relay', prefix: 'mem-' }, 6);
  assert.deepEqual(mem.rooms.map(roomId).sort(), memOnly.map((r) => `relay/${r}`));
  assertOrdered(mem.rooms);
  const both = await ok(node, '/admin/rooms?party=relay&prefix=rl-');
  assert.deepEqual(new Set(both.rooms.map(roomId)), new Set(relays.map((r) => `relay/${r}`)));
  assert.deepEqual((await ok(node, '/admin/rooms?party=main')).rooms, []);
  assert.deepEqual((await ok(node, '/admin/rooms?prefix=nothing-has-this-prefix')).rooms, []);
  assert.equal((await ok(node, '/admin/rooms?prefix=nothing-has-this-prefix')).cursor, null);

  // bad input
  for (const q of ['limit=0', 'limit=1001', 'limit=-5', 'limit=abc', 'limit=10x', 'cursor=nonsense', 'cursor=99:', 'cursor=-1:pg', 'cursor=x:y']) {
    assertJsonError(await adm(node, `/admin/rooms?${q}`), 400, `GET /admin/rooms?${q}`);
  }
  assert.equal((await ok(node, '/admin/rooms?limit=1')).rooms.length, 1);

  await stopClean(node, sockets);
});

// ---- one room --------------------------------------------------------------------------------------------------------

test('/admin/rooms/:party/:room: connections with ids and tags, client state, the alarm, a paged key listing, 404', T, async () => {
  const node = await start({ shards: 2, config: cfg({ timers: { idle_ms: 400 } }, KV) });

  // relay: who is connected, with tags
  const a = await open(ws(node, 'relay', 'detail-r', 'alice', '&tags=red,blue'));
  const b = await open(ws(node, 'relay', 'detail-r', 'bob'));
  const d = await ok(node, '/admin/rooms/relay/detail-r');
  assert.equal(d.party, 'relay');
  assert.equal(d.room, 'detail-r');
  assert.ok(Number.isInteger(d.shard) && d.shard >= 0 && d.shard < 2);
  assert.ok(Number.isInteger(d.slot) && d.slot >= 0 && d.slot < 16384);
  assert.equal(d.in_memory, true);
  assert.equal(d.hibernating, false);
  assert.equal(d.connections, 2);
  assert.deepEqual([...d.ids].sort(), ['alice', 'bob']);
  const clients = [...d.clients].sort((x, y) => (x.id < y.id ? -1 : 1));
  assert.equal(clients.length, 2);
  assert.equal(clients[0].id, 'alice');
  assert.deepEqual([...clients[0].tags].sort(), ['blue', 'red']);
  assert.equal(clients[1].id, 'bob');
  assert.deepEqual(clients[1].tags, []);
  for (const c of clients) assert.ok(Number.isInteger(c.state_bytes) && c.state_bytes >= 0);
  assert.equal(d.alarmAt, null);
  assert.deepEqual(d.keys, []);
  assert.equal(d.next, null);
  await b.close();
  await waitFor(async () => (await ok(node, '/admin/rooms/relay/detail-r')).connections === 1, { what: 'bob gone from the detail' });

  // chat: a joined user's state is connection state
  const ch = await open(ws(node, 'main', 'detail-chat', 'carol'));
  ch.send(JSON.stringify({ type: 'join', name: 'Carol' }));
  await ch.waitJson((m) => m.type === 'user-joined');
  const cd = await ok(node, '/admin/rooms/main/detail-chat');
  assert.deepEqual(cd.ids, ['carol']);
  assert.ok(cd.clients[0].state_bytes > 0, 'a joined chat user has connection state');

  // counter: the alarm, and hibernation (the counter hibernates after idle_ms with its connection open)
  const cc = await open(ws(node, 'counter', 'detail-c', 'dave'));
  const before = Date.now();
  const set = await node.json('/parties/counter/detail-c?alarm=600000', { method: 'POST' });
  assert.equal(set.status, 200);
  const cdet = await ok(node, '/admin/rooms/counter/detail-c');
  assert.ok(Number.isInteger(cdet.alarmAt), `alarmAt ${cdet.alarmAt}`);
  assert.equal(cdet.alarmAt, set.body.alarmAt);
  assert.ok(cdet.alarmAt >= before + 600000 - 1000 && cdet.alarmAt <= Date.now() + 600000 + 1000);
  const hib = await waitFor(async () => {
    const x = await ok(node, '/admin/rooms/counter/detail-c');
    return x.hibernating ? x : null;
  }, { what: 'the counter room to hibernate' });
  assert.equal(hib.in_memory, false);
  assert.equal(hib.connections, 1);
  assert.deepEqual(hib.ids, ['dave']);
  assert.equal(hib.alarmAt, cdet.alarmAt, 'the alarm shows while the room is out of memory');
  const listed = (await ok(node, '/admin/rooms?party=counter')).rooms.find((r) => r.room === 'detail-c');
  assert.equal(listed.hibernating, true);
  assert.equal(listed.in_memory, false);
  assert.equal(listed.connections, 1);
  assert.ok((await ok(node, '/admin/shards'))[hib.shard].rooms_hibernating >= 1);

  // kv: 25 keys, paged 10 at a time, in key order, with their sizes
  const keys = Array.from({ length: 25 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
  await pool(keys, 5, (k) => kvPut(node, 'detail-kv', k, 'x'.repeat(10 + Number(k.slice(4)))));
  const seen = [];
  let cursor = null, pages = 0;
  do {
    const q = cursor === null ? '?limit=10' : `?limit=10&cursor=${encodeURIComponent(cursor)}`;
    const p = await ok(node, `/admin/rooms/kv/detail-kv${q}`);
    assert.ok(p.keys.length <= 10);
    seen.push(...p.keys);
    cursor = p.next;
    ++pages;
    assert.ok(pages < 10);
  } while (cursor !== null);
  assert.equal(pages, 3);
  assert.deepEqual(seen.map((k) => k.key), keys);
  assert.deepEqual(seen.map((k) => k.bytes), keys.map((k) => 10 + Number(k.slice(4))));
  const first = await ok(node, '/admin/rooms/kv/detail-kv');
  assert.equal(first.keys.length, 25, 'the default page holds 25 keys');
  assert.equal(first.next, null);

  // a room that never existed; an unknown party
  const none = await ok(node, '/admin/rooms/counter/never-was');
  assert.equal(none.in_memory, false);
  assert.equal(none.hibernating, false);
  assert.equal(none.connections, 0);
  assert.deepEqual(none.ids, []);
  assert.deepEqual(none.keys, []);
  assert.equal(none.alarmAt, null);
  assertJsonError(await adm(node, '/admin/rooms/nosuchparty/x'), 404, 'unknown party');
  assertJsonError(await adm(node, '/admin/rooms/nosuchparty/x/evict', { method: 'POST' }), 404, 'evict in an unknown party');
  assertJsonError(await adm(node, '/admin/rooms/nosuchparty/x?confirm=x', { method: 'DELETE' }), 404, 'delete in an unknown party');

  await stopClean(node, [a, ch, cc]);
});

test('/admin/rooms/:party/:room key pages reach every key, also when a page ends on a key that is not UTF-8', T, async () => {
  const node = await start({ shards: 1, config: cfg({}, KV) });
  // the kv party takes any bytes as a key: %FF is the byte 0xFF, which JSON cannot carry as a string
  const keys = ['k00', 'k01', 'k02', 'k03', 'k04', 'k04%FF', 'k05', 'k06', 'k07', 'k08', 'k09'];
  for (const k of keys) {
    const r = await node.fetch(`/parties/kv/binkeys?key=${k}`, { method: 'PUT', body: 'v' });
    assert.equal(r.status, 200);
  }
  assert.equal((await kvEntries(node, 'binkeys')).length, 11);
  const all = await ok(node, '/admin/rooms/kv/binkeys');
  assert.equal(all.keys.length, 11);
  assert.equal(all.next, null);
  const problems = [];
  for (let limit = 1; limit <= 11; ++limit) {
    let cursor = null, n = 0, pages = 0;
    for (;;) {
      const q = `?limit=${limit}${cursor !== null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const p = await adm(node, `/admin/rooms/kv/binkeys${q}`);
      if (p.status !== 200) { problems.push(`limit ${limit}: ${p.status} ${JSON.stringify(p.body)}`); break; }
      n += p.body.keys.length;
      if (p.body.next === null || ++pages > 20) break;
      cursor = p.body.next;
    }
    if (n !== 11) problems.push(`limit ${limit}: the pages reached ${n} of the 11 keys`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
  await stopClean(node);
});

// ---- evict, delete ---------------------------------------------------------------------------------------------------

test('evict: the room leaves memory now, its clients get 1012, its data stays; the next request starts it from storage', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  for (let i = 0; i < 4; ++i) await bump(node, 'ev');
  const c1 = await open(ws(node, 'counter', 'ev', 'x1'));
  const c2 = await open(ws(node, 'counter', 'ev', 'x2'));
  await c1.waitJson((m) => m.type === 'count' && m.count === 4);
  const d0 = await ok(node, '/admin/rooms/counter/ev');
  assert.equal(d0.in_memory, true);
  assert.equal(d0.connections, 2);
  const ev0 = (await ok(node, '/admin/shards'))[d0.shard].evictions;
  const wake0 = metric(await scrape(node), 'partyd_room_wake_seconds_count');

  assert.deepEqual(await ok(node, '/admin/rooms/counter/ev/evict', { method: 'POST' }), { evicted: true });
  const [x1, x2] = await Promise.all([c1.closed, c2.closed]);
  assert.equal(x1.code, 1012);
  assert.equal(x2.code, 1012);
  const d1 = await ok(node, '/admin/rooms/counter/ev');
  assert.equal(d1.in_memory, false);
  assert.equal(d1.hibernating, false);
  assert.equal(d1.connections, 0);
  assert.deepEqual(d1.keys.map((k) => k.key), ['count']);
  assert.equal((await ok(node, '/admin/shards'))[d0.shard].evictions, ev0 + 1);
  const listed = (await ok(node, '/admin/rooms?prefix=ev&party=counter')).rooms;
  assert.deepEqual(listed.map((r) => [r.room, r.in_memory, r.stored]), [['ev', false, true]]);

  // the data is all there; the room wakes (and the wake is measured)
  assert.equal((await count(node, 'ev')).count, 4);
  assert.equal((await ok(node, '/admin/rooms/counter/ev')).in_memory, true);
  assert.equal(await bump(node, 'ev'), 5);
  assert.ok(metric(await scrape(node), 'partyd_room_wake_seconds_count') > wake0, 'room wakes are measured');

  // a chat room's history survives the eviction too; a room not in memory evicts as a no-op
  await node.json('/parties/main/ev-chat', { method: 'POST', body: JSON.stringify({ content: 'kept' }) });
  assert.deepEqual(await ok(node, '/admin/rooms/main/ev-chat/evict', { method: 'POST' }), { evicted: true });
  assert.deepEqual(await ok(node, '/admin/rooms/main/ev-chat/evict', { method: 'POST' }), { evicted: true });
  assert.deepEqual((await node.json('/parties/main/ev-chat')).body.messages.map((m) => m.content), ['kept']);
  assert.deepEqual(await ok(node, '/admin/rooms/counter/never-there/evict', { method: 'POST' }), { evicted: true });

  // a reconnect reaches the restarted room
  const c3 = await open(ws(node, 'counter', 'ev', 'x1'));
  await c3.waitJson((m) => m.type === 'count' && m.count === 5);
  await stopClean(node, [c3]);
});

test('delete: needs ?confirm=ROOM; deletes every key and the alarm, closes clients with 1012; other rooms untouched', T, async () => {
  const node = await start({ shards: 2, config: cfg({}, KV) });
  const keys = Array.from({ length: 30 }, (_, i) => `d${i}`);
  await pool(keys, 6, (k) => kvPut(node, 'del-kv', k, `value-${k}`));
  await kvPut(node, 'del-kv-other', 'keep', 'me');
  await kvPut(node, 'del-kv2', 'keep', 'me too'); // a room whose id starts like the deleted one's
  const watcher = await open(ws(node, 'kv', 'del-kv', 'w'));

  for (const q of ['', '?confirm=', '?confirm=del-kv-other', '?confirm=DEL-KV', '?confirm=del-k', '?other=del-kv']) {
    assertJsonError(await adm(node, `/admin/rooms/kv/del-kv${q}`, { method: 'DELETE' }), 400, `DELETE ${q}`);
  }
  assert.equal((await kvEntries(node, 'del-kv')).length, 30, 'a refused delete deleted something');
  assert.equal(watcher.ws.readyState, 1);

  const r = await ok(node, '/admin/rooms/kv/del-kv?confirm=del-kv', { method: 'DELETE' });
  assert.deepEqual(r, { deleted: true, keys: 30 });
  assert.equal((await watcher.closed).code, 1012);
  assert.deepEqual(await kvEntries(node, 'del-kv'), []);
  const d = await ok(node, '/admin/rooms/kv/del-kv');
  assert.deepEqual(d.keys, []);
  assert.equal(d.next, null);
  assert.deepEqual((await kvEntries(node, 'del-kv-other')).map((e) => e.key), ['keep']);
  assert.deepEqual((await kvEntries(node, 'del-kv2')).map((e) => e.key), ['keep']);
  const listed = (await ok(node, '/admin/rooms?party=kv&limit=1000')).rooms.map((x) => x.room);
  assert.ok(listed.includes('del-kv-other') && listed.includes('del-kv2'));
  // deleting again: nothing left
  assert.deepEqual(await ok(node, '/admin/rooms/kv/del-kv?confirm=del-kv', { method: 'DELETE' }), { deleted: true, keys: 0 });

  // a counter with a count and an alarm soon: after the delete, count 0, no alarm, and the alarm never fires
  for (let i = 0; i < 3; ++i) await bump(node, 'del-c');
  const set = await node.json('/parties/counter/del-c?alarm=1500', { method: 'POST' });
  assert.equal(set.status, 200);
  assert.equal((await ok(node, '/admin/rooms/counter/del-c')).alarmAt, set.body.alarmAt);
  assert.deepEqual(await ok(node, '/admin/rooms/counter/del-c?confirm=del-c', { method: 'DELETE' }), { deleted: true, keys: 1 });
  const after = await ok(node, '/admin/rooms/counter/del-c');
  assert.equal(after.alarmAt, null);
  assert.deepEqual(after.keys, []);
  const g = await count(node, 'del-c');
  assert.equal(g.count, 0);
  assert.equal(g.alarmAt, null);
  // a fence: an alarm on a room of the same shard, due after the deleted one, fires; the shard's timers run in order,
  // so the deleted alarm would have fired before it
  const { shard } = await node.room('counter', 'del-c');
  let fenceRoom = null;
  for (let i = 0; fenceRoom === null; ++i)
    if ((await node.room('counter', `del-fence-${i}`)).shard === shard) fenceRoom = `del-fence-${i}`;
  const fenceSet = await node.json(`/parties/counter/${fenceRoom}?alarm=${Math.max(0, set.body.alarmAt - Date.now()) + 200}`, { method: 'POST' });
  assert.equal(fenceSet.status, 200);
  await waitFor(async () => (await count(node, fenceRoom)).count === 1, { what: 'the fence alarm to fire' });
  assert.equal((await count(node, 'del-c')).count, 0, 'the deleted alarm fired');
  assert.equal((await ok(node, '/admin/rooms?party=counter&prefix=del-c')).rooms.filter((x) => x.stored).length, 0);

  await stopClean(node);
});

// ---- backup and restore ----------------------------------------------------------------------------------------------

// README's restore: the node stopped (cleanly), its data dir replaced with a copy of the backup, started again.
async function restore(node, dir, opts) {
  const { code } = await node.stop();
  assert.equal(code, 0);
  const data = path.join(node.dir, 'data');
  fs.rmSync(data, { recursive: true, force: true });
  fs.cpSync(dir, data, { recursive: true });
  return start({ ...opts, dir: node.dir });
}

test('backup: a checkpoint of every shard and node.json; a restore brings back the data as of the backup, and only that', { timeout: 90000 }, async () => {
  const node = await start({ shards: 3, config: cfg({}, KV) });
  const rooms = Array.from({ length: 24 }, (_, i) => `bk-${i}`);
  await pool(rooms, 8, async (r) => { await bump(node, r); await bump(node, r); });
  await kvPut(node, 'bk-kv', 'a', 'one');
  await kvPut(node, 'bk-kv', 'b', 'two');
  await node.json('/parties/main/bk-chat', { method: 'POST', body: JSON.stringify({ content: 'before the backup' }) });
  const alarm = await node.json('/parties/counter/bk-alarm?alarm=3600000', { method: 'POST' });
  const spread = new Set((await ok(node, '/admin/rooms?party=counter&limit=1000')).rooms.map((r) => r.shard));
  assert.equal(spread.size, 3, 'the rooms are on every shard');

  const dir = path.join(node.dir, 'backup-1');
  const b = await ok(node, '/admin/backup', { method: 'POST', body: JSON.stringify({ dir }) });
  assert.equal(b.dir, dir);
  assert.equal(b.shards.length, 3);
  for (const p of b.shards) {
    assert.ok(path.isAbsolute(p) && p.startsWith(dir + path.sep), `shard path ${p}`);
    assert.ok(fs.statSync(p).isDirectory(), `${p} is not a directory`);
    assert.ok(fs.readdirSync(p).length > 0, `${p} is empty`);
  }
  assert.ok(fs.existsSync(path.join(dir, 'node.json')), 'node.json is in the backup');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'node.json'), 'utf8')), JSON.parse(fs.readFileSync(path.join(node.dir, 'data', 'node.json'), 'utf8')));

  // an existing dir
  const again409 = await adm(node, '/admin/backup', { method: 'POST', body: JSON.stringify({ dir }) });
  assert.equal(again409.status, 409);

  // later writes, which the restore must not bring back
  await pool(rooms, 8, (r) => bump(node, r));
  await kvPut(node, 'bk-kv', 'c', 'after');
  const del = await node.json('/parties/kv/bk-kv?key=a', { method: 'DELETE' });
  assert.deepEqual(del.body, { deleted: true });
  await node.json('/parties/main/bk-chat', { method: 'POST', body: JSON.stringify({ content: 'after the backup' }) });
  assert.equal((await count(node, 'bk-0')).count, 3);
  // a second backup, taken now
  const dir2 = path.join(node.dir, 'backup-2');
  assert.equal((await ok(node, '/admin/backup', { method: 'POST', body: JSON.stringify({ dir: dir2 }) })).shards.length, 3);
  // restore: the data dir replaced with a copy of the backup
  const again = await restore(node, dir, { shards: 3, config: cfg({}, KV) });
  for (const r of rooms) assert.equal((await count(again, r)).count, 2, `${r} as of the backup`);
  assert.deepEqual((await kvEntries(again, 'bk-kv')).map((e) => [e.key, e.value]), [['a', 'one'], ['b', 'two']]);
  assert.deepEqual((await again.json('/parties/main/bk-chat')).body.messages.map((m) => m.content), ['before the backup']);
  assert.equal((await count(again, 'bk-alarm')).alarmAt, alarm.body.alarmAt, 'the alarm is in the backup');
  assert.equal((await ok(again, '/admin/rooms/counter/bk-alarm')).alarmAt, alarm.body.alarmAt);
  const listedAgain = (await ok(again, '/admin/rooms?party=counter&prefix=bk-&limit=1000')).rooms;
  assert.equal(listedAgain.filter((r) => r.stored).length, 25);
  // it goes on from there
  assert.equal(await bump(again, 'bk-0'), 3);

  // and the second backup has the later state
  const third = await restore(again, dir2, { shards: 3, config: cfg({}, KV) });
  assert.equal((await count(third, 'bk-5')).count, 3);
  assert.deepEqual((await kvEntries(third, 'bk-kv')).map((e) => e.key), ['b', 'c']);
  await stopClean(third);
});

test('backup and restore after re-sharding (a shard added, another drained): every room is found where the backup has it', { timeout: 90000 }, async () => {
  const node = await start({ shards: 2, config: cfg({}, KV) });
  const rooms = Array.from({ length: 30 }, (_, i) => `rsb-${i}`);
  await pool(rooms, 6, (r) => bump(node, r));
  await kvPut(node, 'rsb-kv', 'k', 'v');
  await ok(node, '/admin/shards', { method: 'POST', body: '{}' });
  await ok(node, '/admin/shards/0/drain', { method: 'POST', body: '{}' });
  const ids = (await ok(node, '/admin/shards')).map((s) => s.id);
  assert.deepEqual(ids, [1, 2]);
  await pool(rooms, 6, (r) => bump(node, r));
  const dir = path.join(node.dir, 'backup-resharded');
  const b = await ok(node, '/admin/backup', { method: 'POST', body: JSON.stringify({ dir }) });
  assert.equal(b.shards.length, 2);
  await pool(rooms, 6, (r) => bump(node, r)); // after the backup: not restored
  const again = await restore(node, dir, { shards: 2, config: cfg({}, KV) });
  assert.deepEqual((await ok(again, '/admin/shards')).map((s) => s.id).sort(), [1, 2]);
  for (const r of rooms) assert.equal((await count(again, r)).count, 2, `${r} as of the backup`);
  assert.deepEqual((await kvEntries(again, 'rsb-kv')).map((e) => e.key), ['k']);
  const listed = (await ok(again, '/admin/rooms?party=counter&limit=1000')).rooms;
  assert.equal(listed.filter((r) => r.stored).length, 30);
  await stopClean(again);
});

test('backup refusals: an existing dir is 409, a relative or missing dir 400, each with a JSON error; nothing is written', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  await bump(node, 'bkr');
  const post = (body) => adm(node, '/admin/backup', { method: 'POST', body });
  const dir = path.join(node.dir, 'backup-ok');
  await ok(node, '/admin/backup', { method: 'POST', body: JSON.stringify({ dir }) });
  const listing = fs.readdirSync(dir).sort();
  assertJsonError(await post(JSON.stringify({ dir })), 409, 'backup into an existing dir');
  assert.deepEqual(fs.readdirSync(dir).sort(), listing, 'a refused backup wrote into the existing dir');
  const plain = path.join(node.dir, 'existing-empty');
  fs.mkdirSync(plain);
  assertJsonError(await post(JSON.stringify({ dir: plain })), 409, 'backup into an existing empty dir');
  assert.deepEqual(fs.readdirSync(plain), []);
  // an existing dir whose name has a quote and a backslash, and one with a long path: the error is still JSON
  const odd = path.join(node.dir, 'has "quotes" and \\ backslash');
  fs.mkdirSync(odd);
  assertJsonError(await post(JSON.stringify({ dir: odd })), 409, 'backup into an existing dir with a quote in its name');
  let long = node.dir;
  for (let i = 0; i < 4; ++i) long = path.join(long, `${'d'.repeat(200)}${i}`);
  fs.mkdirSync(long, { recursive: true });
  assertJsonError(await post(JSON.stringify({ dir: long })), 409, `backup into an existing dir with a ${long.length}-byte path`);

  const rel = 'relative/dir';
  assertJsonError(await post(JSON.stringify({ dir: rel })), 400, 'a relative dir');
  assertJsonError(await post(JSON.stringify({ dir: './x' })), 400, 'a ./relative dir');
  assertJsonError(await post('{}'), 400, 'no dir');
  assertJsonError(await post(''), 400, 'no body');
  assertJsonError(await post('not json'), 400, 'not JSON');
  assertJsonError(await post(JSON.stringify({ dir: 42 })), 400, 'dir not a string');
  assertJsonError(await post(JSON.stringify({ dir: '' })), 400, 'an empty dir');
  for (const base of [node.dir, path.join(node.dir, 'data'), process.cwd()]) {
    assert.ok(!fs.existsSync(path.join(base, 'relative')), `a relative backup was written under ${base}`);
  }
  assert.equal((await count(node, 'bkr')).count, 1);
  await stopClean(node);
});

// ---- /metrics --------------------------------------------------------------------------------------------------------

test('/metrics: strict Prometheus text; gauges, counters and histograms move with connections, messages and requests', T, async () => {
  const node = await start({ shards: 2, config: cfg() });
  const m0 = await scrape(node);
  for (const name of ['partyd_shards', 'partyd_connections_open', 'partyd_connections_total', 'partyd_websocket_messages_total',
    'partyd_websocket_bytes_total', 'partyd_http_responses_total', 'partyd_rooms', 'partyd_room_evictions_total',
    'partyd_storage_commits_total', 'partyd_shard_restarts_total', 'partyd_event_latency_seconds', 'partyd_room_wake_seconds']) {
    assert.ok(m0.families.has(name), `no metric ${name}`);
  }
  assert.equal(m0.families.get('partyd_connections_open').type, 'gauge');
  assert.equal(m0.families.get('partyd_connections_total').type, 'counter');
  assert.equal(m0.families.get('partyd_rooms').type, 'gauge');
  assert.equal(m0.families.get('partyd_event_latency_seconds').type, 'histogram');
  assert.equal(m0.families.get('partyd_room_wake_seconds').type, 'histogram');
  assert.equal(metric(m0, 'partyd_shards', { state: 'up' }), 2);
  assert.equal(metric(m0, 'partyd_connections_open'), 0);
  for (const sh of ['0', '1']) {
    assert.ok(metric(m0, 'partyd_rooms', { shard: sh }) !== undefined, `no partyd_rooms{shard="${sh}"}`);
    assert.equal(metric(m0, 'partyd_shard_restarts_total', { shard: sh }), 0);
  }
  for (const dir of ['in', 'out']) {
    assert.ok(metric(m0, 'partyd_websocket_messages_total', { direction: dir }) !== undefined);
    assert.ok(metric(m0, 'partyd_websocket_bytes_total', { direction: dir }) !== undefined);
  }
  assert.ok(metric(m0, 'partyd_http_responses_total', { class: '2xx' }) !== undefined);

  // 3 connections to a relay room; 4 messages of 100 bytes from one of them, 2 recipients each
  const cs = await Promise.all(['a', 'b', 'c'].map((pk) => open(ws(node, 'relay', 'met', pk))));
  const payload = 'p'.repeat(100);
  for (let i = 0; i < 4; ++i) cs[0].send(payload);
  await waitFor(() => cs[1].messages.length === 4 && cs[2].messages.length === 4, { what: 'relayed messages' });
  const m1 = await waitFor(async () => {
    const m = await scrape(node);
    return metric(m, 'partyd_websocket_messages_total', { direction: 'out' }) - metric(m0, 'partyd_websocket_messages_total', { direction: 'out' }) >= 8 ? m : null;
  }, { what: 'the message counters to move' });
  assert.equal(metric(m1, 'partyd_connections_open'), 3);
  assert.equal(metric(m1, 'partyd_connections_total') - metric(m0, 'partyd_connections_total'), 3);
  assert.equal(metric(m1, 'partyd_websocket_messages_total', { direction: 'in' }) - metric(m0, 'partyd_websocket_messages_total', { direction: 'in' }), 4);
  assert.equal(metric(m1, 'partyd_websocket_messages_total', { direction: 'out' }) - metric(m0, 'partyd_websocket_messages_total', { direction: 'out' }), 8);
  assert.ok(metric(m1, 'partyd_websocket_bytes_total', { direction: 'in' }) - metric(m0, 'partyd_websocket_bytes_total', { direction: 'in' }) >= 400);
  assert.ok(metric(m1, 'partyd_websocket_bytes_total', { direction: 'out' }) - metric(m0, 'partyd_websocket_bytes_total', { direction: 'out' }) >= 800);
  assert.equal(metricSum(m1, 'partyd_shard_connections'), 3);
  assert.ok(metricSum(m1, 'partyd_rooms') >= 1);
  assert.ok(metric(m1, 'partyd_event_latency_seconds_count') - metric(m0, 'partyd_event_latency_seconds_count') >= 4,
    'the messages are in the event latency histogram');
  assert.ok(metric(m1, 'partyd_event_latency_seconds_sum') > metric(m0, 'partyd_event_latency_seconds_sum'));

  await Promise.all(cs.map((c) => c.close()));
  await waitFor(async () => metric(await scrape(node), 'partyd_connections_open') === 0, { what: 'partyd_connections_open back to 0' });

  // HTTP: 5 POSTs (2xx) and 2 requests for an unknown party (4xx) on the main listener; writes commit
  const m2 = await scrape(node);
  for (let i = 0; i < 5; ++i) await bump(node, 'met-count');
  assert.equal((await node.fetch('/parties/nosuchparty/x')).status, 404);
  assert.equal((await node.fetch('/parties/nosuchparty/y')).status, 404);
  const m3 = await scrape(node);
  assert.equal(metric(m3, 'partyd_http_responses_total', { class: '2xx' }) - metric(m2, 'partyd_http_responses_total', { class: '2xx' }), 5);
  assert.equal(metric(m3, 'partyd_http_responses_total', { class: '4xx' }) - metric(m2, 'partyd_http_responses_total', { class: '4xx' }), 2);
  assert.ok(metricSum(m3, 'partyd_storage_commits_total') - metricSum(m2, 'partyd_storage_commits_total') >= 1);
  assert.ok(metricSum(m3, 'partyd_storage_writes_total') - metricSum(m2, 'partyd_storage_writes_total') >= 5);
  const shards = await ok(node, '/admin/shards');
  const m4 = await scrape(node);
  for (const s of shards) {
    assert.equal(metric(m4, 'partyd_rooms', { shard: String(s.id) }), s.rooms);
    assert.equal(metric(m4, 'partyd_storage_commits_total', { shard: String(s.id) }), s.commits);
    assert.equal(metric(m4, 'partyd_room_evictions_total', { shard: String(s.id) }), s.evictions);
  }

  // an eviction
  const sh = (await ok(node, '/admin/rooms/counter/met-count')).shard;
  await ok(node, '/admin/rooms/counter/met-count/evict', { method: 'POST' });
  const m5 = await scrape(node);
  assert.equal(metric(m5, 'partyd_room_evictions_total', { shard: String(sh) }) - metric(m4, 'partyd_room_evictions_total', { shard: String(sh) }), 1);
  assert.equal(metric(m5, 'partyd_rooms', { shard: String(sh) }), metric(m4, 'partyd_rooms', { shard: String(sh) }) - 1);
  await stopClean(node);
});

test('/metrics: partyd_http_responses_total counts the main listener only, not admin requests', T, async () => {
  const node = await start({ shards: 1, config: cfg() });
  const m0 = await scrape(node);
  // admin traffic: answered (2xx), refused (401), not found (404), bad (400)
  await ok(node, '/admin/shards');
  await ok(node, '/admin/node');
  await node.admin('/admin/node');
  await adm(node, '/admin/nope');
  await adm(node, '/admin/rooms?limit=0');
  await node.admin('/ready');
  const m1 = await scrape(node);
  for (const code of ['2xx', '4xx']) {
    assert.equal(metric(m1, 'partyd_http_responses_total', { class: code }), metric(m0, 'partyd_http_responses_total', { class: code }),
      `admin requests were counted as main-listener ${code} responses (HELP: "${m1.families.get('partyd_http_responses_total').help}")`);
  }
  await stopClean(node);
});

// ---- the dashboard page ----------------------------------------------------------------------------------------------

test('GET /admin/: one self-contained HTML page, served without the token, with the shards table and the two charts', T, async () => {
  const node = await start({ shards: 1, config: cfg() });
  for (const p of ['/admin/', '/admin/#token=x']) {
    const r = await node.admin(p);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    const html = r.body;
    assert.match(html, /^<!doctype html>/i);
    assert.doesNotMatch(html, /\b(src|href)\s*=\s*["']?\s*(https?:)?\/\//i, 'the page loads nothing from elsewhere');
    assert.doesNotMatch(html, /@import|url\(\s*["']?(https?:)?\/\//i, 'the page loads no external CSS');
    assert.match(html, /id="shards"/);
    assert.match(html, /<canvas[^>]*id="rate"/);
    assert.match(html, /<canvas[^>]*id="conns"/);
    assert.match(html, /\/admin\/node/);
    assert.match(html, /\/admin\/shards/);
    assert.match(html, /\/admin\/rooms/);
  }
  await stopClean(node);
});
