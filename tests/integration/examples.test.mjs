// examples.test.mjs — the example parties of deploy/examples, each loaded as a module ("module" in the config) into a
// real partyd and driven with the real `ws` and `partysocket` clients:
//   typed_chat  the typed protocol and its validation, the history in storage (last 100, across an evict, hibernation
//               and a restart), names in connection state, a small limits.message_bytes (a chat that cannot be sent
//               is not kept; the history shrinks to fit)
//   collab      presence and cursors in storage: state, join, cursor to the others only, user-left, across an evict,
//               hibernation and a crash; a newer socket with the same id is no departure
//   http_state  GET/POST/405/400/413, the broadcast, the state on connect, across an evict and a restart; a state too
//               large to send is not stored
//   auth        the edge hooks: 401 (no token, a bad signature, another user's), the user handed to the room, a
//               client's own x-user-id replaced, 500 when AUTH_SECRET is missing (logged once per party)
// The modules are the ones built next to the binary under test (build/ or build-asan/), so the ASan run loads
// ASan-built modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import PartySocket from 'partysocket';
import { BIN, waitFor, kill } from './lib.mjs';
import { cleanupAfterEach, start, open, refused, stopClean, partySocket, closeAll } from './helpers.mjs';

cleanupAfterEach();

const T = { timeout: 60000 };
const EXAMPLES = path.join(path.dirname(BIN), 'deploy', 'examples');
const mod = (name) => path.join(EXAMPLES, `${name}.so`);

// ---- helpers ------------------------------------------------------------------------------------------------------------

function wsUrl(node, party, room, pk, query = {}) {
  const q = new URLSearchParams({ ...(pk !== undefined ? { _pk: pk } : {}), ...query }).toString();
  return node.wsUrl(`/parties/${party}/${room}${q ? `?${q}` : ''}`);
}

// The JSON message at index `at` of c (waiting for it).
async function next(c, at, what = `message #${at}`) {
  await waitFor(() => c.messages.length > at, { what, timeout: 5000 });
  const m = c.messages[at];
  assert.equal(m.binary, false, 'the server sent a binary frame');
  return JSON.parse(m.text);
}
const types = (c, from = 0) => c.json().slice(from).map((m) => m.type);
const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

