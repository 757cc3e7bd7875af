// systemd.test.mjs — deploy/partyd.service and the node's side of Type=notify: the unit passes `systemd-analyze
// verify` and scores ≤ 2.0 ("OK") in `systemd-analyze security --offline=yes`; a real $NOTIFY_SOCKET (a unix datagram
// socket bound here, by a small python3 listener: Node's dgram has no AF_UNIX) receives READY=1 only once /health
// answers 200, and STOPPING=1 on SIGTERM before the node exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startNode, spawnChild, waitFor, tmpDir, kill, ROOT, BIN } from './lib.mjs';

const UNIT = path.join(ROOT, 'deploy', 'partyd.service');
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

// The unit as installed, with ExecStart pointing at the binary under test (verify checks that it is executable).
function unitCopy() {
  const dir = tmpDir('partyd-unit-');
  const text = fs.readFileSync(UNIT, 'utf8').replace(/^ExecStart=\/usr\/local\/bin\/partyd /m, `ExecStart=${BIN} `);
  assert.notEqual(text, fs.readFileSync(UNIT, 'utf8'), 'the unit starts /usr/local/bin/partyd');
  const file = path.join(dir, 'partyd.service');
  fs.writeFileSync(file, text);
  return file;
}

test('the unit: Type=notify, hardened, scored OK by systemd-analyze security, verify is clean', { skip: !hasAnalyze && 'systemd-analyze is not installed' }, () => {
  const text = fs.readFileSync(UNIT, 'utf8');
  for (const line of ['Type=notify', 'DynamicUser=yes', 'StateDirectory=partyd', 'AmbientCapabilities=CAP_NET_BIND_SERVICE',
    'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'KillMode=mixed']) {
    assert.match(text, new RegExp(`^${line}$`, 'm'), line);
  }
  const file = unitCopy();
  const verify = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
  assert.equal(verify.status, 0, `systemd-analyze verify:\n${verify.stdout}${verify.stderr}`);
  assert.equal(`${verify.stdout}${verify.stderr}`.trim(), '', 'systemd-analyze verify says nothing');

  const sec = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', file], { encoding: 'utf8' });
  const m = /Overall exposure level for partyd\.service: ([\d.]+) (\w+)/.exec(sec.stdout);
  assert.ok(m, `no score in:\n${sec.stdout}${sec.stderr}`);
  assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]} ${m[2]} (want ≤ 2.0):\n${sec.stdout}`);
  assert.equal(m[2], 'OK');
});

// A $NOTIFY_SOCKET: python3 binds a unix datagram socket (a path, or "@name" in the abstract namespace) and prints
// each datagram as one JSON line.
async function notifyListener(sockPath) {
  const code = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = sys.argv[1]
s.bind("\\0" + a[1:] if a.startswith("@") else a)
print(json.dumps("BOUND"), flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;
  const proc = spawnChild('python3', ['-c', code, sockPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const l = { proc, messages: [], waiters: [] };
  let buf = '';
  proc.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      l.messages.push(msg);
      for (const w of l.waiters.splice(0)) w();
    }
  });
  await waitFor(() => l.messages.includes('BOUND'), { what: 'the notify socket to be bound' });
  return l;
}

for (const abstract of [false, true]) {
  test(`sd_notify over ${abstract ? 'an abstract' : 'a path'} socket: READY=1 once /health is 200, STOPPING=1 on SIGTERM`, async (t) => {
    const dir = tmpDir();
    const name = abstract ? `partyd-notify-${process.pid}-${Date.now()}` : path.join(dir, 'notify.sock');
    const l = await notifyListener(abstract ? `@${name}` : name);
    t.after(() => kill(l.proc));
    const node = await startNode({ dir, shards: 2, ready: false, env: { NOTIFY_SOCKET: abstract ? `@${name}` : name } });
    t.after(() => node.stop().catch(() => {}));

    // the moment READY=1 arrives, /health answers 200 at the first try
    // (the port line is printed before any child starts, so it is there when READY=1 is)
    let healthAtReady;
    const look = async () => {
      if (!l.messages.some((m) => m.split('\n').includes('READY=1'))) { l.waiters.push(look); return; }
      const port = await waitFor(() => /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(node.stdout)?.[1], { what: 'the port' });
      healthAtReady = (await fetch(`http://127.0.0.1:${port}/health`)).status;
    };
    look();
    await waitFor(() => healthAtReady !== undefined || node.exitCode !== undefined, { timeout: 20000, what: 'READY=1' });
    assert.equal(healthAtReady, 200, '/health when READY=1 arrived');
    assert.ok(!l.messages.some((m) => m.includes('STOPPING=1')), 'no STOPPING=1 before the signal');
    await node.ready();
    assert.equal(l.messages.filter((m) => m.split('\n').includes('READY=1')).length, 1, 'READY=1 is sent once');

    node.signal('SIGTERM');
    await waitFor(() => l.messages.some((m) => m.split('\n').includes('STOPPING=1')), { timeout: 20000, what: 'STOPPING=1' });
    const { code, signal } = await node.stop();
    assert.equal(signal, null);
    assert.equal(code, 0);
    assert.doesNotMatch(node.stderr, /cannot tell the service manager/);
  });
}

test('without $NOTIFY_SOCKET nothing is sent and nothing is said about it', async () => {
  const env = { NOTIFY_SOCKET: '' };
  const node = await startNode({ shards: 1, env });
  const { code } = await node.stop();
  assert.equal(code, 0);
  assert.doesNotMatch(node.stderr, /service manager/);
});
