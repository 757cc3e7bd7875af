// chat.test.mjs — the chat party (party `main`, also at /party/:room): welcome/state, join, cursor, chat, errors,
// user-left, _pk takeover, HTTP GET/POST and the 100-message history.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from './lib.mjs';
import { cleanupAfterEach, start, open, stopClean } from './helpers.mjs';

cleanupAfterEach();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

function chatUrl(node, room, pk, { short = false } = {}) {
  const base = short ? `/party/${room}` : `/parties/main/${room}`;
  return node.wsUrl(pk === undefined ? base : `${base}?_pk=${encodeURIComponent(pk)}`);
}

// Opens a chat socket and waits for its welcome and state.
async function join(node, room, pk, opts) {
  const c = await open(chatUrl(node, room, pk, opts));
  await waitFor(() => c.messages.length >= 2, { what: `welcome+state for ${pk}` });
  const [welcome, state] = c.json();
  return { c, welcome, state };
}

// The next JSON message of `c` after the first `from` messages.
async function next(c, from, what = 'a message') {
  await waitFor(() => c.messages.length > from, { what });
  const m = c.messages[from];
  assert.equal(m.binary, false, 'the server sent a binary frame');
  return JSON.parse(m.text);
}

// Sends a chat message from `from` and waits for every client in `to` to see it (a fence: the room handled
// everything sent before it).
async function fence(from, to, content) {
  from.send(JSON.stringify({ type: 'chat', content }));
  for (const c of to) await c.waitJson((m) => m.type === 'chat' && m.content === content, { what: `fence ${content}` });
}


const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

function assertTimestamp(ts, t0) {
  assert.ok(Number.isInteger(ts), `timestamp ${ts} is an integer`);
  assert.ok(ts >= t0 - 1000 && ts <= Date.now() + 1000, `timestamp ${ts} is about now (${t0})`);
}

test('chat: welcome then state on connect; id is _pk or a fresh UUID; /party/:room is the same room', async () => {
  const node = await start();
  const room = 'welcome-room';
  const a = await join(node, room, 'alice');
  assert.deepEqual(a.welcome, { type: 'welcome', id: 'alice' });
  assert.deepEqual(a.state, { type: 'state', users: [], messages: [] });

  const anon1 = await join(node, room);
  const anon2 = await join(node, room);
  assert.equal(anon1.welcome.type, 'welcome');
  assert.match(anon1.welcome.id, UUID);
  assert.match(anon2.welcome.id, UUID);
  assert.notEqual(anon1.welcome.id, anon2.welcome.id);
  // an empty _pk is as good as none
  const anon3 = await join(node, room, '');
  assert.match(anon3.welcome.id, UUID);
  const info = await node.room('main', room);
  assert.deepEqual([...info.ids].sort(), ['alice', anon1.welcome.id, anon2.welcome.id, anon3.welcome.id].sort());

  // a message sent on /parties/main/ROOM shows up in the state of a socket on /party/ROOM, and vice versa
  await fence(a.c, [a.c], 'via parties');
  const s = await join(node, room, 'short', { short: true });
  assert.deepEqual(s.welcome, { type: 'welcome', id: 'short' });
  assert.deepEqual(s.state.messages.map((m) => m.content), ['via parties']);
  await fence(s.c, [a.c, s.c], 'via party');
  const got = await node.json(`/party/${room}`);
  assert.equal(got.status, 200);
  assert.deepEqual(got.body.messages.map((m) => [m.senderId, m.content]), [['alice', 'via parties'], ['short', 'via party']]);
  assert.deepEqual((await node.json(`/parties/main/${room}`)).body, got.body);
  await stopClean(node, [a.c, anon1.c, anon2.c, anon3.c, s.c]);
});

