// js.test.mjs — TypeScript parties ("script" in the config, js/) in a real partyd, driven with the real `ws` and
// `partysocket` clients:
//   chat.ts        the seed's ChatRoom with hibernation: welcome, chat (stored, then broadcast), other messages to
//                  the others only, user-left; the room hibernates with its sockets open and goes on
//   collab.ts      the seed's CollabRoom: state, join, cursor to the others only, user-left; users across an evict
//   http_state.ts  the seed's HTTP state room: GET, POST (stored and broadcast), 405; the state across an evict and
//                  a kill -9 of the shard
//   probe.ts       (written here) an exception in onMessage is logged with its stack and the socket stays open;
//                  onRequest that throws gets 500; structured clone in storage (Map, Date, Uint8Array, nested);
//                  storage.list; connection state across hibernation; TextEncoder/TextDecoder; alarms
//   a TypeScript syntax error, a throw or an endless loop at a module's top level stop the node at start (file, line)
//   spin.js       (written here) an endless loop, and an endless promise chain, in onMessage: interrupted past
//                 PARTYD_JS_CPU_MS, the room reset (its sockets closed 1011), the other rooms of the shard served
// esbuild comes from tests/node_modules (tests/package.json) or PATH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, waitFor, tmpDir } from './lib.mjs';
import { cleanupAfterEach, start, open, stopClean, partySocket, closeAll } from './helpers.mjs';

cleanupAfterEach();

const T = { timeout: 90000 };
const TS = path.join(ROOT, 'deploy', 'examples', 'ts');
const ENV = { PATH: `${path.join(ROOT, 'tests', 'node_modules', '.bin')}:${process.env.PATH}` };
const node0 = (config, opts = {}) => start({ shards: 1, config, env: ENV, ...opts });
const ws = (node, party, room, pk) => node.wsUrl(`/parties/${party}/${room}${pk ? `?_pk=${pk}` : ''}`);

async function evict(node, party, room) {
  const r = await node.admin(`/admin/rooms/${party}/${room}/evict`, { method: 'POST' });
  assert.equal(r.status, 200, `evict ${party}/${room}: ${JSON.stringify(r.body)}`);
}
function hibernated(node, party, room, conns) {
  return waitFor(async () => {
    const r = await node.room(party, room);
    return r.hibernating && !r.in_memory && r.connections === conns;
  }, { what: `${party}/${room} to hibernate with ${conns} connections`, timeout: 15000 });
}

test('chat.ts: welcome, chat stored and broadcast, other messages to the others; hibernation keeps the sockets', T, async () => {
  const node = await node0({ parties: { main: { script: path.join(TS, 'chat.ts') } }, timers: { idle_ms: 300 } });
  const info = JSON.stringify((await node.admin('/admin/node')).body);
  assert.ok(info.includes('"main":{"kind":"script","hibernate":true'), `static options.hibernate is read: ${info}`);
  const a = await open(ws(node, 'main', 'c1', 'alice'));
  const b = await open(ws(node, 'main', 'c1', 'bob'));
  assert.deepEqual(await a.waitJson(() => true), { type: 'welcome', id: 'alice' });
  assert.deepEqual(await b.waitJson(() => true), { type: 'welcome', id: 'bob' });
  a.send(JSON.stringify({ type: 'chat', content: 'hi' }));
  const m = await b.waitJson((x) => x.type === 'chat');
  assert.equal(m.content, 'hi');
  assert.equal(m.senderId, 'alice');
  assert.ok(Math.abs(m.timestamp - Date.now()) < 60000);
  await a.waitJson((x) => x.type === 'chat', { what: 'the chat back at its sender' });
  a.send(JSON.stringify({ type: 'cursor', x: 1, y: 2 }));
  assert.deepEqual(await b.waitJson((x) => x.type === 'cursor'), { type: 'cursor', x: 1, y: 2 });
  // the room hibernates with both sockets open; the next message wakes it, ids intact
  await hibernated(node, 'main', 'c1', 2);
  b.send(JSON.stringify({ type: 'chat', content: 'after' }));
  const m2 = await a.waitJson((x) => x.type === 'chat' && x.content === 'after', { what: 'the chat after hibernation' });
  assert.equal(m2.senderId, 'bob');
  assert.ok(!a.json().some((x) => x.type === 'cursor'), 'a got its own cursor');
  await b.close();
  assert.deepEqual(await a.waitJson((x) => x.type === 'user-left'), { type: 'user-left', id: 'bob' });
  // a partysocket client
  const p = partySocket(node, { party: 'main', room: 'c1', id: 'carol' });
  await p.opened();
  await p.waitJson((x) => x.type === 'welcome' && x.id === 'carol', 'welcome at partysocket');
  p.s.send(JSON.stringify({ type: 'chat', content: 'from partysocket' }));
  assert.equal((await a.waitJson((x) => x.content === 'from partysocket')).senderId, 'carol');
  await closeAll(p);
  await stopClean(node, [a]);
});

