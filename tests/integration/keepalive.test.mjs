// keepalive.test.mjs — HTTP/1.1 keep-alive through the router while a room's answer is still to come. The router
// keeps a waiting connection registered with epoll but does not read it (router/http.c, "parking"); these tests hold
// the answer back by stopping the room's shard (SIGSTOP) and check what a client sees: requests sent meanwhile on the
// same connection (pipelined) are answered after it and in order, a client that half-closes still gets its answer,
// one that hangs up loses nothing already sent, and the router does not spin on a connection it is not reading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { sleep, waitFor } from './lib.mjs';
import { cleanupAfterEach, start, stopClean, track } from './helpers.mjs';

cleanupAfterEach();

// A raw keep-alive connection that collects complete HTTP/1.1 responses (Content-Length framed, as partyd sends).
class Conn {
  constructor(port) {
    this.buf = Buffer.alloc(0);
    this.responses = [];
    this.ended = false;
    this.port = port;
    this.written = 0;
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    this.sock.on('error', (e) => { this.error = e; });
    this.sock.on('close', () => { this.ended = true; });
    track(() => this.sock.destroy());
    this.connected = new Promise((resolve, reject) => {
      this.sock.once('connect', resolve);
      this.sock.once('error', reject);
    });
  }
  parse() {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString('latin1');
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (this.buf.length < end + 4 + len) return;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
      const body = this.buf.subarray(end + 4, end + 4 + len).toString();
      this.buf = this.buf.subarray(end + 4 + len);
      this.responses.push({ status, head, body });
    }
  }
  write(s) {
    this.written += Buffer.byteLength(s);
    this.sock.write(s);
  }
  // The router's end of this connection as the kernel sees it (ss): bytes it received, and bytes not read yet.
  routerSide() {
    const out = execFileSync('ss', ['-tniH', 'state', 'established', 'sport', '=', `:${this.port}`, 'and', 'dport', '=',
      `:${this.sock.localPort}`], { encoding: 'utf8' });
    const unread = /^(\d+)\s/m.exec(out);
    if (!unread) throw new Error(`no router socket for local port ${this.sock.localPort}: ${out}`);
    return { unread: Number(unread[1]), received: Number(/bytes_received:(\d+)/.exec(out)?.[1] ?? 0) };
  }
  // A fence: everything written so far is in the router's socket (and, with `read`, the router read it: h2o parses
  // and forwards a request in the pass that reads it, so the request is with the shard).
  async reached({ read = false } = {}) {
    await waitFor(() => {
      const s = this.routerSide();
      return s.received >= this.written && (!read || s.unread === 0);
    }, { what: `the router to ${read ? 'read' : 'receive'} the ${this.written} bytes written` });
  }
  async waitResponses(n, what) {
    await waitFor(() => this.responses.length >= n || this.ended, { what: what ?? `${n} responses` });
    assert.equal(this.responses.length, n, `${what ?? ''}: got ${JSON.stringify(this.responses)}${this.ended ? ' and the connection closed' : ''}`);
    return this.responses;
  }
}

// A Conn once its TCP connection is up.
async function connect(port) {
  const c = new Conn(port);
  await c.connected;
  return c;
}

const post = (room) => `POST /parties/counter/${room} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n`;
const get = (room) => `GET /parties/counter/${room} HTTP/1.1\r\nHost: t\r\n\r\n`;

// CPU ticks (user + system) the process has used so far.
function cpuTicks(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
}

// Stops the shard that owns counter/room (after waking the room, so that the admin API knows it).
async function stopShardOf(node, room) {
  const r = await node.json(`/parties/counter/${room}`);
  assert.equal(r.status, 200);
  const { pid } = await node.shardPidOf('counter', room);
  process.kill(pid, 'SIGSTOP');
  track(() => { try { process.kill(pid, 'SIGCONT'); } catch {} });
  return pid;
}

