// failure-moves.test.mjs — slot moves under faults (issue 17 items 8, 11 and "slot moves under faults"). Rooms of the
// test party tests/modules/alarmkeys.so hold several 256 KiB export chunks of data and an alarm that comes due while
// their slot moves; its on_alarm appends "party/room KEYS PID" to a log file. After every fault and the node's own
// recovery three properties must hold:
//   - exactly one shard holds each room's data (the admin listing walks every shard's storage), the one that owns it;
//   - no alarm ran before its room's data was whole (every log line saw all the keys);
//   - every due alarm ran once: once in a process that lived on, plus at most once in a process killed before its
//     run was committed (an alarm is at least once across a crash, never twice otherwise).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, startNode, tmpDir, waitFor, kill } from './lib.mjs';

const MOD = path.join(path.dirname(BIN), 'tests', 'modules', 'alarmkeys.so');
const SHIM = path.join(path.dirname(BIN), 'tests', 'preload', 'holdsync.so');
const KEYS = 6;
const SIZE = 100 * 1024; // 6 x 100 KiB: three export chunks per room
const T = { timeout: 150000 };

async function start(t, { shards, env = {} }) {
  assert.ok(fs.existsSync(MOD), `${MOD} is built with the binary`);
  const dir = tmpDir();
  const log = path.join(dir, 'alarms.log');
  const node = await startNode({
    dir, shards, config: { parties: { a: { module: MOD } } }, env: { PARTYD_TEST_ALARM_LOG: log, ...env },
  });
  const stopped = new Set();
  t.after(async () => {
    for (const pid of stopped) try { process.kill(pid, 'SIGCONT'); } catch {}
    await kill(node.proc);
  });
  return { node, dir, log, stopped };
}

async function put(node, room, query) {
  const res = await node.fetch(`/parties/a/${room}?${query}`, { method: 'PUT' });
  assert.equal(res.status, 200, `PUT ${room}: ${await res.text()}`);
}

// Rooms whose slot is below `maxSlot` (the first slots a move takes): found by asking the router where names live.
async function roomsInLowSlots(node, count, maxSlot, prefix) {
  const found = [];
  for (let i = 0; found.length < count; i += 64) {
    const names = Array.from({ length: 64 }, (_, j) => `${prefix}${i + j}`);
    const infos = await Promise.all(names.map((n) => node.room('a', n)));
    infos.forEach((info, j) => { if (info.slot < maxSlot && found.length < count) found.push(names[j]); });
  }
  return found;
}

async function fill(node, rooms) {
  for (let i = 0; i < rooms.length; i += 4)
    await Promise.all(rooms.slice(i, i + 4).map((r) => put(node, r, `keys=${KEYS}&size=${SIZE}`)));
}

async function setAlarms(node, rooms, fromMs, spreadMs) {
  await Promise.all(rooms.map((r, i) =>
    put(node, r, `keys=0&at=${fromMs + Math.floor((i * spreadMs) / rooms.length)}`)));
}

