// partysocket.test.mjs — the real `partysocket` client against partyd: default party, party/prefix/path/query
// options, PartySocket.fetch, and reconnection after the room's shard is killed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import { waitFor } from './lib.mjs';
import { cleanupAfterEach, start, refused, stopClean, partySocket, closeAll } from './helpers.mjs';

cleanupAfterEach();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

const party = (node, opts) => partySocket(node, opts, { binaryType: 'arraybuffer' });

test('partysocket: the default party is main (chat); welcome carries socket.id', async () => {
  const node = await start();
  const room = 'ps-default';
  const a = party(node, { room, id: 'ps-alice' });
  assert.equal(a.s.id, 'ps-alice');
  const w = await a.waitJson((m) => m.type === 'welcome', 'welcome');
  assert.deepEqual(w, { type: 'welcome', id: a.s.id });
  assert.match(a.urls[0], new RegExp(`^ws://127\\.0\\.0\\.1:${node.port}/parties/main/${room}\\?_pk=ps-alice$`));
  assert.deepEqual(a.json()[1], { type: 'state', users: [], messages: [] });

  // without an id, partysocket makes a UUID and the server uses it
  const b = party(node, { room });
  assert.match(b.s.id, UUID);
  assert.deepEqual(await b.waitJson((m) => m.type === 'welcome', 'welcome b'), { type: 'welcome', id: b.s.id });

  a.s.send(JSON.stringify({ type: 'join', name: 'Alice' }));
  a.s.send(JSON.stringify({ type: 'chat', content: 'hello via partysocket' }));
  const m = await b.waitJson((x) => x.type === 'chat', 'chat at b');
  assert.equal(m.senderId, 'ps-alice');
  assert.equal(m.content, 'hello via partysocket');
  assert.deepEqual((await b.waitJson((x) => x.type === 'user-joined', 'join at b')).user, { id: 'ps-alice', name: 'Alice', cursor: null });
  const info = await node.room('main', room);
  assert.deepEqual([...info.ids].sort(), [b.s.id, 'ps-alice'].sort());
  await closeAll(a, b);
  await stopClean(node);
});

test('partysocket: party "relay" between two PartySockets, text and binary', async () => {
  const node = await start();
  const room = 'ps-relay';
  const a = party(node, { room, party: 'relay', id: 'ra' });
  const b = party(node, { room, party: 'relay', id: 'rb' });
  await a.opened();
  await b.opened();
  assert.match(a.urls[0], new RegExp(`/parties/relay/${room}\\?_pk=ra$`));
  await waitFor(async () => (await node.room('relay', room)).connections === 2, { what: 'two connections' });

  a.s.send('text from a');
  a.s.send(new Uint8Array([0, 255, 1, 254]));
  await waitFor(() => b.messages.length >= 2, { what: 'two messages at b' });
  assert.equal(b.messages[0], 'text from a');
  assert.ok(b.messages[1] instanceof ArrayBuffer, 'binary arrives as binary');
  assert.deepEqual([...new Uint8Array(b.messages[1])], [0, 255, 1, 254]);
  b.s.send('fence from b');
  await waitFor(() => a.messages.length >= 1, { what: 'fence at a' });
  assert.deepEqual(a.messages, ['fence from b'], 'a got its own messages back');
  assert.equal(b.messages.length, 2, 'b got its own message back');
  await closeAll(a, b);
  await stopClean(node);
});

