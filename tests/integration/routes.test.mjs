// routes.test.mjs — PartyKit's URL scheme on partyd: /parties/:party/:room[/…] and /party/:room[/…], raw room ids,
// name and size limits, _pk decoding, and the JSON errors for everything else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { waitFor } from './lib.mjs';
import { cleanupAfterEach, start, open, refused, stopClean } from './helpers.mjs';

cleanupAfterEach();

// An HTTP answer that must be a JSON error with `status`.
async function httpError(node, path, status, init) {
  const r = await node.fetch(path, init);
  const text = await r.text();
  assert.equal(r.status, status, `${init?.method ?? 'GET'} ${path} → ${r.status} ${text}`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/, `content-type of ${path}`);
  const body = JSON.parse(text);
  assert.deepEqual(Object.keys(body), ['error'], `body of ${path}: ${text}`);
  assert.equal(typeof body.error, 'string');
  assert.ok(body.error.length > 0);
  return body;
}

// A WebSocket upgrade that must be refused with `status` and a JSON error.
async function wsError(node, path, status) {
  const r = await refused(node.wsUrl(path));
  assert.equal(r.status, status, `upgrade ${path} → ${r.status} ${r.body}`);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/);
  const body = JSON.parse(r.body);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(typeof body.error, 'string');
  return body;
}

async function relayIds(node, room) {
  return [...(await node.room('relay', room)).ids].sort();
}

test('routes: /parties/:party/:room and /party/:room for HTTP and WebSocket; sub-paths reach the room', async () => {
  const node = await start();
  // HTTP
  let r = await node.json('/parties/relay/route-a');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { party: 'relay', room: 'route-a', connections: 0 });
  r = await node.json('/parties/relay/route-a/some/sub/path?x=1');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { party: 'relay', room: 'route-a', connections: 0 });
  r = await node.json('/parties/relay/route-a/');
  assert.deepEqual(r.body, { party: 'relay', room: 'route-a', connections: 0 });
  for (const p of ['/parties/main/route-b', '/party/route-b', '/party/route-b/deeper/still', '/parties/main/route-b/x']) {
    r = await node.json(p);
    assert.equal(r.status, 200, p);
    assert.deepEqual(r.body, { users: [], messages: [] }, p);
  }

  // WebSocket: plain and with sub-paths, all in the same relay room
  const a = await open(node.wsUrl('/parties/relay/route-a?_pk=plain'));
  const b = await open(node.wsUrl('/parties/relay/route-a/sub/path?_pk=sub'));
  const c = await open(node.wsUrl('/parties/relay/route-a/?_pk=slash'));
  assert.deepEqual(await relayIds(node, 'route-a'), ['plain', 'slash', 'sub']);
  assert.deepEqual((await node.json('/parties/relay/route-a/any')).body.connections, 3);
  b.send('from the sub-path');
  await a.waitMessage((m) => m.text === 'from the sub-path', { what: 'sub-path → plain' });
  await c.waitMessage((m) => m.text === 'from the sub-path', { what: 'sub-path → slash' });
  await stopClean(node, [a, b, c]);
});

test('routes: /party/:room is party main over WebSocket too (chat welcome), with and without sub-path', async () => {
  const node = await start();
  const a = await open(node.wsUrl('/party/route-c?_pk=short'));
  const b = await open(node.wsUrl('/parties/main/route-c/sub?_pk=long'));
  const c = await open(node.wsUrl('/party/route-c/a/b?_pk=shortsub'));
  for (const [cl, id] of [[a, 'short'], [b, 'long'], [c, 'shortsub']]) {
    assert.deepEqual(await cl.waitJson((m) => m.type === 'welcome', { what: `welcome ${id}` }), { type: 'welcome', id });
  }
  const info = await node.room('main', 'route-c');
  assert.deepEqual([...info.ids].sort(), ['long', 'short', 'shortsub']);
  a.send(JSON.stringify({ type: 'chat', content: 'one room' }));
  await b.waitJson((m) => m.type === 'chat' && m.content === 'one room', { what: 'chat across routes' });
  await c.waitJson((m) => m.type === 'chat' && m.content === 'one room', { what: 'chat across routes' });
  await stopClean(node, [a, b, c]);
});

