// chaoslib.mjs — the chaos driver (issue 16): writers over HTTP and WebSocket to counter, chat and kv rooms while
// partyd is killed with SIGKILL at random moments — the whole process tree (supervisor, router, shards: the
// supervisor's process group), then restarted on the same data directory, or one shard, which the supervisor
// restarts — and after every round, every write partyd acknowledged is checked to be there. Used by
// chaos.test.mjs (CI: a few dozen rounds against each binary) and tests/bench/chaos (≥ 1,000 rounds).
//
// A round: writes are being acknowledged; after a random 0..maxDelayMs the kill is armed and fires a random
// 0..maxSpinUs µs after the next write leaves a writer. In heldShare of the rounds the shards' WAL syncs are first
// held open (tests/preload/holdsync.so, LD_PRELOADed when it is built next to the binary), so the kill surely cuts
// writes that are written but neither synced nor answered. In earlyShare of the whole-tree rounds the restarting
// node is killed again before it is ready (RocksDB recovery, shard spawn, the router's start cut short).
//
// What counts as an acknowledgement, per writer kind (each writer owns its rooms, so acks are unambiguous):
//   http_counter  POST /parties/counter/R answered 200 {count}
//   ws_counter    the text message `increment`; the next {"type":"count"} back on that socket is its ack
//   ws_chat       {"type":"chat","content":C}; the broadcast of C back to the sender is its ack
//   http_chat     POST /parties/main/R {"content":C} answered 201
//   kv_put        PUT /parties/kv/R?key=K with a unique value answered 200
//   kv_tx         POST /parties/kv/R {"ops":[check K/a absent, put K/a, put K/b, put K/c]} answered 200 {"ok":true}
// What is checked after each round, with the writers paused and nothing in flight:
//   counters  the stored count ≥ the writer's acknowledged increments and ≥ its last acknowledged count, ≤ the
//             increments attempted, and never below the count seen at the previous check; every ack above the last
//   chat      every acknowledged message is in the history, no message twice, none that was never sent (a writer
//             moves to a new room after CHAT_CAP messages, so the whole history fits in GET's last 100)
//   kv        every acknowledged key has its value; no key was never written, none has another value
//   kv_tx     every transaction is all there or not at all; every acknowledged one is all there
// Anything missing counts in `lost`; anything else wrong (a count that went down or is above what was sent, a
// duplicate, a half transaction, an ack timeout on an open socket) is listed in `problems`. Both must stay empty.
//
// Reproducible: the seed fixes the round kinds, the kill delays, the shard chosen and the values written; the
// interleaving with the writers is the machine's. Everything runs on 127.0.0.1; every process started is killed.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { BIN, startNode, tmpDir, waitFor, sleep, WebSocket } from './lib.mjs';

export const CHAOS_CONFIG = {
  durability: 'sync',
  parties: { main: { kind: 'chat' }, counter: { kind: 'counter' }, kv: { kind: 'kv' } },
};

const CHAT_CAP = 90;     // messages a chat room gets (acked or not) before its writer moves on: GET shows the last 100
const KV_CAP = 250;      // keys per kv room before its writer moves on: a room's listing stays small
const TX_CAP = 80;       // transactions per kv_tx room (3 keys each)
const ACK_MS = 15000;    // an open socket or request without an answer this long is a problem, not a slow machine
const KINDS = ['http_counter', 'ws_counter', 'ws_chat', 'http_chat', 'kv_put', 'kv_tx'];

// mulberry32: a small seeded generator, so a run can be repeated.
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function quantile(values, q) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

// Whether every process of the process group is gone: a zombie counts as gone (its new parent may never reap it
// here). A child forked just before the kill is in the group too, which a list of pids taken earlier would miss.
function groupGone(pgid) {
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // state, ppid, pgrp, ...
      if (Number(f[2]) === pgid && f[0] !== 'Z' && f[0] !== 'X') return false;
    } catch {}
  }
  return true;
}

