// failure-matrix.test.mjs — issue 17's failure suite ("find the next one first"): every room event meets every admin
// action in ONE shard loop pass, and that pass's commit succeeds, fails, or the router or the room's shard is killed
// while it is held. Each case asserts what a client can observe (docs/failure.md, "The failure matrix"):
//   - nothing of the pass shows before its commit returned: no HTTP answer, no broadcast, no 101;
//   - after a failed commit the writer is told so (500/503, or its socket closed 1011), never 200;
//   - nothing a client was told succeeded (a 200 count, a broadcast count) is missing afterwards;
//   - every socket settles — it opened or was refused with a status, and is then open and working or closed with a
//     code — and a socket left open is no zombie: it receives the room's next broadcast, its own message is answered,
//     and the shard counts it;
//   - the node keeps answering, and no process of it writes a sanitizer report (run it against the ASan build).
//
// The technique is syncgate.test.mjs's: tests/preload/holdsync.so holds the WAL sync of a write to the case's room,
// the shard reads nothing meanwhile, so the event and the action sent then are read in one pass after it; creating
// "P.fail" before releasing makes that pass's sync fail with EIO.
//
// One node serves every case, in sequence, each on fresh rooms. Pruned: a router or shard kill is combined only with
// no action, an evict and a delete — a backup, an add or a drain whose process dies under it is the chaos test's
// subject (tests/integration/chaos.test.mjs), and what a client sees of it is the same as with no action.
// FAILMATRIX=full runs every combination (108); the default run (66) keeps every event × outcome and action × outcome
// pair, and every action × event pair at least once (a covering subset: see cases()). FAILMATRIX_ONLY=REGEX runs the
// cases whose name matches ("message × drain × fail"; keep an add before a drain), FAILMATRIX_LOG=FILE keeps the
// node's log of a failing case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, Client, kill, sleep, startNode, tmpDir, waitFor } from './lib.mjs';

const HOLDSYNC = path.join(path.dirname(BIN), 'tests', 'preload', 'holdsync.so');
const FETCHER = path.join(path.dirname(BIN), 'tests', 'modules', 'fetcher.so');

const ACTIONS = ['none', 'evict', 'delete', 'backup', 'add', 'drain'];
const EVENTS = ['connect', 'pk', 'message', 'request', 'alarm', 'fetch'];
const OUTCOMES = ['ok', 'fail', 'router', 'shard'];
const KILL_ACTIONS = new Set(['none', 'evict', 'delete']);

// The cases to run, in an order where every add is followed by a drain (the node goes back to one shard).
function cases() {
  const full = process.env.FAILMATRIX === 'full';
  const out = [];
  EVENTS.forEach((event, e) => {
    OUTCOMES.forEach((outcome, o) => {
      ACTIONS.forEach((action, a) => {
        if ((outcome === 'router' || outcome === 'shard') && !KILL_ACTIONS.has(action)) return;
        // the covering subset: each (event, outcome) and (action, outcome) pair runs, each (action, event) pair runs
        // with at least one outcome
        if (!full && (a + e + o) % 2 !== 0 && action !== 'none') return;
        if (process.env.FAILMATRIX_ONLY && !new RegExp(process.env.FAILMATRIX_ONLY).test(`${event} × ${action} × ${outcome}`)) return;
        out.push({ event, action, outcome });
      });
    });
  });
  // an add leaves two shards: the next drain case drains the added one; a drain with one shard left is refused
  return out;
}

function watch(promise) {
  const r = { settled: false, value: undefined, error: undefined };
  r.done = promise.then((v) => { r.settled = true; r.value = v; return v; },
    (err) => { r.settled = true; r.error = err; return undefined; });
  return r;
}

async function httpJson(node, p, init) {
  const res = await node.fetch(p, init);
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}

// The counts a client was told are committed: a 200 POST's count, a count or alarm broadcast.
function told(c) {
  return c.json().filter((m) => typeof m.count === 'number').map((m) => m.count);
}

async function idle(node) {
  await waitFor(async () => {
    const r = await node.admin('/admin/node').catch(() => null);
    return r?.status === 200 && r.body.migration?.phase === 'idle';
  }, { timeout: 60000, what: 'no move of slots under way' });
}