test('chat: join broadcasts user-joined to all; a second join renames and keeps the cursor', async () => {
  const node = await start();
  const room = 'join-room';
  const a = await join(node, room, 'a');
  const b = await join(node, room, 'b');

  a.c.send(JSON.stringify({ type: 'join', name: 'Alice' }));
  const want = { type: 'user-joined', user: { id: 'a', name: 'Alice', cursor: null } };
  assert.deepEqual(await next(a.c, 2, 'user-joined at the sender'), want);
  assert.deepEqual(await next(b.c, 2, 'user-joined at the other'), want);

  // a later connection sees the joined user (and not the unjoined b) in its state
  const c = await join(node, room, 'c');
  assert.deepEqual(c.state.users, [{ id: 'a', name: 'Alice', cursor: null }]);

  a.c.send(JSON.stringify({ type: 'cursor', x: 1, y: 2.5 }));
  assert.deepEqual(await next(b.c, 3, 'cursor'), { type: 'cursor', id: 'a', x: 1, y: 2.5 });
  a.c.send(JSON.stringify({ type: 'join', name: 'Alicia' }));
  const renamed = { type: 'user-joined', user: { id: 'a', name: 'Alicia', cursor: { x: 1, y: 2.5 } } };
  for (const [cl, at] of [[a.c, 3], [b.c, 4], [c.c, 3]]) assert.deepEqual(await next(cl, at, 'rename'), renamed);

  const d = await join(node, room, 'd');
  assert.deepEqual(d.state.users, [{ id: 'a', name: 'Alicia', cursor: { x: 1, y: 2.5 } }]);
  const g = await node.json(`/parties/main/${room}`);
  assert.deepEqual(g.body.users, [{ id: 'a', name: 'Alicia', cursor: { x: 1, y: 2.5 } }]);

  // names are 1..64 code points, counted as code points: 64 emoji (256 bytes, 128 UTF-16 units) is fine
  const emoji = '🎉'.repeat(64);
  b.c.send(JSON.stringify({ type: 'join', name: emoji }));
  assert.deepEqual(await next(b.c, 5, 'emoji join'), { type: 'user-joined', user: { id: 'b', name: emoji, cursor: null } });
  const ascii64 = 'n'.repeat(64);
  c.c.send(JSON.stringify({ type: 'join', name: ascii64 }));
  await b.c.waitJson((m) => m.type === 'user-joined' && m.user.id === 'c' && m.user.name === ascii64, { what: '64-char name' });
  const mixed = 'é' + '日'.repeat(62) + '🚀'; // 64 code points of 2-, 3- and 4-byte UTF-8
  d.c.send(JSON.stringify({ type: 'join', name: mixed }));
  await b.c.waitJson((m) => m.type === 'user-joined' && m.user.id === 'd' && m.user.name === mixed, { what: 'mixed name' });
  const users = (await node.json(`/parties/main/${room}`)).body.users.sort(byId);
  assert.deepEqual(users, [
    { id: 'a', name: 'Alicia', cursor: { x: 1, y: 2.5 } },
    { id: 'b', name: emoji, cursor: null },
    { id: 'c', name: ascii64, cursor: null },
    { id: 'd', name: mixed, cursor: null },
  ]);
  await stopClean(node, [a.c, b.c, c.c, d.c]);
});

