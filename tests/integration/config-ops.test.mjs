// config-ops.test.mjs — operators' conventions (issue 20): the configuration from the environment (flags > environment
// > file > default, and --print-config's "sources" says which), "shards": "auto" counting the CPUs the process may
// use (taskset), the /ready probe on the client port, a config file's paths relative to its folder, "did you mean"
// for unknown keys, partyd -h, partyctl reading PARTYD_ADMIN and taking its global flags after the command, and
// SIGHUP reloading what can change live.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { BIN, Node, spawnChild, tmpDir, waitFor } from './lib.mjs';
import { cleanupAfterEach, start, stopClean } from './helpers.mjs';
import { partyctl } from './adminlib.mjs';

cleanupAfterEach();

const T = { timeout: 60000 };
// The environment a test starts from: none of the variables partyd reads, whatever the caller's shell set.
function cleanEnv(extra = {}) {
  const e = { ...process.env };
  for (const k of ['PARTYD_HOST', 'PARTYD_PORT', 'PARTYD_DATA_DIR', 'PARTYD_SHARDS', 'PARTYD_ADMIN', 'PARTYD_ADMIN_TOKEN']) delete e[k];
  return { ...e, ...extra };
}
function printConfig(args, env = {}, cwd = tmpDir()) {
  return JSON.parse(execFileSync(BIN, ['--print-config', ...args], { cwd, env: cleanEnv(env) }));
}

test('flags > environment > file > default, and "sources" says where each value came from', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'partyd.json');
  fs.writeFileSync(file, JSON.stringify({ listen: { host: '127.0.0.2', port: 2000 }, shards: 2 }));
  const env = { PARTYD_PORT: '2001', PARTYD_SHARDS: '3', PARTYD_DATA_DIR: '/tmp/from-env', PARTYD_ADMIN: 'http://127.0.0.1:2998/' };
  const eff = printConfig(['--config', file, '--shards', '4'], env);
  assert.equal(eff.listen.host, '127.0.0.2');
  assert.equal(eff.listen.port, 2001);
  assert.equal(eff.shards, 4);
  assert.equal(eff.data_dir, '/tmp/from-env');
  assert.equal(eff.admin.listen, '127.0.0.1:2998');
  assert.deepEqual(eff.sources, {
    config: file,
    'listen.host': 'file',
    'listen.port': 'env PARTYD_PORT',
    data_dir: 'env PARTYD_DATA_DIR',
    shards: 'flag --shards',
    'admin.listen': 'env PARTYD_ADMIN',
  });
  // nothing set: every value is the default's
  const def = printConfig([]);
  for (const k of ['listen.host', 'listen.port', 'data_dir', 'shards', 'admin.listen']) assert.equal(def.sources[k], 'default', k);
  // PARTYD_HOST too, and an empty variable counts as unset
  assert.equal(printConfig([], { PARTYD_HOST: '0.0.0.0', PARTYD_PORT: '' }).listen.host, '0.0.0.0');
  assert.equal(printConfig([], { PARTYD_PORT: '' }).sources['listen.port'], 'default');
  // a bad value names the variable and the field, and nothing starts
  const bad = spawnSync(BIN, ['--print-config'], { cwd: dir, env: cleanEnv({ PARTYD_PORT: 'http' }), encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /environment PARTYD_PORT: listen\.port: expected an integer from 0 to 65535/);
  const badShards = spawnSync(BIN, ['--print-config'], { cwd: dir, env: cleanEnv({ PARTYD_SHARDS: 'many' }), encoding: 'utf8' });
  assert.equal(badShards.status, 2);
  assert.match(badShards.stderr, /environment PARTYD_SHARDS: shards: expected "auto" or an integer/);
});