test('collab.ts: state, join, cursors to the others, user-left; users across an evict', T, async () => {
  const node = await node0({ parties: { collab: { script: path.join(TS, 'collab.ts') } } });
  const a = await open(ws(node, 'collab', 'd1', 'a'));
  assert.deepEqual(await a.waitJson(() => true), { type: 'state', users: [] });
  a.send(JSON.stringify({ type: 'join', name: 'Alice' }));
  await a.waitJson((x) => x.type === 'user-joined');
  const b = await open(ws(node, 'collab', 'd1', 'b'));
  assert.deepEqual(await b.waitJson((x) => x.type === 'state'), { type: 'state', users: [{ id: 'a', name: 'Alice', cursor: null }] });
  b.send(JSON.stringify({ type: 'join', name: 'Bob' }));
  assert.deepEqual(await a.waitJson((x) => x.type === 'user-joined' && x.user.id === 'b'), { type: 'user-joined', user: { id: 'b', name: 'Bob', cursor: null } });
  a.send(JSON.stringify({ type: 'cursor', x: 3, y: 4.5 }));
  assert.deepEqual(await b.waitJson((x) => x.type === 'cursor'), { type: 'cursor', id: 'a', x: 3, y: 4.5 });
  await b.close();
  assert.deepEqual(await a.waitJson((x) => x.type === 'user-left'), { type: 'user-left', id: 'b' });
  await evict(node, 'collab', 'd1');
  assert.equal((await a.closed).code, 1012);
  // onStart read the users back (a was evicted, not closed: it is still there)
  const c = await open(ws(node, 'collab', 'd1', 'c'));
  // (the seed keeps cursors in memory only, but b's onClose stored the whole map, a's cursor with it)
  assert.deepEqual(await c.waitJson((x) => x.type === 'state'), { type: 'state', users: [{ id: 'a', name: 'Alice', cursor: { x: 3, y: 4.5 } }] });
  await stopClean(node, [c]);
});

test('http_state.ts: GET, POST stored and broadcast, 405; the state survives an evict and a kill -9 of the shard', T, async () => {
  const node = await node0({ parties: { state: { script: path.join(TS, 'http_state.ts') } } });
  let r = await node.fetch('/parties/state/s1');
  assert.equal(r.status, 200);
  assert.equal(await r.text(), ''); // JSON.stringify(undefined): no body, as on PartyKit
  const w = await open(ws(node, 'state', 's1', 'watcher'));
  r = await node.fetch('/parties/state/s1', { method: 'POST', body: JSON.stringify({ count: 3, name: 'x' }) });
  assert.equal(r.status, 200);
  assert.equal(await r.text(), 'OK');
  assert.deepEqual(await w.waitJson(() => true), { type: 'state-updated', count: 3, name: 'x' });
  r = await node.fetch('/parties/state/s1');
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.deepEqual(await r.json(), { count: 3, name: 'x' });
  r = await node.fetch('/parties/state/s1', { method: 'PUT', body: '{}' });
  assert.equal(r.status, 405);
  assert.equal(await r.text(), 'Method not allowed');
  await evict(node, 'state', 's1');
  assert.deepEqual(await (await node.fetch('/parties/state/s1')).json(), { count: 3, name: 'x' });
  // a kill -9 of the shard: the POST was acknowledged, so it is on disk
  await node.fetch('/parties/state/s1', { method: 'POST', body: JSON.stringify({ count: 4 }) });
  const { pid } = await node.shardPidOf('state', 's1');
  process.kill(pid, 'SIGKILL');
  await waitFor(async () => {
    const x = await node.fetch('/parties/state/s1');
    return x.status === 200 && JSON.stringify(await x.json()) === '{"count":4}';
  }, { what: 'the state after the shard restarted', timeout: 30000 });
  await stopClean(node, [], { allowRestarts: true });
});