test('chat: cursor goes to the others only, is stored when joined, and needs finite numbers', async () => {
  const node = await start();
  const room = 'cursor-room';
  const a = await join(node, room, 'a');
  const b = await join(node, room, 'b');
  a.c.send(JSON.stringify({ type: 'join', name: 'A' }));
  await b.c.waitJson((m) => m.type === 'user-joined', { what: 'join' });
  const aBase = 3; // welcome, state, user-joined

  a.c.send('{"type":"cursor","x":10,"y":-20.25}');
  assert.deepEqual(await next(b.c, 3, 'cursor at b'), { type: 'cursor', id: 'a', x: 10, y: -20.25 });
  // an unjoined connection's cursor is still broadcast to the others, but it is no user
  b.c.send('{"type":"cursor","x":0,"y":3}');
  assert.deepEqual(await next(a.c, aBase, 'cursor at a'), { type: 'cursor', id: 'b', x: 0, y: 3 });
  a.c.send('{"type":"cursor","x":1e3,"y":0.5}');
  assert.deepEqual(await next(b.c, 4, 'second cursor'), { type: 'cursor', id: 'a', x: 1000, y: 0.5 });

  // the sender got none of its own cursors back
  await fence(b.c, [a.c, b.c], 'fence-1');
  assert.deepEqual(a.c.json().slice(aBase).map((m) => m.type), ['cursor', 'chat']);
  assert.deepEqual(b.c.json().slice(3).map((m) => m.type), ['cursor', 'cursor', 'chat']);

  const c = await join(node, room, 'c');
  assert.deepEqual(c.state.users, [{ id: 'a', name: 'A', cursor: { x: 1000, y: 0.5 } }]);

  // not finite numbers: error to the sender only, nothing stored or broadcast
  const bad = [
    '{"type":"cursor","x":"1","y":2}',
    '{"type":"cursor","x":1}',
    '{"type":"cursor","y":1}',
    '{"type":"cursor","x":null,"y":1}',
    '{"type":"cursor","x":1,"y":true}',
    '{"type":"cursor","x":[1],"y":{}}',
    '{"type":"cursor","x":1e400,"y":0}',
    '{"type":"cursor","x":0,"y":-1e999}',
  ];
  let at = a.c.messages.length;
  for (const text of bad) {
    a.c.send(text);
    const m = await next(a.c, at++, `error for ${text}`);
    assert.equal(m.type, 'error', `reply to ${text}: ${JSON.stringify(m)}`);
    assert.equal(typeof m.error, 'string');
    assert.ok(m.error.length > 0);
  }
  const bBefore = b.c.messages.length, cBefore = c.c.messages.length;
  await fence(a.c, [a.c, b.c, c.c], 'fence-2');
  assert.equal(b.c.messages.length, bBefore + 1, 'a bad cursor was broadcast');
  assert.equal(c.c.messages.length, cBefore + 1, 'a bad cursor was broadcast');
  assert.deepEqual((await node.json(`/parties/main/${room}`)).body.users, [{ id: 'a', name: 'A', cursor: { x: 1000, y: 0.5 } }]);
  await stopClean(node, [a.c, b.c, c.c]);
});

// Waits for `peer` to get its next message after `peerFrom`, failing at once (with the reason) when `sender` gets an
// error instead.
async function delivered(sender, senderFrom, peer, peerFrom, what) {
  const errorAt = () => sender.json().slice(senderFrom).find((m) => m.type === 'error');
  await waitFor(() => peer.messages.length > peerFrom || errorAt(), { what });
  assert.equal(errorAt(), undefined, `${what}: the sender got an error`);
  return next(peer, peerFrom, what);
}

// JSON.stringify writes 2**64 as the integer 18446744073709552000: valid JSON and a finite number.
test('chat: integers beyond 64 bits, as JavaScript writes them, are finite numbers', async () => {
  const node = await start();
  const room = 'js-bigint-room';
  const a = await join(node, room, 'a');
  const b = await join(node, room, 'b');
  const text = JSON.stringify({ type: 'cursor', x: 2 ** 64, y: 1e20 });
  assert.equal(text, '{"type":"cursor","x":18446744073709552000,"y":100000000000000000000}');
  a.c.send(text);
  assert.deepEqual(await delivered(a.c, 2, b.c, 2, 'cursor with big integers'), { type: 'cursor', id: 'a', x: 2 ** 64, y: 1e20 });
  a.c.send(JSON.stringify({ type: 'chat', content: 'extra member', seq: 12345678901234567890 }));
  const extra = await delivered(a.c, 2, b.c, 3, 'chat with a big integer member');
  assert.equal(extra.content, 'extra member');
  await stopClean(node, [a.c, b.c]);
});

// JSON.stringify writes U+0000 as \u0000: valid JSON, and a code point of the name or content.
test('chat: U+0000 is a code point like any other in names and content', async () => {
  const node = await start();
  const room = 'js-nul-room';
  const a = await join(node, room, 'a');
  const b = await join(node, room, 'b');
  a.c.send(JSON.stringify({ type: 'chat', content: 'nul \u0000 inside' }));
  const chat = await delivered(a.c, 2, b.c, 2, 'chat with U+0000');
  assert.deepEqual([chat.type, chat.content], ['chat', 'nul \u0000 inside']);
  a.c.send(JSON.stringify({ type: 'join', name: 'A\u0000B' }));
  const joined = await delivered(a.c, 3, b.c, 3, 'join with U+0000');
  assert.deepEqual(joined, { type: 'user-joined', user: { id: 'a', name: 'A\u0000B', cursor: null } });
  const p = await node.json(`/parties/main/${room}`, { method: 'POST', body: JSON.stringify({ content: '\u0000' }) });
  assert.equal(p.status, 201, JSON.stringify(p.body));
  assert.equal(p.body.content, '\u0000');
  await stopClean(node, [a.c, b.c]);
});

