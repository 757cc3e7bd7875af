// reshard.test.mjs — adding and draining shards while clients write: nothing acknowledged is lost, rooms that moved
// run on their new shard, and a crash in the middle of a move (a shard or the router killed) leaves one owner per
// slot and every acknowledged write in place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import { startNode, waitFor, sleep, WebSocket, kill } from './lib.mjs';

const T = { timeout: 120000 };

async function postCount(node, room) {
  const r = await node.fetch(`/parties/counter/${room}`, { method: 'POST' });
  const body = await r.json().catch(() => null);
  return { status: r.status, count: body?.count };
}

async function getCount(node, room) {
  const r = await node.json(`/parties/counter/${room}`);
  assert.equal(r.status, 200, `GET counter ${room}`);
  return r.body.count;
}

// Writers that POST to their rooms until stopped, counting what was acknowledged.
function writers(node, rooms) {
  const stats = Object.fromEntries(rooms.map((r) => [r, { attempted: 0, acked: 0, refused: 0 }]));
  let stop = false;
  const loops = rooms.map(async (room) => {
    const st = stats[room];
    while (!stop) {
      st.attempted++;
      try {
        const r = await postCount(node, room);
        if (r.status === 200) st.acked++;
        else {
          assert.equal(r.status, 503, `a write during a move is acknowledged or refused with 503, not ${r.status}`);
          st.refused++;
          await sleep(20); // back-off before the next attempt (a pace, not a wait for a condition)
        }
      } catch {
        await sleep(20); // the connection failed (a process was killed): the write may or may not have happened
      }
    }
  });
  return { stats, stop: async () => { stop = true; await Promise.all(loops); } };
}

async function checkCounts(node, stats) {
  for (const [room, st] of Object.entries(stats)) {
    const count = await getCount(node, room);
    assert.ok(count >= st.acked, `${room}: ${count} stored, ${st.acked} acknowledged`);
    assert.ok(count <= st.attempted, `${room}: ${count} stored, only ${st.attempted} attempted`);
  }
}

async function slotsConsistent(node) {
  const shards = await node.shards();
  assert.equal(shards.reduce((a, s) => a + s.slots, 0), 16384, 'every slot has exactly one owner');
  const { migration } = (await node.admin('/admin/node')).body;
  assert.equal(migration.phase, 'idle');
  assert.equal(migration.unbalanced_slots, 0, 'the table is the rendezvous table of the active shards');
  return shards;
}

