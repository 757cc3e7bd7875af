// reshard.mjs — what adding and draining a shard costs a loaded node: how long the move takes, how much data it
// carries, and what the writers see meanwhile (refusals with 503 and the slowest acknowledged write).
//
//   node tests/bench/reshard.mjs [--rooms 2000] [--value-bytes 16384] [--writers 32] [--shards 2]
//
// Fills --rooms kv rooms with one value each, keeps --writers HTTP writers bumping counters in 256 rooms, then adds a
// shard and afterwards drains it, printing figures for each; at the end checks that every value and every
// acknowledged count is still there. Runs build/partyd (or $PARTYD_BIN) on loopback ports; prints, asserts nothing
// about speed.
import { parseArgs } from 'node:util';
import http from 'node:http';
import { startNode } from '../integration/lib.mjs';

const { values: opt } = parseArgs({
  options: {
    rooms: { type: 'string', default: '2000' },
    'value-bytes': { type: 'string', default: '16384' },
    writers: { type: 'string', default: '32' },
    shards: { type: 'string', default: '2' },
  },
});
const ROOMS = Number(opt.rooms), BYTES = Number(opt['value-bytes']), WRITERS = Number(opt.writers);
const agent = new http.Agent({ keepAlive: true, maxSockets: WRITERS + 16 });

function req(node, method, path, body) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: node.port, method, path, agent }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

function quantile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
}

const node = await startNode({ shards: Number(opt.shards), config: { parties: { kv: { kind: 'kv' }, counter: { kind: 'counter' } } } });
try {
  const value = 'v'.repeat(BYTES);
  const t0 = Date.now();
  for (let i = 0; i < ROOMS; i += 64) {
    await Promise.all(Array.from({ length: Math.min(64, ROOMS - i) }, async (_, k) => {
      const r = await req(node, 'PUT', `/parties/kv/data-${i + k}?key=v`, value);
      if (r.status !== 200) throw new Error(`PUT: ${r.status} ${r.body}`);
    }));
  }
  console.log(`filled ${ROOMS} rooms × ${BYTES} bytes (${((ROOMS * BYTES) / 1048576).toFixed(1)} MiB) in ${Date.now() - t0} ms`);

  const acked = new Array(256).fill(0);
  let window = null, stop = false;
  const writer = async (w) => {
    for (let k = 0; !stop; ++k) {
      const room = (w * 31 + k) % 256;
      const start = process.hrtime.bigint();
      let status = 0;
      try { status = (await req(node, 'POST', `/parties/counter/w-${room}`)).status; } catch { status = -1; }
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (status === 200) acked[room]++;
      if (window) {
        if (status === 200) window.lat.push(ms);
        else window.refused++;
      }
      if (status !== 200) await new Promise((r) => setTimeout(r, 20));
    }
  };
  const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
  await new Promise((r) => setTimeout(r, 1000));

  for (const [what, path] of [['add a shard', '/admin/shards'], ['drain it again', null]]) {
    const p = path ?? `/admin/shards/${(await node.shards()).at(-1).id}/drain`;
    window = { lat: [], refused: 0 };
    const s = Date.now();
    const r = await node.admin(p, { method: 'POST' });
    const took = Date.now() - s;
    const w = window;
    window = null;
    if (r.status !== 200) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
    const lat = w.lat.sort((a, b) => a - b);
    console.log(`${what}: ${r.body.moved_slots} slots moved in ${took} ms; during it ${lat.length} writes acknowledged ` +
      `(${((lat.length * 1000) / took).toFixed(0)}/s), ${w.refused} refused with 503; write latency p50 ${quantile(lat, 0.5).toFixed(1)} ms, ` +
      `p99 ${quantile(lat, 0.99).toFixed(1)} ms, max ${(lat.at(-1) ?? 0).toFixed(1)} ms`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  stop = true;
  await Promise.all(writers);

  // nothing lost: every value whole, every count at least what was acknowledged
  let bad = 0;
  for (let i = 0; i < ROOMS; i += 64) {
    const res = await Promise.all(Array.from({ length: Math.min(64, ROOMS - i) }, (_, k) => req(node, 'GET', `/parties/kv/data-${i + k}?key=v`)));
    bad += res.filter((r) => r.status !== 200 || r.body.length !== BYTES).length;
  }
  for (let room = 0; room < 256; ++room) {
    const r = await req(node, 'GET', `/parties/counter/w-${room}`);
    if (r.status !== 200 || JSON.parse(r.body).count < acked[room]) bad++;
  }
  console.log(bad === 0 ? 'check: every value and every acknowledged count is there' : `check: ${bad} rooms LOST DATA`);
  process.exitCode = bad === 0 ? 0 : 1;
} finally {
  agent.destroy();
  await node.stop();
}
