// adminlib.mjs — shared by the admin endpoint, partyctl, TLS and dashboard tests.
//
//  * adm(node, path, init, token): a request to the node's admin listener with `Authorization: Bearer TOKEN`
//    → {status, headers, body} (body parsed as JSON when it is JSON).
//  * parseMetrics(text): a strict parser of the Prometheus text exposition format (0.0.4). It fails (assert) on any
//    line that is not a comment, a HELP/TYPE line or a sample `name{labels} value`, on a sample whose metric has no
//    HELP and TYPE before it, on a family whose samples are not contiguous, on a duplicate sample, on a value that is
//    not a number, and on a histogram whose buckets are not cumulative, do not end with le="+Inf" equal to _count, or
//    lack _sum/_count. Returns {families: Map(name → {help, type, samples}), samples: [{name, labels, value}]}.
//  * metric(m, name, labels): the value of one sample (undefined when absent); metricSum(m, name): the sum over labels.
//  * partyctl(args, {token, env, cwd}): runs partyctl (next to $PARTYD_BIN) → {code, stdout, stderr}.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { BIN } from './lib.mjs';

export const TOKEN = 's3cret-admin-token'; // admin.token: at least 16 bytes
export const CTL = path.join(path.dirname(BIN), 'partyctl');

export async function adm(node, p, init = {}, token = TOKEN) {
  const headers = { ...(init.headers ?? {}) };
  if (token != null) headers.Authorization = `Bearer ${token}`;
  return node.admin(p, { ...init, headers });
}

// ---- Prometheus text format ------------------------------------------------------------------------------------------

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(s, line) {
  if (s === '+Inf' || s === 'Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  assert.match(s, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `not a number in metrics line: ${line}`);
  return Number(s);
}

// `name{a="x",b="y\"z"} 1.5` → {name, labels, value}
function parseSample(line) {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i])) ++i;
  const name = line.slice(0, i);
  assert.match(name, NAME, `bad metric name in line: ${line}`);
  const labels = {};
  if (line[i] === '{') {
    ++i;
    for (;;) {
      while (line[i] === ' ') ++i;
      if (line[i] === '}') { ++i; break; }
      let j = i;
      while (j < line.length && /[a-zA-Z0-9_]/.test(line[j])) ++j;
      const lname = line.slice(i, j);
      assert.match(lname, LABEL, `bad label name in line: ${line}`);
      assert.equal(line[j], '=', `expected = after label ${lname} in line: ${line}`);
      assert.equal(line[j + 1], '"', `expected a quoted label value in line: ${line}`);
      let k = j + 2, v = '';
      for (;;) {
        assert.ok(k < line.length, `unterminated label value in line: ${line}`);
        const ch = line[k];
        if (ch === '\\') {
          const e = line[k + 1];
          assert.ok(e === '\\' || e === '"' || e === 'n', `bad escape \\${e} in line: ${line}`);
          v += e === 'n' ? '\n' : e;
          k += 2;
        } else if (ch === '"') {
          ++k;
          break;
        } else {
          v += ch;
          ++k;
        }
      }
      assert.ok(!(lname in labels), `label ${lname} twice in line: ${line}`);
      labels[lname] = v;
      i = k;
      if (line[i] === ',') ++i;
      else assert.equal(line[i], '}', `expected , or } in line: ${line}`);
    }
  }
  assert.equal(line[i], ' ', `expected a space before the value in line: ${line}`);
  const rest = line.slice(i + 1).trim().split(/\s+/);
  assert.ok(rest.length === 1 || rest.length === 2, `expected "value [timestamp]" in line: ${line}`);
  const value = parseValue(rest[0], line);
  if (rest.length === 2) assert.match(rest[1], /^-?\d+$/, `bad timestamp in line: ${line}`);
  return { name, labels, value };
}

function familyOf(name, families) {
  if (families.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return base;
    }
  }
  return null;
}

const labelKey = (labels) => JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));

