// dashboard.test.mjs — the admin dashboard (GET /admin/) in a real headless Chromium, driven by playwright-core: with
// the token in the URL fragment it shows a row per shard (state "up"), follows connections as clients come and go
// (document.body.dataset.connections and the #shards connections cells), reflects admin actions (an eviction closes
// the room's clients), shows room ids as text, and logs no console errors. A screenshot goes to the node's temporary
// directory (nothing is asserted on pixels).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { waitFor, tmpDir, adoptSpawned } from './lib.mjs';
import { cleanupAfterEach, start, open, stopClean } from './helpers.mjs';
import { TOKEN, adm } from './adminlib.mjs';

cleanupAfterEach();

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run'];

let chromium = null, skip = false;
if (!fs.existsSync(CHROMIUM)) {
  skip = `Chromium is not installed at ${CHROMIUM} (apt-get install -y chromium; deploy/install-deps --test does it)`;
} else {
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    skip = `playwright-core is not installed (cd tests && npm ci): ${e.message}`;
  }
}

const T = { timeout: 60000, skip };
const PARTIES = { main: { kind: 'chat' }, relay: { kind: 'relay' }, counter: { kind: 'counter' } };
const ws = (node, party, room, pk) => node.wsUrl(`/parties/${party}/${room}?_pk=${encodeURIComponent(pk)}`);

let context = null, profile = null;
before(async () => {
  if (skip) return;
  profile = tmpDir('partyd-chromium-');
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30000 });
  // playwright started Chromium (in a process group of its own): into lib.mjs's registry, so that it is killed with
  // everything else should context.close() not get to run
  adoptSpawned(/chrom/i, 'chromium');
});
after(async () => {
  if (context) await context.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

// A page on the node's dashboard that records console errors and page errors.
async function dashboard(node, fragment = `#token=${TOKEN}`) {
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location()?.url ?? ''})`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  const res = await page.goto(`http://127.0.0.1:${node.adminPort}/admin/${fragment}`, { timeout: 20000 });
  assert.equal(res.status(), 200);
  return { page, errors };
}
const shardRows = (page) => page.$$eval('#shards tbody tr[data-shard]', (rows) => rows.map((r) => ({
  shard: r.dataset.shard,
  cells: [...r.cells].map((c) => c.textContent.trim()),
  connections: r.querySelector('td.connections')?.textContent.trim(),
})));
const bodyConnections = (page) => page.evaluate(() => document.body.dataset.connections);

test('the dashboard shows every shard up, follows connections and admin actions, with no console errors', T, async () => {
  const node = await start({ shards: 2, config: { admin: { token: TOKEN }, parties: PARTIES } });
  const shards = (await adm(node, '/admin/shards')).body;
  const { page, errors } = await dashboard(node);
  assert.equal(await page.title(), 'partyd');
  assert.ok(await page.$('canvas#rate'), 'no canvas#rate');
  assert.ok(await page.$('canvas#conns'), 'no canvas#conns');

  // a row per shard, each "up", with its pid
  await page.waitForFunction(() => document.querySelectorAll('#shards tbody tr[data-shard]').length === 2, null, { timeout: 10000 });
  const rows = await shardRows(page);
  assert.deepEqual(rows.map((r) => r.shard).sort(), ['0', '1']);
  for (const r of rows) {
    assert.ok(r.cells.includes('up'), `shard ${r.shard}'s row does not say up: ${r.cells.join(' | ')}`);
    assert.ok(r.cells.includes(String(shards[Number(r.shard)].pid)), `shard ${r.shard}'s row does not show its pid`);
    assert.equal(r.connections, '0');
  }
  await waitFor(async () => (await bodyConnections(page)) === '0', { what: 'data-connections = 0' });

  // 3 connections, in rooms that land on both shards
  const clients = [];
  const rooms = [];
  for (let i = 0; rooms.length < 3 && i < 50; ++i) {
    const room = `dash-${i}`;
    const { shard } = (await adm(node, `/admin/rooms/relay/${room}`)).body;
    if (rooms.length < 2 ? !rooms.some((r) => r.shard === shard) : true) rooms.push({ room, shard });
  }
  for (const [i, r] of rooms.entries()) clients.push(await open(ws(node, 'relay', r.room, `c${i}`)));
  await waitFor(async () => (await bodyConnections(page)) === '3', { timeout: 10000, what: 'the page to show 3 connections' });
  await waitFor(async () => {
    const rs = await shardRows(page);
    return rs.reduce((a, r) => a + Number(r.connections), 0) === 3;
  }, { timeout: 5000, what: 'the #shards connections cells to sum to 3' });
  const perShard = await shardRows(page);
  for (const r of perShard) {
    assert.equal(Number(r.connections), rooms.filter((x) => String(x.shard) === r.shard).length, `shard ${r.shard}'s connections cell`);
  }
  await page.screenshot({ path: path.join(node.dir, 'dashboard.png'), fullPage: true });

  // an admin action: evicting the first room closes its client (1012); the page follows
  const ev = await adm(node, `/admin/rooms/relay/${rooms[0].room}/evict`, { method: 'POST' });
  assert.deepEqual(ev.body, { evicted: true });
  assert.equal((await clients[0].closed).code, 1012);
  await waitFor(async () => (await bodyConnections(page)) === '2', { timeout: 10000, what: 'the page to show 2 connections after the eviction' });
  // the others go away
  await Promise.all(clients.slice(1).map((c) => c.close()));
  await waitFor(async () => (await bodyConnections(page)) === '0', { timeout: 10000, what: 'the page to show 0 connections' });
  assert.ok(fs.statSync(path.join(node.dir, 'dashboard.png')).size > 0);

  assert.deepEqual(errors, [], `console errors:\n${errors.join('\n')}`);
  await page.close();
  await stopClean(node);
});