const PROBE = `
import type * as Party from "partykit/server";
class URL_like { vip: boolean; constructor(u: string) { this.vip = u.includes("vip=1"); } }
export default class Probe implements Party.Server {
  static options = { hibernate: true };
  constructor(readonly room: Party.Room) {}
  onMessage(message: string | ArrayBuffer, sender: Party.Connection) {
    if (message instanceof ArrayBuffer) { sender.send(new Uint8Array(message).reverse()); return; }
    if (message === "boom") throw new Error("boom in onMessage");
    if (message.startsWith("state:")) { sender.setState({ name: message.slice(6) }); return; }
    if (message === "state?") { sender.send(JSON.stringify({ state: sender.state, n: [...this.room.getConnections()].length })); return; }
    if (message === "reject") return Promise.reject(new TypeError("rejected"));
    if (message === "tagged?") { sender.send(JSON.stringify({ tagged: [...this.room.getConnections("vip")].map((c) => c.id) })); return; }
    sender.send("echo:" + message);
  }
  getConnectionTags(conn: Party.Connection, ctx: Party.ConnectionContext) {
    return new URL_like(ctx.request.url).vip ? ["vip"] : [];
  }
  async onRequest(req: Party.Request) {
    const url = { pathname: req.url.split("?")[0] }; // (no URL global in this slice)
    if (url.pathname.endsWith("/throw")) throw new RangeError("thrown in onRequest");
    if (url.pathname.endsWith("/clone")) {
      const value = { m: new Map([["k", [1, { d: new Date(5) }]]]), u: new Uint8Array([1, 2, 255]), s: new Set(["x"]), big: "é".repeat(10) };
      await this.room.storage.put("v", value);
      await this.room.storage.put({ "p:1": 1, "p:2": 2, "q:1": 3 });
      const back: any = await this.room.storage.get("v");
      const list = await this.room.storage.list({ prefix: "p:" });
      const rev = await this.room.storage.list({ reverse: true, limit: 2 });
      const many = await this.room.storage.get(["p:1", "nope", "q:1"]);
      const deleted = await this.room.storage.delete(["p:2", "nope"]);
      return Response.json({
        map: back.m instanceof Map && back.m.get("k")[1].d instanceof Date && back.m.get("k")[1].d.getTime() === 5,
        u8: back.u instanceof Uint8Array && Array.from(back.u).join(","),
        set: back.s instanceof Set && back.s.has("x"),
        big: back.big === "é".repeat(10),
        list: [...list.entries()],
        rev: [...rev.keys()],
        many: [...many.entries()],
        deleted,
        text: new TextDecoder().decode(new TextEncoder().encode("héllo ☃")),
        fatal: (() => { try { new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])); return "no"; } catch (e) { return e instanceof TypeError; } })(),
        clone: structuredClone(new Map([[1, 2]])).get(1),
        env: this.room.env,
        processEnv: process.env.GREETING,
        id: this.room.id,
        b64: [btoa("hi\u00ff"), atob("aGn/")],
        uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
        random: crypto.getRandomValues(new Uint8Array(32)).some((x) => x !== 0),
        perf: typeof performance.now() === "number" && performance.now() >= 0,
      });
    }
    if (url.pathname.endsWith("/txn")) {
      const st = this.room.storage;
      await st.put("t:a", 1);
      let seen;
      try {
        await st.transaction(async (txn) => { await txn.put("t:a", 2); await txn.put("t:b", 3); seen = await txn.get("t:a"); throw new Error("no"); });
      } catch {}
      const afterThrow = [await st.get("t:a"), (await st.get("t:b")) ?? "none"];
      await st.transaction(async (txn) => { await txn.put("t:b", 4); txn.rollback(); });
      const afterRollback = (await st.get("t:b")) ?? "none";
      const inside = await st.transaction(async (txn) => {
        await txn.put("t:c", 5);
        await txn.delete("t:a");
        return [...(await txn.list({ prefix: "t:" })).entries()];
      });
      let big: any = "none";
      try {
        await st.transaction(async (txn) => { await txn.put("t:x", 1); await txn.put("t:big", "x".repeat(200000)); });
      } catch (e) { big = String(e.message).includes("nothing of it was written"); }
      const x = (await st.get("t:x")) ?? "none";
      await this.room.blockConcurrencyWhile(async () => { await st.put("t:c", 5); });
      const after = [...(await st.list({ prefix: "t:" })).entries()];
      return Response.json({ seen, afterThrow, afterRollback, inside, big, x, after });
    }
    if (url.pathname.endsWith("/wipe")) { await this.room.storage.deleteAll(); return new Response(String((await this.room.storage.list()).size)); }
    if (url.pathname.endsWith("/alarm")) { await this.room.storage.setAlarm(Date.now() + 50); return new Response(String(await this.room.storage.getAlarm() !== null)); }
    if (url.pathname.endsWith("/alarmed")) return new Response(String(await this.room.storage.get("alarmed") ?? "no"));
    return new Response(await req.text(), { status: 201, headers: { "x-probe": req.headers.get("x-probe") ?? "" } });
  }
  onClose(conn: Party.Connection) {
    this.room.broadcast(JSON.stringify({ left: conn.id, state: conn.state }));
  }
  onError(conn: Party.Connection, err: Error) {
    this.room.broadcast(JSON.stringify({ failed: conn.id, error: err instanceof Error && err.message.length > 0 }), [conn.id]);
  }
  async onAlarm() { await this.room.storage.put("alarmed", "yes"); }
}
`;