test('chat: chat messages go to everyone including the sender and are kept', async () => {
  const node = await start();
  const room = 'chat-room';
  const a = await join(node, room, 'a');
  const b = await join(node, room, 'b');
  const t0 = Date.now();
  a.c.send(JSON.stringify({ type: 'chat', content: 'hello, world' }));
  const atA = await next(a.c, 2, 'chat at sender');
  const atB = await next(b.c, 2, 'chat at other');
  assert.deepEqual(atA, atB);
  assert.deepEqual(Object.keys(atA).sort(), ['content', 'senderId', 'timestamp', 'type']);
  assert.equal(atA.type, 'chat');
  assert.equal(atA.senderId, 'a');
  assert.equal(atA.content, 'hello, world');
  assertTimestamp(atA.timestamp, t0);

  // 4096 code points of 4-byte UTF-8 is fine (16 KiB, 8192 UTF-16 units)
  const long = '😀'.repeat(4096);
  b.c.send(JSON.stringify({ type: 'chat', content: long }));
  const l = await next(a.c, 3, 'long chat');
  assert.equal(l.senderId, 'b');
  assert.equal(l.content, long);
  const odd = 'line1\nline2\t"quoted" \\ \u0001 ✓';
  b.c.send(JSON.stringify({ type: 'chat', content: odd }));
  assert.equal((await next(a.c, 4, 'odd chat')).content, odd);

  const c = await join(node, room, 'c');
  assert.deepEqual(c.state.messages, [
    { senderId: 'a', content: 'hello, world', timestamp: atA.timestamp },
    { senderId: 'b', content: long, timestamp: l.timestamp },
    { senderId: 'b', content: odd, timestamp: c.state.messages[2]?.timestamp },
  ]);
  assertTimestamp(c.state.messages[2].timestamp, t0);
  assert.ok(c.state.messages[0].timestamp <= c.state.messages[1].timestamp);
  assert.ok(c.state.messages[1].timestamp <= c.state.messages[2].timestamp);
  const g = await node.json(`/parties/main/${room}`);
  assert.deepEqual(g.body.messages, c.state.messages);
  await stopClean(node, [a.c, b.c, c.c]);
});

test('chat: anything else gets an error to the sender only, and nothing is kept or broadcast', async () => {
  const node = await start();
  const room = 'error-room';
  const a = await join(node, room, 'a');
  const b = await join(node, room, 'b');
  const bad = [
    'not json',
    '{"type":"chat","content":"unterminated"',
    '',
    '[1,2]',
    '"a string"',
    '42',
    'null',
    '{}',
    '{"type":5}',
    '{"type":null,"content":"x"}',
    '{"type":"dance"}',
    '{"type":"JOIN","name":"caps"}',
    '{"type":"join"}',
    '{"type":"join","name":""}',
    '{"type":"join","name":5}',
    '{"type":"join","name":["x"]}',
    JSON.stringify({ type: 'join', name: 'n'.repeat(65) }),
    JSON.stringify({ type: 'join', name: '🎉'.repeat(65) }),
    '{"type":"chat"}',
    '{"type":"chat","content":""}',
    '{"type":"chat","content":7}',
    '{"type":"chat","content":null}',
    JSON.stringify({ type: 'chat', content: 'c'.repeat(4097) }),
    JSON.stringify({ type: 'chat', content: '日'.repeat(4097) }),
    Buffer.from(JSON.stringify({ type: 'chat', content: 'as binary' })),
    Buffer.from(JSON.stringify({ type: 'join', name: 'as binary' })),
  ];
  let at = 2;
  for (const m of bad) {
    a.c.send(m);
    const reply = await next(a.c, at++, `error for ${String(m).slice(0, 40)}`);
    assert.equal(reply.type, 'error', `reply to ${String(m).slice(0, 60)}: ${JSON.stringify(reply).slice(0, 200)}`);
    assert.deepEqual(Object.keys(reply).sort(), ['error', 'type']);
    assert.equal(typeof reply.error, 'string');
    assert.ok(reply.error.length > 0);
  }
  // b got none of it; a is not joined; nothing is in the history
  await fence(b.c, [a.c, b.c], 'fence');
  assert.equal(a.c.messages.length, 2 + bad.length + 1);
  assert.deepEqual(b.c.json().map((m) => m.type), ['welcome', 'state', 'chat']);
  const g = await node.json(`/parties/main/${room}`);
  assert.deepEqual(g.body.users, []);
  assert.deepEqual(g.body.messages.map((m) => m.content), ['fence']);
  // and the connection is still fine
  a.c.send(JSON.stringify({ type: 'join', name: 'still here' }));
  await b.c.waitJson((m) => m.type === 'user-joined' && m.user.id === 'a', { what: 'join after errors' });
  await stopClean(node, [a.c, b.c]);
});

