// storage.test.mjs — a room's durable storage as the built-in `kv` party shows it over HTTP: get/put/delete,
// binary-safe values, byte-wise listing with prefix/start/end/limit/reverse, batches and their 128-key cap, the key
// and value size limits, transactions (check, rollback, reading their own writes), delete-all, isolation between
// rooms and parties, and persistence across a clean restart of the node, with "sync" and "relaxed" durability.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from './lib.mjs';
import { cleanupAfterEach, start, stopClean } from './helpers.mjs';

cleanupAfterEach();

const T = { timeout: 60000 };
const KV = { parties: { kv: { kind: 'kv' }, kv2: { kind: 'kv' } } };

// A query string: an object (encoded with URLSearchParams) or a ready-made string (for raw %XX bytes).
const qs = (params) => (typeof params === 'string' ? params : new URLSearchParams(params).toString());
const kvPath = (room, params = {}, party = 'kv') => {
  const q = qs(params);
  return `/parties/${party}/${room}${q ? `?${q}` : ''}`;
};

async function raw(node, p, init) {
  const r = await node.fetch(p, init);
  const body = Buffer.from(await r.arrayBuffer());
  let json;
  try { json = JSON.parse(body.toString()); } catch {}
  return { status: r.status, type: r.headers.get('content-type'), body, json };
}
// GET ?key=K: {status, type, body (Buffer), json}. `key` is a string, or {q: 'key=%FF'} for a raw query.
const get = (node, room, key, party = 'kv') => raw(node, kvPath(room, typeof key === 'string' ? { key } : key.q, party));
const put = (node, room, key, value, party = 'kv') => raw(node, kvPath(room, { key }, party), { method: 'PUT', body: value });
const del = (node, room, key, party = 'kv') => raw(node, kvPath(room, key === undefined ? {} : { key }, party), { method: 'DELETE' });
const post = (node, room, body, party = 'kv') => raw(node, kvPath(room, {}, party), { method: 'POST', body: JSON.stringify(body) });
async function list(node, room, params = {}, party = 'kv') {
  const r = await raw(node, kvPath(room, params, party));
  assert.equal(r.status, 200, `list ${room} ${qs(params)}: ${r.body}`);
  return r.json.entries;
}
const keysOf = (entries) => entries.map((e) => e.key);

// Byte-wise (UTF-8) order of strings, as the storage sorts keys.
const byteOrder = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));

async function putOk(node, room, key, value, party = 'kv') {
  const r = await put(node, room, key, value, party);
  assert.equal(r.status, 200, `PUT ${JSON.stringify(key)}: ${r.body}`);
  return r.json;
}
async function getText(node, room, key, party = 'kv') {
  const r = await get(node, room, key, party);
  return r.status === 200 ? r.body.toString() : r.status;
}

test('kv: put, get, overwrite, delete; 404 for a missing key; bad requests', T, async () => {
  const node = await start({ config: KV });
  const room = 'basic';
  const miss = await get(node, room, 'nope');
  assert.equal(miss.status, 404);

  assert.deepEqual(await putOk(node, room, 'greeting', 'hello'), { key: 'greeting', bytes: 5 });
  const g = await get(node, room, 'greeting');
  assert.equal(g.status, 200);
  assert.match(g.type, /^application\/octet-stream/);
  assert.equal(g.body.toString(), 'hello');

  assert.deepEqual(await putOk(node, room, 'greeting', 'hello, world'), { key: 'greeting', bytes: 12 });
  assert.equal(await getText(node, room, 'greeting'), 'hello, world');

  // an empty value is a value
  assert.deepEqual(await putOk(node, room, 'empty', ''), { key: 'empty', bytes: 0 });
  const e = await get(node, room, 'empty');
  assert.equal(e.status, 200);
  assert.equal(e.body.length, 0);

  // keys are any UTF-8, query-encoded as a browser would
  const odd = 'ключ/🔑 with spaces & = + ? # %';
  assert.deepEqual(await putOk(node, room, odd, 'odd'), { key: odd, bytes: 3 });
  assert.equal(await getText(node, room, odd), 'odd');
  assert.deepEqual(keysOf(await list(node, room)), ['empty', 'greeting', odd].sort(byteOrder));

  const d1 = await del(node, room, 'greeting');
  assert.equal(d1.status, 200);
  assert.deepEqual(d1.json, { deleted: true });
  assert.deepEqual((await del(node, room, 'greeting')).json, { deleted: false });
  assert.equal((await get(node, room, 'greeting')).status, 404);
  assert.deepEqual((await del(node, room, 'never-was')).json, { deleted: false });

  // malformed requests: PUT without a key, an empty key, POST bodies that are not one known operation
  assert.equal((await raw(node, kvPath(room), { method: 'PUT', body: 'x' })).status, 400);
  assert.equal((await put(node, room, '', 'x')).status, 400);
  for (const body of ['nope', '[]', '{}', '{"get":[],"put":{}}', '{"frob":[]}', '{"get":[1]}', '{"put":{"a":1}}', '{"delete":"a"}']) {
    const r = await raw(node, kvPath(room), { method: 'POST', body });
    assert.equal(r.status, 400, `POST ${body}: ${r.status} ${r.body}`);
  }
  const m = await raw(node, kvPath(room), { method: 'PATCH', body: 'x' });
  assert.equal(m.status, 405);
  // nothing above wrote anything
  assert.deepEqual(keysOf(await list(node, room)), ['empty', odd].sort(byteOrder));
  await stopClean(node);
});