test('routes: the room id is the raw, percent-encoded segment (%41 is not A)', async () => {
  const node = await start({ shards: 3 });
  let r = await node.json('/parties/relay/%41');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { party: 'relay', room: '%41', connections: 0 });
  for (const raw of ['caf%C3%A9', '%2F', 'a%2Fb', "a:b@c!$'()*+,;=", 'a%20b', '%25', '~x-y_z.']) {
    r = await node.json(`/parties/relay/${raw}`);
    assert.equal(r.status, 200, raw);
    assert.deepEqual(r.body, { party: 'relay', room: raw, connections: 0 });
  }

  const enc1 = await open(node.wsUrl('/parties/relay/%41?_pk=e1'));
  const enc2 = await open(node.wsUrl('/parties/relay/%41?_pk=e2'));
  const raw1 = await open(node.wsUrl('/parties/relay/A?_pk=r1'));
  const raw2 = await open(node.wsUrl('/parties/relay/A?_pk=r2'));
  const low = await open(node.wsUrl('/parties/relay/%61?_pk=l1')); // 'a', and not 'A' either
  assert.deepEqual(await relayIds(node, '%41'), ['e1', 'e2']);
  assert.deepEqual(await relayIds(node, 'A'), ['r1', 'r2']);
  assert.deepEqual(await relayIds(node, '%61'), ['l1']);
  assert.deepEqual((await node.json('/parties/relay/%41')).body, { party: 'relay', room: '%41', connections: 2 });
  assert.deepEqual((await node.json('/parties/relay/A')).body, { party: 'relay', room: 'A', connections: 2 });

  enc1.send('encoded');
  raw1.send('raw');
  await enc2.waitMessage((m) => m.text === 'encoded', { what: 'encoded room' });
  await raw2.waitMessage((m) => m.text === 'raw', { what: 'raw room' });
  // fences in each room; then neither room has seen the other's message
  enc2.send('fence-enc');
  raw2.send('fence-raw');
  await enc1.waitMessage((m) => m.text === 'fence-enc', { what: 'fence enc' });
  await raw1.waitMessage((m) => m.text === 'fence-raw', { what: 'fence raw' });
  assert.deepEqual(enc1.messages.map((m) => m.text), ['fence-enc']);
  assert.deepEqual(enc2.messages.map((m) => m.text), ['encoded']);
  assert.deepEqual(raw1.messages.map((m) => m.text), ['fence-raw']);
  assert.deepEqual(raw2.messages.map((m) => m.text), ['raw']);
  assert.deepEqual(low.messages, []);
  await stopClean(node, [enc1, enc2, raw1, raw2, low]);
});

test('routes: %41 and A are different chat rooms (history)', async () => {
  const node = await start();
  let r = await node.json('/parties/main/%41', { method: 'POST', body: JSON.stringify({ content: 'in %41' }) });
  assert.equal(r.status, 201);
  r = await node.json('/party/A', { method: 'POST', body: JSON.stringify({ content: 'in A' }) });
  assert.equal(r.status, 201);
  assert.deepEqual((await node.json('/parties/main/%41')).body.messages.map((m) => m.content), ['in %41']);
  assert.deepEqual((await node.json('/parties/main/A')).body.messages.map((m) => m.content), ['in A']);
  assert.deepEqual((await node.json('/party/%61')).body.messages, []);
  await stopClean(node);
});

