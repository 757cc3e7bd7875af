// stall.test.mjs — a stuck room or a crashing room does not take its shard's other rooms down (issue 16, items 6, 7).
//
// tests/modules/stall.c: a room's on_message loops forever on "loop" and dies of SIGSEGV on "crash" (the default
// action restored first, so the shard dies of the signal under AddressSanitizer too, and no sanitizer report is
// written: the sanitizer check of stopClean stays whole).
//
// A looping room: the supervisor reads the shard's heartbeat page, logs the party/room/callback, /ready and /health
// say no, /admin/shards and /metrics mark the shard stalled; after timers.stall_kill_ms the shard is killed and
// restarted, and its other rooms serve again. The other shard's rooms answer throughout.
// A crashing room: after two crashes it is quarantined (503 + Retry-After, listed in /admin/quarantine and counted in
// /metrics), the shard's other rooms keep serving and an attempt meanwhile does not reach the shard; once the time is
// up it is let in again; the next crash quarantines it for twice as long, and an operator can lift that.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { BIN, waitFor } from './lib.mjs';
import { cleanupAfterEach, start, open, refused, stopClean } from './helpers.mjs';
import { partyctl } from './adminlib.mjs';

cleanupAfterEach();
const T = { timeout: 120000 };
const MOD = path.join(path.dirname(BIN), 'tests', 'modules', 'stall.so');
const TIMERS = { stall_ms: 1000, stall_kill_ms: 4000, quarantine_ms: 3000 };

async function startStall() {
  return start({ shards: 2, config: { parties: { s: { module: MOD } }, timers: TIMERS } });
}

async function get(node, room) {
  const r = await node.fetch(`/parties/s/${room}`);
  return { status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.text() };
}

// Rooms by shard: [victim, its neighbour on the same shard, a room of the other shard].
async function pickRooms(node, tag) {
  const byShard = new Map();
  for (let i = 0; i < 64; ++i) {
    const room = `${tag}-${i}`;
    const info = await node.room('s', room);
    if (!byShard.has(info.shard)) byShard.set(info.shard, []);
    byShard.get(info.shard).push(room);
  }
  const [x, y] = [...byShard.keys()];
  const [victim, neighbour] = byShard.get(x);
  return { shard: x, other: y, victim, neighbour, elsewhere: byShard.get(y)[0] };
}

test('a room that loops forever: reported stalled with its name, not ready, then killed and restarted', T, async () => {
  const node = await startStall();
  const r = await pickRooms(node, 'loop');
  for (const room of [r.victim, r.neighbour, r.elsewhere]) assert.equal((await get(node, room)).status, 200);
  const pid = (await node.shards())[r.shard].pid;
  assert.equal((await node.admin('/ready')).status, 200);

  const c = await open(node.wsUrl(`/parties/s/${r.victim}`));
  c.send('loop');
  const stalled = new RegExp(`shard ${r.shard} \\(pid ${pid}\\) stalled: its loop has not turned for \\d+ ms; it is running on_message of room s/${r.victim}`);
  await waitFor(() => stalled.test(node.stderr), { timeout: 15000, what: 'the stall to be logged with the room' });
  const ready = await node.admin('/ready');
  assert.equal(ready.status, 503);
  assert.equal(ready.body.ready, false);
  assert.equal((await node.fetch('/health')).status, 503, '/health says degraded while a shard is stalled');
  assert.equal((await node.shards())[r.shard].state, 'stalled');
  const metrics = (await node.admin('/metrics')).body;
  assert.match(metrics, new RegExp(`partyd_shard_stalled\\{shard="${r.shard}"\\} 1`));
  assert.match(metrics, /partyd_shards\{state="stalled"\} 1/);
  // the other shard's rooms answer while this one is stuck
  assert.equal((await get(node, r.elsewhere)).status, 200);

  await waitFor(() => new RegExp(`shard ${r.shard} \\(pid ${pid}\\): its loop has not turned for \\d+ ms \\(timers.stall_kill_ms\\); killing it`).test(node.stderr),
    { timeout: 20000, what: 'the stalled shard to be killed' });
  await c.closed;
  await waitFor(async () => (await node.shards())[r.shard].pid !== pid && (await node.admin('/ready')).status === 200,
    { timeout: 20000, what: 'the shard to be restarted and ready' });
  assert.equal((await node.shards())[r.shard].state, 'up');
  assert.equal((await get(node, r.neighbour)).status, 200, 'the stuck room\'s neighbour serves again');
  assert.equal((await get(node, r.elsewhere)).status, 200);
  assert.match(node.stderr, new RegExp(`room s/${r.victim}: shard ${r.shard} was killed for a stall in on_message \\(crash 1`));
  await stopClean(node, [], { allowRestarts: true });
});