test('kv: values are binary-safe (every byte value, NULs, invalid UTF-8)', T, async () => {
  const node = await start({ config: KV });
  const room = 'binary';
  const all = Buffer.alloc(256 * 4);
  for (let i = 0; i < all.length; i++) all[i] = i % 256;
  assert.deepEqual(await putOk(node, room, 'all-bytes', all), { key: 'all-bytes', bytes: 1024 });
  const g = await get(node, room, 'all-bytes');
  assert.equal(g.status, 200);
  assert.ok(g.body.equals(all), 'the value came back byte for byte');

  const nuls = Buffer.from([0, 0, 0x61, 0, 0xff, 0xfe, 0]);
  await putOk(node, room, 'nuls', nuls);
  assert.ok((await get(node, room, 'nuls')).body.equals(nuls));

  // valid UTF-8 with a NUL is listed as the string it is; invalid UTF-8 as null with its size
  await putOk(node, room, 'text-nul', Buffer.from('a\u0000b'));
  const entries = await list(node, room);
  assert.deepEqual(keysOf(entries), ['all-bytes', 'nuls', 'text-nul']);
  assert.equal(entries[0].value, null);
  assert.equal(entries[0].bytes, 1024);
  assert.equal(entries[1].value, null);
  assert.equal(entries[1].bytes, nuls.length);
  assert.equal(entries[2].value, 'a\u0000b');

  // a batch get returns the UTF-8 value as a string; null stands for an absent key
  const many = await post(node, room, { get: ['text-nul', 'absent'] });
  assert.equal(many.status, 200);
  assert.deepEqual(many.json, { values: { 'text-nul': 'a\u0000b', absent: null } });

  await stopClean(node);
});

test('kv: a key of bytes that are not UTF-8 (query-encoded) is a key like any other', T, async () => {
  const node = await start({ config: KV });
  const room = 'binary-keys';
  // the value is stored (GET finds it), so the PUT must say so: 200 with the size, not a 500
  const p1 = await raw(node, kvPath(room, 'key=%FF'), { method: 'PUT', body: 'ff' });
  assert.equal((await get(node, room, { q: 'key=%FF' })).body.toString(), 'ff');
  assert.equal(p1.status, 200, `PUT ?key=%FF answered ${p1.status} ${p1.body} although it stored the value`);
  assert.equal(p1.json.bytes, 2);
  const p2 = await raw(node, kvPath(room, 'key=%FF%00'), { method: 'PUT', body: 'ff00' });
  assert.equal(p2.status, 200, `PUT ?key=%FF%00 answered ${p2.status} ${p2.body}`);
  assert.equal((await get(node, room, { q: 'key=%FF%00' })).body.toString(), 'ff00');
  assert.equal((await get(node, room, { q: 'key=%FF%FF' })).status, 404);
  assert.deepEqual((await raw(node, kvPath(room, 'key=%FF'), { method: 'DELETE' })).json, { deleted: true });
  assert.equal((await get(node, room, { q: 'key=%FF' })).status, 404);
  await stopClean(node);
});

