// misuse.test.mjs — party.h from every callback (tests/modules/misuse.c): send, close, connection state, tags,
// refusal, broadcast, storage, the alarm, fetch and respond, called from on_start, on_stop, on_connect, on_message,
// on_close, on_error, on_request and on_alarm, and a connection pointer kept across callbacks. Each call either works
// as party.h documents or returns the error it documents for that case; under ASan any sanitizer report fails it.
//
// Two of these found bugs of issue 17 before they were fixed: party_fetch from on_stop was a use-after-free (item 13),
// and an operator evict freed the room's connections before on_stop (item 14).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, Client, startNode, tmpDir, waitFor } from './lib.mjs';

const MOD = path.join(path.dirname(BIN), 'tests', 'modules', 'misuse.so');
const EINVAL = -22, ENOENT = -2, ENOTCONN = -107, EBUSY = -16, EALREADY = -114;

// What party.h documents, per callback: call → the return value (an array: any of them).
const ROOM = { broadcast: [0], put: [0], get: [0], delete: [1], alarm_get: [0, ENOENT], fetch: [0], fetch_answer: [200] };
const OPEN = { send: [0], set_state: [0], state: [2], id: [1] };
const GONE = { send: [ENOTCONN], set_state: [ENOTCONN], state: [2], set_tags: [EBUSY], refusal: [EBUSY], id: [1], close: [ENOTCONN] };
const WANT = {
  on_start: { ...ROOM },
  on_connect: { ...ROOM, ...OPEN, set_tags: [0], refusal: [0], respond_upgrade: [EALREADY] },
  on_message: { ...ROOM, ...OPEN, set_tags: [EBUSY], refusal: [EBUSY], close: [0], close_again: [ENOTCONN],
    send_closed: [ENOTCONN], set_state_closed: [ENOTCONN], send_kept: [0] },
  on_close: { ...ROOM, ...GONE, code: [4001, 1006, 1009, 1000, 1005] },
  on_error: { ...ROOM, ...GONE, error: [1] },
  on_request: { ...ROOM, header: [0], bad_status: [EINVAL], respond: [0], alarm_set: [0] },
  on_alarm: { ...ROOM, alarm_cleared: [ENOENT], send_kept: [0] },
  // party.h: "Do not send or write here" — no error is documented; the calls must not crash, and the state of the
  // connections party.h says are still valid is readable (2 bytes, set in on_connect)
  on_stop: { broadcast: null, put: null, get: null, delete: null, alarm_get: null, connections: null, kept_state: [2], fetch: null },
};

function readLog(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' ')) : [];
}

function checkLog(rows) {
  const seen = new Set();
  for (const [room, cb, call, rc] of rows) {
    seen.add(cb);
    if (call === 'connections') continue;
    const want = WANT[cb]?.[call];
    assert.ok(want !== undefined, `${room} ${cb} ${call}: a call the test does not know`);
    if (want !== null) assert.ok(want.includes(Number(rc)), `${room}: ${call} from ${cb} returned ${rc}; party.h: ${want.join(' or ')}`);
  }
  return seen;
}