async function listStored(node) {
  const out = [];
  let cursor = null;
  do {
    const q = `/admin/rooms?party=a&limit=500${cursor !== null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const res = await node.admin(q);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    out.push(...res.body.rooms.filter((r) => r.stored));
    cursor = res.body.cursor;
  } while (cursor);
  return out;
}

async function recovered(node, shards) {
  await waitFor(async () => {
    try {
      const info = (await node.admin('/admin/node')).body;
      const list = await node.shards();
      return info.migration.phase === 'idle' && info.migration.unbalanced_slots === 0 && list.length === shards
        && list.every((s) => s.state === 'up');
    } catch { return false; }
  }, { timeout: 60000, interval: 100, what: 'the node to finish the move on its own' });
}

// The three properties; `killed`: pids of processes SIGKILLed during the test.
async function checkProperties(node, rooms, log, killed) {
  const stored = await listStored(node);
  if (process.env.FM_DEBUG) console.log(JSON.stringify(stored.map((s) => [s.room, s.shard, s.slot])), node.stderr.split('\n').filter((l) => /slot|stale|shard 0|signal/.test(l)).join('\n'));
  for (const r of rooms) {
    const copies = stored.filter((s) => s.room === r);
    const owner = (await node.room('a', r)).shard;
    assert.deepEqual(copies.map((c) => c.shard), [owner], `room ${r}: its data is on its owner ${owner} only`);
    const got = await node.json(`/parties/a/${r}`);
    assert.equal(got.body.keys, KEYS, `room ${r} has all its keys`);
  }
  const lines = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : [])
    .map((l) => { const [room, keys, pid] = l.split(' '); return { room: room.slice(2), keys: Number(keys), pid: Number(pid) }; });
  await waitFor(() => rooms.every((r) => lines().some((l) => l.room === r)), { timeout: 30000, what: 'every alarm to run' });
  for (const l of lines())
    assert.equal(l.keys, KEYS, `the alarm of ${l.room} ran on ${l.keys} of its ${KEYS} keys (pid ${l.pid})`);
  for (const r of rooms) {
    const runs = lines().filter((l) => l.room === r);
    const survivors = runs.filter((l) => !killed.includes(l.pid));
    assert.ok(survivors.length <= 1 && runs.length - survivors.length <= 1 && runs.length >= 1,
      `the alarm of ${r} ran once: ${JSON.stringify(runs)} (killed: ${killed})`);
    assert.equal((await node.json(`/parties/a/${r}`)).body.alarm, 0, `room ${r}: no alarm is left`);
  }
}

// The router writes the flipped table (its fsync held here), the source dies meanwhile, and the "drop" the router
// sends once the table is on disk goes down with the source's old link: nothing sent it again, and the restarted
// source kept the slots' data and ran its stale rooms' alarms.
test('a "drop" lost with its source (killed while the router wrote the flip): the stale copy is deleted, its alarms never run',
  T, async (t) => {
    assert.ok(fs.existsSync(SHIM), `${SHIM} is built with the binary`);
    const hold = path.join(tmpDir(), 'hold-sync');
    const { node, log } = await start(t, { shards: 1, env: { LD_PRELOAD: SHIM, PARTYD_TEST_HOLD_SYNC: hold } });
    // rooms in the first slots: the first batch a move flips
    const rooms = await roomsInLowSlots(node, 8, 48, 'drop-');
    await fill(node, rooms);
    await setAlarms(node, rooms, Date.now() + 3000, 2000);
    const source = (await node.shards()).find((s) => s.id === 0).pid;
    fs.writeFileSync(hold, String(node.routerPid())); // only the router's syncs wait: the slot table's
    const adding = node.admin('/admin/shards', { method: 'POST' }).catch((e) => ({ status: 0, error: e }));
    await waitFor(() => fs.existsSync(`${hold}.waiting`), { timeout: 30000, what: 'the router writing the first flip' });
    process.kill(source, 'SIGKILL');
    await waitFor(() => !node.children().some((c) => c.pid === source), { what: 'the source to be gone' });
    fs.rmSync(hold);
    assert.notEqual((await adding).status, 200, 'the interrupted add did not claim success');
    await recovered(node, 2);
    await checkProperties(node, rooms, log, [source]);
    const { code } = await node.stop();
    assert.equal(code, 0);
  });

// Issue 17 item 11: the destination indexed a room's alarm as soon as its key arrived, and a room's alarm key sorts
// before its data: an alarm that came due during the freeze ran on the first chunk's keys. Here the destination is
// stopped while the first batch is on its way and the alarms come due meanwhile.
test('an alarm due while its room moves runs once, on all its data, on its new shard', T, async (t) => {
  const { node, log, stopped } = await start(t, { shards: 2 });
  const rooms = await roomsInLowSlots(node, 10, 48, 'due-');
  await fill(node, rooms);
  const due = Date.now() + 2500;
  await setAlarms(node, rooms, due, 0);
  const adding = node.admin('/admin/shards', { method: 'POST' }).catch((e) => ({ status: 0, error: e }));
  await waitFor(async () => (await node.admin('/admin/node')).body.migration?.phase === 'moving',
    { interval: 2, timeout: 30000, what: 'the move to start' });
  const dst = (await node.shards()).find((s) => s.id === 2).pid;
  process.kill(dst, 'SIGSTOP');
  stopped.add(dst);
  await waitFor(() => Date.now() > due + 500, { timeout: 30000, what: 'the alarms to come due' });
  process.kill(dst, 'SIGCONT');
  stopped.delete(dst);
  assert.equal((await adding).status, 200);
  await recovered(node, 3);
  await checkProperties(node, rooms, log, []);
  const { code } = await node.stop();
  assert.equal(code, 0);
});

// Each round: a node of two shards adds a third; rooms with several chunks of data and alarms due during the move; one
// process (source, destination or router) is killed or stopped for a while at a step of the move (while slots are
// exported, or once the first batch flipped); then the node recovers on its own and the properties hold.
const ROUNDS = [
  ['source', 'SIGKILL', 'flipped'],
  ['destination', 'SIGKILL', 'moving'],
  ['router', 'SIGKILL', 'flipped'],
  ['destination', 'SIGSTOP', 'moving'],
  ['source', 'SIGSTOP', 'flipped'],
  ['router', 'SIGSTOP', 'moving'],
];

for (const [victim, signal, step] of ROUNDS) {
  test(`slot moves under faults: ${signal} of the ${victim} when ${step === 'moving' ? 'slots are on the move' : 'the first batch flipped'}`,
    T, async (t) => {
      const { node, log, stopped } = await start(t, { shards: 2 });
      const rooms = await roomsInLowSlots(node, 6, 400, `${victim}-${signal}-`);
      await fill(node, rooms);
      // due from when the move starts, over the next few seconds: some during the freeze, some after the fault
      await setAlarms(node, rooms, Date.now() + 300, 3000);
      const sourceId = (await node.room('a', rooms[0])).shard; // before the move
      const adding = node.admin('/admin/shards', { method: 'POST' }).catch((e) => ({ status: 0, error: e }));
      await waitFor(async () => {
        const m = (await node.admin('/admin/node')).body.migration;
        return m?.phase === 'moving' && (step === 'moving' || m.moved_slots > 0);
      }, { interval: 2, timeout: 30000, what: `the move to reach the step "${step}"` });
      let pid;
      if (victim === 'router') pid = node.routerPid();
      else {
        const list = await node.shards();
        // the destination is the new shard (2); the source, the one a room of the first slots came from
        pid = list.find((s) => s.id === (victim === 'destination' ? 2 : sourceId)).pid;
      }
      const killed = [];
      if (signal === 'SIGKILL') {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } else {
        process.kill(pid, 'SIGSTOP');
        stopped.add(pid);
        // stopped long enough for alarms to come due meanwhile (on purpose: what is tested is what happens after)
        await new Promise((r) => setTimeout(r, 1500));
        process.kill(pid, 'SIGCONT');
        stopped.delete(pid);
      }
      await adding;
      await recovered(node, 3);
      await checkProperties(node, rooms, log, killed);
      const { code } = await node.stop();
      assert.equal(code, 0);
    });
}