test('kv: listing is byte-wise ordered; prefix, start (inclusive), end (exclusive), limit, reverse and combinations', T, async () => {
  const node = await start({ config: KV });
  const room = 'order';
  // keys that share prefixes, a NUL inside, upper case, and non-ASCII whose UTF-8 order differs from UTF-16's
  const keys = ['b', 'a', 'ab', 'a\u0000', 'a\u0000b', 'aa', 'A', 'abc', 'z', 'é', '\uffff', '😀', 'a b', 'c'];
  for (const k of [...keys].reverse()) await putOk(node, room, k, `v:${k}`);
  const sorted = [...keys].sort(byteOrder);
  // (JavaScript's own order would put 😀 before \uffff: the server must not)
  assert.ok(sorted.indexOf('\uffff') < sorted.indexOf('😀'));

  const everything = await list(node, room);
  assert.deepEqual(keysOf(everything), sorted);
  for (const e of everything) assert.equal(e.value, `v:${e.key}`);

  const L = async (params) => keysOf(await list(node, room, params));
  const cases = [
    [{ prefix: 'a' }, ['a', 'a\u0000', 'a\u0000b', 'a b', 'aa', 'ab', 'abc']],
    [{ prefix: 'a\u0000' }, ['a\u0000', 'a\u0000b']],
    [{ prefix: 'ab' }, ['ab', 'abc']],
    [{ prefix: 'abc' }, ['abc']],
    [{ prefix: 'abcd' }, []],
    [{ prefix: 'x' }, []],
    [{ prefix: '' }, sorted],
    [{ start: 'ab' }, sorted.slice(sorted.indexOf('ab'))],
    [{ start: 'a\u0000' }, sorted.slice(sorted.indexOf('a\u0000'))],
    [{ start: 'aaa' }, sorted.slice(sorted.indexOf('ab'))], // between keys
    [{ end: 'ab' }, sorted.slice(0, sorted.indexOf('ab'))],
    [{ end: 'a\u0000' }, ['A', 'a']],
    [{ start: 'a', end: 'b' }, ['a', 'a\u0000', 'a\u0000b', 'a b', 'aa', 'ab', 'abc']],
    [{ start: 'a\u0000', end: 'ab' }, ['a\u0000', 'a\u0000b', 'a b', 'aa']],
    [{ start: 'ab', end: 'ab' }, []],
    [{ start: 'b', end: 'a' }, []],
    [{ start: 'z', end: '\uffff' }, ['z', 'é']],
    [{ start: '\uffff' }, ['\uffff', '😀']],
    [{ limit: 3 }, sorted.slice(0, 3)],
    [{ limit: 1000 }, sorted],
    [{ reverse: '1' }, [...sorted].reverse()],
    [{ reverse: '1', limit: 2 }, ['😀', '\uffff']],
    [{ prefix: 'a', reverse: '1' }, ['abc', 'ab', 'aa', 'a b', 'a\u0000b', 'a\u0000', 'a']],
    [{ prefix: 'a', limit: 2 }, ['a', 'a\u0000']],
    [{ prefix: 'a', reverse: '1', limit: 2 }, ['abc', 'ab']],
    [{ prefix: 'a', start: 'a\u0000b' }, ['a\u0000b', 'a b', 'aa', 'ab', 'abc']],
    [{ prefix: 'a', end: 'aa' }, ['a', 'a\u0000', 'a\u0000b', 'a b']],
    [{ prefix: 'a', start: 'a\u0000b', end: 'ab' }, ['a\u0000b', 'a b', 'aa']],
    [{ prefix: 'a', start: 'a\u0000b', end: 'ab', reverse: '1' }, ['aa', 'a b', 'a\u0000b']],
    [{ prefix: 'a', start: 'a\u0000b', end: 'ab', reverse: '1', limit: 2 }, ['aa', 'a b']],
    [{ prefix: 'a', start: 'A' }, ['a', 'a\u0000', 'a\u0000b', 'a b', 'aa', 'ab', 'abc']], // start below the prefix
    [{ prefix: 'a', end: 'c' }, ['a', 'a\u0000', 'a\u0000b', 'a b', 'aa', 'ab', 'abc']], // end above the prefix
    [{ prefix: 'a', start: 'b' }, []],
    [{ prefix: 'ab', end: 'ab' }, []],
    [{ start: 'a', end: 'b', reverse: '1' }, ['abc', 'ab', 'aa', 'a b', 'a\u0000b', 'a\u0000', 'a']],
    [{ start: 'a', end: 'b', reverse: '1', limit: 3 }, ['abc', 'ab', 'aa']],
    [{ end: 'a', reverse: '1' }, ['A']],
    [{ reverse: '0' }, sorted],
  ];
  for (const [params, want] of cases) assert.deepEqual(await L(params), want, `list ${JSON.stringify(params)}`);

  // a prefix whose last byte is 0xFF (no successor by incrementing): query-encoded raw bytes
  const other = 'order-ff';
  for (const [k, v] of [['%FE', 'fe'], ['%FF', 'ff'], ['%FF%00', 'ff00'], ['%FF%FF', 'ffff'], ['%FE%FF', 'feff']]) {
    // (the PUT's status is the subject of the binary-key test above; here only that the value is there)
    await raw(node, kvPath(other, `key=${k}`), { method: 'PUT', body: v });
    assert.equal((await get(node, other, { q: `key=${k}` })).body.toString(), v);
  }
  await putOk(node, other, 'a', 'a');
  const vals = async (q) => (await list(node, other, q)).map((e) => e.value);
  assert.deepEqual(await vals(''), ['a', 'fe', 'feff', 'ff', 'ff00', 'ffff']);
  assert.deepEqual(await vals('prefix=%FF'), ['ff', 'ff00', 'ffff']);
  assert.deepEqual(await vals('prefix=%FF%FF'), ['ffff']);
  assert.deepEqual(await vals('prefix=%FE'), ['fe', 'feff']);
  assert.deepEqual(await vals('prefix=%FF&reverse=1'), ['ffff', 'ff00', 'ff']);
  assert.deepEqual(await vals('prefix=%FE&reverse=1'), ['feff', 'fe']);
  assert.deepEqual(await vals('start=%FF%00'), ['ff00', 'ffff']);

  // a bad limit is a 400
  assert.equal((await raw(node, kvPath(room, { limit: 'many' }))).status, 400);
  assert.equal((await raw(node, kvPath(room, { limit: '-1' }))).status, 400);
  await stopClean(node);
});

