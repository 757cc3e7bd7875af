// logs.test.mjs — what a node writes to stderr: every line names its time, role, pid and level; lifecycle events get
// one line each; traffic gets none at info (a thousand messages add no line); room evictions and wakes are summed up
// per shard, not logged one by one; log_level "warn" keeps only warnings and errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, waitFor, Client } from './lib.mjs';

const T = { timeout: 60000 };
const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z partyd\[(node|router|shard\/\d+) (\d+)\] (debug|info|warn|error): \S/;

function lines(node) {
  return node.stderr.split('\n').filter((l) => l !== '');
}

async function traffic(node, rooms, messages) {
  const clients = [];
  for (const r of rooms) clients.push(await Client.open(node.wsUrl(`/parties/relay/${r}`)));
  for (let i = 0; i < messages; ++i) clients[i % clients.length].send(`m${i}`);
  // each relay room echoes to its other members only; a second client per room would double the work, so wait for
  // the rooms to have taken every message via their stats
  await waitFor(async () => (await node.shards()).reduce((a, s) => a + s.messages_in, 0) >= messages,
    { what: 'the rooms to receive every message' });
  await Promise.all(clients.map((c) => c.close()));
}

test('every line has time, role, pid and level; traffic adds no line; evictions are logged in aggregate', T, async () => {
  const node = await startNode({ shards: 2, config: { timers: { idle_ms: 200 } } });
  await waitFor(() => lines(node).some((l) => /partyd\[router \d+\] info: started$/.test(l)), { what: 'the router to log its start' });
  const rooms = Array.from({ length: 40 }, (_, i) => `log-room-${i}`);
  const before = lines(node).length;
  await traffic(node, rooms, 1000);
  // the rooms go idle and are evicted (idle_ms 200); the admin counters say when
  await waitFor(async () => (await node.shards()).reduce((a, s) => a + s.evictions, 0) >= rooms.length,
    { what: 'the idle rooms to be evicted' });
  const during = lines(node).length - before;
  assert.ok(during < 10, `1000 messages in 40 rooms and 40 evictions added ${during} lines:\n${lines(node).slice(before).join('\n')}`);

  const { code } = await node.stop();
  assert.equal(code, 0);
  const all = lines(node);
  for (const l of all) assert.match(l, LINE, 'a log line has the standard prefix');
  const pids = new Map();
  for (const l of all) {
    const [, role, pid] = l.match(LINE);
    if (!pids.has(role)) pids.set(role, new Set());
    pids.get(role).add(Number(pid));
  }
  assert.ok(pids.has('node') && pids.has('router') && pids.has('shard/0') && pids.has('shard/1'), [...pids.keys()].join());
  assert.ok(pids.get('node').has(node.proc.pid), 'the supervisor logs under its own pid');
  // lifecycle: start and stop, once each
  assert.equal(all.filter((l) => /partyd\[node \d+\] info: starting 2 shards/.test(l)).length, 1);
  assert.equal(all.filter((l) => /partyd\[node \d+\] info: stopped$/.test(l)).length, 1);
  // the aggregate: both shards' summaries together count every wake and every eviction
  let woken = 0;
  let evicted = 0;
  for (const l of all) {
    const m = l.match(/partyd\[shard\/\d+ \d+\] info: rooms: (\d+) woken, (\d+) evicted in the last \d+ s; \d+ in memory, \d+ hibernating, \d+ connections$/);
    if (m) { woken += Number(m[1]); evicted += Number(m[2]); }
  }
  assert.equal(woken, rooms.length, 'every room woke once, and the summaries say so');
  assert.equal(evicted, rooms.length, 'every room was evicted once, and the summaries say so');
  assert.ok(!all.some((l) => /m\d+/.test(l.replace(/\d+ ms/g, ''))), 'no message text is logged');
});

test('log_level "warn" keeps warnings and errors only', T, async () => {
  const node = await startNode({ shards: 1, config: { log_level: 'warn' } });
  await traffic(node, ['quiet'], 10);
  const pid = (await node.shards())[0].pid;
  process.kill(pid, 'SIGKILL');
  await waitFor(() => lines(node).some((l) => / warn: shard 0 \(pid \d+\) was killed by signal 9/.test(l)),
    { what: 'the warning about the killed shard' });
  await waitFor(async () => (await node.shards())[0]?.state === 'up', { what: 'the shard to be back' });
  const { code } = await node.stop();
  assert.equal(code, 0);
  const all = lines(node);
  for (const l of all) assert.match(l, / (warn|error): /, `only warnings and errors: ${l}`);
});
