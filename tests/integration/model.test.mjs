// model.test.mjs — the model test of the storage API, short runs (tests/integration/modellib.mjs has the model and
// the faults; tests/bench/model runs it long). A few seeds of a few hundred steps each: every answer of every step is
// checked against an in-memory model of party.h's semantics, across evictions, hibernation, SIGKILL of the shard and
// of the node, and failed commits. A failure names its seed; MODEL_SEEDS=7,9 MODEL_STEPS=500 reruns chosen ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startNode } from './lib.mjs';
import { MODULE, SHIM, SKIP, runModel } from './modellib.mjs';

const seeds = (process.env.MODEL_SEEDS ?? '1,2,3').split(',').map(Number);
const steps = Number(process.env.MODEL_STEPS ?? 150);

test('the model party and the sync shim are built with the binary', () => {
  assert.ok(fs.existsSync(MODULE), MODULE);
  assert.ok(fs.existsSync(SHIM), SHIM);
  const skipped = Object.entries(SKIP).filter(([, v]) => v).map(([k]) => k);
  if (skipped.length) console.log(`# known-bug checks skipped until their fixes merge: ${skipped.join(', ')}`);
});

// Found by the model test (seed 2): the router refused the shard's answer for a room with a key holding a NUL byte
// (valid UTF-8, written as \u0000), and answered 503 "the room's shard did not answer" after its timeout.
test('the admin endpoint shows a room whose key holds a NUL byte', { timeout: 60000 }, async () => {
  const node = await startNode({ shards: 1, config: { parties: { model: { module: MODULE } } } });
  const r = await node.fetch('/parties/model/nul', { method: 'POST', body: 'put 0061 01\nput 62 .' });
  assert.equal(await r.text(), 'ok 0\nok 0\n');
  const a = await node.admin('/admin/rooms/model/nul');
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.deepEqual(a.body.keys, [{ key: '\u0000a', bytes: 1 }, { key: 'b', bytes: 0 }]);
  assert.equal((await node.stop()).code, 0);
});

for (const seed of seeds) {
  test(`storage API against its model: seed ${seed}, ${steps} steps with faults`, { timeout: 120000 }, async () => {
    const stats = await runModel({ seed, steps });
    console.log(`# seed ${seed}: ${stats.steps} steps, faults ${JSON.stringify(stats.faults)}, alarms fired ${stats.alarmsFired}, known bug failedCommitTrace seen ${stats.knownBugSeen ?? 0}×`);
  });
}
