// durability.test.mjs — durable rooms: idle rooms are evicted and come back from storage; hibernating parties keep
// their connections (ids, tags, chat names and cursors) while out of memory; limits.rooms_in_memory; durable alarms
// (in an evicted room, across a node restart); the data directory's shard count; and nothing acknowledged is lost
// when a shard is SIGKILLed while clients write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor, sleep, Client } from './lib.mjs';
import { cleanupAfterEach, start, open, refused, stopClean, track } from './helpers.mjs';

cleanupAfterEach();

const T = { timeout: 60000 };
const DEFAULT_PARTIES = { main: { kind: 'chat' }, relay: { kind: 'relay' }, counter: { kind: 'counter' } };
const cfg = (extra = {}, parties = {}) => ({ ...extra, parties: { ...DEFAULT_PARTIES, ...parties } });

const ws = (node, party, room, pk, query = '') => node.wsUrl(`/parties/${party}/${room}?_pk=${encodeURIComponent(pk)}${query}`);

async function shardStats(node, id = 0) {
  return (await node.shards()).find((s) => s.id === id);
}
// Waits until the shard's stats satisfy pred; returns them.
function waitStats(node, id, pred, what) {
  return waitFor(async () => { const s = await shardStats(node, id); return pred(s) ? s : null; }, { timeout: 15000, what });
}

async function counter(node, room) {
  const r = await node.json(`/parties/counter/${room}`);
  assert.equal(r.status, 200, `GET counter ${room}: ${JSON.stringify(r.body)}`);
  return r.body;
}
async function bump(node, room) {
  const r = await node.json(`/parties/counter/${room}`, { method: 'POST' });
  assert.equal(r.status, 200, `POST counter ${room}: ${JSON.stringify(r.body)}`);
  return r.body.count;
}
async function chatGet(node, room, party = 'main') {
  const r = await node.json(`/parties/${party}/${room}`);
  assert.equal(r.status, 200);
  return r.body;
}
async function chatPost(node, room, content, party = 'main') {
  const r = await node.json(`/parties/${party}/${room}`, { method: 'POST', body: JSON.stringify({ content }) });
  assert.equal(r.status, 201, `POST chat ${room}: ${JSON.stringify(r.body)}`);
  return r.body;
}
const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

// A chat socket that has its welcome and state.
async function chatJoin(node, room, pk, party = 'main') {
  const c = await open(ws(node, party, room, pk));
  await waitFor(() => c.messages.length >= 2, { what: `welcome+state for ${pk}` });
  const [welcome, state] = c.json();
  assert.equal(welcome.type, 'welcome');
  assert.equal(state.type, 'state');
  return { c, state };
}

// ---- eviction ---------------------------------------------------------------------------------------------------------

test('eviction: idle counter and chat rooms leave memory after idle_ms and come back from storage intact', T, async () => {
  const node = await start({ shards: 1, config: cfg({ timers: { idle_ms: 300 } }) });
  assert.equal(await bump(node, 'ev-count'), 1);
  assert.equal(await bump(node, 'ev-count'), 2);
  assert.equal(await bump(node, 'ev-count'), 3);
  await chatPost(node, 'ev-chat', 'one');
  await chatPost(node, 'ev-chat', 'two');
  const a = await chatJoin(node, 'ev-chat', 'alice');
  a.c.send(JSON.stringify({ type: 'join', name: 'Alice' }));
  a.c.send(JSON.stringify({ type: 'chat', content: 'three' }));
  await a.c.waitJson((m) => m.type === 'chat' && m.content === 'three');
  await a.c.close();

  const s1 = await waitStats(node, 0, (s) => s.rooms === 0 && s.rooms_hibernating === 0 && s.evictions >= 2, 'both rooms evicted');
  assert.equal(s1.connections, 0);

  // woken by a request: everything is still there
  const g = await counter(node, 'ev-count');
  assert.equal(g.count, 3);
  assert.equal(g.alarmAt, null);
  assert.equal(await bump(node, 'ev-count'), 4);
  const h = await chatGet(node, 'ev-chat');
  assert.deepEqual(h.messages.map((m) => [m.senderId, m.content]), [['http', 'one'], ['http', 'two'], ['alice', 'three']]);
  assert.deepEqual(h.users, [], 'the user who left is gone');
  // and by a connection
  const b = await chatJoin(node, 'ev-chat', 'bob');
  assert.deepEqual(b.state.messages.map((m) => m.content), ['one', 'two', 'three']);
  assert.deepEqual(b.state.messages, h.messages);
  // new messages continue the stored sequence (nothing is overwritten)
  b.c.send(JSON.stringify({ type: 'chat', content: 'four' }));
  await b.c.waitJson((m) => m.type === 'chat' && m.content === 'four');
  await b.c.close();

  // a long history: the last 100 messages, oldest first, are the same from memory and from storage
  for (let i = 0; i < 120; i += 15) {
    await Promise.all(Array.from({ length: 15 }, (_, j) => chatPost(node, 'ev-long', `long-${i + j}`)));
  }
  const inMemory = (await chatGet(node, 'ev-long')).messages;
  assert.equal(inMemory.length, 100);

  // evicted again (the counter is cumulative), and still intact
  await waitStats(node, 0, (s) => s.rooms === 0 && s.evictions >= s1.evictions + 3, 'the rooms evicted again');
  assert.equal(await bump(node, 'ev-count'), 5);
  assert.deepEqual((await chatGet(node, 'ev-chat')).messages.map((m) => m.content), ['one', 'two', 'three', 'four']);
  assert.deepEqual((await chatGet(node, 'ev-long')).messages, inMemory);

  // a room of a party that does not hibernate, with an open connection, is not idle: it stays. A room touched
  // after it was (ev-fence) is evicted first, which shows the sweep has gone past it.
  const held = await chatJoin(node, 'ev-held', 'holder');
  const before = await shardStats(node);
  assert.equal(await bump(node, 'ev-fence'), 1);
  // (before.rooms counts the held room and the rooms touched above; all but the held one go, and the fence)
  const after = await waitStats(node, 0, (s) => s.rooms === 1 && s.evictions >= before.evictions + before.rooms,
    'everything but the held room evicted');
  assert.equal(after.rooms, 1, 'the held chat room is still in memory');
  assert.equal(after.rooms_hibernating, 0);
  assert.equal(after.connections, 1);
  assert.equal(held.c.closeCode, undefined);
  held.c.send(JSON.stringify({ type: 'chat', content: 'still here' }));
  await held.c.waitJson((m) => m.type === 'chat' && m.content === 'still here');
  await stopClean(node, [held.c]);
});

