// failure-router.test.mjs — the router's side of "correct under failure" (issue 17, items 1, 9, 10): whatever order
// a shard's frames arrive in, whatever the supervisor cannot do, the router stays sound (no sanitizer report), answers
// (no hang), and serves the next request.
//
// Item 1 uses tests/preload/holdsync.so (see syncgate.test.mjs): while a WAL sync is held the shard reads nothing, so
// the frames sent to it meanwhile land in one loop pass once it is released.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
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
    const backup = await adm(node, '/admin/backup', { method: 'POST', body: JSON.stringify({ dir: 'bk' }) });
    assert.equal(backup.status, 200, JSON.stringify(backup.body));
    const drained = await adm(node, '/admin/shards/1/drain', { method: 'POST' });
    assert.equal(drained.status, 200, JSON.stringify(drained.body));
    const { code } = await node.stop();
    assert.equal(code, 0);
  });

// Item 10: the admin key pages. A page's "next" is the hex of its last key, and keys may be 2048 bytes: the router
// kept the cursor in 2049 bytes, dropped a longer one and answered page 1 again, for ever.
test('/admin/rooms/:party/:room: following "next" over 2048-byte keys reaches every key once', { timeout: 60000 },
  async (t) => {
    const node = await startWith(t, { shards: 1, config: { parties: { main: { kind: 'chat' }, kv: { kind: 'kv' } } } });
    const keys = ['A', 'B', 'C'].map((c) => 'k'.repeat(2047) + c);
    for (const k of keys) assert.equal((await node.fetch(`/parties/kv/long?key=${k}`, { method: 'PUT', body: 'v' })).status, 200);
    const seen = [];
    let cursor = null;
    for (let pages = 0; pages < 5; ++pages) {
      const p = await adm(node, `/admin/rooms/kv/long?limit=1${cursor !== null ? `&cursor=${cursor}` : ''}`);
      assert.equal(p.status, 200, JSON.stringify(p.body));
      seen.push(...p.body.keys.map((k) => k.key));
      if (p.body.next === null) break;
      cursor = p.body.next;
    }
    assert.deepEqual(seen, keys);
    const tooLong = await adm(node, `/admin/rooms/kv/long?cursor=${'00'.repeat(2049)}`);
    assert.equal(tooLong.status, 400);
    const { code } = await node.stop();
    assert.equal(code, 0);
  });

// A whole HTTP/1.1 exchange on one socket (Connection: close): what the client reads, byte for byte.
function rawHttp(port, request) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const lines = text.slice(0, end).split('\r\n');
      const headers = lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]);
      resolve({ status: Number(lines[0].split(' ')[1]), headers, body: text.slice(end + 4) });
    });
    sock.end(request);
  });
}
const named = (res, name) => res.headers.filter(([n]) => n === name).map(([, v]) => v);

// Item 10: a party's answer reaches the client in a shape HTTP/1.1 can carry, from a room or from an edge hook alike.
test('a party\'s answer: no 1xx as a final status, no body on 204/304, no framing headers of its own', { timeout: 60000 },
  async (t) => {
    const mod = path.join(path.dirname(BIN), 'tests', 'modules', 'respond.so');
    const node = await startWith(t, { shards: 1, config: { parties: { respond: { module: mod } } } });
    const get = (q) => rawHttp(node.port, `GET /parties/respond/r${q} HTTP/1.1\r\nHost: ${node.host}\r\nConnection: close\r\n\r\n`);

    // a 1xx would leave the client waiting for the final answer
    const room1xx = await get('?status=103');
    assert.equal(room1xx.status, 502, `the room's 103: ${JSON.stringify(room1xx)}`);
    const edge1xx = await get('?edge=103');
    assert.equal(edge1xx.status, 500, `the hook's 103: ${JSON.stringify(edge1xx)}`);

    for (const [q, status] of [['?status=204', 204], ['?status=304', 304], ['?edge=204', 204], ['?edge=304', 304]]) {
      const r = await get(q);
      assert.equal(r.status, status, q);
      assert.equal(r.body, '', `${q}: a ${status} carries no body`);
      assert.deepEqual(named(r, 'transfer-encoding'), [], q);
    }

    for (const [q, body, from] of [['?frame=1', 'room-body', 'room'], ['?edge=200&frame=1', 'edge-body', 'edge']]) {
      const r = await get(q);
      assert.equal(r.status, 200, q);
      assert.deepEqual(named(r, 'x-respond'), [from]);
      assert.deepEqual(named(r, 'content-length'), ['9'], `${q}: one Content-Length, the router's`);
      assert.deepEqual(named(r, 'transfer-encoding'), [], `${q}: no Transfer-Encoding from the party`);
      assert.equal(r.body, body);
    }
    const { code } = await node.stop();
    assert.equal(code, 0);
  });

// Item 10: limits.body_bytes is the same limit for a body with Content-Length and a chunked one.
test('a chunked body of exactly limits.body_bytes is served like one with Content-Length; one byte more is 413',
  { timeout: 60000 }, async (t) => {
    const node = await startWith(t, { shards: 1, config: { limits: { body_bytes: 4096 } } });
    const post = (headers, body) => rawHttp(node.port,
      `POST /parties/relay/body HTTP/1.1\r\nHost: ${node.host}\r\n${headers}Connection: close\r\n\r\n${body}`);
    const chunked = (n) => post('Transfer-Encoding: chunked\r\n',
      `${(n - 1000).toString(16)}\r\n${'a'.repeat(n - 1000)}\r\n${(1000).toString(16)}\r\n${'b'.repeat(1000)}\r\n0\r\n\r\n`);
    assert.equal((await post('Content-Length: 4096\r\n', 'a'.repeat(4096))).status, 200);
    assert.equal((await chunked(4096)).status, 200, 'a chunked body at the limit');
    assert.equal((await chunked(4097)).status, 413, 'a chunked body one byte over');
    assert.equal((await post('Content-Length: 4097\r\n', 'a'.repeat(4097))).status, 413, 'Content-Length one byte over');
    const { code } = await node.stop();
    assert.equal(code, 0);
  });