async function evict(node, party, room) {
  const r = await node.admin(`/admin/rooms/${party}/${room}/evict`, { method: 'POST' });
  assert.equal(r.status, 200, `evict ${party}/${room}: ${JSON.stringify(r.body)}`);
}
async function storedKeys(node, party, room) {
  const r = await node.admin(`/admin/rooms/${party}/${room}?limit=1000`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.keys.map((k) => k.key);
}
// Waits until the room has left memory while `conns` connections stay open (hibernation).
function hibernated(node, party, room, conns) {
  return waitFor(async () => {
    const r = await node.room(party, room);
    return r.hibernating && !r.in_memory && r.connections === conns;
  }, { what: `${party}/${room} to hibernate with ${conns} connections`, timeout: 15000 });
}

// `onOpen` runs on every open (the place to (re)join)
const party = (node, opts, onOpen) => partySocket(node, opts, { onOpen, openTimeout: 10000 });

function assertTs(ts, t0) {
  assert.ok(Number.isInteger(ts), `ts ${ts} is an integer`);
  assert.ok(ts >= t0 - 1000 && ts <= Date.now() + 1000, `ts ${ts} is about now (${t0})`);
}

// ---- typed_chat -----------------------------------------------------------------------------------------------------------

const TC = (extra = {}) => ({ parties: { chat: { module: mod('typed_chat'), ...extra } } });
const tc = (node, room, pk) => wsUrl(node, 'chat', room, pk);
const join = (name) => JSON.stringify({ type: 'join', name });
const chat = (content) => JSON.stringify({ type: 'chat', content });

test('typed_chat: history on connect; join and chat to everyone; cursor to the others; chat and cursor need a join', T, async () => {
  const node = await start({ config: TC() });
  const room = 'tc-basic';
  const a = await open(tc(node, room, 'a'));
  assert.deepEqual(await next(a, 0), { type: 'history', messages: [] });
  a.send(chat('too early'));
  assert.deepEqual(await next(a, 1), { type: 'error', error: 'chat: join first' });
  a.send(JSON.stringify({ type: 'cursor', x: 1, y: 2 }));
  assert.deepEqual(await next(a, 2), { type: 'error', error: 'cursor: join first' });

  const b = await open(tc(node, room, 'b'));
  assert.deepEqual(await next(b, 0), { type: 'history', messages: [] });
  a.send(join('Alice'));
  const joined = { type: 'joined', id: 'a', name: 'Alice' };
  assert.deepEqual(await next(a, 3), joined);
  assert.deepEqual(await next(b, 1), joined);

  const t0 = Date.now();
  a.send(chat('hello'));
  const m = await next(b, 2, 'the chat at b');
  assertTs(m.ts, t0);
  assert.deepEqual(m, { type: 'chat', id: 1, name: 'Alice', content: 'hello', ts: m.ts });
  assert.deepEqual(await next(a, 4, 'the chat at its sender'), m);

  // a cursor goes to the others, in the fewest digits that are the same number
  a.send('{"type":"cursor","x":10,"y":0.1}');
  assert.deepEqual(await next(b, 3), { type: 'cursor', id: 'a', x: 10, y: 0.1 });
  assert.equal(b.messages[3].text, '{"type":"cursor","id":"a","x":10,"y":0.1}');
  a.send('{"type":"cursor","x":-2.5e-7,"y":1e21}');
  assert.deepEqual(await next(b, 4), { type: 'cursor', id: 'a', x: -2.5e-7, y: 1e21 });
  b.send(join('Bob'));
  b.send(chat('fence'));
  await a.waitJson((x) => x.type === 'chat' && x.content === 'fence', { what: 'the fence at a' });
  assert.deepEqual(types(a, 3), ['joined', 'chat', 'joined', 'chat'], 'the sender got none of its cursors');

  // a second join renames
  a.send(join('Alicia'));
  a.send(chat('renamed'));
  const r = await b.waitJson((x) => x.type === 'chat' && x.content === 'renamed', { what: 'the renamed chat' });
  assert.equal(r.name, 'Alicia');
  assert.equal(r.id, 3);

  // a later connection gets the chats (nothing else), oldest first
  const c = await open(tc(node, room, 'c'));
  const h = await next(c, 0);
  assert.equal(h.type, 'history');
  assert.deepEqual(h.messages.map((x) => [x.id, x.name, x.content]), [[1, 'Alice', 'hello'], [2, 'Bob', 'fence'], [3, 'Alicia', 'renamed']]);
  assert.deepEqual(Object.keys(h.messages[0]), ['id', 'name', 'content', 'ts']);
  await stopClean(node, [a, b, c]);
});

test('typed_chat: every invalid message gets an error, to its sender only, and changes nothing', T, async () => {
  const node = await start({ config: TC() });
  const room = 'tc-invalid';
  const watcher = await open(tc(node, room, 'watcher'));
  const a = await open(tc(node, room, 'a'));
  await next(watcher, 0);
  await next(a, 0);
  a.send(join('A'));
  await next(a, 1, 'joined');
  await next(watcher, 1, 'joined at the watcher');

  const TYPE = '"type" must be "join", "chat" or "cursor"';
  const NAME = 'join: "name" must be a string of 1 to 64 characters';
  const NAME_CTRL = 'join: "name" must not contain control characters';
  const CONTENT = 'chat: "content" must be a string of 1 to 2000 characters';
  const CURSOR = 'cursor: "x" and "y" must be finite numbers';
  const bad = [
    ['not json', /^invalid JSON: /],
    ['{"type":"chat","content":"x"', /^invalid JSON: /],
    ['"chat"', /^invalid JSON: |^a message must be a JSON object$/],
    ['[{"type":"chat","content":"x"}]', 'a message must be a JSON object'],
    ['{}', TYPE],
    ['{"type":5,"content":"x"}', TYPE],
    ['{"type":"shout","content":"x"}', TYPE],
    ['{"type":"CHAT","content":"x"}', TYPE],
    ['{"type":"join"}', NAME],
    [join(''), NAME],
    [join('n'.repeat(65)), NAME],
    [join('🎉'.repeat(65)), NAME],
    ['{"type":"join","name":7}', NAME],
    ['{"type":"join","name":null}', NAME],
    [join('bell\u0007'), NAME_CTRL],
    [join('two\nlines'), NAME_CTRL],
    [join('c1\u0085'), NAME_CTRL],
    [join('del\u007f'), NAME_CTRL],
    ['{"type":"join","name":"x","admin":true}', 'join: unexpected member "admin"'],
    ['{"type":"join","name":"a","name":"b"}', /^invalid JSON: duplicate object key/],
    [chat(''), CONTENT],
    [chat('x'.repeat(2001)), CONTENT],
    [chat('🎉'.repeat(2001)), CONTENT],
    ['{"type":"chat","content":["x"]}', CONTENT],
    ['{"type":"chat"}', CONTENT],
    [chat('nul\u0000'), 'chat: "content" must not contain control characters'],
    [chat('esc\u001b[31m'), 'chat: "content" must not contain control characters'],
    ['{"type":"chat","content":"hi","to":"b"}', 'chat: unexpected member "to"'],
    ['{"type":"cursor","x":"1","y":2}', CURSOR],
    ['{"type":"cursor","x":1}', CURSOR],
    ['{"type":"cursor","x":1,"y":null}', CURSOR],
    ['{"type":"cursor","x":true,"y":1}', CURSOR],
    ['{"type":"cursor","x":1,"y":2,"z":3}', 'cursor: unexpected member "z"'],
    ['{"type":"cursor","x":1e999,"y":0}', /^invalid JSON: /],
    ['{"type":"cursor","x":NaN,"y":0}', /^invalid JSON: /],
    [chat('x'.repeat(40000)), 'message too large: at most 32768 bytes'],
  ];
  let at = 2;
  for (const [msg, want] of bad) {
    a.send(msg);
    const got = await next(a, at++, `the error for ${msg.slice(0, 60)}`);
    assert.equal(got.type, 'error', `${msg.slice(0, 60)} → ${JSON.stringify(got)}`);
    assert.deepEqual(Object.keys(got), ['type', 'error']);
    if (typeof want === 'string') assert.equal(got.error, want, msg.slice(0, 60));
    else assert.match(got.error, want, msg.slice(0, 60));
  }
  a.ws.send(Buffer.from([0x7b, 0x7d]), { binary: true });
  a.ws.send(Buffer.from('{"type":"chat","content":"as binary"}'), { binary: true });
  assert.deepEqual(await next(a, at++), { type: 'error', error: 'binary messages are not supported; send JSON text' });
  assert.deepEqual(await next(a, at++), { type: 'error', error: 'binary messages are not supported; send JSON text' });

  // the limits are inclusive, counted in code points; the size cap leaves room for the largest valid message written
  // with \u escapes; tab, LF and CR are fine in content
  const name64 = '🎉'.repeat(64);
  a.send(join(name64));
  assert.deepEqual(await next(a, at++), { type: 'joined', id: 'a', name: name64 });
  const longest = '🎉'.repeat(2000);
  const escaped = `{"type":"chat","content":"${'\\ud83c\\udf89'.repeat(2000)}"}`;
  assert.ok(escaped.length > 24000);
  a.send(escaped);
  const m1 = await next(a, at++);
  assert.deepEqual([m1.type, m1.id, m1.content], ['chat', 1, longest]);
  a.send(chat('tab\there\nand\r\nlines'));
  const m2 = await next(a, at++);
  assert.deepEqual([m2.type, m2.id, m2.content, m2.name], ['chat', 2, 'tab\there\nand\r\nlines', name64]);

  // the watcher saw none of the errors, and nothing from the refused messages
  await waitFor(() => watcher.messages.length >= 5, { what: 'the two chats at the watcher' });
  assert.deepEqual(types(watcher), ['history', 'joined', 'joined', 'chat', 'chat']);
  assert.deepEqual(watcher.json()[1], { type: 'joined', id: 'a', name: 'A' });
  // only the two valid chats were stored
  assert.deepEqual(await storedKeys(node, 'chat', room), ['msg:00000000000000000001', 'msg:00000000000000000002']);
  const late = await open(tc(node, room, 'late'));
  assert.deepEqual((await next(late, 0)).messages.map((m) => m.content), [longest, 'tab\there\nand\r\nlines']);
  await stopClean(node, [watcher, a, late]);
});

test('typed_chat: the last 100 messages, a key each, survive hibernation, an evict and a restart; names survive hibernation', T, async () => {
  const config = { ...TC({ hibernate: true }), timers: { idle_ms: 300 } };
  let node = await start({ shards: 1, config });
  const room = 'tc-durable';
  const a = await open(tc(node, room, 'a'));
  await next(a, 0);
  a.send(join('Alice'));
  for (let i = 1; i <= 105; i++) a.send(chat(`message ${i}`));
  await a.waitJson((m) => m.type === 'chat' && m.id === 105, { what: 'the 105th chat', timeout: 15000 });
  const keys = await storedKeys(node, 'chat', room);
  assert.equal(keys.length, 100, 'one key per message, the last 100');
  assert.equal(keys[0], 'msg:00000000000000000006');
  assert.equal(keys[99], 'msg:00000000000000000105');
  const contents = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `message ${from + i}`);

  const b = await open(tc(node, room, 'b'));
  const h = await next(b, 0);
  assert.deepEqual(h.messages.map((m) => m.id), Array.from({ length: 100 }, (_, i) => 6 + i));
  assert.deepEqual(h.messages.map((m) => m.content), contents(6, 105));

  // hibernation: the room leaves memory with a and b open; a's name was in its connection state
  await hibernated(node, 'chat', room, 2);
  a.send(chat('after hibernation'));
  const m = await b.waitJson((x) => x.type === 'chat' && x.content === 'after hibernation', { what: 'the chat after hibernation' });
  assert.deepEqual([m.id, m.name], [106, 'Alice']);

  // an evict: the clients are closed with 1012; the history is read back from storage, numbering goes on
  await evict(node, 'chat', room);
  assert.equal((await a.closed).code, 1012);
  assert.equal((await b.closed).code, 1012);
  const c = await open(tc(node, room, 'c'));
  const h2 = await next(c, 0);
  assert.deepEqual(h2.messages.map((x) => x.content), [...contents(7, 105), 'after hibernation']);
  c.send(join('Carol'));
  c.send(chat('after the evict'));
  assert.equal((await c.waitJson((x) => x.type === 'chat', { what: 'chat after evict' })).id, 107);

  // a restart of the node on the same data
  await stopClean(node, [c]);
  node = await start({ shards: 1, config, dir: node.dir });
  const d = await open(tc(node, room, 'd'));
  const h3 = await next(d, 0);
  assert.equal(h3.messages.length, 100);
  assert.deepEqual(h3.messages.slice(-2).map((x) => [x.id, x.name, x.content]), [[106, 'Alice', 'after hibernation'], [107, 'Carol', 'after the evict']]);
  assert.equal(h3.messages[0].content, 'message 8');
  d.send(join('Dan'));
  d.send(chat('after the restart'));
  assert.equal((await d.waitJson((x) => x.type === 'chat', { what: 'chat after restart' })).id, 108);
  assert.equal((await storedKeys(node, 'chat', room)).length, 100);
  await stopClean(node, [d]);
});