// One HTTP request on a keep-alive agent; resolves {status, body} or rejects (refused, reset, timeout). node:http
// never retries a request by itself, so one call is one attempt.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
// onSent runs once the request has been handed to the kernel.
function request(port, method, path, body, onSent) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port, method, path, agent }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    r.setTimeout(ACK_MS, () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    if (onSent) r.on('finish', onSent);
    r.end(body);
  });
}

// A WebSocket whose JSON messages queue until taken; next() takes the first one matching — or is null when the
// socket closed first, undefined when `ms` passed with it open.
class Sock {
  constructor(ws) {
    this.ws = ws;
    this.q = [];
    this.closed = false;
    this.wake = null;
    ws.on('message', (d, binary) => {
      if (!binary) {
        try { this.q.push(JSON.parse(d.toString())); } catch {}
      }
      this.wake?.();
    });
    ws.on('close', () => { this.closed = true; this.wake?.(); });
    ws.on('error', () => {});
  }
  static open(url) {
    return new Promise((resolve) => {
      const ws = new WebSocket(url, { handshakeTimeout: ACK_MS });
      const s = new Sock(ws);
      ws.once('open', () => resolve(s));
      ws.once('close', () => resolve(null)); // refused (503 while a shard is down), reset, or timed out
    });
  }
  async next(pred, ms = ACK_MS) {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.q.findIndex(pred);
      if (i >= 0) return this.q.splice(0, i + 1)[i];
      if (this.closed) return null;
      const left = end - Date.now();
      if (left <= 0) return undefined; // open, but no answer: a problem
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.wake = () => { clearTimeout(t); r(); };
      });
      this.wake = null;
    }
  }
  send(data) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(data);
    return true;
  }
  terminate() { this.ws.terminate(); }
}

export class Chaos {
  // opts: seed (1), rounds (20), shards (2), shardShare (share of rounds that kill one shard; 0.5), earlyShare
  // (share of whole-tree rounds that also kill the restarting node before it is ready; 0.2), maxDelayMs (the kill
  // comes 0..maxDelayMs after the round's first writes, then 0..maxSpinUs µs after the next write is sent; 400,
  // 2000), fullEvery (check every room every N rounds, else only
  // the rooms written since the last check; 1), writers (per kind; 2), bin, log (progress lines; none), logEvery (50),
  // keep (leave the data directory), beforeCheck (async (chaos) => ..., run before each check, writers paused)
  constructor(opts = {}) {
    this.o = { seed: 1, rounds: 20, shards: 2, shardShare: 0.5, earlyShare: 0.2, heldShare: 0.25, maxDelayMs: 400, maxSpinUs: 2000, fullEvery: 1, writers: 2, ...opts };
    // tests/preload/holdsync.so, built next to the binary: while this.hold exists, the shards' WAL syncs wait
    this.shim = path.join(path.dirname(this.o.bin ?? BIN), 'tests', 'preload', 'holdsync.so');
    if (!fs.existsSync(this.shim)) this.shim = null;
    this.rand = rng(this.o.seed);
    this.dir = tmpDir('partyd-chaos-');
    this.hold = path.join(this.dir, 'hold-sync');
    this.node = null;
    this.paused = false;
    this.stopped = false;
    this.inflight = 0;
    this.rooms = [];
    this.dirty = new Set();
    this.acked = Object.fromEntries(KINDS.map((k) => [k, 0]));
    this.attempted = 0;
    this.lost = 0;
    this.problems = [];
    this.problemCount = 0;
    this.timeouts = 0;
    this.round = 0;
    this.completed = 0; // rounds killed, restarted and checked
    this.kills = { tree: 0, early: 0, shard: 0, held: 0 };
    this.restartMs = { tree: [], shard: [], backoff: [] };
    this.armed = null;
    this.sent = () => this.armed?.();
  }

  start(opts = {}) {
    const env = this.shim ? { LD_PRELOAD: this.shim, PARTYD_TEST_HOLD_SYNC: this.hold } : {};
    return startNode({ dir: this.dir, shards: this.o.shards, config: CHAOS_CONFIG, bin: this.o.bin, env, ...opts });
  }

  // Records something wrong; the first 100 are kept word for word.
  problem(text) {
    this.problemCount++;
    if (this.problems.length < 100) this.problems.push(`round ${this.round}: ${text}`);
  }

