// crash.test.mjs — a crashing C module names itself (issue 20): the shard's fatal-signal handler (shard/crash.c) writes
// the party, the room and the callback that was running, and a backtrace, to stderr before the shard dies; the
// supervisor restarts it and /admin/shards says why (last_exit).
//
// tests/modules/stall.c's "segv" message writes through a null pointer with the handlers as the shard set them (its
// "crash" message restores the default action first, so it would bypass the report). The handler ends with the
// signal's default action, so the shard dies of SIGSEGV under AddressSanitizer too and no sanitizer report is written
// (ASan keeps SIGSEGV for itself unless allow_user_segv_handler=1, which this test adds to the harness's options).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { BIN, waitFor, tmpDir } from './lib.mjs';
import { cleanupAfterEach, start, open, stopClean } from './helpers.mjs';

cleanupAfterEach();
const T = { timeout: 90000 };
const MOD = path.join(path.dirname(BIN), 'tests', 'modules', 'stall.so');

test('a module that crashes its shard: the room, the callback and a backtrace on stderr; the reason in /admin/shards', T, async () => {
  const dir = tmpDir();
  const ASAN_OPTIONS = `log_path=${path.join(dir, 'sanitizer')}/asan:detect_leaks=1:abort_on_error=0:verify_asan_link_order=0:allow_user_segv_handler=1`;
  const node = await start({ dir, shards: 2, env: { ASAN_OPTIONS }, config: { parties: { s: { module: MOD } } } });
  const room = 'boom-1';
  const { shard, pid } = await node.shardPidOf('s', room);
  const before = (await node.shards())[shard];
  assert.equal(before.last_exit, null, 'a shard that never exited has no last_exit');

  const c = await open(node.wsUrl(`/parties/s/${room}`));
  c.send('segv');
  assert.equal((await c.closed).code, 1011);

  const head = new RegExp(`shard ${shard} \\(pid ${pid}\\): fatal signal 11 \\(SIGSEGV\\) in on_message of room s/${room}; backtrace:\\n`);
  await waitFor(() => head.test(node.stderr), { timeout: 15000, what: 'the crash report' });
  // the backtrace follows: backtrace_symbols_fd's lines, the module's on_message among them
  const after = node.stderr.slice(node.stderr.search(head)).split('\n').slice(1);
  const frames = after.filter((l) => /\[0x[0-9a-f]+\]$/.test(l));
  assert.ok(frames.length >= 3, `too few backtrace lines:\n${after.slice(0, 20).join('\n')}`);
  assert.ok(frames.some((l) => l.includes('stall.so')), `no frame of the module in:\n${frames.join('\n')}`);

  // the supervisor restarts it and tells the router why
  const restarted = await waitFor(async () => {
    const s = (await node.shards())[shard];
    return s.state === 'up' && s.pid !== pid ? s : null;
  }, { timeout: 20000, what: 'the shard to restart' });
  assert.ok(restarted.last_exit, 'no last_exit after a crash');
  assert.match(restarted.last_exit.reason, new RegExp(`killed by signal 11 .* in on_message of room s/${room}$`));
  assert.ok(Math.abs(restarted.last_exit.at - Date.now()) < 60000, `last_exit.at ${restarted.last_exit.at}`);
  // the other shard never exited
  assert.equal((await node.shards())[1 - shard].last_exit, null);

  // the room serves again (what does not crash it)
  const r = await node.fetch(`/parties/s/${room}`);
  assert.equal(r.status, 200);
  await r.text();
  await stopClean(node, [], { allowRestarts: true });
});