test('typed_chat: under a small limits.message_bytes a chat that cannot be sent is not kept, and the history is the newest that fit', T, async () => {
  const node = await start({ shards: 1, config: { ...TC(), limits: { message_bytes: 1024 } } });
  const room = 'tc-limit';
  const a = await open(tc(node, room, 'a'));
  await next(a, 0);
  const name = 'n'.repeat(64);
  a.send(join(name));
  for (let i = 1; i <= 20; i++) a.send(chat(`message number ${i} `.padEnd(40, '.')));
  await a.waitJson((m) => m.type === 'chat' && m.id === 20, { what: 'the 20th chat' });
  // 950 characters arrive (under 1024 bytes) but cannot go out with the name, id and ts around them
  const long = chat('x'.repeat(950));
  assert.ok(Buffer.byteLength(long) < 1024);
  a.send(long);
  assert.deepEqual(await next(a, 22), { type: 'error', error: 'chat: too long to send over this node (limits.message_bytes)' });
  assert.equal((await storedKeys(node, 'chat', room)).length, 20, 'the chat that was not sent was not kept');
  a.send(chat('after'));
  assert.equal((await next(a, 23)).id, 21, 'the number was not used up');

  // 21 chats are over 1024 bytes as one history: a new connection gets the newest that fit, oldest first
  const b = await open(tc(node, room, 'b'));
  const h = await next(b, 0);
  assert.equal(h.type, 'history');
  const ids = h.messages.map((m) => m.id);
  assert.ok(ids.length >= 1 && ids.length < 21, `${ids.length} messages`);
  assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => 22 - ids.length + i));
  assert.ok(Buffer.byteLength(b.messages[0].text) <= 1024);
  await stopClean(node, [a, b]);
});