test('probe: exceptions are logged with their stack and the socket stays; 500 for a throwing onRequest; storage, state, text, alarms', T, async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'probe.ts'), PROBE);
  const node = await node0({ parties: { probe: { script: './probe.ts', vars: { GREETING: 'hello', N: '3' } } }, timers: { idle_ms: 300 }, limits: { message_bytes: 2048 } }, { dir });
  const a = await open(ws(node, 'probe', 'p1', 'a'));
  a.send('boom');
  await waitFor(() => /probe\/p1.*onMessage: Error: boom in onMessage/.test(node.stderr + node.stdout), { what: 'the exception in the log' });
  // the stack names the .ts line (line 9 of PROBE), through the bundle's source map
  assert.match(node.stderr + node.stdout, /onMessage@\/\S*\/probe\.ts:9:\d+/, 'the stack names the script\'s line');
  a.send('reject');
  await waitFor(() => /onMessage: TypeError: rejected/.test(node.stderr + node.stdout), { what: 'the rejection in the log' });
  a.send('still open');
  assert.equal((await a.waitMessage((m) => m.text === 'echo:still open')).text, 'echo:still open');
  a.send(Buffer.from([1, 2, 3]));
  assert.deepEqual([...(await a.waitMessage((m) => m.binary)).data], [3, 2, 1]);

  let r = await node.fetch('/parties/probe/p1/throw');
  assert.equal(r.status, 500);
  await waitFor(() => /onRequest: RangeError: thrown in onRequest/.test(node.stderr + node.stdout), { what: 'the onRequest exception in the log' });
  r = await node.fetch('/parties/probe/p1/echo', { method: 'POST', body: 'body ☃', headers: { 'x-probe': 'yes' } });
  assert.equal(r.status, 201);
  assert.equal(r.headers.get('x-probe'), 'yes');
  assert.equal(await r.text(), 'body ☃');
  r = await node.fetch('/parties/probe/p1/clone');
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), {
    map: true, u8: '1,2,255', set: true, big: true,
    list: [['p:1', 1], ['p:2', 2]], rev: ['v', 'q:1'], many: [['p:1', 1], ['q:1', 3]], deleted: 1,
    text: 'héllo ☃', fatal: true, clone: 2, env: { GREETING: 'hello', N: '3' }, processEnv: 'hello', id: 'p1',
    b64: ['aGn/', 'hi\u00ff'], uuid: true, random: true, perf: true,
  });
  // storage.deleteAll
  r = await node.fetch('/parties/probe/p1/wipe');
  assert.equal(await r.text(), '0');
  // storage.transaction: its reads see its writes; a throw, rollback() or a write storage refuses (a value over 128 KiB)
  // writes nothing of it; else all of it
  r = await node.fetch('/parties/probe/p1/txn');
  assert.deepEqual(await r.json(), {
    seen: 2, afterThrow: [1, 'none'], afterRollback: 'none', inside: [['t:c', 5]], big: true, x: 'none', after: [['t:c', 5]],
  });

  // connection state survives hibernation
  const b = await open(ws(node, 'probe', 'p1', 'b'));
  b.send('state:Bob');
  a.send('state:Alice');
  a.send('state?');
  assert.deepEqual(JSON.parse((await a.waitMessage((m) => m.text?.startsWith('{'))).text), { state: { name: 'Alice' }, n: 2 });
  await hibernated(node, 'probe', 'p1', 2);
  const from = a.messages.length;
  a.send('state?');
  assert.deepEqual(JSON.parse((await a.waitMessage((m) => m.text?.startsWith('{'), { from })).text), { state: { name: 'Alice' }, n: 2 });
  // onClose reads the state of the connection that left, also after the room woke from hibernation
  await hibernated(node, 'probe', 'p1', 2);
  await b.close();
  assert.deepEqual(JSON.parse((await a.waitMessage((m) => m.text?.startsWith('{"left"'))).text), { left: 'b', state: { name: 'Bob' } });

  // onError: a message over limits.message_bytes fails its connection (1009); the room hears why
  const big = await open(ws(node, 'probe', 'p1', 'big'));
  big.send('x'.repeat(4096));
  assert.equal((await big.closed).code, 1009);
  assert.deepEqual(JSON.parse((await a.waitMessage((m) => m.text?.startsWith('{"failed"'))).text), { failed: 'big', error: true });

  // getConnectionTags: tags set while connecting, listed by getConnections(tag)
  const v = await open(node.wsUrl('/parties/probe/p1?_pk=v&vip=1'));
  const vfrom = v.messages.length;
  v.send('tagged?');
  assert.deepEqual(JSON.parse((await v.waitMessage((m) => m.text?.startsWith('{"tagged"'), { from: vfrom })).text), { tagged: ['v'] });
  await v.close();

  // an alarm wakes the room and runs onAlarm
  assert.equal(await (await node.fetch('/parties/probe/p2/alarm')).text(), 'true');
  await waitFor(async () => (await (await node.fetch('/parties/probe/p2/alarmed')).text()) === 'yes', { what: 'onAlarm to run' });
  await stopClean(node, [a]);
});