test('routes: a room id of 256 bytes works, 257 is 400 (bytes of the raw segment)', async () => {
  const node = await start();
  const r256 = 'r'.repeat(256);
  let r = await node.json(`/parties/relay/${r256}`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { party: 'relay', room: r256, connections: 0 });
  const c = await open(node.wsUrl(`/parties/relay/${r256}/sub?_pk=long-room`));
  assert.deepEqual(await relayIds(node, r256), ['long-room']);
  const pct = '%41'.repeat(85) + 'x'; // 256 raw bytes, 86 decoded
  r = await node.json(`/parties/relay/${pct}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.room, pct);

  await httpError(node, `/parties/relay/${'r'.repeat(257)}`, 400);
  await httpError(node, `/party/${'r'.repeat(257)}`, 400);
  await httpError(node, `/parties/relay/${'%41'.repeat(86)}`, 400); // 258 raw bytes, 86 decoded
  await httpError(node, `/parties/relay/${'r'.repeat(257)}/sub`, 400);
  await wsError(node, `/parties/relay/${'r'.repeat(257)}?_pk=x`, 400);
  await wsError(node, `/party/${'r'.repeat(257)}`, 400);
  await stopClean(node, [c]);
});

test('routes: bad party names are 400, unknown parties 404, for HTTP and WebSocket', async () => {
  const node = await start();
  const p64 = 'p'.repeat(64), p65 = 'p'.repeat(65);
  for (const bad of ['a.b', p65, 'a%2Fb', 'a%20b', 'caf%C3%A9', 'a~b', 'a!b']) {
    await httpError(node, `/parties/${bad}/room`, 400);
    await wsError(node, `/parties/${bad}/room?_pk=x`, 400);
  }
  for (const unknown of ['nope', p64, 'Main', 'RELAY', 'relay2', 'a_b-C9']) {
    await httpError(node, `/parties/${unknown}/room`, 404);
    await httpError(node, `/parties/${unknown}/room`, 404, { method: 'POST', body: 'x' });
    await wsError(node, `/parties/${unknown}/room?_pk=x`, 404);
  }
  // a 64-character name is well-formed: configured, it works
  await stopClean(node);
  const node2 = await start({ config: { parties: { [p64]: { kind: 'relay' }, 'a_b-C9': { kind: 'relay' } } } });
  let r = await node2.json(`/parties/${p64}/room`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { party: p64, room: 'room', connections: 0 });
  r = await node2.json('/parties/a_b-C9/room');
  assert.deepEqual(r.body, { party: 'a_b-C9', room: 'room', connections: 0 });
  const c = await open(node2.wsUrl(`/parties/${p64}/room?_pk=long-party`));
  assert.equal((await node2.json(`/parties/${p64}/room`)).body.connections, 1);
  // and main is not configured here: /party/:room is an unknown party
  await httpError(node2, '/party/room', 404);
  await httpError(node2, '/parties/main/room', 404);
  await wsError(node2, '/party/room', 404);
  await stopClean(node2, [c]);
});

test('routes: a missing room or party is 400', async () => {
  const node = await start();
  for (const p of ['/parties/main/', '/parties/main', '/parties/relay/', '/parties/relay', '/parties/nope/',
    '/party/', '/party', '/parties/', '/parties', '/parties//room', '/parties/main//x', '/party//x']) {
    await httpError(node, p, 400);
    await wsError(node, p, 400);
  }
  await httpError(node, '/parties/main/', 400, { method: 'POST', body: '{"content":"x"}' });
  await stopClean(node);
});

// One raw request on its own connection: the status and body of the answer.
function rawRequest(port, text) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.on('data', (d) => { got += d; });
    s.on('error', reject);
    s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(got)?.[1]), body: got.split('\r\n\r\n')[1] ?? '' }));
  });
}

test('routes: a request method that is not a token is 400, never handed to the room (found by fuzz_http)', async () => {
  const node = await start();
  // a request line that starts with a space: h2o parses an empty method
  for (const line of [' /parties/main/r HTTP/1.1', 'GE(T /parties/main/r HTTP/1.1', 'G/T /parties/main/r HTTP/1.1']) {
    const r = await rawRequest(node.port, `${line}\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 400, line);
    assert.deepEqual(JSON.parse(r.body), { error: 'malformed request method' }, line);
  }
  // any token is a method: the room decides what it does with it
  const r = await rawRequest(node.port, 'M-SEARCH /parties/main/r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.notEqual(r.body.includes('malformed request method'), true, r.body);
  assert.ok(r.status >= 200 && r.status < 600, `M-SEARCH → ${r.status}`);
  await stopClean(node);
});