test('partysocket: the prefix option with a node configured with prefix "rooms"', async () => {
  const node = await start({ config: { prefix: 'rooms' } });
  const room = 'ps-prefix';
  // HTTP: the configured prefix works, the default one is gone, /party/:room still works
  let r = await node.json(`/parties/relay/${room}`);
  assert.equal(r.status, 404);
  assert.equal(typeof r.body.error, 'string');
  r = await node.json(`/rooms/relay/${room}`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { party: 'relay', room, connections: 0 });
  r = await node.json(`/party/${room}`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { users: [], messages: [] });
  assert.equal((await refused(node.wsUrl(`/parties/main/${room}?_pk=x`))).status, 404);

  const a = party(node, { room, prefix: 'rooms', id: 'pa' });
  assert.deepEqual(await a.waitJson((m) => m.type === 'welcome', 'welcome with prefix'), { type: 'welcome', id: 'pa' });
  assert.match(a.urls[0], new RegExp(`/rooms/main/${room}\\?_pk=pa$`));
  const b = party(node, { room, prefix: 'rooms', party: 'relay', id: 'pb' });
  const c = party(node, { room, prefix: 'rooms', party: 'relay', id: 'pc' });
  await b.opened();
  await c.opened();
  b.s.send('prefixed');
  await waitFor(() => c.messages.includes('prefixed'), { what: 'relay with prefix' });
  r = await PartySocket.fetch({ host: node.host, room, party: 'relay', prefix: 'rooms' });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { party: 'relay', room, connections: 2 });
  // the chat room behind /rooms/main/ROOM is the one behind /party/ROOM
  a.s.send(JSON.stringify({ type: 'chat', content: 'in the prefixed room' }));
  await a.waitJson((m) => m.type === 'chat', 'chat echo');
  r = await node.json(`/party/${room}`);
  assert.deepEqual(r.body.messages.map((m) => m.content), ['in the prefixed room']);
  await closeAll(a, b, c);
  await stopClean(node);
});

test('partysocket: the path option reaches the same room as without it', async () => {
  const node = await start();
  const room = 'ps-path';
  const a = party(node, { room, party: 'relay', id: 'with-path', path: 'sub/path' });
  const b = party(node, { room, party: 'relay', id: 'no-path' });
  await a.opened();
  await b.opened();
  assert.match(a.urls[0], new RegExp(`/parties/relay/${room}/sub/path\\?_pk=with-path$`));
  const info = await waitFor(async () => {
    const x = await node.room('relay', room);
    return x.connections === 2 && x;
  }, { what: 'both in one room' });
  assert.deepEqual([...info.ids].sort(), ['no-path', 'with-path']);
  a.s.send('from the sub-path');
  b.s.send('to the sub-path');
  await waitFor(() => b.messages.includes('from the sub-path'), { what: 'a → b' });
  await waitFor(() => a.messages.includes('to the sub-path'), { what: 'b → a' });
  // and chat with a path: same room, same history
  const c = party(node, { room, id: 'chat-path', path: 'x/y/z' });
  await c.waitJson((m) => m.type === 'state', 'state');
  c.s.send(JSON.stringify({ type: 'chat', content: 'from x/y/z' }));
  await c.waitJson((m) => m.type === 'chat', 'chat echo');
  assert.deepEqual((await node.json(`/parties/main/${room}`)).body.messages.map((m) => [m.senderId, m.content]), [['chat-path', 'from x/y/z']]);
  const r = await PartySocket.fetch({ host: node.host, room, path: 'some/sub' });
  assert.equal(r.status, 200);
  assert.deepEqual((await r.json()).messages.map((m) => m.content), ['from x/y/z']);
  await closeAll(a, b, c);
  await stopClean(node);
});

test('partysocket: the query option adds parameters alongside _pk', async () => {
  const node = await start();
  const room = 'ps-query';
  const a = party(node, { room, id: 'q-id', query: { foo: 'bar', token: 'a b&c', _pk: 'not-me' } });
  assert.deepEqual(await a.waitJson((m) => m.type === 'welcome', 'welcome'), { type: 'welcome', id: 'q-id' });
  const u = new URL(a.urls[0]);
  assert.equal(u.searchParams.get('foo'), 'bar');
  assert.equal(u.searchParams.get('token'), 'a b&c');
  assert.deepEqual(u.searchParams.getAll('_pk'), ['q-id', 'not-me']);

  // an async query function
  const b = party(node, { room, id: 'q-fn', query: async () => ({ t: String(Date.now()) }) });
  assert.deepEqual(await b.waitJson((m) => m.type === 'welcome', 'welcome b'), { type: 'welcome', id: 'q-fn' });
  assert.ok(new URL(b.urls[0]).searchParams.get('t'));
  const info = await node.room('main', room);
  assert.deepEqual([...info.ids].sort(), ['q-fn', 'q-id']);
  await closeAll(a, b);
  await stopClean(node);
});