test('a TypeScript syntax error, or a throw at the top level, stops the node at start with the file and line', T, async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'bad.ts'), 'export default class Bad {\n  onMessage(m: string) {\n    let x = ;\n  }\n}\n');
  let node = await node0({ parties: { bad: { script: './bad.ts' } } }, { dir, ready: false });
  let { code } = await node.exited;
  assert.notEqual(code, 0);
  assert.match(node.stderr, /parties\.bad\.script: .*bad\.ts: esbuild could not bundle it/);
  assert.match(node.stderr, /bad\.ts:3:\d+/);
  fs.writeFileSync(path.join(dir, 'top.ts'), 'const n: number = 1;\nif (n) throw new Error("no rooms today");\nexport default class Top {}\n');
  node = await node0({ parties: { top: { script: './top.ts' } } }, { dir, ready: false });
  ({ code } = await node.exited);
  assert.notEqual(code, 0);
  assert.match(node.stderr, /parties\.top\.script: .*top\.ts: its top level threw: Error: no rooms today/);
  assert.match(node.stderr, /\/top\.ts:2:\d+/); // the script's line, through the source map
  fs.writeFileSync(path.join(dir, 'nodefault.ts'), 'export const x = 1;\n');
  node = await node0({ parties: { nd: { script: './nodefault.ts' } } }, { dir, ready: false });
  ({ code } = await node.exited);
  assert.notEqual(code, 0);
  assert.match(node.stderr, /no default export that is a class/);
  // an endless loop at the top level is interrupted by the same limit as a handler
  fs.writeFileSync(path.join(dir, 'loop.js'), 'for (;;) {}\nexport default class L {}\n');
  node = await node0({ parties: { loop: { script: './loop.js' } } }, { dir, ready: false, env: { ...ENV, PARTYD_JS_CPU_MS: '200' } });
  ({ code } = await node.exited);
  assert.notEqual(code, 0);
  assert.match(node.stderr, /parties\.loop\.script: .*loop\.js: its top level ran past 200 ms \(PARTYD_JS_CPU_MS\): interrupted/);
  node.checkSanitizers();
  // options as an instance field is read too (from an instance made in the start check)
  fs.writeFileSync(path.join(dir, 'inst.ts'), 'export default class I {\n  options = { hibernate: true };\n  constructor(readonly room: any) {}\n}\n');
  node = await node0({ parties: { inst: { script: './inst.ts' } } }, { dir });
  const info = JSON.stringify((await node.admin('/admin/node')).body);
  assert.ok(info.includes('"inst":{"kind":"script","hibernate":true'), info);
  await stopClean(node);
});