test('routes: _pk is decoded as URLSearchParams, at most 128 bytes, the first one wins (relay/admin)', async () => {
  const node = await start();
  const room = 'pk-room';
  const cases = [
    ['_pk=a+b%21', 'a b!'],
    ['_pk=%E2%9C%93%20ok', '✓ ok'],
    ['x=1&_pk=first&_pk=second', 'first'],
    ['%5Fpk=enc-key&_pk=later', 'enc-key'],
    ['_pk=' + 'k'.repeat(128), 'k'.repeat(128)],
    ['_pk=' + '%C3%A9'.repeat(64), 'é'.repeat(64)], // 128 bytes decoded, 384 raw
    ['_pk=%zz%4', '%zz%4'], // not escapes: kept as they are
    ['_pk=a%2Bb', 'a+b'],
  ];
  const clients = [];
  for (const [q] of cases) clients.push(await open(node.wsUrl(`/parties/relay/${room}?${q}`)));
  const ids = [...(await node.room('relay', room)).ids].sort();
  assert.deepEqual(ids, cases.map(([, id]) => id).sort());
  // the harness's own decoder agrees
  for (const [q, id] of cases) assert.equal(new URLSearchParams(q).get('_pk'), id);

  await wsError(node, `/parties/relay/${room}?_pk=${'k'.repeat(129)}`, 400);
  await wsError(node, `/parties/relay/${room}?_pk=${'%C3%A9'.repeat(64)}x`, 400);
  await wsError(node, `/parties/relay/${room}?_pk=${'k'.repeat(129)}&_pk=short`, 400);
  assert.equal((await node.room('relay', room)).connections, cases.length, 'a refused upgrade joined the room');
  await stopClean(node, clients);
});

test('routes: _pk decoding shows in chat\'s welcome', async () => {
  const node = await start();
  const cases = [
    ['_pk=a+b%21', 'a b!'],
    ['_pk=one&_pk=two', 'one'],
    ['foo=bar&_pk=%F0%9F%8E%89', '🎉'],
  ];
  const clients = [];
  for (const [q, id] of cases) {
    const c = await open(node.wsUrl(`/parties/main/pk-chat?${q}`));
    clients.push(c);
    assert.deepEqual(await c.waitJson((m) => m.type === 'welcome', { what: `welcome for ${q}` }), { type: 'welcome', id });
  }
  await stopClean(node, clients);
});

test('routes: unrelated paths are 404, /health is 200, all errors are JSON', async () => {
  const node = await start({ shards: 3 });
  const h = await node.json('/health');
  assert.equal(h.status, 200);
  assert.match(h.headers.get('content-type'), /^application\/json/);
  assert.equal(h.body.status, 'ok');
  assert.equal((await node.json('/health?probe=1')).body.status, 'ok');
  for (const p of ['/', '/foo', '/partiesx/main/r', '/Parties/main/r', '/PARTY/r', '/partyx/r', '/health/x', '/healthz',
    '/admin/shards', '/admin/rooms/relay/x', '/main/r', '/relay/r', '/favicon.ico']) {
    await httpError(node, p, 404);
    await httpError(node, p, 404, { method: 'POST', body: 'x' });
  }
  for (const p of ['/', '/foo', '/partiesx/main/r', '/party-x/r']) await wsError(node, p, 404);
  await stopClean(node);
});
