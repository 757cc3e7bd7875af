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