test('kv: listing more keys than one chunk, forward and reverse, with bounds and limits', T, async () => {
  const node = await start({ config: KV });
  const room = 'chunks';
  const keys = Array.from({ length: 300 }, (_, i) => `k${String(i).padStart(4, '0')}`);
  for (let i = 0; i < keys.length; i += 100) {
    const batch = Object.fromEntries(keys.slice(i, i + 100).map((k) => [k, `v${k}`]));
    assert.deepEqual((await post(node, room, { put: batch })).json, { put: 100 });
  }
  await putOk(node, room, 'j', 'before');
  await putOk(node, room, 'l', 'after');
  assert.deepEqual(keysOf(await list(node, room, { prefix: 'k' })), keys);
  assert.deepEqual(keysOf(await list(node, room, { prefix: 'k', reverse: '1' })), [...keys].reverse());
  assert.deepEqual(keysOf(await list(node, room)), ['j', ...keys, 'l']);
  assert.deepEqual(keysOf(await list(node, room, { reverse: '1' })), ['l', ...[...keys].reverse(), 'j']);
  assert.deepEqual(keysOf(await list(node, room, { start: 'k0100', end: 'k0260' })), keys.slice(100, 260));
  assert.deepEqual(keysOf(await list(node, room, { start: 'k0100', end: 'k0260', reverse: '1' })), keys.slice(100, 260).reverse());
  assert.deepEqual(keysOf(await list(node, room, { prefix: 'k', limit: 200 })), keys.slice(0, 200));
  assert.deepEqual(keysOf(await list(node, room, { prefix: 'k', limit: 200, reverse: '1' })), keys.slice(100).reverse());
  assert.deepEqual(keysOf(await list(node, room, { prefix: 'k0', start: 'k0050', limit: 129 })), keys.slice(50, 179));
  await stopClean(node);
});