// While the router holds a waiting request the connection must not cost CPU: a level-triggered socket that is
// readable and never read would wake the router's loop on every pass (one core at 100 %).
async function assertRouterQuiet(node, what) {
  const router = node.routerPid();
  const t0 = cpuTicks(router);
  await sleep(1000); // a sleep on purpose: what is asserted is that nothing (no CPU use) happens for a while
  const used = cpuTicks(router) - t0; // clock ticks, 100 per second
  assert.ok(used < 50, `${what}: the router used ${used} ticks of CPU in 1 s while only waiting`);
}

test('keepalive: 300 requests one after the other on one connection are answered in order', async () => {
  const node = await start();
  const c = await connect(node.port);
  for (let i = 1; i <= 300; ++i) {
    c.write(post('ka-seq'));
    const r = await c.waitResponses(i, `POST ${i}`);
    assert.equal(r[i - 1].status, 200);
    assert.equal(JSON.parse(r[i - 1].body).count, i);
  }
  assert.equal(c.ended, false, 'the connection is still open');
  await stopClean(node);
});

test('keepalive: requests pipelined while the first waits for its shard are answered after it, in order', async () => {
  const node = await start();
  const room = 'ka-pipe';
  const pid = await stopShardOf(node, room);
  const c = await connect(node.port);
  c.write(post(room));
  await c.reached({ read: true }); // the router forwarded it and waits
  c.write(post(room) + get(room)); // arrives while the first is unanswered
  await c.reached();
  c.write(post(room)); // and one more, on its own
  await assertRouterQuiet(node, 'three requests queued behind a waiting one');
  assert.equal(c.responses.length, 0, 'nothing is answered while the shard is stopped');
  process.kill(pid, 'SIGCONT');
  const r = await c.waitResponses(4, 'the four answers');
  assert.deepEqual(r.map((x) => x.status), [200, 200, 200, 200]);
  assert.deepEqual(r.map((x) => JSON.parse(x.body).count), [1, 2, 2, 3]);
  assert.equal(c.ended, false, 'the connection stays open');
  // and it goes on working
  c.write(get(room));
  assert.equal(JSON.parse((await c.waitResponses(5))[4].body).count, 3);
  await stopClean(node);
});

test('keepalive: a client that half-closes after its request still gets the answer, then the connection closes', async () => {
  const node = await start();
  const room = 'ka-half';
  const pid = await stopShardOf(node, room);
  const c = await connect(node.port);
  c.write(post(room));
  await c.reached({ read: true });
  c.sock.end(); // FIN: nothing more to send, still reading
  await assertRouterQuiet(node, 'a half-closed connection waiting for its answer');
  process.kill(pid, 'SIGCONT');
  await waitFor(() => c.ended, { what: 'the router to close the connection' });
  assert.equal(c.responses.length, 1, `the answer came before the close: ${c.buf.toString()}`);
  assert.equal(c.responses[0].status, 200);
  assert.equal(JSON.parse(c.responses[0].body).count, 1);
  await stopClean(node);
});

test('keepalive: a client that hangs up while its request waits loses nothing already sent; others are unaffected', async () => {
  const node = await start();
  const room = 'ka-gone';
  const pid = await stopShardOf(node, room);
  const gone = [];
  for (let i = 0; i < 5; ++i) {
    const c = await connect(node.port);
    c.write(post(room));
    gone.push(c);
  }
  const stays = await connect(node.port);
  stays.write(post(room));
  for (const c of [...gone, stays]) await c.reached({ read: true });
  for (const c of gone) c.sock.destroy();
  await assertRouterQuiet(node, 'five closed connections whose requests wait');
  process.kill(pid, 'SIGCONT');
  const r = await stays.waitResponses(1, 'the answer to the connection that stayed');
  assert.equal(r[0].status, 200);
  // all six increments were forwarded before the hang-ups: the room counted each once
  assert.equal((await node.json(`/parties/counter/${room}`)).body.count, 6);
  stays.write(get(room));
  assert.equal(JSON.parse((await stays.waitResponses(2))[1].body).count, 6);
  await stopClean(node);
});