test('typed_chat: partysocket clients join on every open and chat across an evict', T, async () => {
  const node = await start({ config: TC() });
  const room = 'tc-ps';
  const p1 = party(node, { party: 'chat', room, id: 'ps1' }, (s) => s.send(join('P one')));
  const p2 = party(node, { party: 'chat', room, id: 'ps2' }, (s) => s.send(join('P two')));
  await p1.waitJson((m) => m.type === 'joined' && m.id === 'ps2', 'p2 joined, at p1');
  p1.s.send(chat('hi from partysocket'));
  const m = await p2.waitJson((x) => x.type === 'chat', 'the chat at p2');
  assert.deepEqual([m.id, m.name, m.content], [1, 'P one', 'hi from partysocket']);

  await evict(node, 'chat', room);
  await p1.opened(2);
  await p2.opened(2);
  assert.deepEqual(p1.closes, [1012]);
  const histories = () => p2.json().filter((x) => x.type === 'history');
  await waitFor(() => histories().length === 2, { what: 'the history after reconnecting' });
  assert.deepEqual(histories()[1].messages.map((x) => x.content), ['hi from partysocket']);
  await waitFor(() => p1.json().filter((x) => x.type === 'joined' && x.id === 'ps1').length >= 2, { what: 'p1 rejoined' });
  p1.s.send(chat('after the evict'));
  const m2 = await p2.waitJson((x) => x.type === 'chat' && x.content === 'after the evict', 'the chat after the evict');
  assert.deepEqual([m2.id, m2.name], [2, 'P one']);
  await closeAll(p1, p2);
  await stopClean(node);
});

// ---- collab -----------------------------------------------------------------------------------------------------------------

const CO = (extra = {}) => ({ parties: { collab: { module: mod('collab'), ...extra } } });
const co = (node, room, pk) => wsUrl(node, 'collab', room, pk);
const cursor = (x, y) => JSON.stringify({ type: 'cursor', x, y });

test('collab: state on connect; join to everyone; cursor to the others only; a rename keeps the cursor; user-left', T, async () => {
  const node = await start({ config: CO() });
  const room = 'co-basic';
  const a = await open(co(node, room, 'a'));
  const b = await open(co(node, room, 'b'));
  assert.deepEqual(await next(a, 0), { type: 'state', users: [] });
  assert.deepEqual(await next(b, 0), { type: 'state', users: [] });

  a.send(join('Alice'));
  const aj = { type: 'user-joined', user: { id: 'a', name: 'Alice', cursor: null } };
  assert.deepEqual(await next(a, 1), aj);
  assert.deepEqual(await next(b, 1), aj);
  a.send(cursor(1, 2.5));
  assert.deepEqual(await next(b, 2), { type: 'cursor', id: 'a', x: 1, y: 2.5 });
  a.send(cursor(0.1, -0.3));
  assert.equal((await waitFor(() => b.messages[3], { what: 'the second cursor' })).text, '{"type":"cursor","id":"a","x":0.1,"y":-0.3}');
  b.send(join('Bob'));
  await a.waitJson((m) => m.type === 'user-joined' && m.user.id === 'b', { what: 'b joined, at a' });
  assert.deepEqual(types(a), ['state', 'user-joined', 'user-joined'], 'a got none of its own cursors');

  const c = await open(co(node, room, 'c'));
  const s = await next(c, 0);
  assert.deepEqual(s.users.sort(byId), [
    { id: 'a', name: 'Alice', cursor: { x: 0.1, y: -0.3 } },
    { id: 'b', name: 'Bob', cursor: null },
  ]);
  // a connection that has not joined is no user: its cursor is refused
  c.send(cursor(5, 5));
  assert.deepEqual(await next(c, 1), { type: 'error', error: 'cursor: join first' });

  a.send(join('Alicia'));
  const renamed = { type: 'user-joined', user: { id: 'a', name: 'Alicia', cursor: { x: 0.1, y: -0.3 } } };
  for (const [x, at] of [[a, 3], [b, 5], [c, 2]]) assert.deepEqual(await next(x, at, 'the rename'), renamed);
  assert.deepEqual((await storedKeys(node, 'collab', room)).sort(), ['user:a', 'user:b']);

  // a leaves: the others are told, and it is gone from storage
  await a.close();
  assert.deepEqual(await next(b, 6, 'user-left at b'), { type: 'user-left', id: 'a' });
  assert.deepEqual(await next(c, 3, 'user-left at c'), { type: 'user-left', id: 'a' });
  assert.deepEqual(await storedKeys(node, 'collab', room), ['user:b']);
  // c never joined: its leaving is no news
  await c.close();
  const d = await open(co(node, room, 'd'));
  assert.deepEqual(await next(d, 0), { type: 'state', users: [{ id: 'b', name: 'Bob', cursor: null }] });
  assert.deepEqual(types(b), ['state', 'user-joined', 'cursor', 'cursor', 'user-joined', 'user-joined', 'user-left']);
  await stopClean(node, [b, d]);
});

test('collab: invalid messages get an error, to the sender only, and store nothing', T, async () => {
  const node = await start({ config: CO() });
  const room = 'co-invalid';
  const w = await open(co(node, room, 'w'));
  const a = await open(co(node, room, 'a'));
  await next(w, 0);
  await next(a, 0);
  const NAME = 'join: "name" must be a string of 1 to 64 characters';
  const CURSOR = 'cursor: "x" and "y" must be finite numbers';
  const bad = [
    ['{"type":"cursor","x":1,"y":2}', 'cursor: join first'],
    ['nope', /^invalid JSON: /],
    ['[]', 'a message must be a JSON object'],
    ['{"type":"chat","content":"x"}', '"type" must be "join" or "cursor"'],
    ['{"name":"x"}', '"type" must be "join" or "cursor"'],
    [join(''), NAME],
    [join('x'.repeat(65)), NAME],
    ['{"type":"join","name":{}}', NAME],
    [join('tab\there'), 'join: "name" must not contain control characters'],
    ['{"type":"join","name":"x","color":"red"}', 'join: unexpected member "color"'],
    ['{"type":"join","name":"x","name":"y"}', /^invalid JSON: duplicate object key/],
    [join('x'.repeat(5000)), 'message too large: at most 4096 bytes'],
  ];
  let at = 1;
  const check = async (msg, want) => {
    a.send(msg);
    const got = await next(a, at++, `the error for ${msg.slice(0, 60)}`);
    assert.equal(got.type, 'error', `${msg.slice(0, 60)} → ${JSON.stringify(got)}`);
    if (typeof want === 'string') assert.equal(got.error, want);
    else assert.match(got.error, want);
  };
  for (const [msg, want] of bad) await check(msg, want);
  assert.deepEqual(await storedKeys(node, 'collab', room), [], 'nothing stored before a valid join');
  a.send(join('A'));
  await next(a, at++, 'joined');
  for (const [msg, want] of [
    ['{"type":"cursor","x":"1","y":2}', CURSOR],
    ['{"type":"cursor","y":2}', CURSOR],
    ['{"type":"cursor","x":1e999,"y":2}', /^invalid JSON: /],
    ['{"type":"cursor","x":1,"y":2,"z":0}', 'cursor: unexpected member "z"'],
  ])
    await check(msg, want);
  a.ws.send(Buffer.from(cursor(1, 1)), { binary: true });
  assert.deepEqual(await next(a, at++), { type: 'error', error: 'binary messages are not supported; send JSON text' });
  a.send(cursor(3, 4));
  assert.deepEqual(await next(w, 2, 'the valid cursor at w'), { type: 'cursor', id: 'a', x: 3, y: 4 });
  assert.deepEqual(types(w), ['state', 'user-joined', 'cursor'], 'w saw the join and the valid cursor only');
  const late = await open(co(node, room, 'late'));
  assert.deepEqual(await next(late, 0), { type: 'state', users: [{ id: 'a', name: 'A', cursor: { x: 3, y: 4 } }] });
  await stopClean(node, [w, a, late]);
});