  room(kind, party, name, extra) {
    const r = { kind, party, name, attempted: 0, ...extra };
    this.rooms.push(r);
    return r;
  }

  // Runs fn as one write: waits while the driver is paused or the node is restarting, and counts it in flight.
  // Resolves null, without running fn, once the driver stops.
  async op(fn) {
    while ((this.paused || !this.node) && !this.stopped) await sleep(5);
    if (this.stopped) return null;
    this.inflight++;
    try {
      return await fn(this.node);
    } finally {
      this.inflight--;
    }
  }

  // ---- writers ------------------------------------------------------------------------------------------------------

  ackCount(room, kind, count) {
    if (!(count > room.lastAck)) this.problem(`${room.name}: acknowledged count ${count} after an acknowledged ${room.lastAck}`);
    room.acked++;
    room.lastAck = count;
    this.acked[kind]++;
  }

  async httpCounter(w) {
    const room = this.room('http_counter', 'counter', `ch${w}`, { acked: 0, lastAck: 0, verified: 0 });
    while (!this.stopped) {
      const ok = await this.op(async (node) => {
        room.attempted++;
        this.attempted++;
        this.dirty.add(room);
        try {
          const r = await request(node.port, 'POST', `/parties/counter/${room.name}`, undefined, this.sent);
          if (r.status !== 200) return false;
          this.ackCount(room, 'http_counter', JSON.parse(r.body).count);
          return true;
        } catch (e) {
          if (e.message === 'timeout') this.stall(`${room.name}: POST unanswered`);
          return false;
        }
      });
      if (!ok) await sleep(20);
    }
  }

  // A new socket once its greeting came; null (the socket dropped) if it closed first.
  async greeted(c, room, pred) {
    const m = await c.next(pred);
    if (m) return c;
    if (m === undefined) this.stall(`${room.name}: no greeting on a new socket`);
    c.terminate();
    return null;
  }

  stall(text) {
    this.timeouts++;
    this.problem(`${text} for ${ACK_MS} ms`);
  }

  async wsCounter(w) {
    const room = this.room('ws_counter', 'counter', `cw${w}`, { acked: 0, lastAck: 0, verified: 0 });
    let s = null;
    while (!this.stopped) {
      if (!s || s.closed) {
        s = await this.op(async (node) => {
          const c = await Sock.open(node.wsUrl(`/parties/counter/${room.name}?_pk=w${w}`));
          return c && this.greeted(c, room, (m) => m.type === 'count'); // the count on connect
        });
        if (!s) await sleep(20);
        continue;
      }
      const ok = await this.op(async () => {
        if (!s.send('increment')) return false;
        room.attempted++;
        this.attempted++;
        this.dirty.add(room);
        this.sent();
        const m = await s.next((m) => m.type === 'count' || m.type === 'error');
        if (m === undefined) this.stall(`${room.name}: increment unanswered on an open socket`);
        if (!m) return false;
        if (m.type === 'error') {
          this.problem(`${room.name}: increment answered ${JSON.stringify(m)}`);
          return false;
        }
        this.ackCount(room, 'ws_counter', m.count);
        return true;
      });
      if (!ok) {
        s.terminate();
        s = null;
        await sleep(20);
      }
    }
    s?.terminate();
  }

  chatRoom(kind, name) {
    return this.room(kind, 'main', name, { sent: new Set(), ackedSet: new Set() });
  }

