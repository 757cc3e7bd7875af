// alarms.mjs — sets and moves alarms through the counter party over keep-alive HTTP, then checks that every one
// fired. Used by alarms.sh; on its own: node tests/bench/alarms.mjs PORT SETS ROOMS, or PORT late ROOMS
//
// Each request is `POST /parties/counter/aN?alarm=1`: the room's alarm, 1 ms ahead. A room's next request moves it
// (its old index entry is deleted), and each one that fires deletes its entry too, so SETS requests leave up to SETS
// deleted index entries in the shards' storage. 64 requests are in flight. It prints one JSON line: the requests,
// how long they took, and how many rooms still had an alarm set 1.5 s after the last one (0 when every alarm fired).
//
// With `late`: how late alarms fire. A `ws` client in each of ROOMS rooms `lateN`; each room, three times in a row,
// `POST ?alarm=D` (D 50-199 ms) and waits for the counter's {"type":"alarm"} message. Lateness is the wall-clock
// time that message arrived minus the alarm's time as the answer gave it (alarmAt): firing, committing the room's
// write and one WebSocket delivery.
import http from 'node:http';
import WebSocket from 'ws';

const port = Number(process.argv[2]);
const late = process.argv[3] === 'late';
const sets = late ? 0 : Number(process.argv[3]);
const rooms = Number(process.argv[4]);
if (!(port > 0) || !(late || sets > 0) || !(rooms > 0)) {
  console.error('usage: node alarms.mjs PORT SETS ROOMS | node alarms.mjs PORT late ROOMS');
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

if (late) {
  const lateness = [];
  await Promise.all(Array.from({ length: rooms }, async (_, i) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/parties/counter/late${i}`);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    for (let k = 0; k < 3; ++k) {
      const delay = 50 + ((i * 37 + k * 53) % 150);
      const fired = new Promise((resolve) => {
        const onMessage = (data) => {
          if (JSON.parse(data.toString()).type !== 'alarm') return;
          ws.off('message', onMessage);
          resolve(performance.timeOrigin + performance.now());
        };
        ws.on('message', onMessage);
      });
      const { alarmAt } = await request('POST', `/parties/counter/late${i}?alarm=${delay}`);
      lateness.push((await fired) - alarmAt);
    }
    ws.close();
  }));
  agent.destroy();
  lateness.sort((a, b) => a - b);
  const at = (q) => Number(lateness[Math.min(lateness.length - 1, Math.floor(q * lateness.length))].toFixed(2));
  console.log(JSON.stringify({ alarms: lateness.length, late_p50_ms: at(0.5), late_p99_ms: at(0.99), late_max_ms: at(1) }));
  process.exit(0);
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