test('collab: users and cursors survive hibernation, an evict and a crash of the node; a newer socket with the same id is no departure', T, async () => {
  const config = { ...CO({ hibernate: true }), timers: { idle_ms: 300 } };
  let node = await start({ shards: 1, config });
  const room = 'co-durable';
  const a = await open(co(node, room, 'a'));
  const b = await open(co(node, room, 'b'));
  a.send(join('Alice'));
  a.send(cursor(5, 6.25));
  b.send(join('Bob'));
  await a.waitJson((m) => m.type === 'user-joined' && m.user.id === 'b', { what: 'b joined' });
  await b.waitJson((m) => m.type === 'cursor', { what: "a's cursor at b" });
  const users = [{ id: 'a', name: 'Alice', cursor: { x: 5, y: 6.25 } }, { id: 'b', name: 'Bob', cursor: null }];

  // a second socket with a's id replaces the first (4000): a has not left
  const a2 = await open(co(node, room, 'a'));
  assert.equal((await a.closed).code, 4000);
  assert.deepEqual((await next(a2, 0)).users.sort(byId), users);
  b.send(cursor(-1, 0));
  assert.deepEqual(await next(a2, 1), { type: 'cursor', id: 'b', x: -1, y: 0 });
  users[1].cursor = { x: -1, y: 0 };
  assert.ok(!b.json().some((m) => m.type === 'user-left'), 'no user-left for a replaced socket');

  // hibernation: on_start reads the users back while the connections stay open
  await hibernated(node, 'collab', room, 2);
  const c = await open(co(node, room, 'c'));
  assert.deepEqual((await next(c, 0)).users.sort(byId), users);
  a2.send(cursor(7, 8));
  assert.deepEqual(await next(c, 1), { type: 'cursor', id: 'a', x: 7, y: 8 });
  users[0].cursor = { x: 7, y: 8 };

  // an evict drops the connections without a close: the users stay for when they come back
  await evict(node, 'collab', room);
  for (const x of [a2, b, c]) assert.equal((await x.closed).code, 1012);
  const e = await open(co(node, room, 'e'));
  assert.deepEqual((await next(e, 0)).users.sort(byId), users);
  await e.close();

  // a crash of the whole node (SIGKILL): nothing ran on_close; the users are on disk
  await kill(node.proc);
  node = await start({ shards: 1, config, dir: node.dir });
  const f = await open(co(node, room, 'f'));
  assert.deepEqual((await next(f, 0)).users.sort(byId), users);
  // a comes back: its name and cursor are where they were; then it leaves for good
  const a3 = await open(co(node, room, 'a'));
  assert.deepEqual((await next(a3, 0)).users.sort(byId), users);
  await a3.close();
  assert.deepEqual(await next(f, 1), { type: 'user-left', id: 'a' });
  assert.deepEqual(await storedKeys(node, 'collab', room), ['user:b']);
  await stopClean(node, [f]);
});

test('collab: partysocket clients see each other, and their cursors again after an evict', T, async () => {
  const node = await start({ config: CO() });
  const room = 'co-ps';
  const p1 = party(node, { party: 'collab', room, id: 'p1' }, (s) => s.send(join('One')));
  const p2 = party(node, { party: 'collab', room, id: 'p2' }, (s) => s.send(join('Two')));
  await p1.waitJson((m) => m.type === 'user-joined' && m.user.id === 'p2', 'p2 at p1');
  await p2.waitJson((m) => m.type === 'user-joined' && m.user.id === 'p1', 'p1 at p2');
  p1.s.send(cursor(12, 34));
  assert.deepEqual(await p2.waitJson((m) => m.type === 'cursor', 'the cursor at p2'), { type: 'cursor', id: 'p1', x: 12, y: 34 });

  await evict(node, 'collab', room);
  await p1.opened(2);
  await p2.opened(2);
  const states = () => p2.json().filter((m) => m.type === 'state');
  await waitFor(() => states().length === 2, { what: 'the second state at p2' });
  const s = states()[1];
  // the stored users were there before anyone rejoined; a rejoin keeps the cursor
  assert.deepEqual(s.users.find((u) => u.id === 'p1'), { id: 'p1', name: 'One', cursor: { x: 12, y: 34 } });
  await closeAll(p1, p2);
  await stopClean(node);
});

// ---- http_state ---------------------------------------------------------------------------------------------------------------

const HS = { parties: { state: { module: mod('http_state') } } };
const hs = (room) => `/parties/state/${room}`;