  async wsChat(w) {
    let gen = 0, n = 0;
    let room = this.chatRoom('ws_chat', `sw${w}-${gen}`);
    let s = null;
    while (!this.stopped) {
      if (room.attempted >= CHAT_CAP) {
        s?.terminate();
        s = null;
        room = this.chatRoom('ws_chat', `sw${w}-${++gen}`);
      }
      if (!s || s.closed) {
        s = await this.op(async (node) => {
          const c = await Sock.open(node.wsUrl(`/parties/main/${room.name}?_pk=w${w}`));
          return c && this.greeted(c, room, (m) => m.type === 'state'); // welcome, then the state
        });
        if (!s) await sleep(20);
        continue;
      }
      const content = `s${this.o.seed}-w${w}-${n++}`;
      const ok = await this.op(async () => {
        if (!s.send(JSON.stringify({ type: 'chat', content }))) return false;
        room.attempted++;
        this.attempted++;
        room.sent.add(content);
        this.dirty.add(room);
        this.sent();
        const m = await s.next((m) => (m.type === 'chat' && m.content === content) || m.type === 'error');
        if (m === undefined) this.stall(`${room.name}: chat "${content}" unanswered on an open socket`);
        if (!m) return false;
        if (m.type === 'error' || m.senderId !== `w${w}`) {
          this.problem(`${room.name}: chat "${content}" answered ${JSON.stringify(m)}`);
          return false;
        }
        room.ackedSet.add(content);
        this.acked.ws_chat++;
        return true;
      });
      if (!ok) {
        s.terminate();
        s = null;
        await sleep(20);
      }
    }
    s?.terminate();
  }

  async httpChat(w) {
    let gen = 0, n = 0;
    let room = this.chatRoom('http_chat', `hw${w}-${gen}`);
    while (!this.stopped) {
      if (room.attempted >= CHAT_CAP) room = this.chatRoom('http_chat', `hw${w}-${++gen}`);
      const content = `h${this.o.seed}-w${w}-${n++}`;
      const ok = await this.op(async (node) => {
        room.attempted++;
        this.attempted++;
        room.sent.add(content);
        this.dirty.add(room);
        try {
          const r = await request(node.port, 'POST', `/parties/main/${room.name}`, JSON.stringify({ content }), this.sent);
          if (r.status !== 201) return false;
          room.ackedSet.add(content);
          this.acked.http_chat++;
          return true;
        } catch (e) {
          if (e.message === 'timeout') this.stall(`${room.name}: POST unanswered`);
          return false;
        }
      });
      if (!ok) await sleep(20);
    }
  }

  async kvPut(w) {
    let gen = 0, n = 0;
    const rand = rng(this.o.seed * 1009 + w); // the values' own generator: the driver's stays reproducible
    const kvRoom = (g) => this.room('kv_put', 'kv', `kp${w}-${g}`, { values: new Map(), ackedKeys: new Set() });
    let room = kvRoom(gen);
    while (!this.stopped) {
      if (room.attempted >= KV_CAP) room = kvRoom(++gen);
      const key = `k${n}`;
      const value = `v${this.o.seed}-${w}-${n++}-${Math.floor(rand() * 1e9)}`;
      const ok = await this.op(async (node) => {
        room.attempted++;
        this.attempted++;
        room.values.set(key, value);
        this.dirty.add(room);
        try {
          const r = await request(node.port, 'PUT', `/parties/kv/${room.name}?key=${key}`, value, this.sent);
          if (r.status !== 200) return false;
          room.ackedKeys.add(key);
          this.acked.kv_put++;
          return true;
        } catch (e) {
          if (e.message === 'timeout') this.stall(`${room.name}: PUT unanswered`);
          return false;
        }
      });
      if (!ok) await sleep(20);
    }
  }

  async kvTx(w) {
    let gen = 0, n = 0;
    const rand = rng(this.o.seed * 2003 + w);
    const txRoom = (g) => this.room('kv_tx', 'kv', `kt${w}-${g}`, { txs: new Map() });
    let room = txRoom(gen);
    while (!this.stopped) {
      if (room.attempted >= TX_CAP) room = txRoom(++gen);
      const t = `t${n}`;
      const value = `x${this.o.seed}-${w}-${n++}-${Math.floor(rand() * 1e9)}`;
      const ops = [{ op: 'check', key: `${t}/a`, value: null }, ...['a', 'b', 'c'].map((k) => ({ op: 'put', key: `${t}/${k}`, value }))];
      const ok = await this.op(async (node) => {
        room.attempted++;
        this.attempted++;
        const tx = { value, acked: false };
        room.txs.set(t, tx);
        this.dirty.add(room);
        try {
          const r = await request(node.port, 'POST', `/parties/kv/${room.name}`, JSON.stringify({ ops }), this.sent);
          if (r.status === 409) this.problem(`${room.name}: transaction ${t} refused: ${r.body}`);
          if (r.status !== 200) return false;
          tx.acked = true;
          this.acked.kv_tx++;
          return true;
        } catch (e) {
          if (e.message === 'timeout') this.stall(`${room.name}: transaction unanswered`);
          return false;
        }
      });
      if (!ok) await sleep(20);
    }
  }

