// serve.test.mjs — "serve" in PartyKit's shape (issue 20): {"path": "./public", "singlePageApp": true} besides a plain
// path and {"dir", "dotfiles"}; a single-page app's client-side routes get index.html while a missing asset is still a
// 404; hashed assets are cached for a year (immutable), everything else revalidates (no-cache). Rooms still route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './lib.mjs';
import { cleanupAfterEach, start, stopClean } from './helpers.mjs';

cleanupAfterEach();
const T = { timeout: 60000 };

function site() {
  const dir = tmpDir('partyd-site-');
  fs.mkdirSync(path.join(dir, 'public', 'assets'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'public', 'index.html'), '<!doctype html><title>app</title>');
  fs.writeFileSync(path.join(dir, 'public', 'assets', 'index-BdK3x9_a.js'), 'console.log(1)');
  fs.writeFileSync(path.join(dir, 'public', 'app.3f9a1c2b.css'), 'body{}');
  fs.writeFileSync(path.join(dir, 'public', 'favicon.ico'), 'ico');
  fs.writeFileSync(path.join(dir, 'public', 'my-component.js'), 'x');
  return dir;
}

async function get(node, p, init) {
  const r = await node.fetch(p, init);
  return { status: r.status, cc: r.headers.get('cache-control'), type: r.headers.get('content-type'), body: await r.text() };
}

test('serve: {"path", "singlePageApp": true}: routes fall back to index.html, assets do not; cache headers', T, async () => {
  const dir = site();
  const node = await start({ dir, config: { serve: { path: './public', singlePageApp: true }, parties: { counter: { kind: 'counter' } } } });
  const index = await get(node, '/');
  assert.equal(index.status, 200);
  assert.match(index.body, /<title>app/);
  assert.equal(index.cc, 'no-cache');
  for (const route of ['/rooms/42', '/about', '/deep/client/route']) {
    const r = await get(node, route);
    assert.equal(r.status, 200, route);
    assert.match(r.body, /<title>app/, route);
    assert.match(r.type, /^text\/html/, route);
    assert.equal(r.cc, 'no-cache', route);
  }
  assert.equal((await get(node, '/about', { method: 'HEAD' })).status, 200);
  assert.equal((await get(node, '/missing.js')).status, 404, 'a missing asset is not the app');
  assert.equal((await get(node, '/assets/missing-BdK3x9_a.js')).status, 404);
  assert.equal((await get(node, '/about', { method: 'POST' })).status, 404, 'only GET and HEAD fall back');
  assert.equal((await get(node, '/.hidden')).status, 404, 'dotfiles stay refused');

  const hashedJs = await get(node, '/assets/index-BdK3x9_a.js');
  assert.equal(hashedJs.status, 200);
  assert.equal(hashedJs.cc, 'public, max-age=31536000, immutable');
  assert.equal((await get(node, '/app.3f9a1c2b.css')).cc, 'public, max-age=31536000, immutable');
  assert.equal((await get(node, '/favicon.ico')).cc, 'no-cache');
  assert.equal((await get(node, '/my-component.js')).cc, 'no-cache', 'a dash is not a hash');

  // rooms still route, not to the app
  const room = await node.fetch('/parties/counter/c1', { method: 'POST' });
  assert.equal(room.status, 200);
  assert.equal((await room.json()).count, 1);
  await stopClean(node);
});

test('serve: without singlePageApp (a plain path, {"dir"}, {"path"}) a route is a 404', T, async () => {
  for (const serve of ['./public', { dir: './public' }, { path: './public' }, { path: './public', singlePageApp: false }]) {
    const dir = site();
    const node = await start({ dir, config: { serve, parties: { counter: { kind: 'counter' } } } });
    assert.equal((await get(node, '/')).status, 200, JSON.stringify(serve));
    assert.equal((await get(node, '/about')).status, 404, JSON.stringify(serve));
    assert.equal((await get(node, '/assets/index-BdK3x9_a.js')).cc, 'public, max-age=31536000, immutable');
    await stopClean(node);
  }
});

test('serve: a malformed shape stops the node, naming the field', T, async () => {
  for (const [serve, re] of [
    [{ path: './public', dir: './public' }, /serve: takes "path" or "dir"/],
    [{ singlePageApp: true }, /serve\.dir: expected the path of a folder/],
    [{ path: './public', singlePageApp: 'yes' }, /serve\.singlePageApp: expected true or false/],
    [{ path: './public', spa: true }, /serve/],
  ]) {
    const dir = site();
    const node = await start({ dir, ready: false, config: { serve, parties: { counter: { kind: 'counter' } } } });
    const { code } = await node.exited;
    assert.notEqual(code, 0, JSON.stringify(serve));
    assert.match(node.stderr, re);
  }
});