test('kv: batches get, put and delete many keys; more than 128 is a 400 and writes nothing', T, async () => {
  const node = await start({ config: KV });
  const room = 'batches';
  const put3 = await post(node, room, { put: { a: '1', b: '2', 'ü': '3' } });
  assert.equal(put3.status, 200);
  assert.deepEqual(put3.json, { put: 3 });
  assert.deepEqual((await post(node, room, { get: ['a', 'b', 'ü', 'missing'] })).json,
    { values: { a: '1', b: '2', 'ü': '3', missing: null } });
  assert.deepEqual((await post(node, room, { get: [] })).json, { values: {} });
  // a batch put overwrites
  assert.deepEqual((await post(node, room, { put: { a: 'one' } })).json, { put: 1 });
  assert.equal(await getText(node, room, 'a'), 'one');

  // delete counts the keys that existed
  const d = await post(node, room, { delete: ['a', 'missing', 'ü'] });
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { deleted: 2 });
  assert.deepEqual(keysOf(await list(node, room)), ['b']);
  assert.deepEqual((await post(node, room, { delete: ['a'] })).json, { deleted: 0 });

  // exactly 128 keys is fine
  const k128 = Array.from({ length: 128 }, (_, i) => `n${String(i).padStart(3, '0')}`);
  assert.deepEqual((await post(node, room, { put: Object.fromEntries(k128.map((k) => [k, k])) })).json, { put: 128 });
  const got = await post(node, room, { get: k128 });
  assert.equal(got.status, 200);
  assert.deepEqual(got.json.values, Object.fromEntries(k128.map((k) => [k, k])));
  assert.equal((await list(node, room, { prefix: 'n' })).length, 128);

  // 129 keys: 400, nothing written, nothing deleted
  const k129 = Array.from({ length: 129 }, (_, i) => `m${String(i).padStart(3, '0')}`);
  const p129 = await post(node, room, { put: Object.fromEntries(k129.map((k) => [k, k])) });
  assert.equal(p129.status, 400, `put of 129: ${p129.body}`);
  assert.equal((await list(node, room, { prefix: 'm' })).length, 0, 'a refused batch put wrote nothing');
  assert.equal((await post(node, room, { get: [...k128, 'b'] })).status, 400);
  const d129 = await post(node, room, { delete: [...k128, 'b'] });
  assert.equal(d129.status, 400);
  assert.equal((await list(node, room)).length, 129, 'a refused batch delete deleted nothing');

  assert.deepEqual((await post(node, room, { delete: k128 })).json, { deleted: 128 });
  assert.deepEqual(keysOf(await list(node, room)), ['b']);
  await stopClean(node);
});

test('kv: key and value limits — 2048-byte keys and 128 KiB values fit, one byte more is 413 and writes nothing', T, async () => {
  const node = await start({ config: KV });
  const room = 'limits';
  const k2048 = 'k'.repeat(2048);
  const k2049 = 'k'.repeat(2049);
  assert.deepEqual(await putOk(node, room, k2048, 'long key'), { key: k2048, bytes: 8 });
  assert.equal(await getText(node, room, k2048), 'long key');
  assert.equal((await put(node, room, k2049, 'x')).status, 413);
  assert.equal((await get(node, room, k2049)).status, 413);
  // bytes, not characters: 1024 × "é" is 2048 bytes; one more ASCII byte is over
  const e1024 = 'é'.repeat(1024);
  await putOk(node, room, e1024, 'accents');
  assert.equal(await getText(node, room, e1024), 'accents');
  assert.equal((await put(node, room, `${e1024}a`, 'x')).status, 413);

  const v128k = Buffer.alloc(128 * 1024, 0x61);
  v128k[0] = 0xff; // and binary
  assert.deepEqual(await putOk(node, room, 'big', v128k), { key: 'big', bytes: 131072 });
  assert.ok((await get(node, room, 'big')).body.equals(v128k));
  const over = await put(node, room, 'big', Buffer.alloc(128 * 1024 + 1, 0x62));
  assert.equal(over.status, 413);
  assert.ok((await get(node, room, 'big')).body.equals(v128k), 'a refused PUT left the old value');
  assert.equal((await put(node, room, 'new-big', Buffer.alloc(128 * 1024 + 1))).status, 413);
  assert.equal((await get(node, room, 'new-big')).status, 404);

  // in a batch: one key or value over the limit refuses the whole batch
  const b1 = await post(node, room, { put: { ok1: 'x', [k2049]: 'y' } });
  assert.equal(b1.status, 413, `batch with a long key: ${b1.status}`);
  const b2 = await post(node, room, { put: { ok2: 'x', huge: 'h'.repeat(128 * 1024 + 1) } });
  assert.equal(b2.status, 413, `batch with a big value: ${b2.status}`);
  const b3 = await post(node, room, { put: { ok3: 'x', fits: 'h'.repeat(128 * 1024) } });
  assert.deepEqual(b3.json, { put: 2 });
  assert.deepEqual((await post(node, room, { get: ['ok1', 'ok2', 'ok3'] })).json.values, { ok1: null, ok2: null, ok3: 'x' });
  assert.equal((await post(node, room, { get: [k2049] })).status, 413);
  assert.equal((await post(node, room, { delete: [k2049] })).status, 413);
  // in a transaction: 413, and the ops before it are undone
  const t = await post(node, room, { ops: [{ op: 'put', key: 'tx1', value: 'x' }, { op: 'put', key: 'tx2', value: 'v'.repeat(128 * 1024 + 1) }] });
  assert.equal(t.status, 413);
  assert.equal((await get(node, room, 'tx1')).status, 404);
  await stopClean(node);
});