test('chat: a joined connection that closes is announced with user-left to the others', async () => {
  const node = await start();
  const room = 'left-room';
  const a = await join(node, room, 'a');
  const b = await join(node, room, 'b');
  const c = await join(node, room, 'c'); // never joins
  const d = await join(node, room, 'd');
  for (const [cl, name] of [[a.c, 'A'], [b.c, 'B'], [d.c, 'D']]) {
    cl.send(JSON.stringify({ type: 'join', name }));
    await b.c.waitJson((m) => m.type === 'user-joined' && m.user.name === name, { what: `join ${name}` });
  }

  await c.c.close(); // not joined: no user-left
  await waitFor(async () => (await node.room('main', room)).connections === 3, { what: 'c to be gone' });
  const bAt = b.c.messages.length;
  await a.c.close();
  assert.deepEqual(await next(b.c, bAt, 'user-left at b'), { type: 'user-left', id: 'a' });
  await d.c.waitJson((m) => m.type === 'user-left' && m.id === 'a', { what: 'user-left at d' });
  // an abrupt disconnect is a close too
  await d.c.terminate();
  assert.deepEqual(await next(b.c, bAt + 1, 'user-left for d'), { type: 'user-left', id: 'd' });

  const e = await join(node, room, 'e');
  assert.deepEqual(e.state.users, [{ id: 'b', name: 'B', cursor: null }]);
  assert.deepEqual((await node.json(`/parties/main/${room}`)).body.users, [{ id: 'b', name: 'B', cursor: null }]);
  await fence(e.c, [b.c], 'fence');
  assert.deepEqual(b.c.json().filter((m) => m.type === 'user-left').map((m) => m.id), ['a', 'd'], 'a user-left for the unjoined c');
  await stopClean(node, [b.c, e.c]);
});

