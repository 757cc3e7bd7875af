// modellib.mjs — a seeded model test of party.h's storage API (as SQLite and FoundationDB test theirs).
//
// A real partyd runs the test party tests/modules/model.c, which executes the storage operations a POST names and
// answers what each returned. This file keeps an in-memory model of one room's sorted key-value store and alarm with
// exactly party.h's semantics, generates random steps (one POST each: gets, puts, deletes, the _many batches, lists
// with prefix/start/end/limit/reverse (and one whose callback writes), delete-all, transactions nested and made to fail, alarm set/get/delete, an
// alarm due now, an admin DELETE of the room) and checks every answer against the model. Between steps, at random,
// it injects a fault: an admin evict, hibernation (a WebSocket stays open while the room leaves memory), a SIGKILL of
// the shard or of the whole node (then a restart on the same data directory), or a failed commit
// (tests/preload/holdsync.so: fsync fails with EIO while a file exists — the step must be answered 500 and the model
// must not change). After each fault the whole room is compared with the model. Acknowledged state must survive all
// of them. Everything derives from the seed: a failure prints it, and `runModel({seed})` reproduces the sequence.
//
// Used by tests/integration/model.test.mjs (short runs) and tests/bench/model (long runs).
import fs from 'node:fs';
import path from 'node:path';
import { BIN, Client, kill, startNode, tmpDir, waitFor } from './lib.mjs';

export const MODULE = path.join(path.dirname(BIN), 'tests', 'modules', 'model.so');
export const SHIM = path.join(path.dirname(BIN), 'tests', 'preload', 'holdsync.so');

// What the model checks that found bugs of issue 17 before they were fixed: an outer transaction that fails after a
// successful inner one undoes the outer's earlier writes too (nestedRollback), and an alarm set or deleted inside a
// failed transaction leaves the alarm as it was, in party_alarm_get as in storage (alarmRollback).
// One behaviour is allowed by name, as partyd documents it: a write whose commit failed has an unknown outcome.
//  - failedCommitTrace (found by this test, seed 1): the writes of a pass whose WAL sync failed were answered 500
//    ("outcome unknown"), and they may be in the room after the shard reopens its storage (RocksDB recovers the WAL
//    record that was written but not synced). So after a failed commit the room may equal the model with the failed
//    step applied; the driver then takes that state as the model's. docs/failure.md says why.
// MODEL_CHECKS=failedCommitTrace asks for the stricter "never applied" (it fails).
const checks = (process.env.MODEL_CHECKS ?? '').split(',');
export const SKIP = Object.fromEntries(['failedCommitTrace']
  .map((k) => [k, !checks.includes('all') && !checks.includes(k)]));

const EINVAL = -22, EMSGSIZE = -90, ENOENT = -2;
const KEY_MAX = 2048, VALUE_MAX = 128 * 1024, BATCH_MAX = 128;
const FIRED = Buffer.from('~fired').toString('hex');

// mulberry32: small, seeded, reproducible
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)],
  };
  return r;
}

// ---- the model: keys and values as lowercase hex, whose string order is the byte order ----

const hexOut = (h) => (h === '' ? '.' : h);

