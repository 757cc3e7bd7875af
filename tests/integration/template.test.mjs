// template.test.mjs — writing a party outside the tree, as README's "Write a party" says: partyd installed (meson
// install into a scratch root), `partyd-new-party DIR`, `make -C DIR` (pkg-config finds <partyd/party.h>), and the
// installed partyd running DIR/partyd.json, driven with partysocket and plain HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import PartySocket from 'partysocket';
import { BIN, WebSocket, waitFor, tmpDir } from './lib.mjs';
import { cleanupAfterEach, start, stopClean, track } from './helpers.mjs';

cleanupAfterEach();

test('partyd-new-party + make + partyd --config: the template room runs, keeps its count across a restart', { timeout: 120000 }, async () => {
  const scratch = tmpDir('partyd-template-');
  const root = path.join(scratch, 'root');
  execFileSync('meson', ['install', '-C', path.dirname(BIN), '--destdir', root, '--no-rebuild', '--quiet'], { stdio: 'pipe' });
  const prefix = path.join(root, 'usr', 'local');
  const pc = execFileSync('find', [prefix, '-name', 'partyd.pc'], { encoding: 'utf8' }).trim();
  assert.ok(pc, 'partyd.pc is installed');
  const bin = path.join(prefix, 'bin');
  assert.ok(fs.existsSync(path.join(prefix, 'include', 'partyd', 'party.h')), '<partyd/party.h> is installed');

  // a name that is not a party name is refused; a good one makes the folder
  const bad = spawnSync(path.join(bin, 'partyd-new-party'), [path.join(scratch, 'x'), 'no spaces'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /is not a party name/);
  const dir = path.join(scratch, 'lobby');
  const made = spawnSync(path.join(bin, 'partyd-new-party'), [dir], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['Makefile', 'party.c', 'partyd.json']);
  const again = spawnSync(path.join(bin, 'partyd-new-party'), [dir], { encoding: 'utf8' });
  assert.equal(again.status, 1, 'an existing folder is not overwritten');

  // built outside the tree against the installed header
  const env = { ...process.env, PKG_CONFIG_SYSROOT_DIR: root, PKG_CONFIG_PATH: path.dirname(pc) };
  const mk = spawnSync('make', ['-C', dir], { encoding: 'utf8', env });
  assert.equal(mk.status, 0, mk.stdout + mk.stderr);
  assert.ok(fs.existsSync(path.join(dir, 'lobby.so')));

  // the installed partyd on the template's config (its port and data dir moved into the scratch folder)
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'partyd.json'), 'utf8'));
  config.listen.port = 0;
  fs.writeFileSync(path.join(dir, 'partyd.json'), JSON.stringify(config));
  const opts = { shards: 2, args: ['--config', path.join(dir, 'partyd.json')], bin: path.join(bin, 'partyd'), dir: scratch };
  let node = await start(opts);
  const seen = { a: [], b: [] };
  const a = new PartySocket({ host: node.host, party: 'lobby', room: 'r1', id: 'a', WebSocket });
  const b = new PartySocket({ host: node.host, party: 'lobby', room: 'r1', id: 'b', WebSocket });
  track(() => { a.close(); b.close(); });
  a.addEventListener('message', (e) => seen.a.push(e.data));
  b.addEventListener('message', (e) => seen.b.push(e.data));
  await waitFor(() => seen.a.length && seen.b.length, { what: 'both welcomes' });
  assert.deepEqual(JSON.parse(seen.a[0]), { type: 'welcome', id: 'a', messages: 0 });
  a.send('hello from a');
  await waitFor(() => seen.b.includes('hello from a'), { what: 'the broadcast to b' });
  assert.ok(!seen.a.includes('hello from a'), 'not back to the sender');
  assert.deepEqual(await (await node.fetch('/parties/lobby/r1')).json(), { room: 'r1', connections: 2, messages: 1 });
  // quotes and backslashes in the id come back as JSON that parses (party.h's writer, not printf); a room id is
  // kept percent-encoded, so it holds none
  const Q = 'say "hi" \\ back\\"';
  const q = new PartySocket({ host: node.host, party: 'lobby', room: 'r2', id: Q, WebSocket });
  track(() => q.close());
  const qseen = [];
  q.addEventListener('message', (e) => qseen.push(e.data));
  await waitFor(() => qseen.length > 0, { what: 'the welcome with quotes' });
  assert.deepEqual(JSON.parse(qseen[0]), { type: 'welcome', id: Q, messages: 0 });
  assert.deepEqual(await (await node.fetch('/parties/lobby/r2')).json(), { room: 'r2', connections: 1, messages: 0 });
  q.close();
  a.close();
  b.close();
  await stopClean(node);

  // the count is in storage: a new node on the same data finds it
  node = await start(opts);
  assert.deepEqual(await (await node.fetch('/parties/lobby/r1')).json(), { room: 'r1', connections: 0, messages: 1 });
  await stopClean(node);
});