async function crash(node, room) {
  const c = await open(node.wsUrl(`/parties/s/${room}`));
  c.send('crash');
  const { code } = await c.closed;
  assert.equal(code, 1011);
}

test('a room that crashes its shard twice is quarantined; the shard\'s other rooms keep serving', T, async () => {
  const node = await startStall();
  const r = await pickRooms(node, 'crash');
  for (const room of [r.victim, r.neighbour, r.elsewhere]) assert.equal((await get(node, room)).status, 200);

  await crash(node, r.victim);
  await waitFor(() => new RegExp(`room s/${r.victim}: shard ${r.shard} was killed by signal 11 .* in on_message \\(crash 1`).test(node.stderr),
    { what: 'the first crash to be counted against the room' });
  await waitFor(async () => (await get(node, r.victim)).status === 200, { timeout: 15000, what: 'the shard to restart' });
  await crash(node, r.victim);
  await waitFor(() => new RegExp(`room s/${r.victim} quarantined for 3000 ms \\(quarantine 1\\)`).test(node.stderr),
    { what: 'the quarantine to be logged with the room' });
  await waitFor(async () => (await get(node, r.neighbour)).status === 200, { timeout: 15000, what: 'the neighbour to serve again' });
  const pid = (await node.shards())[r.shard].pid;

  // quarantined: requests and upgrades get 503 with Retry-After, and never reach the shard
  const q = await get(node, r.victim);
  assert.equal(q.status, 503);
  assert.ok(Number(q.retryAfter) >= 1 && Number(q.retryAfter) <= 3, `Retry-After ${q.retryAfter}`);
  assert.match(q.body, /quarantined/);
  const up = await refused(node.wsUrl(`/parties/s/${r.victim}`));
  assert.equal(up.status, 503);
  const list = (await node.admin('/admin/quarantine')).body.rooms;
  assert.deepEqual(list.map((e) => e.room), [`s/${r.victim}`]);
  const ctl = await partyctl(['--admin', `http://127.0.0.1:${node.adminPort}`, 'quarantine'], { token: null });
  assert.equal(ctl.code, 0, ctl.stderr);
  assert.match(ctl.stdout, new RegExp(`^s/${r.victim} +\\d+ *$`, 'm'));
  assert.match((await node.admin('/metrics')).body, /partyd_quarantined_rooms 1/);
  assert.equal((await get(node, r.neighbour)).status, 200);
  assert.equal((await get(node, r.elsewhere)).status, 200);
  assert.equal((await node.shards())[r.shard].pid, pid, 'the attempt while quarantined did not crash the shard');

  // the time is up: the room is tried again (and serves what does not crash it)
  await waitFor(async () => (await get(node, r.victim)).status === 200, { timeout: 15000, what: 'the quarantine to end' });
  assert.deepEqual((await node.admin('/admin/quarantine')).body.rooms, []);
  // one more crash soon after: quarantined again at once, for twice as long; an operator lifts it
  await crash(node, r.victim);
  await waitFor(() => new RegExp(`room s/${r.victim} quarantined for 6000 ms \\(quarantine 2\\)`).test(node.stderr),
    { what: 'the second, longer quarantine' });
  await waitFor(async () => (await get(node, r.victim)).status === 503, { what: 'the router to hear of it' });
  const lift = await partyctl(['--admin', `http://127.0.0.1:${node.adminPort}`, 'unquarantine', 's', r.victim], { token: null });
  assert.equal(lift.code, 0, lift.stderr);
  assert.equal((await node.admin(`/admin/quarantine/s/${r.victim}`, { method: 'DELETE' })).status, 404);
  await waitFor(async () => (await get(node, r.victim)).status === 200, { timeout: 15000, what: 'the lifted room to serve' });
  await waitFor(() => new RegExp(`room s/${r.victim}: quarantine lifted by an operator`).test(node.stderr), { what: 'the lift logged' });
  await stopClean(node, [], { allowRestarts: true });
});