class Model {
  constructor() {
    this.kv = new Map();
    this.alarm = null;
  }
  clone() {
    const m = new Model();
    m.kv = new Map(this.kv);
    m.alarm = this.alarm;
    return m;
  }
  sorted() { return [...this.kv.keys()].sort(); }
  // the answer lines of `ops` (a tree: {op, ...} or {tx: [...], abort}), applying them
  run(ops, out = []) {
    for (const o of ops) {
      if (o.tx) {
        const saved = this.clone();
        this.run(o.tx, out);
        if (o.abort) { this.kv = saved.kv; this.alarm = saved.alarm; }
        out.push(`tx ${o.abort ? 1 : 0}`);
      } else {
        out.push(this.op(o));
      }
    }
    return out;
  }
  op(o) {
    const badKey = (k) => (k === '' ? EINVAL : k.length / 2 > KEY_MAX ? EMSGSIZE : 0);
    const err = (e) => `err ${e}`;
    switch (o.op) {
      case 'get': {
        if (badKey(o.k)) return err(badKey(o.k));
        return this.kv.has(o.k) ? `ok ${hexOut(this.kv.get(o.k))}` : err(ENOENT);
      }
      case 'put':
        if (badKey(o.k)) return err(badKey(o.k));
        if (o.v.length / 2 > VALUE_MAX) return err(EMSGSIZE);
        this.kv.set(o.k, o.v);
        return 'ok 0';
      case 'del':
        if (badKey(o.k)) return err(badKey(o.k));
        return `ok ${this.kv.delete(o.k) ? 1 : 0}`;
      case 'getm': {
        if (o.ks.length > BATCH_MAX) return err(EINVAL);
        for (const k of o.ks) if (badKey(k)) return err(badKey(k));
        return ['ok', ...o.ks.map((k) => (this.kv.has(k) ? hexOut(this.kv.get(k)) : '-'))].join(' ');
      }
      case 'putm': {
        if (o.kvs.length > BATCH_MAX) return err(EINVAL);
        for (const [k, v] of o.kvs) {
          if (badKey(k)) return err(badKey(k));
          if (v.length / 2 > VALUE_MAX) return err(EMSGSIZE);
        }
        for (const [k, v] of o.kvs) this.kv.set(k, v);
        return 'ok 0';
      }
      case 'delm': {
        if (o.ks.length > BATCH_MAX) return err(EINVAL);
        for (const k of o.ks) if (badKey(k)) return err(badKey(k));
        let n = 0;
        for (const k of o.ks) n += this.kv.delete(k) ? 1 : 0;
        return `ok ${n}`;
      }
      case 'list': {
        const { prefix, start, end, limit, reverse } = o;
        if ([prefix, start, end].some((x) => x !== null && x.length / 2 > KEY_MAX)) return err(EINVAL);
        let keys = this.sorted().filter((k) => (prefix === null || k.startsWith(prefix))
          && (start === null || k >= start) && (end === null || k < end));
        if (reverse) keys.reverse();
        if (limit) keys = keys.slice(0, limit);
        return [`ok ${keys.length}`, ...keys.map((k) => `${hexOut(k)}=${hexOut(this.kv.get(k))}`)].join(' ');
      }
      case 'listw': {
        // the listing sees its own writes past the current key: walk the live store, one key at a time
        const { prefix, start, end, limit, reverse } = o;
        if ([prefix, start, end].some((x) => x !== null && x.length / 2 > KEY_MAX)) return err(EINVAL);
        const inRange = (k) => (prefix === null || k.startsWith(prefix)) && (start === null || k >= start) && (end === null || k < end);
        const items = [];
        let cur = null;
        while (!limit || items.length < limit) {
          const keys = this.sorted().filter(inRange);
          const k = reverse ? keys.reverse().find((x) => cur === null || x < cur) : keys.find((x) => cur === null || x > cur);
          if (k === undefined) break;
          items.push(`${hexOut(k)}=${hexOut(this.kv.get(k))}`);
          if (k.length === 2) this.kv.set(`${k}00`, '77');
          cur = k;
        }
        return [`ok ${items.length}`, ...items].join(' ');
      }
      case 'delall': {
        const n = this.kv.size;
        this.kv.clear();
        return `ok ${n}`;
      }
      case 'aset': this.alarm = o.at; return 'ok 0';
      case 'aget': return this.alarm === null ? err(ENOENT) : `ok ${this.alarm}`;
      case 'adel': this.alarm = null; return 'ok 0';
      default: throw new Error(`model: unknown op ${o.op}`);
    }
  }
}

function serialize(ops, lines = []) {
  const word = (h) => (h === null ? '-' : hexOut(h));
  for (const o of ops) {
    if (o.tx) {
      lines.push('begin');
      serialize(o.tx, lines);
      lines.push(o.abort ? 'abort' : 'commit');
      continue;
    }
    switch (o.op) {
      case 'get': case 'del': lines.push(`${o.op} ${word(o.k)}`); break;
      case 'put': lines.push(`put ${word(o.k)} ${word(o.v)}`); break;
      case 'getm': case 'delm': lines.push([o.op, ...o.ks.map(word)].join(' ')); break;
      case 'putm': lines.push(['putm', ...o.kvs.flat().map(word)].join(' ')); break;
      case 'list': case 'listw': lines.push(`${o.op} ${word(o.prefix)} ${word(o.start)} ${word(o.end)} ${o.limit} ${o.reverse ? 1 : 0}`); break;
      case 'aset': lines.push(`aset ${o.at}`); break;
      default: lines.push(o.op);
    }
  }
  return lines;
}