test('the dashboard shows room ids as text, never as markup', T, async () => {
  const node = await start({ shards: 1, config: { admin: { token: TOKEN }, parties: PARTIES } });
  // room ids are raw path segments: these reach the server as they are (a raw socket; fetch would percent-encode)
  const ids = ['<b>bold', '<i>it', '"quoted\'', '<marquee>m'];
  for (const id of ids) {
    const res = await new Promise((resolve, reject) => {
      const s = net.connect(node.port, '127.0.0.1', () => s.write(`POST /parties/counter/${id} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`));
      let d = '';
      s.on('data', (x) => { d += x; });
      s.on('end', () => resolve(d));
      s.on('error', reject);
    });
    assert.match(res, /^HTTP\/1\.1 200/, `POST to room ${id}: ${res}`);
  }
  const listed = (await adm(node, '/admin/rooms?party=counter')).body.rooms.map((r) => r.room);
  assert.deepEqual(listed.sort(), [...ids].sort());

  const { page, errors } = await dashboard(node);
  await page.waitForFunction((n) => document.querySelectorAll('#rooms tbody tr').length >= n, ids.length, { timeout: 10000 });
  const cells = await page.$$eval('#rooms tbody tr', (rows) => rows.map((r) => r.cells[0]?.textContent ?? ''));
  const markup = await page.evaluate(() => ['b', 'i', 'marquee'].map((t) => document.querySelectorAll(`#rooms ${t}`).length));
  const problems = [];
  for (const id of ids) if (!cells.includes(`counter/${id}`)) problems.push(`the room ${JSON.stringify(id)} is not shown as its text (cells: ${JSON.stringify(cells)})`);
  if (markup.some((n) => n > 0)) problems.push(`room ids became elements in #rooms (b, i, marquee: ${markup})`);
  await page.screenshot({ path: path.join(node.dir, 'dashboard-rooms.png'), fullPage: true });
  assert.deepEqual(problems, [], problems.join('\n'));
  assert.deepEqual(errors, [], `console errors:\n${errors.join('\n')}`);
  await page.close();
  await stopClean(node);
});

test('the dashboard with a wrong token or none shows the refusal and no shards', T, async () => {
  const node = await start({ shards: 1, config: { admin: { token: TOKEN }, parties: PARTIES } });
  for (const fragment of ['#token=wrong', '']) {
    const { page } = await dashboard(node, fragment);
    // the page says why it shows nothing
    await page.waitForFunction(() => /401|unauthori[sz]ed|token/i.test(document.body.innerText), null, { timeout: 10000 });
    await page.waitForTimeout(2500); // two more refreshes
    assert.equal((await shardRows(page)).length, 0);
    assert.equal(await bodyConnections(page), undefined);
    await page.close();
  }
  await stopClean(node);
});
