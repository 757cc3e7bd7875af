// syncgate.test.mjs — the output gate against a real WAL sync, held open or failed on demand:
// tests/preload/holdsync.so is LD_PRELOADed into the node, and fsync/fdatasync wait while a file exists, or fail with
// EIO while another does. While a write is not on disk nothing that shows it leaves the shard — not the answer to the
// write, not the broadcast to the room's sockets, not a read of the room — and it all goes out once the sync returns.
// A sync that fails is answered 500, resets the room, and after the failures in a row the shard restarts and reopens
// its storage: nothing acknowledged is lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, Client, sleep, startNode, tmpDir, waitFor, kill } from './lib.mjs';

const SHIM = path.join(path.dirname(BIN), 'tests', 'preload', 'holdsync.so');

// A request whose settling is recorded, to tell "not answered yet" from "answered".
function pending(node, p, init) {
  const r = { settled: false };
  r.done = node.fetch(p, init).then(async (res) => {
    const out = { status: res.status, body: await res.json() };
    r.settled = true;
    return out;
  });
  return r;
}

async function startHeld(t) {
  assert.ok(fs.existsSync(SHIM), `${SHIM} is built with the binary`);
  const dir = tmpDir();
  const hold = path.join(dir, 'hold-sync');
  const node = await startNode({ dir, shards: 1, env: { LD_PRELOAD: SHIM, PARTYD_TEST_HOLD_SYNC: hold } });
  t.after(() => kill(node.proc));
  return { node, hold };
}

test('nothing that shows a write leaves the shard before its WAL sync returns', { timeout: 60000 }, async (t) => {
  const { node, hold } = await startHeld(t);
  assert.equal((await node.json('/parties/counter/a')).body.count, 0);
  const ws = await Client.open(node.wsUrl('/parties/counter/a'));
  await ws.waitJson((m) => m.type === 'count' && m.count === 0);

  fs.writeFileSync(hold, '');
  const post = pending(node, '/parties/counter/a', { method: 'POST' });
  await waitFor(() => fs.existsSync(`${hold}.waiting`), { what: 'the shard to be syncing the write' });
  const get = pending(node, '/parties/counter/a');
  ws.send('increment');

  // held, not lost: nothing of it has left while the sync is held (a sleep on purpose: what is asserted is that
  // nothing happens for a while)
  await sleep(300);
  assert.equal(post.settled, false, 'the POST was answered before its write was synced');
  assert.equal(get.settled, false, 'a GET of the room showed the write before it was synced');
  assert.ok(!ws.json().some((m) => m.count >= 1), 'the room broadcast a count before it was synced');
  assert.ok(fs.existsSync(`${hold}.waiting`), 'the sync is still held');

  fs.unlinkSync(hold);
  assert.deepEqual(await post.done, { status: 200, body: { room: 'a', count: 1 } });
  const g = await get.done;
  assert.equal(g.status, 200);
  assert.ok(g.body.count >= 1, `the GET after the write shows it: ${g.body.count}`);
  await ws.waitJson((m) => m.type === 'count' && m.count === 2);
  assert.deepEqual(ws.json().map((m) => m.count), [0, 1, 2], 'every count once, in order');
  await ws.close();
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('a WAL sync that fails: 500, the room reset, the shard restarted from disk, nothing acknowledged lost',
  { timeout: 90000 }, async (t) => {
    const { node, hold } = await startHeld(t);
    for (let i = 1; i <= 3; i++) assert.equal((await node.json('/parties/counter/a', { method: 'POST' })).body.count, i);
    const ws = await Client.open(node.wsUrl('/parties/counter/a'));
    await ws.waitJson((m) => m.type === 'count' && m.count === 3);

    fs.writeFileSync(`${hold}.fail`, '');
    const r = await node.fetch('/parties/counter/a', { method: 'POST' });
    assert.equal(r.status, 500, await r.text());
    await waitFor(() => /commit: IO error: While fdatasync: .*Input\/output error/.test(node.stderr),
      { what: 'the failed sync in the log' });
    // the room was reset: its socket closed with 1011 (partysocket reconnects), and it never saw the unsynced count
    assert.equal((await ws.closed).code, 1011);
    assert.ok(!ws.json().some((m) => m.count === 4), 'the count of the failed write was broadcast');

    // RocksDB refuses writes after a failed sync; the shard restarts after the failures in a row. (The answers are
    // checked after the loop: waitFor would take a failed assertion inside it for "not yet".)
    const answers = [];
    await waitFor(async () => {
      const w = await node.fetch('/parties/counter/a', { method: 'POST' });
      answers.push(`${w.status} ${await w.text()}`);
      return (await node.shards())[0].restarts >= 1;
    }, { timeout: 30000, what: 'the shard to restart' });
    for (const a of answers) assert.match(a, /^50[03] /, `a write while the disk fails: ${a}`);
    const attempts = 1 + answers.length;

    fs.unlinkSync(`${hold}.fail`);
    const after = await waitFor(async () => {
      const g = await node.json('/parties/counter/a');
      return g.status === 200 && g.body;
    }, { timeout: 45000, what: 'the shard back' });
    // 3 acknowledged; the failed ones were never acknowledged, so they may or may not have reached the disk
    assert.ok(after.count >= 3 && after.count <= 3 + attempts, `count after the restart: ${after.count}`);
    assert.equal((await node.json('/parties/counter/a', { method: 'POST' })).body.count, after.count + 1);
    const { code } = await node.stop();
    assert.equal(code, 0);
  });