// ---- hibernation ------------------------------------------------------------------------------------------------------

// The shard (there is one) holds no party in memory, and `n` connections wait in a hibernating room.
const hibernated = (node, conns, what) => waitStats(node, 0, (s) => s.rooms === 0 && s.rooms_hibernating >= 1 && s.connections === conns, what);

test('hibernation: a chat room leaves memory with its connections open; users, cursors, ids survive; messages and closes wake it', T, async () => {
  const node = await start({ shards: 1, config: cfg({ timers: { idle_ms: 300 } }, { main: { kind: 'chat', hibernate: true } }) });
  const room = 'hib-chat';
  const a = await chatJoin(node, room, 'a');
  const b = await chatJoin(node, room, 'b');
  const c = await chatJoin(node, room, 'c'); // never joins: a connection, not a user
  a.c.send(JSON.stringify({ type: 'join', name: 'Alice' }));
  a.c.send(JSON.stringify({ type: 'cursor', x: 3, y: 4.5 }));
  b.c.send(JSON.stringify({ type: 'join', name: 'Bob' }));
  a.c.send(JSON.stringify({ type: 'chat', content: 'before' }));
  await c.c.waitJson((m) => m.type === 'chat' && m.content === 'before');
  const users = [{ id: 'a', name: 'Alice', cursor: { x: 3, y: 4.5 } }, { id: 'b', name: 'Bob', cursor: null }];

  const s0 = await hibernated(node, 3, 'the chat room to hibernate with 3 connections');
  assert.ok(s0.evictions >= 1);
  for (const x of [a, b, c]) assert.equal(x.c.closeCode, undefined, 'connections stay open');
  assert.deepEqual([...(await node.room('main', room)).ids].sort(), ['a', 'b', 'c']);

  // a new connection wakes it: its state has the users (names, cursors) and the history
  const d = await chatJoin(node, room, 'd');
  assert.deepEqual(d.state.users.sort(byId), users);
  assert.deepEqual(d.state.messages.map((m) => [m.senderId, m.content]), [['a', 'before']]);

  // a request wakes it
  await hibernated(node, 4, 'hibernating again with 4 connections');
  const g = await chatGet(node, room);
  assert.deepEqual(g.users.sort(byId), users);
  assert.deepEqual(g.messages.map((m) => m.content), ['before']);

  // a message wakes it: broadcast to everyone, and stored
  const s2 = await hibernated(node, 4, 'hibernating before the message');
  const marks = [a, c, d].map((x) => x.c.messages.length);
  b.c.send(JSON.stringify({ type: 'chat', content: 'after hibernation' }));
  for (const x of [a, b, c, d]) {
    const m = await x.c.waitJson((j) => j.type === 'chat' && j.content === 'after hibernation', { what: 'the chat sent after hibernation' });
    assert.equal(m.senderId, 'b');
  }
  assert.deepEqual((await chatGet(node, room)).messages.map((m) => [m.senderId, m.content]), [['a', 'before'], ['b', 'after hibernation']]);
  // the others got exactly that chat (nothing replayed, nothing else)
  [a, c, d].forEach((x, i) => assert.deepEqual(x.c.json().slice(marks[i]).map((m) => m.type), ['chat']));

  // a cursor after hibernation: still the user's id, still stored with its name
  await hibernated(node, 4, 'hibernating before the cursor');
  a.c.send(JSON.stringify({ type: 'cursor', x: -1, y: 2 }));
  assert.deepEqual(await b.c.waitJson((m) => m.type === 'cursor' && m.x === -1), { type: 'cursor', id: 'a', x: -1, y: 2 });
  users[0].cursor = { x: -1, y: 2 };

  // a joined connection closing wakes it: the others are told the user left
  const s3 = await hibernated(node, 4, 'hibernating before the close');
  assert.ok(s3.evictions > s2.evictions);
  await b.c.close();
  for (const x of [a, c, d]) assert.deepEqual(await x.c.waitJson((m) => m.type === 'user-left'), { type: 'user-left', id: 'b' });
  assert.deepEqual((await chatGet(node, room)).users.sort(byId), [users[0]]);

  // a connection that never joined closes while hibernating: nobody is told anything
  await hibernated(node, 3, 'hibernating before the unjoined close');
  const marksD = d.c.messages.length;
  await c.c.close();
  await waitStats(node, 0, (s) => s.connections === 2, 'the close to be handled');
  a.c.send(JSON.stringify({ type: 'chat', content: 'fence' }));
  await d.c.waitJson((m) => m.type === 'chat' && m.content === 'fence');
  assert.deepEqual(d.c.json().slice(marksD).map((m) => m.type), ['chat']);
  assert.deepEqual([...(await node.room('main', room)).ids].sort(), ['a', 'd']);

  // a _pk takeover of a hibernating user: the old socket gets 4000, the others user-left, the new one a fresh state
  await hibernated(node, 2, 'hibernating before the takeover');
  const marksD2 = d.c.messages.length;
  const a2 = await chatJoin(node, room, 'a');
  assert.equal((await a.c.closed).code, 4000);
  assert.deepEqual(a2.state.users, [], 'the replaced user is gone from the new state');
  assert.deepEqual(a2.state.messages.map((m) => m.content), ['before', 'after hibernation', 'fence']);
  assert.deepEqual(await d.c.waitJson((m) => m.type === 'user-left', { from: marksD2 }), { type: 'user-left', id: 'a' });
  assert.deepEqual(d.c.json().slice(marksD2).map((m) => m.type), ['user-left']);
  assert.deepEqual([...(await node.room('main', room)).ids].sort(), ['a', 'd']);
  assert.deepEqual((await chatGet(node, room)).users, []);
  await stopClean(node, [a2.c, d.c]);
});