test('kv: keys and values with U+0000 work in batches and transactions as they do in PUT/GET and listings', T, async () => {
  const node = await start({ config: KV });
  const room = 'nul-json';
  await putOk(node, room, 'a\u0000', 'v');
  // the listing hands the key back as JSON: the same JSON string must work as a key of a batch or transaction
  const listed = (await list(node, room))[0].key;
  assert.equal(listed, 'a\u0000');
  const g = await post(node, room, { get: [listed, 'a'] });
  assert.equal(g.status, 200, `POST {"get":["a\\u0000"]}: ${g.status} ${g.body}`);
  assert.deepEqual(g.json, { values: { 'a\u0000': 'v', a: null } });
  const p = await post(node, room, { put: { nul: 'x\u0000y' } });
  assert.equal(p.status, 200, `POST {"put":{"nul":"x\\u0000y"}}: ${p.status} ${p.body}`);
  assert.ok((await get(node, room, 'nul')).body.equals(Buffer.from([0x78, 0, 0x79])));
  const t = await post(node, room, { ops: [{ op: 'check', key: 'a\u0000', value: 'v' }, { op: 'put', key: 'b\u0000', value: '\u0000' }] });
  assert.equal(t.status, 200, `a transaction with U+0000: ${t.status} ${t.body}`);
  assert.ok((await get(node, room, 'b\u0000')).body.equals(Buffer.from([0])));
  const d = await post(node, room, { delete: ['a\u0000', 'b\u0000'] });
  assert.equal(d.status, 200, `POST {"delete":["a\\u0000",...]}: ${d.status} ${d.body}`);
  assert.deepEqual(d.json, { deleted: 2 });
  assert.deepEqual(keysOf(await list(node, room)), ['nul']);
  await stopClean(node);
});