async function hsGet(node, room) {
  const r = await node.fetch(hs(room));
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  return r.text();
}
async function hsPost(node, room, body, method = 'POST') {
  const r = await node.fetch(hs(room), { method, body });
  return { status: r.status, type: r.headers.get('content-type'), allow: r.headers.get('allow'), text: await r.text() };
}

test('http_state: GET, POST stored and broadcast, the state on connect; 400, 405, 413 change nothing', T, async () => {
  const node = await start({ config: HS });
  const room = 'hs-basic';
  assert.equal(await hsGet(node, room), 'null');
  const a = await open(wsUrl(node, 'state', room, 'a'));
  assert.deepEqual(await next(a, 0), { type: 'state', state: null });

  const ok = await hsPost(node, room, JSON.stringify({ count: 1, who: 'curl' }));
  assert.deepEqual([ok.status, ok.text], [200, 'OK']);
  assert.match(ok.type, /^text\/plain/);
  assert.deepEqual(await next(a, 1), { type: 'state-updated', count: 1, who: 'curl' });
  assert.equal(await hsGet(node, room), '{"count":1,"who":"curl"}');
  const b = await open(wsUrl(node, 'state', room, 'b'));
  assert.deepEqual(await next(b, 0), { type: 'state', state: { count: 1, who: 'curl' } });

  // the body is kept as written (less the whitespace around it): numbers are not rewritten
  const body = ' \n{ "x": 0.1, "big": 12345678901234567890, "nested": {"list": [1, "two", null]}, "e": "\\u00e9" }\n';
  assert.equal((await hsPost(node, room, body)).status, 200);
  assert.equal(await hsGet(node, room), body.trim());
  const up = await next(b, 1);
  assert.deepEqual(up, { type: 'state-updated', x: 0.1, big: 12345678901234567890, nested: { list: [1, 'two', null] }, e: 'é' });
  assert.equal(b.messages[1].text, `{"type":"state-updated",${body.trim().slice(1).trimStart()}`);
  assert.equal((await hsPost(node, room, '{ }')).status, 200);
  assert.deepEqual(await next(b, 2), { type: 'state-updated' });
  assert.equal(await hsGet(node, room), '{ }');
  assert.equal((await hsPost(node, room, '{"v":1}')).status, 200);

  for (const [bad, why] of [
    ['', /^invalid JSON: /],
    ['nope', /^invalid JSON: /],
    ['{"v":2', /^invalid JSON: /],
    ['[1,2]', /^the state must be a JSON object$/],
    ['"s"', /^invalid JSON: |^the state must be a JSON object$/],
    ['{"type":"hijack","v":2}', /"type"/],
    ['{"v":2,"v":3}', /^invalid JSON: duplicate object key/],
  ]) {
    const r = await hsPost(node, room, bad);
    assert.equal(r.status, 400, `POST ${bad}: ${r.status} ${r.text}`);
    assert.match(r.type, /^application\/json/);
    assert.match(JSON.parse(r.text).error, why);
  }
  for (const method of ['PUT', 'DELETE', 'PATCH']) {
    const r = await hsPost(node, room, method === 'DELETE' ? undefined : '{"v":9}', method);
    assert.equal(r.status, 405, method);
    assert.equal(r.allow, 'GET, POST');
    assert.equal(JSON.parse(r.text).error, 'method not allowed: GET or POST');
  }
  const big = await hsPost(node, room, JSON.stringify({ pad: 'x'.repeat(128 * 1024) }));
  assert.equal(big.status, 413);
  assert.equal(JSON.parse(big.text).error, 'the state is over 131072 bytes');
  // the largest state that fits is taken
  const fits = JSON.stringify({ pad: 'y'.repeat(128 * 1024 - 10) });
  assert.equal(fits.length, 128 * 1024);
  assert.equal((await hsPost(node, room, fits)).status, 200);
  assert.equal((await next(b, 4)).pad.length, 128 * 1024 - 10);
  assert.equal((await hsGet(node, room)).length, fits.length);
  assert.equal((await hsPost(node, room, '{"v":"last"}')).status, 200);
  assert.deepEqual(await next(b, 5), { type: 'state-updated', v: 'last' });

  // the refused requests broadcast nothing; a socket's own message is answered, to it alone
  assert.deepEqual(types(b), ['state', 'state-updated', 'state-updated', 'state-updated', 'state-updated', 'state-updated']);
  b.send('{"v":"from a socket"}');
  assert.deepEqual(await next(b, 6), { type: 'error', error: "this room's state is changed over HTTP: POST it" });
  assert.equal(await hsGet(node, room), '{"v":"last"}');
  assert.equal(a.messages.length, 7, 'a got every state-updated and no error');
  await stopClean(node, [a, b]);
});

test('http_state: the state survives an evict and a restart; partysocket and PartySocket.fetch', T, async () => {
  let node = await start({ config: HS });
  const room = 'hs-durable';
  const p = party(node, { party: 'state', room, id: 'p' });
  assert.deepEqual(await p.waitJson((m) => m.type === 'state', 'state at p'), { type: 'state', state: null });
  const post = await PartySocket.fetch({ host: node.host, party: 'state', room }, { method: 'POST', body: JSON.stringify({ title: 'Plan', n: 3 }) });
  assert.deepEqual([post.status, await post.text()], [200, 'OK']);
  assert.deepEqual(await p.waitJson((m) => m.type === 'state-updated', 'the update at p'), { type: 'state-updated', title: 'Plan', n: 3 });

  await evict(node, 'state', room);
  await p.opened(2);
  await waitFor(() => p.json().filter((m) => m.type === 'state').length === 2, { what: 'the state after the evict' });
  assert.deepEqual(p.json().filter((m) => m.type === 'state')[1], { type: 'state', state: { title: 'Plan', n: 3 } });
  await closeAll(p);

  await stopClean(node);
  node = await start({ config: HS, dir: node.dir });
  const get = await PartySocket.fetch({ host: node.host, party: 'state', room });
  assert.equal(get.status, 200);
  assert.deepEqual(await get.json(), { title: 'Plan', n: 3 });
  const c = await open(wsUrl(node, 'state', room, 'c'));
  assert.deepEqual(await next(c, 0), { type: 'state', state: { title: 'Plan', n: 3 } });
  await stopClean(node, [c]);
});

