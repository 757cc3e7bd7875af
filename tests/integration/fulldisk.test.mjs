// fulldisk.test.mjs — a full disk: writes that cannot be committed get a clear error, nothing acknowledged is lost,
// and the node serves again once there is room. The data directory is a small tmpfs this test mounts (it needs root,
// as the CI machine has; without it the test is skipped and says why).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startNode, tmpDir, waitFor, kill } from './lib.mjs';

function tryMount(dir, size) {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const probe = tmpDir('partyd-mount-probe-');
const canMount = tryMount(probe, '1m');
if (canMount) execFileSync('umount', [probe]);

test('a full disk: unacknowledged writes fail with 5xx, acknowledged ones survive, service resumes with space',
  { skip: canMount ? false : 'needs root to mount a small tmpfs', timeout: 120000 }, async (t) => {
    const dir = tmpDir();
    const mnt = path.join(dir, 'disk');
    fs.mkdirSync(mnt);
    assert.ok(tryMount(mnt, '8m'));
    t.after(() => { try { execFileSync('umount', ['-l', mnt]); } catch {} });
    // most of the disk is taken by a file we can delete later
    const filler = path.join(mnt, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(3 << 20));

    const node = await startNode({
      dir, shards: 1, args: ['--data-dir', path.join(mnt, 'data')],
      config: { parties: { kv: { kind: 'kv' } }, limits: { body_bytes: 1 << 20 } },
    });
    t.after(() => kill(node.proc));

    const value = Buffer.alloc(100 * 1024, 0x61);
    const acked = [];
    const failed = [];
    for (let i = 0; i < 120 && failed.length < 4; i++) {
      const r = await node.fetch(`/parties/kv/full?key=k${i}`, { method: 'PUT', body: value });
      await r.arrayBuffer();
      if (r.status === 200) acked.push(i);
      else failed.push(r.status);
    }
    assert.ok(acked.length > 0, 'some writes fit');
    assert.ok(failed.length > 0, `the disk filled up (acknowledged ${acked.length} writes)`);
    for (const s of failed) assert.ok(s === 500 || s === 503, `a write that could not be committed gets 500/503, not ${s}`);
    assert.match(node.stderr, /No space left on device/);

    // room again: the shard comes back (the supervisor keeps restarting it) and every acknowledged write is there
    fs.unlinkSync(filler);
    await waitFor(async () => (await node.fetch('/health')).status === 200, { timeout: 30000, what: 'the shard to recover' });
    for (const i of acked) {
      const r = await node.fetch(`/parties/kv/full?key=k${i}`);
      const body = Buffer.from(await r.arrayBuffer());
      assert.equal(r.status, 200, `acknowledged write k${i} is readable`);
      assert.equal(body.length, value.length);
    }
    const r = await node.fetch('/parties/kv/full?key=after', { method: 'PUT', body: 'ok' });
    assert.equal(r.status, 200, 'writes work again');
    const { code } = await node.stop();
    assert.equal(code, 0);
  });