test('kv: transactions apply in order, see their own writes, and a failed check undoes all of them', T, async () => {
  const node = await start({ config: KV });
  const room = 'txn';
  await putOk(node, room, 'balance', '100');
  await putOk(node, room, 'keep', 'old');

  const ok = await post(node, room, {
    ops: [
      { op: 'check', key: 'balance', value: '100' },
      { op: 'put', key: 'balance', value: '70' },
      { op: 'put', key: 'other', value: '30' },
      { op: 'check', key: 'nothing', value: null },
    ],
  });
  assert.equal(ok.status, 200, `${ok.body}`);
  assert.deepEqual(ok.json, { ok: true });
  assert.deepEqual((await post(node, room, { get: ['balance', 'other'] })).json.values, { balance: '70', other: '30' });

  // reads inside see the transaction's own writes: put then check, delete then check null, put over put
  const own = await post(node, room, {
    ops: [
      { op: 'put', key: 'fresh', value: 'v1' },
      { op: 'check', key: 'fresh', value: 'v1' },
      { op: 'put', key: 'fresh', value: 'v2' },
      { op: 'check', key: 'fresh', value: 'v2' },
      { op: 'delete', key: 'other' },
      { op: 'check', key: 'other', value: null },
    ],
  });
  assert.equal(own.status, 200, `${own.body}`);
  assert.equal(await getText(node, room, 'fresh'), 'v2');
  assert.equal((await get(node, room, 'other')).status, 404);

  // a failing check: 409 with its index, and everything before it is undone — puts of new keys, overwrites, deletes
  const before = await list(node, room);
  const bad = await post(node, room, {
    ops: [
      { op: 'put', key: 'brand-new', value: 'x' },
      { op: 'put', key: 'keep', value: 'overwritten' },
      { op: 'delete', key: 'balance' },
      { op: 'check', key: 'brand-new', value: 'x' }, // passes: its own write
      { op: 'check', key: 'balance', value: '70' }, // fails: deleted above
      { op: 'put', key: 'after', value: 'never' },
    ],
  });
  assert.equal(bad.status, 409, `${bad.body}`);
  assert.equal(bad.json.error, 'check failed');
  assert.equal(bad.json.index, 4);
  assert.deepEqual(await list(node, room), before, 'a failed transaction changed nothing');

  // check of a present key against null fails; of an absent key against a value fails
  const c1 = await post(node, room, { ops: [{ op: 'put', key: 'z1', value: '1' }, { op: 'check', key: 'keep', value: null }] });
  assert.equal(c1.status, 409);
  assert.equal(c1.json.index, 1);
  const c2 = await post(node, room, { ops: [{ op: 'check', key: 'absent', value: '' }] });
  assert.equal(c2.status, 409);
  assert.equal(c2.json.index, 0);
  // and a value that differs only in length
  const c3 = await post(node, room, { ops: [{ op: 'check', key: 'keep', value: 'ol' }] });
  assert.equal(c3.status, 409);
  assert.deepEqual(await list(node, room), before);

  // a malformed op is a 400 and undoes the ops before it too
  const m = await post(node, room, { ops: [{ op: 'put', key: 'z2', value: '2' }, { op: 'frobnicate', key: 'x' }] });
  assert.equal(m.status, 400);
  assert.deepEqual(await list(node, room), before);

  // concurrent transactions on one key: exactly one compare-and-set wins
  await putOk(node, room, 'lock', 'free');
  const racers = await Promise.all(Array.from({ length: 12 }, (_, i) => post(node, room, {
    ops: [{ op: 'check', key: 'lock', value: 'free' }, { op: 'put', key: 'lock', value: `held-${i}` }],
  })));
  const winners = racers.map((r, i) => [r.status, i]).filter(([s]) => s === 200);
  assert.equal(winners.length, 1, `statuses ${racers.map((r) => r.status)}`);
  assert.ok(racers.every((r) => r.status === 200 || r.status === 409));
  assert.equal(await getText(node, room, 'lock'), `held-${winners[0][1]}`);

  // a failed transaction in the same moment as other rooms' writes does not undo theirs
  const mixed = await Promise.all([
    ...Array.from({ length: 10 }, (_, i) => put(node, `txn-side-${i}`, 'k', `v${i}`)),
    ...Array.from({ length: 10 }, () => post(node, room, { ops: [{ op: 'put', key: 'never', value: 'x' }, { op: 'check', key: 'lock', value: 'free' }] })),
    ...Array.from({ length: 10 }, (_, i) => post(node, room, { put: { [`side-${i}`]: 'y' } })),
  ]);
  assert.deepEqual(mixed.map((r) => r.status), [...Array(10).fill(200), ...Array(10).fill(409), ...Array(10).fill(200)]);
  for (let i = 0; i < 10; i++) {
    assert.equal(await getText(node, `txn-side-${i}`, 'k'), `v${i}`);
    assert.equal(await getText(node, room, `side-${i}`), 'y');
  }
  assert.equal((await get(node, room, 'never')).status, 404);
  await stopClean(node);
});

test('kv: DELETE without a key deletes every key of the room and nothing else', T, async () => {
  const node = await start({ config: KV });
  const room = 'wipe';
  const keys = Array.from({ length: 300 }, (_, i) => `w${i}`);
  for (let i = 0; i < keys.length; i += 100) {
    await post(node, room, { put: Object.fromEntries(keys.slice(i, i + 100).map((k) => [k, 'x'])) });
  }
  await putOk(node, room, 'a\u0000', 'nul');
  await putOk(node, 'wipe2', 'w1', 'neighbour');
  await putOk(node, 'wip', 'w1', 'neighbour');
  await putOk(node, room, 'w1', 'same room', 'kv2');

  const d = await del(node, room);
  assert.equal(d.status, 200);
  assert.deepEqual(d.json, { deleted: 301 });
  assert.deepEqual(await list(node, room), []);
  assert.equal((await get(node, room, 'w1')).status, 404);
  assert.deepEqual((await del(node, room)).json, { deleted: 0 });
  assert.equal(await getText(node, 'wipe2', 'w1'), 'neighbour');
  assert.equal(await getText(node, 'wip', 'w1'), 'neighbour');
  assert.equal(await getText(node, room, 'w1', 'kv2'), 'same room');

  // the room is usable afterwards
  await putOk(node, room, 'again', '1');
  assert.deepEqual(keysOf(await list(node, room)), ['again']);
  await stopClean(node);
});