test('http_state: a state too large for a WebSocket message is refused with 413 and not stored; one stored under a larger limit is still served', T, async () => {
  const config = (message_bytes) => ({ ...HS, limits: { message_bytes } });
  let node = await start({ shards: 1, config: config(1024) });
  const room = 'hs-limit';
  const a = await open(wsUrl(node, 'state', room, 'a'));
  assert.deepEqual(await next(a, 0), { type: 'state', state: null });
  const small = JSON.stringify({ pad: 's'.repeat(900) });
  assert.equal((await hsPost(node, room, small)).status, 200);
  assert.equal((await next(a, 1)).pad.length, 900);
  const large = JSON.stringify({ pad: 'L'.repeat(2000) });
  const r = await hsPost(node, room, large);
  assert.equal(r.status, 413);
  assert.equal(JSON.parse(r.text).error, 'the state is too large to send to the room\'s sockets (limits.message_bytes)');
  assert.equal(await hsGet(node, room), small, 'the refused state was not stored');
  await stopClean(node, [a]);

  // stored under the default limit, then served by a node with a smaller one
  node = await start({ shards: 1, config: HS, dir: node.dir });
  assert.equal((await hsPost(node, room, large)).status, 200);
  await stopClean(node);
  node = await start({ shards: 1, config: config(1024), dir: node.dir });
  const b = await open(wsUrl(node, 'state', room, 'b'));
  assert.deepEqual(await next(b, 0), { type: 'error', error: 'the state is too large to send (limits.message_bytes); GET it' });
  assert.equal(await hsGet(node, room), large);
  assert.equal((await hsPost(node, room, small)).status, 200);
  assert.equal((await next(b, 1)).pad.length, 900, 'updates that fit still arrive');
  await stopClean(node, [b]);
});

// ---- auth -------------------------------------------------------------------------------------------------------------------

const SECRET = 'correct horse battery staple';
const sign = (user, secret = SECRET) => crypto.createHmac('sha256', secret).update(user).digest('hex');
const token = (user, secret = SECRET) => `${user}.${sign(user, secret)}`;
const AU = { parties: { secure: { module: mod('auth'), vars: { AUTH_SECRET: { env: 'AUTH_SECRET' } } } } };
const au = (room, query) => `/parties/secure/${room}${query ? `?${new URLSearchParams(query)}` : ''}`;

async function auGet(node, room, query, init) {
  const r = await node.fetch(au(room, query), init);
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, type: r.headers.get('content-type'), auth: r.headers.get('www-authenticate'), body };
}