async function openedOrRefused(c) {
  let opened = false;
  c.opened.then(() => { opened = true; }, () => {});
  await waitFor(() => opened || c.closeCode !== undefined, { timeout: 20000, what: 'the upgrade to be answered' });
  if (!opened) await waitFor(() => c.unexpected || c.error, { what: 'the refusal' });
  return opened;
}

test('the failure matrix: events × admin actions × commit outcomes in one pass', { timeout: 900000 }, async (t) => {
  assert.ok(fs.existsSync(HOLDSYNC), `${HOLDSYNC} is built with the binary`);
  const dir = tmpDir();
  const hold = path.join(dir, 'hold-sync');
  const node = await startNode({
    dir, shards: 1,
    config: { parties: { counter: { kind: 'counter' }, fetcher: { module: FETCHER } } },
    env: { LD_PRELOAD: HOLDSYNC, PARTYD_TEST_HOLD_SYNC: hold },
  });
  t.after(() => kill(node.proc));
  const list = cases();
  const started = Date.now();
  let n = 0;
  for (const c of list) {
    const name = `${c.event} × ${c.action} × ${c.outcome}`;
    try {
      await runCase(node, hold, c, `m${n++}`);
    } catch (e) {
      if (process.env.FAILMATRIX_LOG) fs.writeFileSync(process.env.FAILMATRIX_LOG, node.stderr);
      e.message = `case ${name}: ${e.message}\n--- the node's log (tail):\n${node.stderr.slice(-3000)}`;
      throw e;
    }
  }
  t.diagnostic(`${list.length} cases in ${Math.round((Date.now() - started) / 1000)} s`);
  const { code } = await node.stop();
  assert.equal(code, 0);
});