test('hibernation: relay tags survive it — a tagged POST reaches exactly the tagged connections', T, async () => {
  const node = await start({ shards: 1, config: cfg({ timers: { idle_ms: 300 } }, { relay: { kind: 'relay', hibernate: true } }) });
  const room = 'hib-tags';
  const t1 = await open(ws(node, 'relay', room, 't1', '&tags=red,blue'));
  const t2 = await open(ws(node, 'relay', room, 't2', '&tags=blue'));
  const t3 = await open(ws(node, 'relay', room, 't3'));
  const t4 = await open(ws(node, 'relay', room, 't4', `&tags=${encodeURIComponent('grün,x y')}`));
  const all = [t1, t2, t3, t4];
  const post = async (q, body) => {
    const r = await node.json(`/parties/relay/${room}${q}`, { method: 'POST', body });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };
  // A fence: an untagged POST reaches everyone after whatever was sent before it; then each list is exact.
  const fenced = async (tag) => {
    assert.deepEqual(await post('', tag), { delivered: 4 });
    for (const c of all) await c.waitMessage((m) => m.text === tag, { what: `fence ${tag}` });
  };
  const texts = (c) => c.messages.map((m) => m.text);

  await hibernated(node, 4, 'the relay room to hibernate with 4 connections');
  assert.deepEqual(await post('?tag=blue', 'to blue'), { delivered: 2 });
  await fenced('f1');
  assert.deepEqual(texts(t1), ['to blue', 'f1']);
  assert.deepEqual(texts(t2), ['to blue', 'f1']);
  assert.deepEqual(texts(t3), ['f1']);
  assert.deepEqual(texts(t4), ['f1']);

  await hibernated(node, 4, 'hibernating again');
  assert.deepEqual(await post('?tag=red', 'to red'), { delivered: 1 });
  await hibernated(node, 4, 'hibernating again');
  assert.deepEqual(await post(`?tag=${encodeURIComponent('x y')}`, 'to x y'), { delivered: 1 });
  await hibernated(node, 4, 'hibernating again');
  assert.deepEqual(await post(`?tag=${encodeURIComponent('grün')}`, 'to grün'), { delivered: 1 });
  assert.deepEqual(await post('?tag=nobody', 'to nobody'), { delivered: 0 });
  await fenced('f2');
  assert.deepEqual(texts(t1), ['to blue', 'f1', 'to red', 'f2']);
  assert.deepEqual(texts(t2), ['to blue', 'f1', 'f2']);
  assert.deepEqual(texts(t3), ['f1', 'f2']);
  assert.deepEqual(texts(t4), ['f1', 'to x y', 'to grün', 'f2']);

  // messages between clients still go to every other connection after hibernation, and tags still hold after that
  await hibernated(node, 4, 'hibernating before a client message');
  t3.send('from t3');
  for (const c of [t1, t2, t4]) await c.waitMessage((m) => m.text === 'from t3');
  await t2.close();
  await hibernated(node, 3, 'hibernating with 3 connections');
  assert.deepEqual(await post('?tag=blue', 'blue again'), { delivered: 1 });
  await t1.waitMessage((m) => m.text === 'blue again');

  // a node stopped while the room hibernates: its connections are closed with 1001, and it exits cleanly
  await hibernated(node, 3, 'hibernating before the stop');
  const closing = Promise.all([t1, t3, t4].map((c) => c.closed));
  await stopClean(node);
  assert.deepEqual((await closing).map((c) => c.code), [1001, 1001, 1001]);
});