test('chat: a _pk takeover closes the old socket with 4000, user-left, then welcome+state for the new one', async () => {
  const node = await start();
  const room = 'takeover-room';
  const watcher = await join(node, room, 'watcher');
  watcher.c.send(JSON.stringify({ type: 'join', name: 'W' }));
  const old = await join(node, room, 'dup');
  old.c.send(JSON.stringify({ type: 'join', name: 'First' }));
  old.c.send(JSON.stringify({ type: 'cursor', x: 5, y: 6 }));
  await watcher.c.waitJson((m) => m.type === 'cursor' && m.id === 'dup', { what: 'cursor of dup' });
  const wAt = watcher.c.messages.length;

  const fresh = await join(node, room, 'dup');
  const { code } = await old.c.closed;
  assert.equal(code, 4000);
  assert.deepEqual(fresh.welcome, { type: 'welcome', id: 'dup' });
  assert.deepEqual(fresh.state.users, [{ id: 'watcher', name: 'W', cursor: null }], 'the old user is gone from the new state');
  assert.deepEqual(await next(watcher.c, wAt, 'user-left of the old socket'), { type: 'user-left', id: 'dup' });
  const info = await node.room('main', room);
  assert.equal(info.connections, 2);
  assert.deepEqual([...info.ids].sort(), ['dup', 'watcher']);

  // the new socket works, and was never told about the old one's departure
  fresh.c.send(JSON.stringify({ type: 'join', name: 'Second' }));
  assert.deepEqual(await next(watcher.c, wAt + 1, 'the new join'),
    { type: 'user-joined', user: { id: 'dup', name: 'Second', cursor: null } });
  await fence(watcher.c, [fresh.c], 'fence-1');
  assert.deepEqual(fresh.c.json().map((m) => m.type), ['welcome', 'state', 'user-joined', 'chat']);

  // a takeover of a connection that never joined announces nothing
  const quiet = await join(node, room, 'quiet');
  const wAt2 = watcher.c.messages.length;
  const quiet2 = await join(node, room, 'quiet');
  assert.equal((await quiet.c.closed).code, 4000);
  assert.deepEqual(quiet2.welcome, { type: 'welcome', id: 'quiet' });
  await fence(quiet2.c, [watcher.c], 'fence-2');
  assert.deepEqual(watcher.c.json().slice(wAt2).map((m) => m.type), ['chat']);

  // the same _pk in another room is no takeover
  const elsewhere = await join(node, `${room}-2`, 'dup');
  // a fence on fresh's own socket: a close sent when the other room took the id would have come before it
  await fence(fresh.c, [watcher.c, fresh.c], 'fence-3');
  assert.equal(fresh.c.closeCode, undefined, 'a socket in another room was closed');
  await stopClean(node, [watcher.c, fresh.c, quiet2.c, elsewhere.c]);
});

