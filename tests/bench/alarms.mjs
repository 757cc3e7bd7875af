// alarms.mjs — sets and moves alarms through the counter party over keep-alive HTTP, then checks that every one
// fired. Used by alarms.sh; on its own: node tests/bench/alarms.mjs PORT SETS ROOMS
//
// Each request is `POST /parties/counter/aN?alarm=1`: the room's alarm, 1 ms ahead. A room's next request moves it
// (its old index entry is deleted), and each one that fires deletes its entry too, so SETS requests leave up to SETS
// deleted index entries in the shards' storage. 64 requests are in flight. It prints one JSON line: the requests,
// how long they took, and how many rooms still had an alarm set 1.5 s after the last one (0 when every alarm fired).
import http from 'node:http';

const [port, sets, rooms] = process.argv.slice(2).map(Number);
if (!(port > 0) || !(sets > 0) || !(rooms > 0)) {
  console.error('usage: node alarms.mjs PORT SETS ROOMS');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function request(method, path) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${method} ${path}: ${res.statusCode} ${body}`));
        else resolve(JSON.parse(body));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const t0 = Date.now();
let next = 0;
async function worker() {
  while (next < sets) {
    const i = next++;
    await request('POST', `/parties/counter/a${i % rooms}?alarm=1`);
  }
}
await Promise.all(Array.from({ length: 64 }, worker));
const setMs = Date.now() - t0;

await new Promise((r) => setTimeout(r, 1500));
let pending = 0, fired = 0;
for (let i = 0; i < rooms; i += 64) {
  const batch = Array.from({ length: Math.min(64, rooms - i) }, (_, k) => request('GET', `/parties/counter/a${i + k}`));
  for (const r of await Promise.all(batch)) {
    if (r.alarmAt !== null) pending++;
    fired += r.count;
  }
}
agent.destroy();
console.log(JSON.stringify({ sets, rooms, set_ms: setMs, sets_per_s: Math.round(sets / (setMs / 1000)), fired, still_set: pending }));
process.exit(pending === 0 ? 0 : 1);