test('relay tags: at most 10, each at most 256 bytes; more is refused with 400', T, async () => {
  const node = await start({ shards: 1 });
  const room = 'tag-limits';
  const tags = (n, len) => Array.from({ length: n }, (_, i) => String(i).padStart(len, 't')).join(',');
  const ok = await open(ws(node, 'relay', room, 'ok', `&tags=${tags(10, 256)}`));
  const r = await node.json(`/parties/relay/${room}?tag=${'9'.padStart(256, 't')}`, { method: 'POST', body: 'hi' });
  assert.deepEqual(r.body, { delivered: 1 });
  await ok.waitMessage((m) => m.text === 'hi');
  const cases = [
    ['11 short tags', tags(11, 1)],
    ['one tag of 257 bytes', tags(1, 257)],
    ['10 tags, one of 257 bytes', `${tags(9, 256)},${'x'.repeat(257)}`],
    ['11 tags of 256 bytes', tags(11, 256)],
    ['one tag of 4000 bytes', 'y'.repeat(4000)],
  ];
  const wrong = [];
  for (const [what, list] of cases) {
    const c = await openOrRefused(ws(node, 'relay', room, `no-${wrong.length}`, `&tags=${list}`));
    if (c.status !== 400) wrong.push(`${what}: ${c.status === 101 ? 'accepted' : `refused with ${c.status}`}`);
  }
  assert.deepEqual(wrong, [], 'every tag list over the limits is refused with 400');
  assert.equal((await node.room('relay', room)).connections, 1);
  await stopClean(node, [ok]);
});

// The upgrade's outcome: {status: 101} when it opened (closed again at once), else the refusal's HTTP status.
async function openOrRefused(url) {
  const c = new Client(url);
  track(() => c.ws.terminate());
  await waitFor(() => c.unexpected || c.ws.readyState === 1 || c.closeCode !== undefined, { what: 'the upgrade to be answered' });
  if (c.ws.readyState === 1) {
    await c.close();
    return { status: 101 };
  }
  c.ws.terminate();
  return { status: c.unexpected?.status ?? `closed ${c.closeCode}` };
}

// ---- limits.rooms_in_memory -------------------------------------------------------------------------------------------

test('rooms_in_memory: at most 2 rooms in memory; least recently used idle rooms make way; 503 when none can', T, async () => {
  const node = await start({ shards: 1, config: cfg({ limits: { rooms_in_memory: 2 } }) });
  const rooms = ['cap-0', 'cap-1', 'cap-2', 'cap-3', 'cap-4'];
  const watcher = await open(ws(node, 'counter', 'cap-0', 'w')); // the counter hibernates: it can be evicted
  assert.deepEqual(await watcher.waitJson((m) => m.type === 'count'), { type: 'count', count: 0 });
  for (let round = 1; round <= 3; round++) {
    for (const r of rooms) {
      assert.equal(await bump(node, r), round, `${r} in round ${round}`);
      const s = await shardStats(node);
      assert.ok(s.rooms <= 2, `rooms in memory: ${s.rooms}`);
    }
  }
  for (const r of rooms) assert.equal((await counter(node, r)).count, 3);
  const s = await shardStats(node);
  assert.ok(s.evictions >= 13, `evictions ${s.evictions}`);
  // the watcher's room was evicted many times with it connected: it saw every count, in order
  await watcher.waitJson((m) => m.count === 3);
  assert.deepEqual(watcher.json().map((m) => m.count), [0, 1, 2, 3]);
  assert.equal(watcher.closeCode, undefined);

  // two chat rooms (not hibernating) with connections fill the shard: nothing can be evicted → 503
  const h1 = await chatJoin(node, 'cap-chat-1', 'h1');
  const h2 = await chatJoin(node, 'cap-chat-2', 'h2');
  await waitStats(node, 0, (x) => x.rooms === 2, 'the two chat rooms in memory');
  const full = await node.fetch('/parties/counter/cap-new', { method: 'POST' });
  assert.equal(full.status, 503);
  await full.arrayBuffer();
  assert.equal((await node.fetch('/parties/counter/cap-1')).status, 503);
  const res = await refused(ws(node, 'main', 'cap-chat-3', 'h3'));
  assert.equal(res.status, 503);
  // one of them empties: it can make way
  await h1.c.close();
  await waitFor(async () => (await node.fetch('/parties/counter/cap-new', { method: 'POST' })).status === 200, { what: 'room for cap-new' });
  assert.equal((await counter(node, 'cap-new')).count, 1);
  assert.equal((await counter(node, 'cap-1')).count, 3);
  // the held room stayed through all of it
  h2.c.send(JSON.stringify({ type: 'chat', content: 'alive' }));
  await h2.c.waitJson((m) => m.type === 'chat' && m.content === 'alive');
  assert.ok((await shardStats(node)).rooms <= 2);
  await stopClean(node, [h2.c, watcher]);
});