  // ---- checks -------------------------------------------------------------------------------------------------------

  // GET, retried while refused or answered 503 (nothing should be: the check runs once every shard is up).
  async read(path) {
    return waitFor(async () => {
      const r = await request(this.node.port, 'GET', path);
      return r.status !== 503 ? r : null;
    }, { timeout: 30000, what: `GET ${path} to answer` });
  }
  async get(path) {
    const r = await this.read(path);
    if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body}`);
    return JSON.parse(r.body);
  }

  async check(room) {
    const path = `/parties/${room.party}/${room.name}`;
    if (room.party === 'counter') {
      const { count } = await this.get(path);
      const missing = Math.max(room.acked - count, room.lastAck > count ? 1 : 0);
      if (missing) {
        this.lost += missing;
        this.problem(`${room.name}: count ${count}, but ${room.acked} increments acknowledged, the last as ${room.lastAck}`);
      }
      if (count > room.attempted) this.problem(`${room.name}: count ${count} > ${room.attempted} increments sent`);
      if (count < room.verified) this.problem(`${room.name}: count ${count} went down from ${room.verified}`);
      room.verified = count;
      room.extra = Math.max(0, count - room.acked);
    } else if (room.party === 'main') {
      const { messages } = await this.get(path);
      const seen = new Set(messages.map((m) => m.content));
      if (messages.length >= 100) this.problem(`${room.name}: ${messages.length} messages, more than GET shows`);
      if (seen.size !== messages.length) this.problem(`${room.name}: a message is in the history twice`);
      for (const c of seen) if (!room.sent.has(c)) this.problem(`${room.name}: "${c}" is in the history but was never sent`);
      for (const c of room.ackedSet) {
        if (!seen.has(c)) {
          this.lost++;
          this.problem(`${room.name}: acknowledged message "${c}" is not in the history`);
        }
      }
      room.extra = [...seen].filter((c) => !room.ackedSet.has(c)).length;
    } else {
      const { entries } = await this.get(path);
      const stored = new Map(entries.map((e) => [e.key, e.value]));
      room.extra = 0;
      if (room.values) {
        for (const [k, v] of stored) {
          if (room.values.get(k) !== v) this.problem(`${room.name}: key ${k} holds ${JSON.stringify(v)}, never written`);
          else if (!room.ackedKeys.has(k)) room.extra++;
        }
        let last;
        for (const k of room.ackedKeys) {
          last = k;
          if (stored.get(k) !== room.values.get(k)) {
            this.lost++;
            this.problem(`${room.name}: acknowledged ${k}=${room.values.get(k)} reads ${JSON.stringify(stored.get(k))}`);
          }
        }
        if (last !== undefined) {
          // and the newest acknowledged key by itself, through the point read (?key=) rather than the listing
          const r = await this.read(`${path}?key=${last}`);
          if (r.status !== 200 || r.body !== room.values.get(last)) {
            this.problem(`${room.name}: GET ?key=${last} answered ${r.status} ${JSON.stringify(r.body)}, not ${room.values.get(last)}`);
          }
        }
      } else {
        const keys = new Set(stored.keys());
        for (const [t, tx] of room.txs) {
          const here = ['a', 'b', 'c'].filter((k) => stored.has(`${t}/${k}`)).length;
          for (const k of ['a', 'b', 'c']) {
            const v = stored.get(`${t}/${k}`);
            if (v !== undefined && v !== tx.value) this.problem(`${room.name}: ${t}/${k} holds ${JSON.stringify(v)}, not ${tx.value}`);
            keys.delete(`${t}/${k}`);
          }
          if (here !== 0 && here !== 3) this.problem(`${room.name}: transaction ${t} is half there (${here} of 3 keys)`);
          if (tx.acked && here !== 3) {
            this.lost++;
            this.problem(`${room.name}: acknowledged transaction ${t} has ${here} of its 3 keys`);
          }
          if (!tx.acked && here === 3) room.extra++;
        }
        for (const k of keys) this.problem(`${room.name}: key ${k} was never written`);
      }
    }
  }

  // Pauses the writers, waits until nothing is in flight, checks the rooms written since the last check (or all),
  // and lets the writers go on.
  async verify(all) {
    this.paused = true;
    await waitFor(() => this.inflight === 0, { timeout: ACK_MS + 5000, what: 'the writes in flight to settle' });
    await this.o.beforeCheck?.(this); // the test of the checks themselves takes something away here
    const rooms = all ? this.rooms : [...this.dirty];
    this.dirty.clear();
    for (const r of rooms) await this.check(r);
    this.node.checkSanitizers();
    this.paused = false;
  }

  // ---- kills --------------------------------------------------------------------------------------------------------

  // Runs fire() (a kill) spinUs µs after the next write leaves a writer — the window in which that write has reached
  // partyd but is not yet committed or answered — or after 2 s if no write is sent. Resolves the time it fired.
  // (A kill on a timer of its own lands mostly while partyd is idle: one node client is far slower than partyd, so
  // the answers of most writes in flight are already on their way back.) The spin holds this thread, so the answers
  // that arrive meanwhile cannot be read, nor new writes sent, before the kill.
  armKill(fire) {
    const spinUs = this.rand() * this.o.maxSpinUs;
    return new Promise((resolve) => {
      const go = () => {
        if (this.armed !== go) return;
        this.armed = null;
        clearTimeout(t);
        const end = performance.now() + spinUs / 1000;
        while (performance.now() < end);
        fire();
        resolve(performance.now());
      };
      this.armed = go;
      const t = setTimeout(go, 2000);
    });
  }

  // A held round: the shards' WAL syncs are made to wait, so that the kill lands while writes are written but neither
  // synced nor answered — the window a kill on a timer rarely hits on a fast disk. Resolves once a sync is held and
  // the writes have had a moment to pile up behind it.
  async holdSyncs() {
    fs.writeFileSync(this.hold, '');
    await waitFor(() => fs.existsSync(`${this.hold}.waiting`), { timeout: 20000, what: 'a WAL sync to be held' });
    await sleep(this.rand() * 50);
  }

  // The kill of a held round: at once, then the syncs are let go (a shard that was not killed goes on).
  killHeld(fire) {
    fire();
    const t = performance.now();
    fs.rmSync(this.hold, { force: true });
    fs.rmSync(`${this.hold}.waiting`, { force: true }); // left by a killed shard
    this.kills.held++;
    return t;
  }

  // SIGKILL to the node's process group (supervisor, router, shards).
  killGroup(node) {
    try { process.kill(-node.proc.pid, 'SIGKILL'); } catch {}
  }

  // Resolves when the killed tree's every process is gone.
  async reaped(node) {
    await node.exited;
    await waitFor(() => groupGone(node.proc.pid), { timeout: 20000, interval: 5, what: 'the killed tree to be gone' });
    node.checkSanitizers();
  }

  async treeRound(held) {
    const old = this.node;
    const fire = () => {
      this.killGroup(old);
      this.node = null; // the writers wait: the next node listens on another port
    };
    if (held) await this.holdSyncs();
    let t0 = held ? this.killHeld(fire) : await this.armKill(fire);
    await this.reaped(old);
    if (this.rand() < this.o.earlyShare) {
      // killed again while starting: RocksDB recovery, shard spawn or the router's start cut short (the restart
      // time is from this second kill)
      this.kills.early++;
      const early = await this.start({ ready: false });
      await sleep(this.rand() * 300);
      t0 = performance.now();
      this.killGroup(early);
      await this.reaped(early);
    }
    this.node = await this.start();
    this.restartMs.tree.push(performance.now() - t0);
    this.kills.tree++;
  }

  async shardRound(held) {
    const id = Math.floor(this.rand() * this.o.shards);
    const victim = await waitFor(async () => {
      const s = (await this.node.shards()).find((x) => x.id === id);
      return s.state === 'up' && s.pid > 0 ? s : null;
    }, { timeout: 30000, what: `shard ${id} to be up before its kill` });
    const fire = () => process.kill(victim.pid, 'SIGKILL');
    if (held) await this.holdSyncs(); // (after the admin request above: a held shard answers no stats)
    const t0 = held ? this.killHeld(fire) : await this.armKill(fire);
    await waitFor(async () => {
      const s = (await this.node.shards()).find((x) => x.id === victim.id);
      return s.state === 'up' && s.pid > 0 && s.pid !== victim.pid;
    }, { timeout: 30000, interval: 5, what: `shard ${victim.id} to be back after SIGKILL` });
    this.restartMs.shard.push(performance.now() - t0);
    // the part of that which is the supervisor's backoff for a shard that keeps dying (50 ms doubling, up to 5 s)
    const m = new RegExp(`shard ${id} \\(pid ${victim.pid}\\) .* restarting in (\\d+) ms`).exec(this.node.stderr);
    if (m) this.restartMs.backoff.push(Number(m[1]));
    this.kills.shard++;
  }

  totalAcked() {
    return KINDS.reduce((n, k) => n + this.acked[k], 0);
  }

  // ---- the run ------------------------------------------------------------------------------------------------------

  async run() {
    this.t0 = Date.now();
    this.node = await this.start();
    const writers = [];
    for (let w = 0; w < this.o.writers; w++) {
      writers.push(this.httpCounter(w), this.wsCounter(w), this.wsChat(w), this.httpChat(w), this.kvPut(w), this.kvTx(w));
    }
    try {
      for (this.round = 1; this.round <= this.o.rounds; this.round++) {
        // the round's writes have begun; the kill comes at a random moment after that
        const mark = this.totalAcked();
        await waitFor(() => this.totalAcked() > mark, { timeout: 30000, what: `writes acknowledged in round ${this.round}` });
        await sleep(this.rand() * this.o.maxDelayMs);
        const held = this.rand() < this.o.heldShare && this.shim !== null;
        if (this.rand() < this.o.shardShare) await this.shardRound(held);
        else await this.treeRound(held);
        await this.verify(this.round % this.o.fullEvery === 0);
        this.completed = this.round;
        if (this.o.log && (this.round % (this.o.logEvery ?? 50) === 0 || this.round === this.o.rounds)) this.o.log(this.summary());
      }
      this.stopped = true;
      await Promise.all(writers);
      await this.verify(true);
      const { code, signal } = await this.node.stop(); // SIGTERM: a clean drain, then the sanitizer logs
      if (code !== 0) this.problem(`partyd exited ${code ?? signal} on SIGTERM`);
    } finally {
      this.stopped = true;
      if (this.node && this.node.exitCode === undefined && !this.node.exitSignal) {
        try { process.kill(-this.node.proc.pid, 'SIGKILL'); } catch {}
      }
      await Promise.all(writers).catch(() => {});
    }
    const s = this.summary();
    if (!this.o.keep) fs.rmSync(this.dir, { recursive: true, force: true });
    return s;
  }

  summary() {
    const stat = (a) => ({ n: a.length, p50: round1(quantile(a, 0.5)), p99: round1(quantile(a, 0.99)), max: round1(a.length ? Math.max(...a) : null) });
    const extra = Object.fromEntries(KINDS.map((k) => [k, 0]));
    for (const r of this.rooms) extra[r.kind] += r.extra ?? 0;
    return {
      seed: this.o.seed,
      rounds: this.completed,
      kills: { ...this.kills },
      acked: { ...this.acked, total: this.totalAcked() },
      attempted: this.attempted,
      unacked: this.attempted - this.totalAcked(),
      lost: this.lost,
      unacked_present: extra,
      problems: this.problemCount,
      restart_ms: { tree: stat(this.restartMs.tree), shard: stat(this.restartMs.shard), shard_backoff: stat(this.restartMs.backoff) },
      rooms: this.rooms.length,
      elapsed_s: Math.round((Date.now() - this.t0) / 1000),
    };
  }
}

function round1(x) {
  return x == null ? null : Math.round(x * 10) / 10;
}