test('auth: 401 without a valid token; the hook hands the user to the room, replacing a client\'s x-user-id', T, async () => {
  const node = await start({ config: AU, env: { AUTH_SECRET: SECRET } });
  const room = 'au-basic';
  const missing = await auGet(node, room);
  assert.deepEqual([missing.status, missing.body, missing.auth], [401, { error: 'missing token' }, 'Bearer']);
  assert.match(missing.type, /^application\/json/);
  assert.equal((await auGet(node, room, { token: '' })).status, 401);
  const invalid = [
    `alice.${'0'.repeat(64)}`, // a signature that is not alice's
    `bob.${sign('alice')}`, // alice's signature, another user
    `alice.${sign('alice', 'another secret')}`, // made with another secret
    `alice.${sign('alice').toUpperCase()}`, // hex, but not lowercase
    `alice.${sign('alice').slice(0, 63)}`, // one digit short
    `alice.${sign('alice')}0`, // one digit long
    `alice${sign('alice')}`, // no dot
    `.${sign('')}`, // no user
    `al ice.${sign('al ice')}`, // a user with a character a header must not carry unchecked
    `${'u'.repeat(65)}.${sign('u'.repeat(65))}`, // a user over 64
    'x'.repeat(5000),
  ];
  for (const t of invalid) {
    const r = await auGet(node, room, { token: t });
    assert.equal(r.status, 401, `token ${t.slice(0, 80)}`);
    assert.deepEqual(r.body, { error: 'invalid token' });
    assert.equal(r.auth, 'Bearer error="invalid_token"');
  }
  // a client's own x-user-id gets it nowhere
  assert.equal((await auGet(node, room, undefined, { headers: { 'x-user-id': 'alice' } })).status, 401);

  // a good token: the room sees the hook's header, never the client's
  const ok = await auGet(node, room, { token: token('alice') }, { headers: { 'x-user-id': 'mallory' } });
  assert.deepEqual([ok.status, ok.body], [200, { user: 'alice', connections: 0 }]);
  const dotted = await auGet(node, room, { token: token('a.l-i_c@e.example') });
  assert.deepEqual(dotted.body, { user: 'a.l-i_c@e.example', connections: 0 });
  const post = await auGet(node, room, { token: token('alice') }, { method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal((await auGet(node, room, undefined, { method: 'POST', body: 'x' })).status, 401, 'the hook runs before the room');

  // WebSocket: refused before the upgrade, with the hook's body and header
  const r1 = await refused(node.wsUrl(au(room)));
  assert.equal(r1.status, 401);
  assert.deepEqual(JSON.parse(r1.body), { error: 'missing token' });
  assert.equal(r1.headers['www-authenticate'], 'Bearer');
  const r2 = await refused(node.wsUrl(au(room, { token: `mallory.${sign('alice')}` })), { headers: { 'x-user-id': 'alice' } });
  assert.equal(r2.status, 401);
  assert.deepEqual(JSON.parse(r2.body), { error: 'invalid token' });

  const a = await open(node.wsUrl(au(room, { token: token('alice'), _pk: 'a' })), { headers: { 'x-user-id': 'mallory' } });
  assert.deepEqual(await next(a, 0), { type: 'welcome', user: 'alice' });
  const b = await open(node.wsUrl(au(room, { token: token('bob') })));
  assert.deepEqual(await next(b, 0), { type: 'welcome', user: 'bob' });
  a.send('hello, bob');
  const said = { type: 'said', user: 'alice', text: 'hello, bob' };
  assert.deepEqual(await next(b, 1), said);
  assert.deepEqual(await next(a, 1), said);
  a.ws.send(Buffer.from('bin'), { binary: true });
  assert.deepEqual(await next(a, 2), { type: 'error', error: 'binary messages are not supported; send text' });
  b.send('x'.repeat(2001));
  assert.deepEqual(await next(b, 2), { type: 'error', error: 'a message is 1 to 2000 characters of text' });
  assert.deepEqual(types(b), ['welcome', 'said', 'error']);
  const g = await auGet(node, room, { token: token('carol') });
  assert.deepEqual(g.body, { user: 'carol', connections: 2 });
  await stopClean(node, [a, b]);
});

test('auth: partysocket passes the token as a query parameter; the user survives hibernation', T, async () => {
  const config = { parties: { secure: { ...AU.parties.secure, hibernate: true } }, timers: { idle_ms: 300 } };
  const node = await start({ shards: 1, config, env: { AUTH_SECRET: SECRET } });
  const room = 'au-ps';
  const p = party(node, { party: 'secure', room, id: 'p', query: { token: token('pat') } });
  assert.deepEqual(await p.waitJson((m) => m.type === 'welcome', 'welcome'), { type: 'welcome', user: 'pat' });
  const q = party(node, { party: 'secure', room, id: 'q', query: async () => ({ token: token('quinn') }) });
  assert.deepEqual(await q.waitJson((m) => m.type === 'welcome', 'welcome q'), { type: 'welcome', user: 'quinn' });
  await hibernated(node, 'secure', room, 2);
  p.s.send('after a nap');
  assert.deepEqual(await q.waitJson((m) => m.type === 'said', 'said at q'), { type: 'said', user: 'pat', text: 'after a nap' });
  // a PartySocket without a token never gets in
  const bad = await PartySocket.fetch({ host: node.host, party: 'secure', room, query: { token: token('pat', 'wrong') } });
  assert.equal(bad.status, 401);
  const good = await PartySocket.fetch({ host: node.host, party: 'secure', room, query: { token: token('pat') } });
  assert.deepEqual(await good.json(), { user: 'pat', connections: 2 });
  await closeAll(p, q);
  await stopClean(node);
});

test('auth: with AUTH_SECRET unset or empty every request gets 500, and the router says why once per party', T, async () => {
  const config = {
    parties: {
      secure: AU.parties.secure,
      blank: { module: mod('auth'), vars: { AUTH_SECRET: '' } },
    },
  };
  const node = await start({ config, env: { AUTH_SECRET: undefined } });
  for (const p of ['secure', 'blank']) {
    for (let i = 0; i < 3; i++) {
      const r = await node.fetch(`/parties/${p}/room-${i}?token=${token('alice')}`);
      assert.equal(r.status, 500, p);
      assert.deepEqual(await r.json(), { error: 'authentication is not configured' });
    }
    const w = await refused(node.wsUrl(`/parties/${p}/ws?token=${token('alice')}`));
    assert.equal(w.status, 500);
  }
  await waitFor(() => /AUTH_SECRET is empty/.test(node.stderr), { what: 'the log line of the blank party' });
  // the router's lines (the supervisor also warns at start that the environment variable is not set)
  const lines = node.stderr.split('\n').filter((l) => /partyd\[router \d+\].*AUTH_SECRET is/.test(l));
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.match(lines.find((l) => /not set/.test(l)), /secure/);
  assert.match(lines.find((l) => /empty/.test(l)), /blank/);
  await stopClean(node);
});

// ---- every example: quotes and backslashes in what a client sends come back as JSON that parses ------------------

test('every example: a _pk (and text) with quotes and backslashes comes back in JSON that parses', T, async () => {
  const Q = 'he said "hi" \\ then \\" and \\\\ "';
  const deepHas = (v, s) => v === s || (v !== null && typeof v === 'object' && Object.values(v).some((x) => deepHas(x, s)));
  const node = await start({
    config: { parties: { ...TC().parties, ...CO().parties, ...HS.parties, ...AU.parties } },
    env: { AUTH_SECRET: SECRET },
  });
  // typed_chat and collab: the id in what the room sends back
  for (const [p, room] of [['chat', 'q-tc'], ['collab', 'q-co']]) {
    const c = await open(wsUrl(node, p, room, Q));
    c.send(join('quoter'));
    await waitFor(() => c.messages.some((m) => deepHas(JSON.parse(m.text), Q)), { what: `${p}: the _pk back in a message` });
    if (p === 'chat') {
      c.send(chat(Q));
      await waitFor(() => c.messages.filter((m) => deepHas(JSON.parse(m.text), Q)).length >= 2, { what: 'the chat back' });
    }
    for (const m of c.messages) JSON.parse(m.text);
    await c.close();
  }
  // http_state: a state holding the string, on connect and over GET
  const st = await node.fetch(hs('q-hs'), { method: 'POST', body: JSON.stringify({ s: Q }) });
  assert.equal(st.status, 200, await st.text());
  const h = await open(wsUrl(node, 'state', 'q-hs', Q));
  assert.deepEqual(await next(h, 0), { type: 'state', state: { s: Q } });
  assert.deepEqual(await (await node.fetch(hs('q-hs'))).json(), { s: Q });
  await h.close();
  // auth: the text echoed, and its refusals
  const a = await open(node.wsUrl(au('q-au', { token: token('alice'), _pk: Q })));
  assert.deepEqual(await next(a, 0), { type: 'welcome', user: 'alice' });
  a.send(Q);
  assert.deepEqual(await next(a, 1), { type: 'said', user: 'alice', text: Q });
  await a.close();
  const refusedBody = await auGet(node, 'q-au', { _pk: Q });
  assert.deepEqual([refusedBody.status, refusedBody.body], [401, { error: 'missing token' }]);
  await stopClean(node);
});