// ---- alarms -----------------------------------------------------------------------------------------------------------

test('alarms: an alarm fires in an evicted room (hibernating with a client, or gone entirely) exactly once', T, async () => {
  const node = await start({ shards: 1, config: cfg({ timers: { idle_ms: 300 } }) });
  const watcher = await open(ws(node, 'counter', 'al-watched', 'w'));
  assert.deepEqual(await watcher.waitJson((m) => m.type === 'count'), { type: 'count', count: 0 });
  const t0 = Date.now();
  const set = await node.json('/parties/counter/al-watched?alarm=1000', { method: 'POST' });
  assert.equal(set.status, 200);
  assert.equal(set.body.count, 0);
  assert.ok(set.body.alarmAt >= t0 + 1000 && set.body.alarmAt <= Date.now() + 1000, `alarmAt ${set.body.alarmAt}`);
  const alone = await node.json('/parties/counter/al-alone?alarm=1000', { method: 'POST' });
  assert.equal(alone.status, 200);
  assert.equal((await counter(node, 'al-alone')).alarmAt, alone.body.alarmAt);

  // both leave memory before their alarms are due
  const s = await waitStats(node, 0, (x) => x.rooms === 0 && x.rooms_hibernating === 1 && x.connections === 1, 'both rooms evicted');
  assert.ok(Date.now() < set.body.alarmAt, 'the rooms were evicted before the alarm (raise the alarm delay if this fails on a slow machine)');
  assert.deepEqual(watcher.json().map((m) => m.type), ['count']);
  // nothing touches the rooms now: the alarms themselves bring them back
  await waitStats(node, 0, (x) => x.rooms === 2, 'both alarms to wake their rooms');
  assert.deepEqual(await watcher.waitJson((m) => m.type === 'alarm'), { type: 'alarm', count: 1 });
  assert.ok(Date.now() >= set.body.alarmAt);
  assert.ok(s.evictions >= 2);
  for (const r of ['al-watched', 'al-alone']) {
    const g = await counter(node, r);
    assert.equal(g.count, 1, `${r} counted its alarm`);
    assert.equal(g.alarmAt, null, `${r} has no alarm left`);
  }
  // once: evicted again, nothing more fires
  await waitStats(node, 0, (x) => x.rooms === 0, 'evicted after the alarms');
  await sleep(300); // on purpose: what is asserted is that nothing more fires for a while
  assert.deepEqual(watcher.json(), [{ type: 'count', count: 0 }, { type: 'alarm', count: 1 }]);
  assert.equal((await counter(node, 'al-alone')).count, 1);
  // a POST counts as before
  assert.equal(await bump(node, 'al-watched'), 2);
  await watcher.waitJson((m) => m.type === 'count' && m.count === 2);
  await stopClean(node, [watcher]);
});

test('alarms: setting an alarm again moves it (it fires once, at the new time); alarm=0 fires at once; bad values are 400', T, async () => {
  const node = await start({ shards: 1, config: cfg({ timers: { idle_ms: 300 } }) });
  // moved earlier: fires at the new time, and the old time fires nothing
  const old = await node.json('/parties/counter/mv-earlier?alarm=1500', { method: 'POST' });
  const e = await node.json('/parties/counter/mv-earlier?alarm=200', { method: 'POST' });
  await node.json('/parties/counter/mv-fence-old?alarm=1600', { method: 'POST' }); // fires after mv-earlier's old time
  // moved later: nothing at the old time
  const first = await node.json('/parties/counter/mv-later?alarm=200', { method: 'POST' });
  const l = await node.json('/parties/counter/mv-later?alarm=3600000', { method: 'POST' });
  assert.ok(l.body.alarmAt > first.body.alarmAt);
  // at once
  const now = await node.json('/parties/counter/mv-now?alarm=0', { method: 'POST' });
  assert.equal(now.status, 200);
  await waitFor(async () => (await counter(node, 'mv-now')).count === 1, { what: 'alarm=0 to fire' });
  await waitFor(async () => (await counter(node, 'mv-earlier')).count === 1, { what: 'the moved alarm to fire' });
  assert.ok(Date.now() >= e.body.alarmAt);
  assert.equal((await counter(node, 'mv-earlier')).alarmAt, null);
  // a fence: an alarm set after mv-later's old time has fired, so the old time is past
  await node.json('/parties/counter/mv-fence?alarm=250', { method: 'POST' });
  await waitFor(async () => (await counter(node, 'mv-fence')).count === 1, { what: 'the fence alarm' });
  assert.ok(Date.now() > first.body.alarmAt);
  const later = await counter(node, 'mv-later');
  assert.equal(later.count, 0, 'the alarm moved later did not fire at its old time');
  assert.equal(later.alarmAt, l.body.alarmAt);
  // past mv-earlier's old time, nothing more fired there
  await waitFor(async () => (await counter(node, 'mv-fence-old')).count === 1, { what: 'a fence alarm after the old time' });
  assert.ok(Date.now() > old.body.alarmAt);
  assert.equal((await counter(node, 'mv-earlier')).count, 1, 'the alarm fired once');

  for (const bad of ['abc', '-1', '', '1.5', '10x']) {
    const r = await node.json(`/parties/counter/mv-bad?alarm=${bad}`, { method: 'POST' });
    assert.equal(r.status, 400, `alarm=${bad}`);
  }
  const b = await counter(node, 'mv-bad');
  assert.deepEqual([b.count, b.alarmAt], [0, null]);
  await stopClean(node);
});