test('a node configured by the environment alone, under taskset -c 0: "auto" is 1 shard; /ready answers on the client port', T, async () => {
  const dir = tmpDir();
  const env = cleanEnv({ PARTYD_PORT: '0', PARTYD_ADMIN: '127.0.0.1:0', PARTYD_DATA_DIR: path.join(dir, 'data'), PARTYD_SHARDS: 'auto' });
  assert.equal(printConfig([], env).shards, Math.min(256, (await import('node:os')).availableParallelism()));
  // taskset execs partyd: the pid spawnChild registers is partyd's
  const proc = spawnChild('taskset', ['-c', '0', BIN], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const node = new Node(proc, dir, path.join(dir, 'sanitizer'));
  await node.ready();
  assert.equal(Object.keys(await node.shards()).length, 1, 'shards "auto" under taskset -c 0');
  const ready = await node.json('/ready');
  assert.equal(ready.status, 200);
  assert.deepEqual(ready.body, { ready: true });
  assert.deepEqual((await node.admin('/ready')).body, { ready: true });
  assert.ok(fs.existsSync(path.join(dir, 'data')), 'PARTYD_DATA_DIR is where the data went');
  await stopClean(node);
});

test('/ready on the client port says 503 while a shard is stalled, 200 once it turns again', T, async () => {
  const node = await start({ shards: 2, config: { timers: { stall_ms: 300, stall_kill_ms: 0 } } });
  assert.equal((await node.fetch('/ready')).status, 200);
  const shards = await node.shards();
  const pid = shards[Object.keys(shards)[0]].pid;
  process.kill(pid, 'SIGSTOP');
  try {
    await waitFor(async () => (await node.fetch('/ready')).status === 503, { what: '/ready to say 503' });
    assert.deepEqual((await node.json('/ready')).body, { ready: false });
    assert.equal((await node.admin('/ready')).status, 503);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  await waitFor(async () => (await node.fetch('/ready')).status === 200, { what: '/ready to say 200 again' });
  await stopClean(node);
});

test('a config file\'s paths are relative to its folder; unknown keys suggest the nearest; partyd -h', T, async () => {
  const dir = tmpDir();
  const sub = path.join(dir, 'etc');
  fs.mkdirSync(path.join(sub, 'public'), { recursive: true });
  fs.writeFileSync(path.join(sub, 'public', 'index.html'), 'hello from etc/public');
  fs.writeFileSync(path.join(sub, 'partyd.json'), JSON.stringify({ data_dir: 'state', serve: './public' }));
  const cwd = tmpDir(); // started elsewhere: the paths still mean the file's folder
  const eff = printConfig(['--config', path.join(sub, 'partyd.json')], {}, cwd);
  assert.equal(eff.data_dir, path.join(sub, 'state'));
  assert.equal(eff.serve, fs.realpathSync(path.join(sub, 'public')));
  // a real node started from another folder, with only the file's relative paths (startNode's --data-dir left out)
  const node = new Node(spawnChild(BIN, ['--config', path.join(sub, 'partyd.json'), '--port', '0', '--admin', '127.0.0.1:0', '--shards', '1'],
    { cwd, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] }), cwd, path.join(cwd, 'sanitizer'));
  await node.ready();
  assert.equal(await (await node.fetch('/index.html')).text(), 'hello from etc/public');
  assert.ok(fs.existsSync(path.join(sub, 'state')), 'the data went to the file\'s folder');
  assert.ok(!fs.existsSync(path.join(cwd, 'state')));
  await stopClean(node);

  fs.writeFileSync(path.join(dir, 'typo.json'), JSON.stringify({ parites: {} }));
  const typo = spawnSync(BIN, ['--config', path.join(dir, 'typo.json'), '--print-config'], { env: cleanEnv(), encoding: 'utf8' });
  assert.equal(typo.status, 2);
  assert.match(typo.stderr, /parites: unknown key \(did you mean "parties"\?\)/);
  fs.writeFileSync(path.join(dir, 'typo2.json'), JSON.stringify({ timers: { idle: 1000 } }));
  const typo2 = spawnSync(BIN, ['--config', path.join(dir, 'typo2.json'), '--print-config'], { env: cleanEnv(), encoding: 'utf8' });
  assert.match(typo2.stderr, /timers\.idle: unknown key \(did you mean "idle_ms"\?\)/);

  const help = spawnSync(BIN, ['-h'], { env: cleanEnv(), encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^usage: partyd/);
  assert.match(help.stdout, /PARTYD_PORT/);
});

test('partyctl reads PARTYD_ADMIN (HOST:PORT or a URL); global flags go before or after the command', T, async () => {
  const node = await start({ shards: 2, env: { PARTYD_ADMIN_TOKEN: '' } });
  const hostport = `127.0.0.1:${node.adminPort}`;
  for (const admin of [hostport, `http://${hostport}/`]) {
    const r = await partyctl(['shards', '--json'], { token: null, env: { PARTYD_ADMIN: admin } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(Object.keys(JSON.parse(r.stdout)).length, 2);
  }
  const before = await partyctl(['--json', 'status'], { token: null, env: { PARTYD_ADMIN: hostport } });
  assert.equal(before.code, 0, before.stderr);
  assert.ok(JSON.parse(before.stdout));
  // --admin wins over PARTYD_ADMIN, after the command too
  const flag = await partyctl(['shards', '--admin', `http://${hostport}`, '--json'], { token: null, env: { PARTYD_ADMIN: '127.0.0.1:1' } });
  assert.equal(flag.code, 0, flag.stderr);
  const unreachable = await partyctl(['shards'], { token: null, env: { PARTYD_ADMIN: '127.0.0.1:1' } });
  assert.equal(unreachable.code, 3);
  // a command's own flag keeps its value, even one that looks like a global flag
  const rooms = await partyctl(['rooms', '--prefix', '--json', '--json'], { token: null, env: { PARTYD_ADMIN: hostport } });
  assert.equal(rooms.code, 0, rooms.stderr);
  assert.ok(JSON.parse(rooms.stdout));
  await stopClean(node);
});

test('SIGHUP: vars, the admin token and live limits change; a restart-only change is named; a bad file keeps the old settings', T, async () => {
  const MOD = path.join(path.dirname(BIN), 'tests', 'modules', 'echo.so');
  const A = 'first-admin-token-0123', B = 'second-admin-token-4567';
  const conf = (greeting, token, extra = {}) => ({
    admin: { token }, parties: { echo: { module: MOD, vars: { GREETING: greeting } } }, ...extra,
  });
  const node = await start({ shards: 2, config: conf('one', A) });
  const file = path.join(node.dir, 'partyd.json');
  const greeting = async () => (await (await node.fetch('/parties/echo/r1')).json()).var;
  const adminStatus = async (token) => (await node.admin('/admin/shards', { headers: { authorization: `Bearer ${token}` } })).status;
  assert.equal(await greeting(), 'one');
  assert.equal(await adminStatus(A), 200);

  fs.writeFileSync(file, JSON.stringify(conf('two', B, { durability: 'relaxed', limits: { connections_per_ip: 500 } })));
  node.signal('SIGHUP');
  await waitFor(async () => (await greeting()) === 'two', { what: 'the reloaded var in the room' });
  await waitFor(async () => (await adminStatus(B)) === 200, { what: 'the new admin token' });
  assert.equal(await adminStatus(A), 401);
  await waitFor(() => /SIGHUP: changed, but applied only after a restart: durability/.test(node.stderr), { what: 'the restart-only change logged' });
  const line = node.stderr.split('\n').find((l) => /SIGHUP: configuration read again/.test(l));
  assert.match(line, /changed live: .*admin\.token/);
  assert.match(line, /parties\.echo\.vars\.GREETING/);
  assert.match(line, /limits\.connections_per_ip/);

  // a bad file: nothing changes, and the log says why
  fs.writeFileSync(file, '{"parties": {"echo": {"module": ');
  node.signal('SIGHUP');
  await waitFor(() => /SIGHUP: keeping the old settings: .*partyd\.json: line \d+/.test(node.stderr), { what: 'the bad file refused' });
  fs.writeFileSync(file, JSON.stringify(conf('three', 'short')));
  node.signal('SIGHUP');
  await waitFor(() => /SIGHUP: keeping the old settings: admin\.token: at least 16 bytes/.test(node.stderr), { what: 'the short token refused' });
  assert.equal(await greeting(), 'two');
  assert.equal(await adminStatus(B), 200);
  await stopClean(node);
});

test('SIGHUP reloads the TLS certificate and key (relative to the config file); a bad one keeps the old', T, async () => {
  const https = await import('node:https');
  const dir = tmpDir();
  const makeCert = (cn) => execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'key.pem'),
    '-out', path.join(dir, 'cert.pem'), '-days', '2', '-subj', `/CN=${cn}`], { stdio: 'pipe' });
  makeCert('first');
  const node = await start({ dir, shards: 1, ready: false, config: { listen: { tls: { cert: 'cert.pem', key: 'key.pem' } } } });
  await waitFor(() => {
    if (node.exitCode !== undefined) throw new Error(`partyd exited early:\n${node.stderr}`);
    const m = /listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(node.stdout);
    if (m) node.port = Number(m[1]);
    return node.port;
  }, { what: 'partyd to print its https port' });
  // the certificate a new connection gets (not verified: only its name is looked at)
  const peerCN = () => new Promise((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port: node.port, path: '/health', rejectUnauthorized: false, agent: false }, (res) => {
      const cn = res.socket.getPeerCertificate().subject?.CN;
      res.resume();
      res.on('end', () => resolve(cn));
    });
    r.on('error', reject);
    r.end();
  });
  await waitFor(async () => (await peerCN()) === 'first', { what: 'the first certificate' });
  makeCert('second');
  node.signal('SIGHUP');
  await waitFor(async () => (await peerCN()) === 'second', { what: 'the reloaded certificate' });
  fs.writeFileSync(path.join(dir, 'cert.pem'), 'not a certificate');
  node.signal('SIGHUP');
  await waitFor(() => /SIGHUP: keeping the old settings: listen\.tls\.cert/.test(node.stderr), { what: 'the bad certificate refused' });
  assert.equal(await peerCN(), 'second');
  await node.stop();
  assert.equal(node.exitCode, 0);
});
