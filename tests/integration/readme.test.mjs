// readme.test.mjs — what README.md and docs/ promise about the configuration, the metrics and the admin endpoint is
// what the binary does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, ROOT, tmpDir } from './lib.mjs';

function defaultBlock(file) {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const m = /<!-- default-config -->\s*```json\n([\s\S]*?)```\s*<!-- \/default-config -->/.exec(text);
  assert.ok(m, `${file} has the default-config block`);
  return JSON.parse(m[1]);
}

function readmeDefault() {
  return defaultBlock('README.md');
}

// The part of a markdown file under `heading`, up to the next heading of the same or a higher level (a `#` line
// inside a code block is not a heading).
function section(file, heading) {
  const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const level = heading.match(/^#+/)[0].length;
  const start = lines.indexOf(heading);
  assert.ok(start >= 0, `${file} has "${heading}"`);
  let end = start + 1;
  for (let fenced = false; end < lines.length; end++) {
    if (lines[end].startsWith('```')) fenced = !fenced;
    const m = !fenced && /^(#+) /.exec(lines[end]);
    if (m && m[1].length <= level) break;
  }
  return lines.slice(start + 1, end).join('\n');
}

function printConfig(args = [], env = {}) {
  const dir = tmpDir();
  return JSON.parse(execFileSync(BIN, ['--print-config', ...args], { cwd: dir, env: { ...process.env, PARTYD_ADMIN_TOKEN: '', ...env } }));
}

test('the README shows the embedded default configuration', () => {
  const doc = readmeDefault();
  const eff = printConfig();
  assert.deepEqual(eff.listen, doc.listen);
  assert.equal(eff.prefix, doc.prefix);
  assert.equal(doc.shards, 'auto');
  assert.equal(eff.shards, os.availableParallelism());
  assert.equal(eff.data_dir, doc.data_dir);
  assert.equal(eff.durability, doc.durability);
  assert.equal(eff.admin.listen, doc.admin.listen);
  assert.equal(eff.admin.token, undefined); /* PARTYD_ADMIN_TOKEN unset: no token */
  assert.deepEqual(eff.limits, doc.limits);
  assert.deepEqual(eff.timers, doc.timers);
  assert.deepEqual(Object.keys(eff.parties), Object.keys(doc.parties));
  for (const [name, p] of Object.entries(doc.parties)) assert.equal(eff.parties[name].kind, p.kind);
  assert.equal(eff.log_level, doc.log_level);
});

test('docs/configuration.md shows the same default block as the README', () => {
  assert.deepEqual(defaultBlock('docs/configuration.md'), readmeDefault());
});

test('the README default block is a config file partyd accepts as is', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'partyd.json');
  fs.writeFileSync(file, JSON.stringify(readmeDefault()));
  const eff = printConfig(['--config', file]);
  assert.equal(eff.listen.port, 1999);
});

test('flags override the file, the file overrides the default; the admin token comes from the environment', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'partyd.json');
  fs.writeFileSync(file, JSON.stringify({ listen: { port: 2000 }, shards: 3, limits: { message_bytes: 4096 } }));
  const eff = printConfig(['--config', file, '--shards', '5'], { PARTYD_ADMIN_TOKEN: 'from-env-16-bytes' });
  assert.equal(eff.listen.port, 2000);
  assert.equal(eff.shards, 5);
  assert.equal(eff.limits.message_bytes, 4096);
  assert.equal(eff.limits.body_bytes, 1048576);
  assert.equal(eff.admin.token, '(hidden)');
});

test('docs/operating.md\'s metrics table names exactly the metrics /metrics serves; its admin table every admin path served', async () => {
  const { startNode } = await import('./lib.mjs');
  const metricsTable = section('docs/operating.md', '## Metrics');
  const documented = new Set([...metricsTable.matchAll(/`(partyd_[a-z_]+)/g)].map((m) => m[1]));
  const node = await startNode({ shards: 2 });
  try {
    const metrics = await (await fetch(`http://127.0.0.1:${node.adminPort}/metrics`)).text();
    const served = new Set([...metrics.matchAll(/^# TYPE (partyd_[a-z_]+) /gm)].map((m) => m[1]));
    assert.ok(served.size > 10);
    assert.deepEqual([...documented].sort(), [...served].sort());
    // every admin request of the table is routed (not 404): GETs answer, the others are at least known paths
    const admin = section('docs/operating.md', '## The admin endpoint');
    const rows = [...admin.matchAll(/^\| `(GET|POST|DELETE) ([^`? ]+)/gm)].map((m) => [m[1], m[2]]);
    assert.ok(rows.length >= 13, `${rows.length} admin rows`);
    for (const [method, p] of rows) {
      if (method !== 'GET') continue;
      const real = p.replace(':party', 'counter').replace(':room', 'readme-room');
      const r = await fetch(`http://127.0.0.1:${node.adminPort}${real}`);
      assert.equal(r.status, 200, `GET ${real}`);
    }
  } finally {
    await node.stop();
  }
});