test('alarms: an alarm survives a whole-node restart and fires once on the new node', T, async () => {
  const config = cfg();
  const first = await start({ shards: 2, config });
  const dir = first.dir;
  await bump(first, 'al-restart');
  const set = await first.json('/parties/counter/al-restart?alarm=1500', { method: 'POST' });
  assert.equal(set.status, 200);
  const soon = await first.json('/parties/counter/al-soon?alarm=300', { method: 'POST' }); // due while the node is down
  const later = await first.json('/parties/counter/al-later?alarm=3600000', { method: 'POST' });
  await stopClean(first);
  assert.ok(Date.now() < set.body.alarmAt, 'the node stopped before the alarm was due');

  await waitFor(() => Date.now() > soon.body.alarmAt, { what: 'al-soon to be overdue' });
  const second = await start({ shards: 2, config, dir });
  await waitFor(async () => (await counter(second, 'al-restart')).count === 2, { timeout: 15000, what: 'the alarm to fire after the restart' });
  await waitFor(async () => (await counter(second, 'al-soon')).count === 1, { what: 'the overdue alarm to fire' });
  const w = await open(ws(second, 'counter', 'al-restart', 'w'));
  assert.deepEqual(await w.waitJson((m) => m.type === 'count'), { type: 'count', count: 2 });
  assert.equal((await counter(second, 'al-restart')).alarmAt, null);
  assert.equal((await counter(second, 'al-soon')).alarmAt, null);
  const l = await counter(second, 'al-later');
  assert.equal(l.alarmAt, later.body.alarmAt, 'a far alarm is still set, at the same time');
  assert.equal(l.count, 0);
  await sleep(300); // on purpose: what is asserted is that al-restart's alarm does not fire a second time
  assert.equal((await counter(second, 'al-restart')).count, 2, 'fired once');
  assert.deepEqual(w.json(), [{ type: 'count', count: 2 }]);
  await stopClean(second, [w]);

  // and a third start does not fire it again
  const third = await start({ shards: 2, config, dir });
  assert.equal((await counter(third, 'al-restart')).count, 2);
  assert.equal((await counter(third, 'al-soon')).count, 1);
  await stopClean(third);
});

// ---- the shard count is part of the data ------------------------------------------------------------------------------

test('a node restarted with another shard count moves rooms to match; every room keeps its data', T, async () => {
  const first = await start({ shards: 2 });
  const dir = first.dir;
  const rooms = Array.from({ length: 30 }, (_, i) => `sc-${i}`);
  for (const r of rooms) assert.equal(await bump(first, r), 1);
  await chatPost(first, 'sc-chat', 'kept');
  await stopClean(first);

  // more shards, then fewer: each start moves slots until the node has the count asked for
  for (const n of [3, 1, 2]) {
    const node = await start({ shards: n, dir });
    await waitFor(() => new RegExp(`the node has the ${n} shards its configuration asks for`).test(node.stderr),
      { timeout: 20000, what: `the node to reach ${n} shards` });
    const shards = await node.shards();
    assert.equal(shards.length, n);
    assert.ok(shards.every((s) => s.state === 'up' && s.slots > 0), 'every shard is up and owns slots');
    assert.equal(shards.reduce((a, s) => a + s.slots, 0), 16384);
    const seen = new Set();
    for (const r of rooms) {
      assert.equal((await counter(node, r)).count, 1, `room ${r} kept its count with ${n} shards`);
      seen.add((await node.room('counter', r)).shard);
    }
    assert.equal(seen.size, Math.min(n, seen.size), 'rooms live on the shards there are');
    const ids = (await node.shards()).map((s) => s.id);
    for (const id of seen) assert.ok(ids.includes(id), `shard ${id} of a room is one of the node's shards`);
    assert.deepEqual((await chatGet(node, 'sc-chat')).messages.map((m) => m.content), ['kept']);
    await stopClean(node, [], { allowRestarts: true });
  }
});

// ---- SIGKILL while clients write --------------------------------------------------------------------------------------

