// metrics.test.mjs — /metrics follows Prometheus's naming (issue 20): `promtool check metrics` passes on a scrape
// taken while clients send, no gauge shares a family name with a counter, the HTTP status class is a `class` label,
// every partyd process has its process_* series, partyd_build_info is there, and connections, messages and storage
// writes carry a `party` label that moves with what each party did.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { waitFor } from './lib.mjs';
import { cleanupAfterEach, start, open, stopClean } from './helpers.mjs';
import { TOKEN, scrape, metric, metricSum } from './adminlib.mjs';

cleanupAfterEach();

const T = { timeout: 90000 };
const PARTIES = { relay: { kind: 'relay' }, counter: { kind: 'counter' }, main: { kind: 'chat' } };
const ws = (node, party, room, pk) => node.wsUrl(`/parties/${party}/${room}?_pk=${encodeURIComponent(pk)}`);
const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;

async function rawScrape(node) {
  const r = await fetch(`http://127.0.0.1:${node.adminPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  return r.text();
}

test('/metrics: promtool check metrics passes on a scrape under load; families, labels, process_* and build info', T, async (t) => {
  const node = await start({ shards: 2, config: { admin: { token: TOKEN }, parties: PARTIES } });

  // load: relay clients sending without pause and counter POSTs, while we scrape
  const cs = await Promise.all(['a', 'b', 'c'].map((pk) => open(ws(node, 'relay', 'load', pk))));
  let sending = true;
  const pump = (async () => {
    let i = 0;
    while (sending) {
      cs[i++ % 3].send(`m${i}`);
      if (i % 50 === 0) {
        await node.fetch('/parties/counter/load', { method: 'POST' });
      }
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
  })();
  const m0 = await scrape(node);
  await waitFor(async () => {
    const m = await scrape(node);
    return metric(m, 'partyd_party_messages_total', { party: 'relay', direction: 'in' }) > 100 &&
      metric(m, 'partyd_party_storage_writes_total', { party: 'counter' }) > 0;
  }, { what: 'per-party counters to move under load', timeout: 30000 });
  const text = await rawScrape(node);
  const m1 = await scrape(node);
  sending = false;
  await pump;

  // promtool (Debian's prometheus package; deploy/install-deps --test) on the scrape taken under load
  assert.ok(promtool, 'promtool is not installed (deploy/install-deps --test installs prometheus)');
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.status, 0, `promtool check metrics failed:\n${r.stdout}${r.stderr}`);

  // no gauge and counter sharing a family name (a counter's family is its name without _total)
  const gauges = new Set([...m1.families.values()].filter((f) => f.type === 'gauge').map((f) => f.name));
  for (const f of m1.families.values()) {
    if (f.type === 'counter') {
      assert.ok(f.name.endsWith('_total'), `counter ${f.name} does not end in _total`);
      assert.ok(!gauges.has(f.name.slice(0, -'_total'.length)), `gauge and counter share the family ${f.name.slice(0, -6)}`);
    }
  }
  // a `code` label holds a code; the status class is `class`
  for (const s of m1.samples) {
    if (s.labels.code !== undefined) assert.match(s.labels.code, /^\d{3}$/, `${s.name} has code="${s.labels.code}"`);
  }
  assert.ok(metric(m1, 'partyd_http_responses_total', { class: '2xx' }) > 0);

  // build info
  const bi = m1.samples.find((s) => s.name === 'partyd_build_info');
  assert.ok(bi && bi.value === 1 && /^\d+\.\d+\.\d+/.test(bi.labels.version), `partyd_build_info: ${JSON.stringify(bi)}`);

  // process_* for the supervisor, the router and both shards, with their real pids' figures
  const node_ = await (await fetch(`http://127.0.0.1:${node.adminPort}/admin/node`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
  const procs = [{ process: 'supervisor' }, { process: 'router' }, { process: 'shard', shard: '0' }, { process: 'shard', shard: '1' }];
  for (const labels of procs) {
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_virtual_memory_bytes',
      'process_start_time_seconds', 'process_open_fds', 'process_max_fds']) {
      const v = metric(m1, name, labels);
      assert.ok(v !== undefined, `no ${name}${JSON.stringify(labels)}`);
      assert.ok(v >= 0, `${name}${JSON.stringify(labels)} = ${v}`);
    }
    assert.ok(metric(m1, 'process_resident_memory_bytes', labels) > 1 << 20, `${JSON.stringify(labels)}: RSS under 1 MiB`);
    assert.ok(metric(m1, 'process_open_fds', labels) >= 3);
    const started = metric(m1, 'process_start_time_seconds', labels);
    assert.ok(Math.abs(started - node_.started_at / 1000) < 120, `${JSON.stringify(labels)} started at ${started}, the node at ${node_.started_at / 1000}`);
  }
  assert.equal(m1.families.get('process_cpu_seconds_total').type, 'counter');

  // per party: connections held, messages in and out, storage writes
  assert.equal(metric(m1, 'partyd_party_connections', { party: 'relay' }), 3);
  assert.equal(metric(m1, 'partyd_party_connections', { party: 'counter' }), 0);
  assert.equal(metric(m1, 'partyd_party_connections', { party: 'main' }), 0);
  assert.ok(metric(m1, 'partyd_party_messages_total', { party: 'relay', direction: 'out' }) > metric(m0, 'partyd_party_messages_total', { party: 'relay', direction: 'out' }));
  assert.ok(metric(m1, 'partyd_party_message_bytes_total', { party: 'relay', direction: 'in' }) > 0);
  assert.equal(metric(m1, 'partyd_party_messages_total', { party: 'main', direction: 'in' }), 0);
  assert.equal(metric(m1, 'partyd_party_storage_writes_total', { party: 'relay' }), 0);
  assert.equal(metricSum(m1, 'partyd_party_connections'), metricSum(m1, 'partyd_shard_connections'));

  await Promise.all(cs.map((c) => c.close()));
  await waitFor(async () => metric(await scrape(node), 'partyd_party_connections', { party: 'relay' }) === 0, { what: 'relay connections back to 0' });
  await stopClean(node);
});