test('partysocket: PartySocket.fetch GET and POST to a room', async () => {
  const node = await start();
  const room = 'ps-fetch';
  let r = await PartySocket.fetch({ host: node.host, room, party: 'relay' });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { party: 'relay', room, connections: 0 });
  const a = party(node, { room, party: 'relay', id: 'fa' });
  await a.opened();
  r = await PartySocket.fetch({ host: node.host, room, party: 'relay' }, { method: 'POST', body: 'posted by fetch' });
  assert.deepEqual(await r.json(), { delivered: 1 });
  await waitFor(() => a.messages.includes('posted by fetch'), { what: 'POST delivered' });
  r = await PartySocket.fetch({ host: node.host, room, party: 'relay' });
  assert.deepEqual(await r.json(), { party: 'relay', room, connections: 1 });

  // default party: chat
  r = await PartySocket.fetch({ host: node.host, room }, { method: 'POST', body: JSON.stringify({ content: 'hi' }) });
  assert.equal(r.status, 201);
  const msg = await r.json();
  assert.equal(msg.senderId, 'http');
  r = await PartySocket.fetch({ host: node.host, room, query: { a: '1' } });
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { users: [], messages: [msg] });
  await closeAll(a);
  await stopClean(node);
});

test('partysocket: reconnects by itself after the room\'s shard is killed (chat)', async () => {
  const node = await start({ shards: 2 });
  const room = 'ps-reconnect-chat';
  const a = party(node, { room, id: 'rc-a' });
  const b = party(node, { room, id: 'rc-b' });
  await a.waitJson((m) => m.type === 'welcome', 'first welcome');
  await b.waitJson((m) => m.type === 'welcome', 'first welcome b');
  const before = await node.shardPidOf('main', room);
  process.kill(before.pid, 'SIGKILL');

  await waitFor(() => a.closes.length >= 1 && b.closes.length >= 1, { what: 'both PartySockets to see a close' });
  await a.opened(2);
  await b.opened(2);
  const welcomes = await waitFor(() => {
    const w = a.json().filter((m) => m.type === 'welcome');
    return w.length >= 2 && w;
  }, { what: 'a second welcome' });
  assert.deepEqual(welcomes[1], { type: 'welcome', id: 'rc-a' });
  await b.waitJson((m) => m.type === 'welcome' && b.json().filter((x) => x.type === 'welcome').length >= 2, 'second welcome b');

  // the shard came back as a new process and the room works again
  const after = await node.shardPidOf('main', room);
  assert.equal(after.shard, before.shard);
  assert.notEqual(after.pid, before.pid);
  const shards = await node.shards();
  assert.equal(shards[before.shard].state, 'up');
  a.s.send(JSON.stringify({ type: 'chat', content: 'after the restart' }));
  const m = await b.waitJson((x) => x.type === 'chat' && x.content === 'after the restart', 'chat after restart');
  assert.equal(m.senderId, 'rc-a');
  await closeAll(a, b);
  await stopClean(node, [], { allowRestarts: true });
});

test('partysocket: reconnects by itself after the room\'s shard is killed (relay)', async () => {
  const node = await start({ shards: 3 });
  const room = 'ps-reconnect-relay';
  const a = party(node, { room, party: 'relay', id: 'ra' });
  const b = party(node, { room, party: 'relay', id: 'rb' });
  await a.opened();
  await b.opened();
  a.s.send('before');
  await waitFor(() => b.messages.includes('before'), { what: 'before' });
  const { pid } = await node.shardPidOf('relay', room);
  process.kill(pid, 'SIGKILL');
  await waitFor(() => a.closes.length >= 1 && b.closes.length >= 1, { what: 'closes' });
  await a.opened(2);
  await b.opened(2);
  await waitFor(async () => (await node.room('relay', room)).connections === 2, { what: 'both back in the room' });
  // messages queued by partysocket while it was away would be sent on open; this one is sent now
  b.s.send('after');
  await waitFor(() => a.messages.includes('after'), { what: 'after' });
  assert.ok(!b.messages.includes('after'));
  await closeAll(a, b);
  await stopClean(node, [], { allowRestarts: true });
});