const SPIN = `
export default class Spin {
  constructor(room) { this.room = room; this.started = Date.now(); }
  onMessage(message, sender) {
    if (message === "spin") for (;;) {}
    if (message === "chain") { const f = () => Promise.resolve().then(f); f(); return; }
    sender.send("echo:" + message);
  }
}
`;

test('a handler that runs past the limit (PARTYD_JS_CPU_MS) is interrupted and its room reset; other rooms of the shard go on', T, async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'spin.js'), SPIN);
  const node = await node0({ parties: { spin: { script: './spin.js' } } }, { dir, env: { ...ENV, PARTYD_JS_CPU_MS: '1000' } });
  for (const what of ['spin', 'chain']) {
    const a = await open(ws(node, 'spin', 'a', 'a'));
    const b = await open(ws(node, 'spin', 'b', 'b'));
    a.send(what);
    // a's room is reset: a is closed with 1011
    assert.equal((await a.closed).code, 1011);
    await waitFor(() => /spin\/a.*message ran past 1000 ms \(PARTYD_JS_CPU_MS\): interrupted; the room is reset/.test(node.stderr + node.stdout), { what: 'the interruption in the log' });
    // the shard serves the other room, and the reset room again
    b.send('still here');
    await b.waitMessage((m) => m.text === 'echo:still here');
    const a2 = await open(ws(node, 'spin', 'a', 'a2'));
    a2.send('back');
    await a2.waitMessage((m) => m.text === 'echo:back');
    await a2.close();
    await b.close();
    node.stdout = '';
    node.stderr = '';
  }
  await stopClean(node);
});
