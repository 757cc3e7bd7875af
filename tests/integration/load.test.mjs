// load.test.mjs — partyd under load from partyload, the project's load generator (tests/bench/): what must hold at
// any speed. Every message is delivered once, in order, to every other client of its room, through both of the
// router's write paths; idle connections stay open; connections that come and go, and rooms woken from storage, all
// get their answers. Speed is never asserted here (tests/bench/RESULTS.md has the figures); only counts are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, spawnChild } from './lib.mjs';
import { cleanupAfterEach, start } from './helpers.mjs';

cleanupAfterEach();

// partyload is built next to the partyd under test (build/ or build-asan/)
const PARTYLOAD = path.join(path.dirname(BIN), 'tests', 'bench', 'partyload');
const TEST_TIMEOUT = 120000;

// Runs partyload; resolves with its exit code, its JSON line (parsed) and its stderr.
function partyload(args) {
  return new Promise((resolve, reject) => {
    const p = spawnChild(PARTYLOAD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('close', (code) => {
      const line = out.trim().split('\n').pop();
      let json = null;
      try { json = JSON.parse(line); } catch { /* reported below */ }
      if (json === null) reject(new Error(`partyload ${args.join(' ')}: no JSON line (exit ${code})\n${out}\n${err}`));
      else resolve({ code, json, stderr: err });
    });
  });
}

const where = (node) => ['--port', String(node.port), '--pid', String(node.proc.pid)];

function exactDelivery(r, what) {
  const j = r.json;
  assert.equal(r.code, 0, `${what}: partyload exit ${r.code}: ${r.stderr}`);
  assert.equal(j.errors, 0, `${what}: errors (first: ${j.first_error})`);
  assert.ok(j.sent > 0, `${what}: nothing sent`);
  assert.ok(j.expected > 0, `${what}: nothing expected`);
  assert.equal(j.delivered, j.expected, `${what}: delivered ${j.delivered} of ${j.expected}`);
  assert.equal(j.lost, 0, `${what}: lost`);
  assert.equal(j.duplicated, 0, `${what}: duplicated`);
  assert.equal(j.out_of_order, 0, `${what}: out of order`);
}

test('partyload is built next to partyd', () => {
  assert.ok(fs.existsSync(PARTYLOAD), `${PARTYLOAD} is missing: ninja -C ${path.dirname(BIN)}`);
});

for (const [how, env] of [['io_uring', {}], ['writev', { PARTYD_IO_URING: '0' }]]) {
  test(`broadcast: every message reaches every other client of its room once and in order — ${how}`, { timeout: TEST_TIMEOUT }, async () => {
    const node = await start({ env, shards: 2 });
    // one big room (a pass writes many connections) and many small ones (a pass writes a few)
    const big = await partyload(['broadcast', ...where(node), '--rooms', '1', '--clients', '40', '--rate', '50', '--duration', '2']);
    exactDelivery(big, '1 room × 40');
    assert.equal(big.json.expected, big.json.sent * 39, 'the relay leaves out only the sender');
    // a room bigger than one pass writes (128 connections): its fan-out is spread over passes, and a message that
    // comes in meanwhile shares a send with the one before it on the connections still waiting
    const huge = await partyload(['broadcast', ...where(node), '--rooms', '1', '--clients', '600', '--rate', '0.1', '--duration', '3']);
    exactDelivery(huge, '1 room × 600');
    assert.equal(huge.json.expected, huge.json.sent * 599);
    const small = await partyload(['broadcast', ...where(node), '--rooms', '30', '--clients', '3', '--rate', '40', '--size', '300', '--text', '--duration', '2']);
    exactDelivery(small, '30 rooms × 3');
    assert.equal(small.json.expected, small.json.sent * 2);
    const echo = await partyload(['echo', ...where(node), '--connections', '20', '--rate', '2000', '--duration', '2']);
    exactDelivery(echo, 'echo');
    assert.equal(echo.json.expected, echo.json.sent);
    assert.equal((await node.stop()).code, 0);
  });
}

test('idle: 2000 connections stay open and silent; the server reports its memory', { timeout: TEST_TIMEOUT }, async () => {
  const node = await start({ shards: 2 });
  const r = await partyload(['idle', ...where(node), '--connections', '2000', '--rooms', '20', '--hold', '2']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json.errors, 0, r.json.first_error);
  assert.equal(r.json.connections_open, 2000);
  assert.ok(r.json.server_rss_after_kb > 0 && r.json.server_procs === 4, 'the server tree was sampled');
  const shards = await node.shards();
  assert.equal(shards.reduce((n, s) => n + s.connections, 0), 0, 'every connection was closed at the end');
  assert.equal((await node.stop()).code, 0);
});

test('churn and wake: connections that come and go, and rooms loaded back from storage, all get their answers', { timeout: TEST_TIMEOUT }, async () => {
  const node = await start({ shards: 2, config: { parties: { relay: { kind: 'relay' }, kv: { kind: 'kv' } } } });
  const churn = await partyload(['churn', ...where(node), '--connections', '16', '--duration', '2']);
  assert.equal(churn.code, 0, churn.stderr);
  assert.equal(churn.json.errors, 0, churn.json.first_error);
  assert.ok(churn.json.connects > 0);
  assert.equal(churn.json.closes_unanswered, 0, 'partyd answers every close frame');

  const wake = await partyload(['wake', ...where(node), '--admin-port', String(node.adminPort), '--rooms', '10', '--keys', '100', '--requests', '50']);
  assert.equal(wake.code, 0, wake.stderr);
  assert.equal(wake.json.errors, 0, wake.json.first_error);
  assert.equal(wake.json.wakes, 50, 'each evicted room answered with its stored value');
  const shards = await node.shards();
  assert.ok(shards.reduce((n, s) => n + s.evictions, 0) >= 50, 'the rooms were really evicted');
  assert.equal((await node.stop()).code, 0);
});

test('increments: every WebSocket increment is acknowledged once, in order, and stored (writes: every POST is)', { timeout: TEST_TIMEOUT }, async () => {
  const node = await start({ shards: 2 });
  const inc = await partyload(['increments', ...where(node), '--connections', '24', '--duration', '2']);
  exactDelivery(inc, 'increments');
  assert.equal(inc.json.delivered, inc.json.sent, 'every increment sent was acknowledged');
  // the acknowledged counts are in storage: the 24 rooms add up to them
  const storedCounts = async () => {
    let sum = 0;
    for (let i = 0; i < 24; i++) sum += (await node.json(`/parties/counter/r${i}`)).body.count;
    return sum;
  };
  const stored = await storedCounts();
  assert.equal(stored, inc.json.delivered, 'the rooms store exactly the acknowledged increments');

  const writes = await partyload(['writes', ...where(node), '--connections', '8', '--rooms', '16', '--requests', '400']);
  assert.equal(writes.code, 0, writes.stderr);
  assert.equal(writes.json.errors, 0, writes.json.first_error);
  assert.equal(writes.json.ok, 400, 'every POST was acknowledged');
  assert.equal(await storedCounts(), stored + 400, 'and stored');
  assert.equal((await node.stop()).code, 0);
});