test('every party.h call from every callback works as documented or returns its documented error', { timeout: 90000 }, async () => {
  const dir = tmpDir();
  const log = path.join(dir, 'calls.log');
  const node = await startNode({ dir, shards: 2, config: {
    parties: { misuse: { module: MOD, vars: { log } } },
    timers: { idle_ms: 300 }, limits: { message_bytes: 1024 } } });
  const has = (re) => readLog(log).some((r) => re.test(r.join(' ')));

  const a = await Client.open(node.wsUrl('/parties/misuse/r1?_pk=a'));
  const b = await Client.open(node.wsUrl('/parties/misuse/r1?_pk=b'));
  a.send('all');
  b.send('kept');                                   // to a, through the pointer kept since a's on_connect
  await waitFor(() => has(/^r1 on_message send_kept/), { what: 'the kept connection used' });
  b.send('close');                                  // closes b from its own on_message
  assert.equal((await b.closed).code, 4001);
  const c = await Client.open(node.wsUrl('/parties/misuse/r1?_pk=c'));
  c.send('x'.repeat(2000));                         // over limits.message_bytes: on_error, then on_close
  assert.equal((await c.closed).code, 1009);
  const r = await node.fetch('/parties/misuse/r1/x');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-misuse'), '1');
  assert.equal(await r.text(), 'ok');
  assert.equal((await node.fetch('/parties/misuse/r1/alarm', { method: 'POST' })).status, 200);
  await waitFor(() => has(/^r1 on_alarm send_kept/), { what: 'on_alarm' });
  a.ws.terminate();                                 // a vanishes: on_close with 1006, then the room idles out
  await waitFor(() => has(/^r1 on_stop connections/), { timeout: 20000, what: 'on_stop' });
  await waitFor(() => readLog(log).filter((x) => x[2] === 'fetch_answer').length >= 7, { what: 'the fetches answered' });

  const seen = checkLog(readLog(log));
  for (const cb of Object.keys(WANT)) assert.ok(seen.has(cb), `${cb} ran`);
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('connection pointers stay valid until on_stop when the room hibernates', { timeout: 60000 }, async () => {
  const dir = tmpDir();
  const log = path.join(dir, 'calls.log');
  const node = await startNode({ dir, shards: 1, config: {
    parties: { misuse: { module: MOD, vars: { log }, hibernate: true } }, timers: { idle_ms: 200 } } });
  const a = await Client.open(node.wsUrl('/parties/misuse/h1?_pk=a'));
  await waitFor(() => readLog(log).some((x) => x[0] === 'h1' && x[1] === 'on_stop' && x[2] === 'kept_state'),
    { timeout: 20000, what: 'the room to hibernate' });
  a.send('all');                                    // wakes it: on_start, then on_message on the same connection
  await waitFor(() => readLog(log).filter((x) => x[0] === 'h1' && x[1] === 'on_message').length >= 12, { what: 'on_message' });
  checkLog(readLog(log));
  a.ws.terminate();
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('an operator evict: connection pointers valid in on_stop', { timeout: 60000 }, async () => {
  const dir = tmpDir();
  const log = path.join(dir, 'calls.log');
  const node = await startNode({ dir, shards: 1, config: { parties: { misuse: { module: MOD, vars: { log } } } } });
  const a = await Client.open(node.wsUrl('/parties/misuse/e1?_pk=a'));
  assert.equal((await node.admin('/admin/rooms/misuse/e1/evict', { method: 'POST' })).status, 200);
  assert.equal((await a.closed).code, 1012);
  await waitFor(() => readLog(log).some((x) => x[0] === 'e1' && x[1] === 'on_stop' && x[2] === 'kept_state'), { what: 'on_stop' });
  checkLog(readLog(log));
  const { code } = await node.stop();
  assert.equal(code, 0);
});

test('party_fetch from on_stop is refused', { timeout: 60000 }, async () => {
  const dir = tmpDir();
  const log = path.join(dir, 'calls.log');
  const node = await startNode({ dir, shards: 1, config: {
    parties: { misuse: { module: MOD, vars: { log, stop_fetch: '1' } } }, timers: { idle_ms: 200 } } });
  assert.equal((await node.fetch('/parties/misuse/s1/x')).status, 200);
  await waitFor(() => readLog(log).some((x) => x[0] === 's1' && x[1] === 'on_stop' && x[2] === 'fetch'), { timeout: 20000, what: 'on_stop' });
  const rc = Number(readLog(log).find((x) => x[0] === 's1' && x[1] === 'on_stop' && x[2] === 'fetch')[3]);
  assert.ok(rc < 0, `party_fetch from on_stop returned ${rc}: it must be refused`);
  const { code } = await node.stop();
  assert.equal(code, 0);
});