test('adding a shard under live traffic: writes keep their counts, moved rooms run on the new shard', T, async (t) => {
  const node = await startNode({ shards: 2 });
  t.after(() => kill(node.proc));
  const rooms = Array.from({ length: 24 }, (_, i) => `grow-${i}`);
  const before = Object.fromEntries(await Promise.all(rooms.map(async (r) => [r, (await node.room('counter', r)).shard])));

  // a relay pair in every room, and a partysocket that must reconnect by itself after its room moves
  const ps = new PartySocket({ host: node.host, party: 'counter', room: rooms[0], WebSocket, minReconnectionDelay: 50, maxReconnectionDelay: 200 });
  t.after(() => ps.close());
  let opens = 0;
  const seen = [];
  ps.addEventListener('open', () => opens++);
  ps.addEventListener('message', (e) => seen.push(JSON.parse(e.data)));
  await waitFor(() => opens === 1, { what: 'the partysocket to open' });

  const w = writers(node, rooms);
  const acked = (n) => waitFor(() => rooms.every((r) => w.stats[r].acked >= n[r]), { what: 'writes to every room', timeout: 20000 });
  await acked(Object.fromEntries(rooms.map((r) => [r, 3]))); // writes are under way in every room
  const added = await node.admin('/admin/shards', { method: 'POST' });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  assert.equal(added.body.done, 'add');
  assert.ok(added.body.moved_slots > 16384 / 3 * 0.8 && added.body.moved_slots < 16384 / 3 * 1.2,
    `about a third of the slots move: ${added.body.moved_slots}`);
  await acked(Object.fromEntries(rooms.map((r) => [r, w.stats[r].acked + 3]))); // and go on after the move
  await w.stop();

  const shards = await slotsConsistent(node);
  assert.deepEqual(shards.map((s) => s.id), [0, 1, 2]);
  const newId = 2;
  await checkCounts(node, w.stats);
  let moved = 0;
  for (const r of rooms) {
    const now = (await node.room('counter', r)).shard;
    if (now !== before[r]) {
      assert.equal(now, newId, `room ${r} moved from shard ${before[r]} to ${now}, not to the new shard`);
      moved++;
    }
  }
  assert.ok(moved > 0, 'some rooms moved to the new shard');
  const total = Object.values(w.stats).reduce((a, s) => a + s.acked, 0);
  assert.ok(total > 50, `the writers kept writing (${total} acknowledged)`);

  // the partysocket's room: it is served, and the client (reconnected if the room moved) sees the latest count
  const last = await getCount(node, rooms[0]);
  await postCount(node, rooms[0]);
  await waitFor(() => seen.some((m) => m.count === last + 1), { what: 'the partysocket to see the count after the move' });
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('alarms move with their rooms: set before a shard is added, each fires once, on the room\'s new shard', T, async (t) => {
  const node = await startNode({ shards: 2 });
  t.after(() => kill(node.proc));
  const rooms = Array.from({ length: 24 }, (_, i) => `alarm-move-${i}`);
  const before = {};
  const setAt = Date.now();
  for (const r of rooms) {
    const res = await node.json(`/parties/counter/${r}?alarm=4000`, { method: 'POST' });
    assert.equal(res.status, 200);
    assert.equal(res.body.count, 0);
    before[r] = (await node.room('counter', r)).shard;
  }
  const added = await node.admin('/admin/shards', { method: 'POST' });
  assert.equal(added.status, 200, JSON.stringify(added.body));
  // the new shard has been running (and looking for due alarms) before the moved rooms' alarms reached it
  assert.ok(Date.now() < setAt + 4000, `the move finished before the alarms were due (${Date.now() - setAt} ms)`);
  let moved = 0;
  for (const r of rooms) {
    const now = (await node.room('counter', r)).shard;
    if (now !== before[r]) {
      assert.equal(now, 2, `room ${r} moved to the new shard`);
      moved++;
    }
  }
  assert.ok(moved > 0, 'some rooms moved to the new shard');

  await waitFor(async () => {
    for (const r of rooms) {
      const { body } = await node.json(`/parties/counter/${r}`);
      if (body.alarmAt !== null) return false;
    }
    return true;
  }, { timeout: 15000, interval: 200, what: 'every alarm to fire, moved or not' });
  await sleep(500);
  for (const r of rooms) assert.equal(await getCount(node, r), 1, `${r}: its alarm fired once`);
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('draining a shard under live traffic: its rooms move to the others, it stops, its data directory goes', T, async (t) => {
  const node = await startNode({ shards: 3 });
  t.after(() => kill(node.proc));
  const rooms = Array.from({ length: 24 }, (_, i) => `shrink-${i}`);
  const w = writers(node, rooms);
  await sleep(300);
  const victimPid = (await node.shards()).find((s) => s.id === 1).pid;
  const drained = await node.admin('/admin/shards/1/drain', { method: 'POST' });
  assert.equal(drained.status, 200, JSON.stringify(drained.body));
  assert.deepEqual(drained.body.shards, [0, 2]);
  await sleep(300);
  await w.stop();
  const shards = await slotsConsistent(node);
  assert.deepEqual(shards.map((s) => s.id), [0, 2]);
  await checkCounts(node, w.stats);
  for (const r of rooms) assert.notEqual((await node.room('counter', r)).shard, 1);
  await waitFor(() => !node.children().some((c) => c.pid === victimPid), { what: 'the drained shard to exit' });
  const fs = await import('node:fs');
  await waitFor(() => !fs.existsSync(`${node.dir}/data/shard-1`), { what: 'the drained shard\'s data to be deleted' });
  // the last shard cannot be drained, an unknown one is 404, and one change at a time
  assert.equal((await node.admin('/admin/shards/9/drain', { method: 'POST' })).status, 404);
  const { code } = await node.stop();
  assert.equal(code, 0);
});

for (const victim of ['destination', 'source', 'router']) {
  test(`a move interrupted by SIGKILL of the ${victim} loses nothing and is finished afterwards`, T, async (t) => {
    const node = await startNode({ shards: 2, config: { parties: { kv: { kind: 'kv' }, counter: { kind: 'counter' } } } });
    t.after(() => kill(node.proc));
    // enough data that the move takes a moment: 300 rooms with 64 KiB each
    const value = 'x'.repeat(64 * 1024);
    const kvRooms = Array.from({ length: 300 }, (_, i) => `big-${i}`);
    for (let i = 0; i < kvRooms.length; i += 20) {
      await Promise.all(kvRooms.slice(i, i + 20).map(async (r) => {
        const res = await node.fetch(`/parties/kv/${r}?key=v`, { method: 'PUT', body: value });
        assert.equal(res.status, 200);
      }));
    }
    const rooms = Array.from({ length: 12 }, (_, i) => `crash-move-${i}`);
    const w = writers(node, rooms);
    await sleep(200);

    const adding = node.admin('/admin/shards', { method: 'POST' }).catch((e) => ({ status: 0, error: e }));
    // wait until slots are actually on the move, then kill
    await waitFor(async () => (await node.admin('/admin/node')).body.migration?.phase === 'moving', { interval: 2, what: 'the move to start' });
    let pid;
    if (victim === 'router') pid = node.routerPid();
    else {
      const shards = await node.shards();
      pid = shards.find((s) => s.id === (victim === 'destination' ? 2 : 0)).pid;
    }
    process.kill(pid, 'SIGKILL');
    const answer = await adding;
    assert.notEqual(answer.status, 200, 'the interrupted add did not claim success');

    // the node recovers: restarts what died, and finishes the move (the table becomes the rendezvous table again)
    await waitFor(async () => {
      try {
        const info = (await node.admin('/admin/node')).body;
        const shards = await node.shards();
        return info.migration.phase === 'idle' && info.migration.unbalanced_slots === 0 && shards.length === 3 && shards.every((s) => s.state === 'up' && s.slots > 0);
      } catch { return false; }
    }, { timeout: 60000, interval: 100, what: 'the node to finish the move on its own' });
    await w.stop();
    await slotsConsistent(node);
    await checkCounts(node, w.stats);
    for (const r of kvRooms) {
      const res = await node.fetch(`/parties/kv/${r}?key=v`);
      const body = await res.text();
      assert.equal(res.status, 200, `kv room ${r} is readable after the interrupted move: ${body}`);
      assert.equal(body.length, value.length, `kv room ${r} has its whole value`);
    }
    const { code } = await node.stop();
    assert.equal(code, 0);
  });
}