// ---- the generator ----

const BYTES = ['00', '61', '62', '63', '7e', 'ff'];

function genKey(r) {
  if (r.chance(0.01)) return '';                          // -EINVAL
  if (r.chance(0.003)) return '61'.repeat(KEY_MAX + 1);  // -EMSGSIZE
  let k = '';
  const n = 1 + r.int(3);
  for (let i = 0; i < n; i++) k += r.pick(BYTES);
  return k;
}

function genValue(r) {
  if (r.chance(0.003)) return '00'.repeat(VALUE_MAX + 1); // -EMSGSIZE
  if (r.chance(0.02)) return 'ab'.repeat(1000 + r.int(3000));
  let v = '';
  const n = r.int(6);
  for (let i = 0; i < n; i++) v += r.int(256).toString(16).padStart(2, '0');
  return v;
}

const alarmWrites = (ops) => ops.some((o) => (o.tx ? alarmWrites(o.tx) : o.op === 'aset' || o.op === 'adel'));
const committedTx = (ops) => ops.some((o) => o.tx && !o.abort);

function genOp(r, now, depth, inTx) {
  if (r.chance(inTx ? 0.15 : 0.08) && depth < 3) {
    const tx = [];
    const n = 1 + r.int(4);
    for (let i = 0; i < n; i++) tx.push(genOp(r, now, depth + 1, true));
    let abort = r.chance(0.4);
    if (abort && SKIP.nestedRollback && committedTx(tx)) abort = false;
    if (abort && SKIP.alarmRollback && alarmWrites(tx)) abort = false;
    return { tx, abort };
  }
  const w = r.next();
  if (w < 0.25) return { op: 'get', k: genKey(r) };
  if (w < 0.45) return { op: 'put', k: genKey(r), v: genValue(r) };
  if (w < 0.53) return { op: 'del', k: genKey(r) };
  if (w < 0.58) return { op: 'getm', ks: Array.from({ length: r.chance(0.01) ? BATCH_MAX + 1 : r.int(6) }, () => genKey(r)) };
  if (w < 0.64) return { op: 'putm', kvs: Array.from({ length: r.chance(0.01) ? BATCH_MAX + 1 : r.int(6) }, () => [genKey(r), genValue(r)]) };
  if (w < 0.68) return { op: 'delm', ks: Array.from({ length: r.int(6) }, () => genKey(r)) };
  if (w < 0.80) {
    const maybe = (p) => (r.chance(p) ? genKey(r) || null : null);
    return { op: r.chance(0.25) ? 'listw' : 'list', prefix: maybe(0.3), start: maybe(0.3), end: maybe(0.3), limit: r.chance(0.4) ? 1 + r.int(5) : 0, reverse: r.chance(0.5) };
  }
  if (w < 0.82) return { op: 'delall' };
  // the alarm: far ahead (it never comes due during a run), or rarely now (then the step waits for on_alarm)
  if (w < 0.88) return { op: 'aset', at: !inTx && depth === 0 && r.chance(0.15) ? now - 1000 : now + 3600e3 + r.int(1e6) };
  if (w < 0.95) return { op: 'aget' };
  return { op: 'adel' };
}

// ---- the run ----