async function killWhileWriting({ kills, config }) {
  const node = await start({ shards: 2, config });
  const chatRoom = 'crash-chat';
  const victim = (await node.room('main', chatRoom)).shard;
  // counter rooms on the same shard as the chat room
  const counters = [];
  for (let i = 0; counters.length < 3 && i < 200; i++) {
    if ((await node.room('counter', `crash-${i}`)).shard === victim) counters.push(`crash-${i}`);
  }
  assert.equal(counters.length, 3);

  let stop = false;
  const stats = Object.fromEntries(counters.map((r) => [r, { attempted: 0, acked: 0, ackedCounts: [] }]));
  const writer = async (room) => {
    const st = stats[room];
    while (!stop) {
      st.attempted++;
      let r;
      try {
        r = await node.fetch(`/parties/counter/${room}`, { method: 'POST' });
        const body = await r.text();
        if (r.status === 200) {
          st.acked++;
          st.ackedCounts.push(JSON.parse(body).count);
          continue;
        }
      } catch {}
      await sleep(20); // refused or lost while the shard is down
    }
  };

  // the chat: an HTTP writer, and a recording socket that also sends, reconnecting after every kill
  const chat = { attempted: [], acked: [], seen: new Set(), sent: [], closes: [] };
  const chatWriter = async () => {
    for (let i = 0; !stop && i < 60; i++) {
      const content = `http-${i}`;
      chat.attempted.push(content);
      try {
        const r = await node.fetch(`/parties/main/${chatRoom}`, { method: 'POST', body: JSON.stringify({ content }) });
        await r.arrayBuffer();
        if (r.status === 201) chat.acked.push(content);
        else await sleep(20);
      } catch { await sleep(20); }
      await sleep(30);
    }
  };
  let recorder = null;
  const record = async () => {
    let n = 0;
    while (!stop) {
      let c;
      try {
        c = await open(ws(node, 'main', chatRoom, 'recorder'));
      } catch {
        await sleep(50);
        continue;
      }
      recorder = c;
      c.ws.on('message', (data) => {
        const m = JSON.parse(data.toString());
        if (m.type === 'chat') chat.seen.add(m.content);
      });
      while (!stop && c.closeCode === undefined) {
        if (n < 30) {
          const content = `ws-${n++}`;
          chat.sent.push(content);
          c.send(JSON.stringify({ type: 'chat', content }));
        }
        await Promise.race([c.closed, sleep(60)]);
      }
      if (c.closeCode !== undefined) chat.closes.push(c.closeCode);
    }
  };

  const tasks = [...counters.flatMap((r) => [writer(r), writer(r)]), chatWriter(), record()];
  track(() => { stop = true; });
  const progress = () => counters.reduce((n, r) => n + stats[r].acked, 0);

  let pid = (await node.shardPidOf('main', chatRoom)).pid;
  for (let k = 0; k < kills; k++) {
    const mark = progress();
    const seen = chat.seen.size;
    await waitFor(() => progress() >= mark + 40 && chat.seen.size >= seen + 3 && recorder?.ws.readyState === 1,
      { timeout: 20000, what: `writes before kill ${k + 1}` });
    process.kill(pid, 'SIGKILL');
    const up = await waitFor(async () => {
      const s = await shardStats(node, victim);
      return s.state === 'up' && s.pid > 0 && s.pid !== pid ? s : null;
    }, { timeout: 20000, what: `the shard back after kill ${k + 1}` });
    assert.equal(up.restarts, k + 1);
    pid = up.pid;
  }
  const mark = progress();
  await waitFor(() => progress() >= mark + 15, { timeout: 20000, what: 'writes after the last restart' });
  stop = true;
  await Promise.all(tasks);

  for (const r of counters) {
    const st = stats[r];
    const { count } = await counter(node, r);
    st.final = count;
    assert.ok(st.acked > 0, `${r}: some POSTs were acknowledged`);
    assert.ok(count >= st.acked, `${r}: count ${count} < ${st.acked} acknowledged POSTs — an acknowledged write was lost`);
    assert.ok(count <= st.attempted, `${r}: count ${count} > ${st.attempted} POSTs attempted`);
    // every acknowledged count is distinct: none was handed out twice (a lost write would be counted again)
    assert.equal(new Set(st.ackedCounts).size, st.ackedCounts.length, `${r}: a count was acknowledged twice: ${st.ackedCounts}`);
    assert.ok(Math.max(...st.ackedCounts) <= count, `${r}: an acknowledged count (${Math.max(...st.ackedCounts)}) is above the final ${count}`);
  }

  const history = (await chatGet(node, chatRoom)).messages.map((m) => m.content);
  assert.ok(history.length < 100, 'the whole history fits in GET');
  const inHistory = new Set(history);
  assert.equal(inHistory.size, history.length, 'no message is in the history twice');
  for (const m of chat.seen) assert.ok(inHistory.has(m), `"${m}" was broadcast but is not in the history`);
  for (const m of chat.acked) assert.ok(inHistory.has(m), `"${m}" was acknowledged (201) but is not in the history`);
  for (const m of history) assert.ok(chat.attempted.includes(m) || chat.sent.includes(m), `"${m}" was never sent`);
  assert.ok(chat.closes.filter((c) => c === 1011).length >= 1, `the recorder was dropped by the kills: ${chat.closes}`);

  const shards = await node.shards();
  assert.equal(shards.find((s) => s.id === victim).restarts, kills);
  assert.equal(shards.find((s) => s.id !== victim).restarts, 0, 'the other shard was not touched');
  await stopClean(node, recorder && recorder.ws.readyState === 1 ? [recorder] : [], { allowRestarts: true });
  if (process.env.KILL_DEBUG) console.error(JSON.stringify({ stats: Object.fromEntries(Object.entries(stats).map(([r, x]) => [r, { attempted: x.attempted, acked: x.acked, final: x.final }])), chat: { attempted: chat.attempted.length, acked: chat.acked.length, seen: chat.seen.size, sent: chat.sent.length, closes: chat.closes } }));
  return { stats, chat };
}