test('kv: rooms and parties never see each other\'s keys', T, async () => {
  const node = await start({ config: KV });
  // room ids where one is a prefix of another, and the same room id in two parties
  const rooms = ['iso', 'iso2', 'is', 'iso-', 'ISO'];
  for (const r of rooms) {
    await putOk(node, r, 'shared', `kv:${r}`);
    await putOk(node, r, `own-${r}`, '1');
    await putOk(node, r, 'shared', `kv2:${r}`, 'kv2');
  }
  for (const r of rooms) {
    assert.equal(await getText(node, r, 'shared'), `kv:${r}`);
    assert.equal(await getText(node, r, 'shared', 'kv2'), `kv2:${r}`);
    assert.deepEqual(keysOf(await list(node, r)), [`own-${r}`, 'shared']);
    assert.deepEqual(keysOf(await list(node, r, { reverse: '1' })), ['shared', `own-${r}`]);
    assert.deepEqual(keysOf(await list(node, r, {}, 'kv2')), ['shared']);
    for (const o of rooms) if (o !== r) assert.equal((await get(node, r, `own-${o}`)).status, 404);
  }
  assert.deepEqual((await post(node, 'iso', { get: ['own-iso2', 'own-iso'] })).json.values, { 'own-iso2': null, 'own-iso': '1' });
  // a transaction's check reads only its own room
  assert.equal((await post(node, 'iso', { ops: [{ op: 'check', key: 'own-is', value: '1' }] })).status, 409);
  assert.deepEqual((await del(node, 'iso', undefined, 'kv2')).json, { deleted: 1 });
  assert.equal(await getText(node, 'iso', 'shared'), 'kv:iso');
  await stopClean(node);
});

// Writes a spread of data over many rooms (so both shards), stops the node cleanly, starts another on the same
// directory, and reads everything back.
async function persistAcrossRestart(config) {
  const node = await start({ config });
  const dir = node.dir;
  const rooms = Array.from({ length: 8 }, (_, i) => `persist-${i}`);
  const shardsUsed = new Set();
  const blob = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256));
  for (const r of rooms) {
    shardsUsed.add((await node.room('kv', r)).shard);
    await putOk(node, r, 'blob', blob);
    await post(node, r, { put: { a: `a-${r}`, b: `b-${r}`, c: `c-${r}` } });
    await post(node, r, { delete: ['b'] });
    await post(node, r, { ops: [{ op: 'put', key: 'tx', value: r }, { op: 'check', key: 'a', value: `a-${r}` }] });
    await post(node, r, { ops: [{ op: 'put', key: 'rolled-back', value: r }, { op: 'check', key: 'a', value: 'no' }] });
  }
  await putOk(node, 'persist-wiped', 'gone', 'x');
  await del(node, 'persist-wiped');
  assert.equal(shardsUsed.size, 2, 'the rooms are spread over both shards');
  const commits = (await node.shards()).reduce((n, s) => n + s.commits, 0);
  assert.ok(commits > 0, 'the shards count their commits');
  await stopClean(node);

  const again = await start({ config, dir });
  for (const r of rooms) {
    const entries = await list(again, r);
    assert.deepEqual(keysOf(entries), ['a', 'blob', 'c', 'tx'], `keys of ${r} after the restart`);
    assert.deepEqual(entries.filter((e) => e.key !== 'blob').map((e) => e.value), [`a-${r}`, `c-${r}`, r]);
    assert.ok((await get(again, r, 'blob')).body.equals(blob), `the blob of ${r}`);
  }
  assert.deepEqual(await list(again, 'persist-wiped'), []);
  const s = await again.shards();
  assert.ok(s.every((x) => x.storage_bytes > 0), `every shard reports its storage: ${JSON.stringify(s)}`);
  // and it keeps working
  await putOk(again, 'persist-0', 'later', 'yes');
  assert.equal(await getText(again, 'persist-0', 'later'), 'yes');
  await stopClean(again);
}

test('kv: everything written survives a clean restart of the node on the same data directory', T, async () => {
  await persistAcrossRestart(KV);
});

test('kv: with "durability": "relaxed" the data also survives a clean restart', T, async () => {
  await persistAcrossRestart({ ...KV, durability: 'relaxed' });
});