// Options: seed, steps, faults (probability per step, 0.08), shards (1), log (a function, or null).
// Returns { seed, steps, faults: {kind: count}, alarmsFired }. Throws with the seed and the step on a mismatch.
export async function runModel(opts = {}) {
  const seed = opts.seed ?? 1;
  const steps = opts.steps ?? 200;
  const pFault = opts.faults ?? 0.08;
  const log = opts.log ?? (() => {});
  const r = rng(seed);
  const room = `m${seed}`;
  const dir = tmpDir('partyd-model-');
  const hold = path.join(dir, 'hold-sync');
  const config = {
    parties: { model: { module: MODULE, hibernate: true } },
    timers: { idle_ms: 100 + r.int(400), alarm_retry_ms: 50 },
  };
  const nodeOpts = { dir, shards: opts.shards ?? 1, config, env: { LD_PRELOAD: SHIM, PARTYD_TEST_HOLD_SYNC: hold } };
  let node = await startNode(nodeOpts);
  const nodes = [node];
  const model = new Model();
  const stats = { seed, steps: 0, faults: {}, alarmsFired: 0 };
  const history = [];
  let ws = null;

  const fail = (msg) => {
    throw new Error(`model test failed: seed ${seed} (reproduce: runModel({seed: ${seed}, steps: ${steps}})), ` +
      `step ${stats.steps}: ${msg}\nlast steps and faults:\n${history.slice(-8).join('\n')}\nthe node's log ends:\n${node.stderr.slice(-1500)}`);
  };
  const post = async (body, target = room) => {
    const res = await node.fetch(`/parties/model/${target}`, { method: 'POST', body });
    return { status: res.status, text: await res.text() };
  };
  // Compares the whole room with the model; `alt`, a model the room may equal instead (a skipped known bug), is
  // adopted when it does.
  const checkWhole = async (what, alt = null) => {
    const ops = [{ op: 'list', prefix: null, start: null, end: null, limit: 0, reverse: false }, { op: 'aget' }];
    const want = model.clone().run(ops);
    const got = await post(serialize(ops).join('\n'));
    if (got.status !== 200) fail(`${what}: the room answered ${got.status} ${got.text}`);
    const lines = got.text.trimEnd().split('\n');
    if (alt && lines.join('\n') !== want.join('\n') && lines.join('\n') === alt.clone().run(ops).join('\n')) {
      history.push('  (known bug failedCommitTrace: the failed step is in the room)');
      stats.knownBugSeen = (stats.knownBugSeen ?? 0) + 1;
      model.kv = alt.kv;
      model.alarm = alt.alarm;
      return;
    }
    if (lines.join('\n') !== want.join('\n')) fail(`${what}: the room differs from the model\n  want: ${want.join('\n        ')}\n  got:  ${lines.join('\n        ')}`);
  };
  const openWs = async () => {
    if (ws && ws.closeCode === undefined) return;
    ws = await Client.open(node.wsUrl(`/parties/model/${room}`));
  };
  const shard0 = async () => (await node.shards())[0];

  const faults = {
    async evict() {
      const a = await node.admin(`/admin/rooms/model/${room}/evict`, { method: 'POST' });
      if (a.status !== 200) fail(`evict answered ${a.status} ${JSON.stringify(a.body)}`);
    },
    async hibernate() {
      await openWs();
      let info;
      await waitFor(async () => {
        info = await node.room('model', room);
        return info.in_memory === false || info.hibernating === true;
      }, { timeout: 20000, what: 'the room to hibernate' }).catch((e) => { fail(`${e.message}: ${JSON.stringify(info)}`); });
    },
    async killShard() {
      const before = await node.shards();
      const pid = before[0].pid;
      process.kill(pid, 'SIGKILL');
      await waitFor(async () => {
        const s = (await node.shards())[0];
        return s.restarts > before[0].restarts && s.state === 'up';
      }, { timeout: 30000, what: 'the shard to restart' });
      await waitFor(async () => (await node.fetch('/health')).status === 200, { timeout: 30000, what: '/health' });
    },
    async killNode() {
      await kill(node.proc);
      node = await startNode(nodeOpts);
      nodes.push(node);
      ws = null;
    },
  };

  try {
    for (let i = 0; i < steps; i++) {
      stats.steps = i + 1;
      if (r.chance(pFault)) {
        const kind = r.pick(['evict', 'evict', 'hibernate', 'hibernate', 'killShard', 'killNode', 'failedCommit', 'failedCommit']);
        stats.faults[kind] = (stats.faults[kind] ?? 0) + 1;
        history.push(`  fault ${kind}`);
        log(`seed ${seed} step ${i + 1}: ${kind}`);
        let alt = null;
        if (kind === 'failedCommit') {
          alt = await failedCommit();
          if (!SKIP.failedCommitTrace) alt = null;
        } else {
          await faults[kind]();
        }
        await checkWhole(`after ${kind}`, alt);
        continue;
      }
      if (r.chance(0.03)) {
        // an operator deletes the room: its data and its alarm
        history.push('  admin delete');
        const a = await node.admin(`/admin/rooms/model/${room}?confirm=${room}`, { method: 'DELETE' });
        if (a.status !== 200) fail(`admin delete answered ${a.status} ${JSON.stringify(a.body)}`);
        model.kv.clear();
        model.alarm = null;
        await checkWhole('after an admin delete');
        continue;
      }
      const now = Date.now();
      const ops = Array.from({ length: 1 + r.int(5) }, () => genOp(r, now, 0, false));
      if (r.chance(0.5)) ops.push({ op: 'list', prefix: null, start: null, end: null, limit: 0, reverse: false }, { op: 'aget' });
      const body = serialize(ops).join('\n');
      history.push(`  step ${i + 1}: ${body.replace(/\n/g, ' | ').slice(0, 400)}`);
      const want = model.run(ops);
      const got = await post(body);
      if (got.status !== 200) fail(`the step answered ${got.status} ${got.text}`);
      const lines = got.text.trimEnd().split('\n');
      for (let j = 0; j < want.length; j++) {
        if (lines[j] !== want[j]) fail(`answer ${j + 1} (of ${want.length}) differs\n  want: ${want[j]?.slice(0, 300)}\n  got:  ${lines[j]?.slice(0, 300)}\n  step: ${body.slice(0, 2000)}`);
      }
      if (lines.length !== want.length) fail(`${lines.length} answers for ${want.length} operations`);
      if (model.alarm !== null && model.alarm <= Date.now()) await alarmFires();
    }
    await checkWhole('at the end');
    for (const n of nodes.slice(0, -1)) n.checkSanitizers();
    const { code } = await node.stop();
    if (code !== 0) fail(`partyd exited ${code} on SIGTERM`);
  } catch (e) {
    await kill(node.proc);
    throw e;
  } finally {
    if (ws) ws.ws.terminate();
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return stats;

  // The alarm is due: on_alarm runs (once: the driver waits for it before anything else) and records it.
  async function alarmFires() {
    const prev = model.kv.has(FIRED) ? parseInt(Buffer.from(model.kv.get(FIRED), 'hex').toString(), 10) : 0;
    const want = Buffer.from(`${prev + 1}/${ENOENT}`).toString('hex');
    history.push('  the alarm fires');
    await waitFor(async () => {
      const got = await post(`get ${FIRED}\naget`);
      return got.status === 200 && got.text === `ok ${want}\nerr ${ENOENT}\n`;
    }, { timeout: 20000, what: `on_alarm to record fire ${prev + 1} (seed ${seed}, step ${stats.steps})` });
    model.kv.set(FIRED, want);
    model.alarm = null;
    stats.alarmsFired++;
  }

  // A step whose commit fails: answered 500, and the model does not change. RocksDB then refuses writes until the
  // shard reopens it (the shard restarts after 3 failed commits in a row): writes to another room bring that about.
  async function failedCommit() {
    const now = Date.now();
    const ops = Array.from({ length: 1 + r.int(4) }, () => genOp(r, now, 0, false)).filter((o) => !(o.op === 'aset' && o.at <= now));
    ops.push({ op: 'put', k: '66', v: r.int(1e9).toString(16).padStart(8, '0') });
    const body = serialize(ops).join('\n');
    history.push(`  failed commit of: ${body.replace(/\n/g, ' | ').slice(0, 400)}`);
    const restarts = (await shard0()).restarts;
    fs.writeFileSync(`${hold}.fail`, '');
    let got;
    try {
      got = await post(body);
    } finally {
      fs.unlinkSync(`${hold}.fail`);
    }
    if (got.status !== 500) fail(`a step whose commit failed answered ${got.status} ${got.text}`);
    await waitFor(async () => {
      const s = await shard0().catch(() => null);
      if (s && s.restarts > restarts) return s.state === 'up';
      const poke = await post('put 00 00', `${room}-poke`).catch(() => ({ status: 0 }));
      return poke.status === 200;
    }, { timeout: 30000, interval: 50, what: 'the shard to write again after a failed commit' });
    await waitFor(async () => (await node.fetch('/health')).status === 200, { timeout: 30000, what: '/health' });
    const applied = model.clone();
    applied.run(ops);
    return applied;
  }
}