test('chat: HTTP GET lists users and messages; POST appends as "http"; bad bodies 400; other methods 405', async () => {
  const node = await start();
  const room = 'http-room';
  let g = await node.json(`/parties/main/${room}`);
  assert.equal(g.status, 200);
  assert.match(g.headers.get('content-type'), /^application\/json/);
  assert.deepEqual(g.body, { users: [], messages: [] });

  const a = await join(node, room, 'a');
  a.c.send(JSON.stringify({ type: 'join', name: 'Ann' }));
  await a.c.waitJson((m) => m.type === 'user-joined', { what: 'join' });

  const t0 = Date.now();
  const p = await node.json(`/parties/main/${room}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ content: 'posted ✓' }) });
  assert.equal(p.status, 201);
  assert.match(p.headers.get('content-type'), /^application\/json/);
  assert.deepEqual(Object.keys(p.body).sort(), ['content', 'senderId', 'timestamp']);
  assert.equal(p.body.senderId, 'http');
  assert.equal(p.body.content, 'posted ✓');
  assertTimestamp(p.body.timestamp, t0);
  assert.deepEqual(await next(a.c, 3, 'the POSTed chat'), { type: 'chat', ...p.body });

  // extra members are fine; 4096 code points is fine
  const long = '🎉'.repeat(4096);
  const p2 = await node.json(`/party/${room}`, { method: 'POST', body: JSON.stringify({ content: long, extra: 1 }) });
  assert.equal(p2.status, 201);
  assert.equal(p2.body.content, long);

  g = await node.json(`/parties/main/${room}`);
  assert.deepEqual(g.body, { users: [{ id: 'a', name: 'Ann', cursor: null }], messages: [p.body, p2.body] });

  const bad = ['', 'not json', '[]', '"x"', 'null', '{}', '{"content":""}', '{"content":5}', '{"content":null}',
    '{"text":"wrong key"}', JSON.stringify({ content: 'x'.repeat(4097) })];
  for (const body of bad) {
    const r = await node.json(`/parties/main/${room}`, { method: 'POST', body });
    assert.equal(r.status, 400, `POST ${body.slice(0, 30)}`);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assert.equal(typeof r.body.error, 'string');
    assert.ok(r.body.error.length > 0);
  }
  for (const method of ['PUT', 'DELETE', 'PATCH']) {
    const r = await node.json(`/parties/main/${room}`, { method, body: method === 'DELETE' ? undefined : '{"content":"x"}' });
    assert.equal(r.status, 405, method);
    assert.equal(typeof r.body.error, 'string');
  }
  assert.deepEqual((await node.json(`/parties/main/${room}`)).body.messages, [p.body, p2.body], 'a bad request changed the history');
  await fence(a.c, [a.c], 'fence');
  assert.deepEqual(a.c.json().slice(3).map((m) => m.content), ['posted ✓', long, 'fence'], 'a bad request was broadcast');
  await stopClean(node, [a.c]);
});

test('chat: the history keeps the last 100 messages, oldest first', async () => {
  const node = await start();
  const room = 'history-room';
  const a = await join(node, room, 'a');
  for (let i = 0; i < 104; ++i) a.c.send(JSON.stringify({ type: 'chat', content: `m${i}` }));
  await waitFor(() => a.c.messages.length >= 2 + 104, { what: '104 chat echoes' });
  const p = await node.json(`/parties/main/${room}`, { method: 'POST', body: JSON.stringify({ content: 'm104' }) });
  assert.equal(p.status, 201);
  await waitFor(() => a.c.messages.length >= 2 + 105, { what: '105 chat echoes' });
  const echoes = a.c.json().slice(2);
  assert.deepEqual(echoes.map((m) => m.content), Array.from({ length: 105 }, (_, i) => `m${i}`));

  const want = echoes.slice(5).map(({ senderId, content, timestamp }) => ({ senderId, content, timestamp }));
  assert.equal(want.length, 100);
  assert.equal(want[99].senderId, 'http');
  const b = await join(node, room, 'b');
  assert.deepEqual(b.state.messages, want);
  for (let i = 1; i < 100; ++i) assert.ok(want[i - 1].timestamp <= want[i].timestamp, 'timestamps go forward');
  const g = await node.json(`/parties/main/${room}`);
  assert.deepEqual(g.body.messages, want);

  // one more pushes the next oldest out
  b.c.send(JSON.stringify({ type: 'chat', content: 'm105' }));
  await a.c.waitJson((m) => m.content === 'm105', { what: 'm105' });
  const g2 = await node.json(`/parties/main/${room}`);
  assert.equal(g2.body.messages.length, 100);
  assert.equal(g2.body.messages[0].content, 'm6');
  assert.equal(g2.body.messages[99].content, 'm105');
  await stopClean(node, [a.c, b.c]);
});

test('chat: the user list in state is the joined, open connections with names and cursors', async () => {
  const node = await start();
  const room = 'users-room';
  const a = await join(node, room, 'ua');
  const b = await join(node, room, 'ub');
  const c = await join(node, room, 'uc');
  const x = await join(node, room, 'ux'); // connected, never joins
  a.c.send(JSON.stringify({ type: 'join', name: 'Ada' }));
  b.c.send(JSON.stringify({ type: 'join', name: 'Bob' }));
  c.c.send(JSON.stringify({ type: 'join', name: 'Cy' }));
  b.c.send(JSON.stringify({ type: 'cursor', x: -3, y: 4.75 }));
  c.c.send(JSON.stringify({ type: 'cursor', x: 9, y: 9 }));
  await x.c.waitJson((m) => m.type === 'cursor' && m.id === 'uc', { what: 'the cursor of uc' });

  let s = await join(node, room, 'probe1');
  assert.deepEqual(s.state.users.sort(byId), [
    { id: 'ua', name: 'Ada', cursor: null },
    { id: 'ub', name: 'Bob', cursor: { x: -3, y: 4.75 } },
    { id: 'uc', name: 'Cy', cursor: { x: 9, y: 9 } },
  ]);
  await s.c.close();

  await c.c.close();
  await x.c.waitJson((m) => m.type === 'user-left' && m.id === 'uc', { what: 'uc to leave' });
  s = await join(node, room, 'probe2');
  assert.deepEqual(s.state.users.sort(byId), [
    { id: 'ua', name: 'Ada', cursor: null },
    { id: 'ub', name: 'Bob', cursor: { x: -3, y: 4.75 } },
  ]);
  // the same id coming back is a new, unjoined user
  const c2 = await join(node, room, 'uc');
  assert.ok(!c2.state.users.some((u) => u.id === 'uc'));
  assert.deepEqual((await node.json(`/parties/main/${room}`)).body.users.sort(byId), s.state.users);
  await stopClean(node, [a.c, b.c, x.c, s.c, c2.c]);
});