export function parseMetrics(text) {
  assert.ok(text.length > 0, 'empty metrics');
  assert.ok(text.endsWith('\n'), 'the exposition must end with a newline');
  const families = new Map();
  const samples = [];
  const seen = new Set();
  const finished = new Set(); // families whose samples are over (another family's began)
  let current = null;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) continue; // another comment
      const [, kind, name, rest = ''] = m;
      assert.match(name, NAME, `bad metric name in: ${line}`);
      const f = families.get(name) ?? { name, help: undefined, type: undefined, samples: [] };
      families.set(name, f);
      assert.equal(f.samples.length, 0, `${kind} for ${name} after its samples`);
      if (kind === 'HELP') {
        assert.equal(f.help, undefined, `two HELP lines for ${name}`);
        f.help = rest;
      } else {
        assert.equal(f.type, undefined, `two TYPE lines for ${name}`);
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest), `bad TYPE ${rest} for ${name}`);
        f.type = rest;
      }
      continue;
    }
    const s = parseSample(line);
    const fam = familyOf(s.name, families);
    assert.ok(fam, `sample ${s.name} has no HELP/TYPE before it`);
    const f = families.get(fam);
    assert.ok(f.help !== undefined && f.help.length > 0, `metric ${fam} has no HELP before its samples`);
    assert.ok(f.type !== undefined, `metric ${fam} has no TYPE before its samples`);
    assert.ok(!finished.has(fam), `the samples of ${fam} are not contiguous`);
    if (current !== null && current !== fam) finished.add(current);
    current = fam;
    const key = `${s.name}${labelKey(s.labels)}`;
    assert.ok(!seen.has(key), `duplicate sample ${key}`);
    seen.add(key);
    if (f.type === 'counter' || s.name.endsWith('_count') || s.name.endsWith('_bucket')) {
      assert.ok(s.value >= 0, `${key} is a negative counter: ${s.value}`);
    }
    f.samples.push(s);
    samples.push(s);
  }
  for (const f of families.values()) {
    assert.ok(f.help !== undefined, `metric ${f.name} has no HELP`);
    assert.ok(f.type !== undefined, `metric ${f.name} has no TYPE`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return { families, samples };
}

function checkHistogram(f) {
  // group by the labels other than le
  const groups = new Map();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const k = labelKey(rest);
    const g = groups.get(k) ?? { buckets: [], sum: undefined, count: undefined };
    groups.set(k, g);
    if (s.name === `${f.name}_bucket`) {
      assert.ok(le !== undefined, `${f.name}_bucket without le`);
      g.buckets.push({ le: le === '+Inf' ? Infinity : parseValue(le, `le="${le}"`), raw: le, value: s.value });
    } else if (s.name === `${f.name}_sum`) {
      g.sum = s.value;
    } else if (s.name === `${f.name}_count`) {
      g.count = s.value;
    } else {
      assert.fail(`unexpected sample ${s.name} in histogram ${f.name}`);
    }
  }
  assert.ok(groups.size > 0, `histogram ${f.name} has no samples`);
  for (const g of groups.values()) {
    assert.ok(g.buckets.length >= 2, `histogram ${f.name} has fewer than 2 buckets`);
    for (let i = 1; i < g.buckets.length; ++i) {
      assert.ok(g.buckets[i].le > g.buckets[i - 1].le, `histogram ${f.name}: le not increasing (${g.buckets[i - 1].raw}, ${g.buckets[i].raw})`);
      assert.ok(g.buckets[i].value >= g.buckets[i - 1].value, `histogram ${f.name}: buckets not cumulative at le=${g.buckets[i].raw}`);
    }
    const last = g.buckets[g.buckets.length - 1];
    assert.equal(last.raw, '+Inf', `histogram ${f.name} does not end with le="+Inf"`);
    assert.ok(g.count !== undefined, `histogram ${f.name} has no _count`);
    assert.ok(g.sum !== undefined, `histogram ${f.name} has no _sum`);
    assert.equal(last.value, g.count, `histogram ${f.name}: le="+Inf" (${last.value}) != _count (${g.count})`);
    assert.ok(g.sum >= 0, `histogram ${f.name}: negative _sum`);
  }
}

export function metric(m, name, labels = {}) {
  const k = labelKey(labels);
  return m.samples.find((s) => s.name === name && labelKey(s.labels) === k)?.value;
}
export function metricSum(m, name) {
  return m.samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
}

export async function scrape(node, token = TOKEN) {
  const r = await adm(node, '/metrics', {}, token);
  assert.equal(r.status, 200, `GET /metrics: ${r.status} ${JSON.stringify(r.body)}`);
  assert.match(r.headers.get('content-type'), /^text\/plain; ?version=0\.0\.4/);
  return parseMetrics(r.body);
}

// ---- partyctl --------------------------------------------------------------------------------------------------------

export function partyctl(args, { token = TOKEN, env = {}, cwd, timeout = 30000 } = {}) {
  const e = { ...process.env, ...env };
  if (token == null) delete e.PARTYD_ADMIN_TOKEN;
  else e.PARTYD_ADMIN_TOKEN = token;
  return new Promise((resolve) => {
    execFile(CTL, args, { env: e, cwd, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : err.signal ? `signal ${err.signal}` : err.code) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

// The node's exit {code, signal}, or null when it is still running after `ms` (the timer does not outlive the wait).
export async function exitWithin(node, ms) {
  let timer;
  const r = await Promise.race([node.exited, new Promise((resolve) => { timer = setTimeout(() => resolve(null), ms); })]);
  clearTimeout(timer);
  return r;
}
