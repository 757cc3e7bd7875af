// failure-router.test.mjs — the router's side of "correct under failure" (issue 17, items 1, 9, 10): whatever order
// a shard's frames arrive in, whatever the supervisor cannot do, the router stays sound (no sanitizer report), answers
// (no hang), and serves the next request.
//
// Item 1 uses tests/preload/holdsync.so (see syncgate.test.mjs): while a WAL sync is held the shard reads nothing, so
// the frames sent to it meanwhile land in one loop pass once it is released.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, Client, sleep, startNode, tmpDir, waitFor } from './lib.mjs';
import { TOKEN, adm } from './adminlib.mjs';

const PRELOAD = path.join(path.dirname(BIN), 'tests', 'preload');
const HOLDSYNC = path.join(PRELOAD, 'holdsync.so');

async function startWith(t, opts) {
  const node = await startNode({ ...opts, env: { PARTYD_ADMIN_TOKEN: TOKEN, ...(opts.env ?? {}) } });
  t.after(() => { try { process.kill(-node.proc.pid, 'SIGKILL'); } catch {} });
  return node;
}

// The client either opened (and then works or is closed cleanly) or was refused with a status: never neither.
async function settled(c) {
  let opened = false;
  c.opened.then(() => { opened = true; }, () => {});
  await waitFor(() => opened || c.closeCode !== undefined, { what: 'the upgrade to be answered' });
  if (!opened) {
    await waitFor(() => c.unexpected, { what: 'the refusal' });
    assert.ok([503].includes(c.unexpected.status), `refused with ${c.unexpected.status} ${c.unexpected.body}`);
  }
  return opened;
}

for (const op of ['evict', 'delete']) {
  test(`an operator ${op} in the pass a connection to a room that wrote arrives in: no use after free, no hang`,
    { timeout: 120000 }, async (t) => {
      assert.ok(fs.existsSync(HOLDSYNC), `${HOLDSYNC} is built with the binary`);
      const dir = tmpDir();
      const hold = path.join(dir, 'hold-sync');
      const node = await startWith(t, { dir, shards: 1, env: { LD_PRELOAD: HOLDSYNC, PARTYD_TEST_HOLD_SYNC: hold } });
      const room = '/parties/counter/a';
      for (let round = 0; round < 4; round++) {
        fs.writeFileSync(hold, '');
        const first = node.fetch(room, { method: 'POST' });
        await waitFor(() => fs.existsSync(`${hold}.waiting`), { what: 'the shard to be syncing the write' });
        // the shard reads nothing now: a write to the room, a connection to it and the operator's evict queue up
        // for one pass, in which the room wrote, so the connection's ATTACH and ACCEPT wait for the commit while
        // the evict's CLOSE_CONN does not
        // Nothing shows when the router has written each to the shard's socket: a moment between them makes the
        // order (write, connect, evict) likely. The assertions hold whatever order they arrive in.
        const second = node.fetch(room, { method: 'POST' });
        await sleep(100);
        const c = new Client(node.wsUrl(room));
        await sleep(100);
        const evict = op === 'evict'
          ? adm(node, '/admin/rooms/counter/a/evict', { method: 'POST' })
          : adm(node, '/admin/rooms/counter/a?confirm=a', { method: 'DELETE' });
        await sleep(100);
        fs.unlinkSync(hold);
        assert.equal((await first).status, 200);
        assert.equal((await second).status, 200);
        assert.equal((await evict).status, 200, `the ${op}`);
        if (await settled(c)) {
          // opened: it either works or is closed as the evict says (1012)
          const { code } = await Promise.race([c.closed, c.waitJson((m) => m.type === 'count').then(() => c.close())]);
          assert.ok([1005, 1012].includes(code), `close code ${code}`);
        }
        // a later connection to the room joins the router's room record that the first one must not have corrupted
        const d = await Client.open(node.wsUrl(room)).catch((e) => {
          node.checkSanitizers();
          throw new Error(`${e.message}; the node's log:\n${node.stderr.slice(-3000)}`);
        });
        await d.waitJson((m) => m.type === 'count');
        await d.close();
      }
      assert.ok(node.routerPid(), 'the router is still running');
      const { code } = await node.stop();
      assert.equal(code, 0);
    });
}

// Item 9: the supervisor cannot start the shard an add asks for. It says so (a CTL_SPAWN_FAILED record) and the
// router answers the add with the reason instead of waiting in "spawning" for good, refusing every later shard change.
test('an add the supervisor cannot record in node.json: 500 with the reason, and the next add works',
  { timeout: 120000 }, async (t) => {
    const shim = path.join(PRELOAD, 'failrename.so');
    assert.ok(fs.existsSync(shim), `${shim} is built with the binary`);
    const dir = tmpDir();
    const full = path.join(dir, 'disk-full');
    const node = await startWith(t, { dir, shards: 1, env: { LD_PRELOAD: shim, PARTYD_TEST_FAIL_RENAME: full } });
    fs.writeFileSync(full, '');
    const refused = await adm(node, '/admin/shards', { method: 'POST' });
    assert.equal(refused.status, 500, JSON.stringify(refused.body));
    assert.match(refused.body.error, /node\.json: No space left on device/);
    assert.equal((await adm(node, '/admin/node')).body.migration.phase, 'idle');
    assert.deepEqual((await adm(node, '/admin/node')).body.shard_ids, [0], 'no shard was started');
    fs.unlinkSync(full);
    const added = await adm(node, '/admin/shards', { method: 'POST' });
    assert.equal(added.status, 200, JSON.stringify(added.body));
    assert.equal(added.body.shard, 1, 'the id the failed add did not record is given to the next');
    assert.deepEqual(added.body.shards, [0, 1]);
    const drained = await adm(node, '/admin/shards/1/drain', { method: 'POST' });
    assert.equal(drained.status, 200, JSON.stringify(drained.body));
    const { code } = await node.stop();
    assert.equal(code, 0);
  });

test('an add when no shard id is left: 500 with the reason, and backups and drains still work', { timeout: 120000 },
  async (t) => {
    const dir = tmpDir();
    // ids are never reused: a node whose next id is past the last one there is
    fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'data', 'node.json'), JSON.stringify({ format: 2, shards: [0, 1], next_id: 256 }));
    const node = await startWith(t, { dir, shards: 2 });
    const refused = await adm(node, '/admin/shards', { method: 'POST' });
    assert.equal(refused.status, 500, JSON.stringify(refused.body));
    assert.match(refused.body.error, /no shard id is left/);
    const backup = await adm(node, '/admin/backup', { method: 'POST', body: JSON.stringify({ dir: path.join(dir, 'bk') }) });
    assert.equal(backup.status, 200, JSON.stringify(backup.body));
    const drained = await adm(node, '/admin/shards/1/drain', { method: 'POST' });
    assert.equal(drained.status, 200, JSON.stringify(drained.body));
    const { code } = await node.stop();
    assert.equal(code, 0);
  });
