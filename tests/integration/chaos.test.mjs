// chaos.test.mjs — issue 16's standing chaos test: writers over HTTP and WebSocket to counter, chat and kv rooms
// while partyd is SIGKILLed at random moments — the whole tree (restarted on the same data directory), sometimes
// again while it starts, or one shard (restarted by the supervisor); some kills while the WAL syncs are held open —
// for CHAOS_ROUNDS rounds (24), and after each one every acknowledged write must be there, and no process may print
// a sanitizer report (tests/integration/chaoslib.mjs says what is checked). The run is
// seeded (CHAOS_SEED, default 16): a failure prints the seed and the summary to repeat it with. The long run is
// tests/bench/chaos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Chaos } from './chaoslib.mjs';

const ROUNDS = Number(process.env.CHAOS_ROUNDS ?? 24);
const SEED = Number(process.env.CHAOS_SEED ?? 16);

test(`${ROUNDS} rounds of SIGKILL (whole tree and single shards) while six kinds of writer write: nothing acknowledged is lost`, { timeout: 240000 }, async (t) => {
  const chaos = new Chaos({ seed: SEED, rounds: ROUNDS, fullEvery: 1 });
  const summary = await chaos.run(); // also: no sanitizer report from any node, and a clean SIGTERM at the end
  t.diagnostic(JSON.stringify(summary));
  const why = `seed ${SEED}: ${JSON.stringify(summary)}\n${chaos.problems.join('\n')}`;
  assert.equal(summary.lost, 0, `acknowledged writes were lost — ${why}`);
  assert.deepEqual(chaos.problems, [], why);
  assert.equal(summary.rounds, ROUNDS);
  assert.ok(summary.kills.tree >= 3 && summary.kills.shard >= 3, `both kinds of kill, several times: ${why}`);
  assert.ok(summary.kills.held >= 1, `a kill while WAL syncs were held (tests/preload/holdsync.so): ${why}`);
  for (const [kind, n] of Object.entries(summary.acked)) assert.ok(n > 0, `no ${kind} write was acknowledged: ${why}`);
});

// The checks are not vacuous: take acknowledged writes away behind the driver's back (a kv key deleted, a counter
// room deleted through the admin endpoint) and the driver must count them as lost.
test('the chaos checks notice an acknowledged write that is gone', { timeout: 120000 }, async () => {
  let taken = null;
  const chaos = new Chaos({
    seed: 3, rounds: 3, fullEvery: 1,
    async beforeCheck(c) {
      if (c.round !== 2 || taken) return;
      const kv = c.rooms.find((r) => r.kind === 'kv_put' && r.ackedKeys.size > 0);
      const counter = c.rooms.find((r) => r.kind === 'http_counter' && r.acked > 0);
      const key = [...kv.ackedKeys][0];
      const del = await c.node.fetch(`/parties/kv/${kv.name}?key=${key}`, { method: 'DELETE' });
      assert.deepEqual(await del.json(), { deleted: true });
      const gone = await c.node.admin(`/admin/rooms/counter/${counter.name}?confirm=${counter.name}`, { method: 'DELETE' });
      assert.equal(gone.status, 200, JSON.stringify(gone.body));
      taken = { kv: kv.name, key, counter: counter.name, acked: counter.acked };
    },
  });
  const summary = await chaos.run();
  assert.ok(taken, 'the hook ran');
  assert.ok(summary.lost >= 1 + taken.acked, `lost ${summary.lost}, expected at least ${1 + taken.acked}: ${chaos.problems.join('\n')}`);
  assert.ok(chaos.problems.some((p) => p.includes(`${taken.kv}: acknowledged ${taken.key}=`)), chaos.problems.join('\n'));
  assert.ok(chaos.problems.some((p) => p.startsWith(`round 2: ${taken.counter}: count 0, but ${taken.acked} increments acknowledged`)), chaos.problems.join('\n'));
});