async function runCase(node, hold, { event, action, outcome }, id) {
  const room = `/parties/counter/${id}`;
  await idle(node);
  // the ground the pass lands on: a room with a count of 1 and a socket that watches it
  // (retried: after a failed case another shard may still be restarting from its own failed sync)
  const first = await waitFor(async () => {
    const w = await httpJson(node, room, { method: 'POST' }).catch(() => ({ status: 0 }));
    return w.status === 200 && w.body;
  }, { timeout: 45000, what: 'the first write to the room' });
  const acked = [first.count];
  const watcher = await Client.open(node.wsUrl(room));
  await watcher.waitJson((m) => m.type === 'count' && m.count === first.count);
  const sockets = [watcher];
  let old = null;
  if (event === 'pk' || event === 'message') {
    old = await Client.open(node.wsUrl(`${room}?_pk=p`));
    await old.waitJson((m) => m.type === 'count');
    sockets.push(old);
  }
  let alarmAt = 0;
  if (event === 'alarm') {
    const set = await httpJson(node, `${room}?alarm=300`, { method: 'POST' });
    assert.equal(set.status, 200);
    alarmAt = set.body.alarmAt;
  }
  const owner = (await node.room('counter', id)).shard;
  const shardPid = (await node.shards()).find((s) => s.id === owner).pid;
  const shardIds = (await node.admin('/admin/node')).body.shard_ids;
  const seenBefore = watcher.messages.length;

  // hold the sync of a write to the room: the shard reads nothing until it is released
  fs.writeFileSync(hold, '');
  const warm = watch(httpJson(node, room, { method: 'POST' }));
  await waitFor(() => fs.existsSync(`${hold}.waiting`), { what: 'the shard to be syncing the write' });
  if (event === 'alarm') await waitFor(() => Date.now() > alarmAt + 50, { what: 'the alarm to be due' });

  // the event and the action: frames the shard reads in the pass after the held one. Nothing shows when the router
  // has passed each on: a moment between them makes the order likely; the assertions hold in any order.
  const reqs = [];
  let fresh = null;
  if (event === 'connect') {
    reqs.push(watch(httpJson(node, room, { method: 'POST' }))); // the pass writes: the 101 waits for its commit
    await sleep(50);
    fresh = new Client(node.wsUrl(room));
    sockets.push(fresh);
  } else if (event === 'pk') {
    old.send('increment');
    await sleep(50);
    fresh = new Client(node.wsUrl(`${room}?_pk=p`));
    sockets.push(fresh);
  } else if (event === 'message') {
    old.send('increment');
  } else if (event === 'request') {
    reqs.push(watch(httpJson(node, room, { method: 'POST' })));
  } else if (event === 'fetch') {
    reqs.push(watch(httpJson(node, `/parties/fetcher/f${id}?party=counter&room=${id}&method=POST`)));
  }
  await sleep(80);
  let act = null;
  if (action === 'evict') act = watch(node.admin(`/admin/rooms/counter/${id}/evict`, { method: 'POST' }));
  else if (action === 'delete') act = watch(node.admin(`/admin/rooms/counter/${id}?confirm=${id}`, { method: 'DELETE' }));
  else if (action === 'backup') act = watch(node.admin('/admin/backup', { method: 'POST', body: JSON.stringify({ dir: `bk-${id}` }) }));
  else if (action === 'add') act = watch(node.admin('/admin/shards', { method: 'POST' }));
  else if (action === 'drain') {
    const drainId = shardIds.length > 1 ? shardIds[shardIds.length - 1] : shardIds[0];
    act = watch(node.admin(`/admin/shards/${drainId}/drain`, { method: 'POST' }));
  }
  await sleep(150);

  // nothing of the held pass or the next one has left the shard (a sleep on purpose: what is asserted is that
  // nothing happens for a while)
  assert.equal(warm.settled, false, 'the held write was answered before its sync returned');
  for (const r of reqs) assert.equal(r.settled, false, 'a request was answered before its pass was committed');
  if (act && (action === 'evict' || action === 'delete')) assert.equal(act.settled, false, `the ${action} was answered before the shard read it`);
  assert.equal(watcher.messages.length, seenBefore, 'the room broadcast before its commit');
  if (fresh) assert.equal(fresh.ws.readyState, 0, 'a connection was accepted (101) before the commit');

  if (outcome === 'router') {
    const router = node.routerPid();
    process.kill(router, 'SIGKILL');
    fs.unlinkSync(hold);
    await waitFor(() => node.routerPid() && node.routerPid() !== router, { timeout: 20000, what: 'a new router' });
  } else if (outcome === 'shard') {
    process.kill(shardPid, 'SIGKILL');
    fs.unlinkSync(hold);
  } else {
    const failedBefore = (node.stderr.match(/commit: IO error/g) ?? []).length;
    if (outcome === 'fail') fs.writeFileSync(`${hold}.fail`, '');
    fs.unlinkSync(hold);
    if (outcome === 'fail') {
      // one failed pass is the case; a disk that keeps failing would keep a drain or an add from ever ending
      await waitFor(() => (node.stderr.match(/commit: IO error/g) ?? []).length > failedBefore,
        { timeout: 20000, what: 'the commit to fail' });
      fs.rmSync(`${hold}.fail`, { force: true });
    }
  }

  // everything settles
  await waitFor(() => warm.settled && reqs.every((r) => r.settled) && (!act || act.settled),
    { timeout: 30000, what: `every request of the case to be answered (the held write ${warm.settled}, the event's ${reqs.map((r) => r.settled)}, the action ${act?.settled})` });
  if (fresh) await openedOrRefused(fresh);
  const all = [warm, ...reqs];
  const statuses = all.map((r) => r.value?.status ?? 'reset');
  if (outcome === 'ok') {
    assert.equal(warm.value.status, 200, 'the held write, committed');
    for (const r of reqs) {
      if (event === 'fetch') assert.ok([200, 500].includes(r.value.status), `the fetch: ${JSON.stringify(r.value)}`);
      else assert.ok([200, 503].includes(r.value.status), `the request: ${JSON.stringify(r.value)}`);
    }
  } else if (outcome === 'fail') {
    // the pass after the held one failed: its writes are not acknowledged
    for (const r of reqs) {
      if (event === 'fetch') {
        const inner = r.value.body?.status;
        assert.ok(r.value.status !== 200 || inner !== 200, `a fetch that wrote in a failed pass: ${JSON.stringify(r.value)}`);
      } else {
        assert.ok([500, 503].includes(r.value.status), `a write in a failed pass: ${JSON.stringify(r.value)}`);
      }
    }
  } else {
    for (const r of all) if (r.value) assert.ok(r.value.status !== 404 && r.value.status < 600, `status ${r.value.status}`);
  }
  for (const r of all) {
    const v = r.value;
    if (v?.status === 200 && typeof v.body?.count === 'number') acked.push(v.body.count);
    if (v?.status === 200 && v.body?.status === 200) {
      try { acked.push(JSON.parse(v.body.body).count); } catch {}
    }
  }
  if (act?.value) assert.ok(act.value.status < 600 && act.value.status !== 404, `the ${action}: ${JSON.stringify(act.value)}`);
  if (act && outcome === 'ok' && (action === 'evict' || action === 'delete' || action === 'backup')) {
    assert.equal(act.value?.status, 200, `the ${action} with a commit that succeeds: ${JSON.stringify(act.value)}`);
  }
  if (act && outcome === 'fail' && action === 'delete') {
    assert.ok([200, 500, 503].includes(act.value?.status), `the delete: ${JSON.stringify(act.value)}`);
  }

  // back to a node that writes (after a failed sync RocksDB refuses writes until the shard reopens it)
  fs.rmSync(`${hold}.fail`, { force: true });
  // (a write to the case's room: its shard is the one that failed, whichever that is after an add)
  await waitFor(async () => {
    const w = await httpJson(node, room, { method: 'POST' }).catch(() => ({ status: 0 }));
    if (w.status === 200) acked.push(w.body.count);
    return w.status === 200;
  }, { timeout: 45000, what: 'writes to be served again' });
  // a move (an add, a drain, a new router finishing one) ends: its rooms answer 503 meanwhile
  await idle(node);

  // every socket settled: open, or closed with a code (never half-open)
  for (const s of sockets) {
    await waitFor(() => s.ws.readyState === 1 || s.ws.readyState === 3, { timeout: 20000, what: 'a socket to be open or closed' });
    if (s.ws.readyState === 3) {
      assert.ok(typeof s.closeCode === 'number' || s.unexpected, 'a socket closed without a code or a refusal');
    }
  }
  for (const s of sockets) acked.push(...told(s));

  // no zombie: a socket still open gets the next broadcast, is answered, and is counted by the shard
  const live = sockets.filter((s) => s.ws.readyState === 1);
  let after;
  await waitFor(async () => {
    after = await httpJson(node, room, { method: 'POST' });
    return after.status !== 503;
  }, { timeout: 20000, what: 'a write after the case to be served' });
  assert.equal(after.status, 200, `a write after the case: ${JSON.stringify(after)}`);
  for (const s of live) {
    await waitFor(() => s.ws.readyState === 3 || s.json().some((m) => m.count === after.body.count),
      { timeout: 10000, what: `an open socket to get the next broadcast (count ${after.body.count})` });
  }
  const still = live.filter((s) => s.ws.readyState === 1);
  for (const s of still) {
    const from = s.messages.length;
    s.send('increment');
    await waitFor(() => s.ws.readyState === 3 || s.messages.slice(from).some((m) => !m.binary && /"count"/.test(m.text)),
      { timeout: 10000, what: 'an open socket\'s own message to be answered' });
  }
  const counted = still.filter((s) => s.ws.readyState === 1).length;
  await waitFor(async () => (await node.room('counter', id)).connections === counted,
    { timeout: 10000, what: `the shard to count the ${counted} open sockets` });

  // nothing acknowledged is missing (a delete may have come after an acknowledged write: it takes everything)
  // (503: a shard whose storage failed under the same P.fail while idle finds out at its next write and restarts)
  let now;
  await waitFor(async () => {
    now = await httpJson(node, room);
    return now.status !== 503;
  }, { timeout: 20000, what: 'a read after the case to be served' });
  assert.equal(now.status, 200, `a read after the case: ${JSON.stringify(now)}`);
  if (action !== 'delete') {
    const max = Math.max(...acked);
    assert.ok(now.body.count >= max, `count ${now.body.count} after ${statuses.join(',')}; clients were told ${max}`);
  }
  for (const s of sockets) if (s.ws.readyState === 1) await s.close();
  // back to one shard for the next case (a drain that failed or was refused leaves the added shard)
  if (action === 'drain') {
    for (;;) {
      const ids = (await node.admin('/admin/node')).body.shard_ids;
      if (ids.length <= 1) break;
      await waitFor(async () => (await node.admin(`/admin/shards/${ids[ids.length - 1]}/drain`, { method: 'POST' })).status === 200,
        { timeout: 60000, what: 'the added shard to be drained' });
      await idle(node);
    }
  }
  node.checkSanitizers();
  const h = await node.fetch('/health');
  assert.equal(h.status, 200);
}