test('a shard SIGKILLed 4 times while clients write loses nothing it acknowledged', { timeout: 90000 }, async () => {
  await killWhileWriting({ kills: 4 });
});

test('with "durability": "relaxed" a SIGKILLed shard (a process crash) loses nothing acknowledged either', { timeout: 90000 }, async () => {
  await killWhileWriting({ kills: 2, config: cfg({ durability: 'relaxed' }) });
});

// ---- counter increments over WebSocket ----------------------------------------------------------------------------------

// The next {"type":"count"} message of c after index `from`.
async function nextCount(c, from, what) {
  const m = await c.waitMessage((m) => !m.binary && JSON.parse(m.text).type === 'count', { from, what });
  return JSON.parse(m.text).count;
}

test('counter: "increment" over WebSocket counts, stores and tells every connection; anything else is an error', T, async () => {
  const node = await start({ config: cfg() });
  const dir = node.dir;
  const a = await open(ws(node, 'counter', 'ws-inc', 'a'));
  const b = await open(ws(node, 'counter', 'ws-inc', 'b'));
  assert.equal(await nextCount(a, 0, 'a: the count on connect'), 0);
  assert.equal(await nextCount(b, 0, 'b: the count on connect'), 0);
  for (let i = 1; i <= 50; i++) {
    const from = a.messages.length;
    a.send('increment');
    assert.equal(await nextCount(a, from, `a: the acknowledgement of increment ${i}`), i);
  }
  await waitFor(() => b.json().filter((m) => m.type === 'count').length === 51, { what: 'b to see all 50 counts' });
  assert.deepEqual(b.json().filter((m) => m.type === 'count').map((m) => m.count), Array.from({ length: 51 }, (_, i) => i));
  // anything else: an error to the sender only, nothing counted
  for (const wrong of ['hello', 'increment ', 'INCREMENT', Buffer.from('increment')]) {
    const from = a.messages.length;
    a.send(wrong);
    const err = await a.waitJson((m) => m.type === 'error', { from, what: `the error for ${JSON.stringify(String(wrong))}` });
    assert.match(err.error, /increment/);
  }
  assert.equal((await counter(node, 'ws-inc')).count, 50);
  assert.equal(b.json().filter((m) => m.type === 'error').length, 0, 'errors go to the sender only');
  // stored: a new node on the same directory has it
  await stopClean(node, [a, b]);
  const again = await start({ config: cfg(), dir });
  assert.equal((await counter(again, 'ws-inc')).count, 50);
  await stopClean(again);
});

test('counter: no acknowledged WebSocket increment is lost when its shard is SIGKILLed', { timeout: 60000 }, async () => {
  const node = await start({ config: cfg() });
  const room = 'ws-inc-kill';
  const acked = [];
  let stop = false;
  track(() => { stop = true; });
  // one client at a time, closed loop, reconnecting after the kill
  const writer = (async () => {
    while (!stop) {
      let c;
      try {
        c = await open(ws(node, 'counter', room, `w${acked.length}`));
      } catch {
        await sleep(50);
        continue;
      }
      try {
        await nextCount(c, 0, 'the count on connect');
      } catch {
        c.terminate();
        continue;
      }
      while (!stop && c.closeCode === undefined) {
        const from = c.messages.length;
        c.send('increment');
        const got = await Promise.race([nextCount(c, from, 'an acknowledgement').catch(() => null), c.closed.then(() => null)]);
        if (got === null) break;
        acked.push(got);
      }
      if (c.closeCode === undefined) await c.close();
    }
  })();
  await waitFor(() => acked.length >= 100, { timeout: 20000, what: '100 acknowledged increments' });
  const { pid } = await node.shardPidOf('counter', room);
  process.kill(pid, 'SIGKILL');
  const mark = acked.length;
  await waitFor(() => acked.length >= mark + 100, { timeout: 30000, what: '100 more after the restart' });
  stop = true;
  await writer;
  const { count } = await counter(node, room);
  assert.equal(new Set(acked).size, acked.length, 'no count was acknowledged twice');
  assert.ok(Math.max(...acked) <= count, `an acknowledged count (${Math.max(...acked)}) is above the stored ${count}`);
  assert.ok(count >= acked.length, `stored ${count} < ${acked.length} acknowledged increments: an acknowledged write was lost`);
  await stopClean(node, [], { allowRestarts: true });
});
