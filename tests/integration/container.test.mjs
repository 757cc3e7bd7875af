// container.test.mjs — deploy/Containerfile for real: a Debian 12 base image made here (debootstrap from the mirror apt
// uses, then `podman import`; no registry is reachable), `podman build` of the two stages, `podman run` with the
// ports published on 127.0.0.1, partysocket driving the node through them, SIGTERM (`podman stop`) draining (a client
// gets 1001) and exiting 0, and the data surviving a new container on the same volume. Needs root (podman's storage,
// debootstrap) and deploy/install-deps --test (podman, runc, catatonit, debootstrap). A cold run takes a few minutes
// here, a warm one about a minute: the base image localhost/debian:12 and podman's layer cache of the build stage
// (untagged images) are kept and reused; the test's own image, containers and volume are removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import PartySocket from 'partysocket';
import { WebSocket, Client, spawnChild, waitFor, tmpDir, ROOT } from './lib.mjs';

const BASE = 'localhost/debian:12';
const IMAGE = `localhost/partyd-test:${process.pid}`;
const TOKEN = 'container-test-token-0123456789';
const isRoot = process.getuid?.() === 0;

// podman on these machines: crun fails on hybrid cgroups (runc works), and the sandbox allows fewer rlimits than
// podman asks for by default (C-STACK-NOTES.md, "Containers without a registry").
const work = tmpDir('partyd-container-');
const conf = path.join(work, 'containers.conf');
fs.writeFileSync(conf, `[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n\n[engine]\nruntime = "runc"\n`);
const env = { ...process.env, CONTAINERS_CONF: conf };

// Runs a command to its end through the harness's registry; resolves { code, stdout, stderr }.
function run(cmd, args, { input, timeout = 600000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawnChild(cmd, args, { env, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`${cmd} ${args.join(' ')}: no end after ${timeout} ms`)); }, timeout);
    p.on('error', reject);
    p.on('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
    if (input) input.pipe(p.stdin);
  });
}
async function ok(cmd, args, opts) {
  const r = await run(cmd, args, opts);
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}

// The Debian mirror apt is configured with here (deb822 .sources or sources.list): never a host name in the repo.
function aptMirror() {
  const dir = '/etc/apt/sources.list.d';
  const texts = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /\.(sources|list)$/.test(f)).map((f) => fs.readFileSync(path.join(dir, f), 'utf8')) : [];
  if (fs.existsSync('/etc/apt/sources.list')) texts.push(fs.readFileSync('/etc/apt/sources.list', 'utf8'));
  for (const t of texts) {
    for (const m of t.matchAll(/^URIs:\s*(\S+)/gm)) if (!/security/.test(m[1])) return m[1];
    for (const m of t.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/gm)) if (!/security/.test(m[1])) return m[1];
  }
  throw new Error('no Debian mirror in the apt sources');
}

// localhost/debian:12: reused when present, else debootstrap'd (minbase) and imported, without apt lists and .debs.
async function baseImage() {
  if ((await run('podman', ['image', 'exists', BASE])).code === 0) return;
  const rootfs = path.join(work, 'rootfs');
  await ok('debootstrap', ['--variant=minbase', 'bookworm', rootfs, aptMirror()], { timeout: 900000 });
  for (const d of ['var/lib/apt/lists', 'var/cache/apt/archives']) {
    for (const f of fs.readdirSync(path.join(rootfs, d))) {
      const p = path.join(rootfs, d, f);
      if (fs.statSync(p).isFile() && (d.endsWith('lists') || f.endsWith('.deb'))) fs.rmSync(p);
    }
  }
  const tar = spawnChild('tar', ['-C', rootfs, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await ok('podman', ['import', '-', BASE], { input: tar.stdout });
  fs.rmSync(rootfs, { recursive: true, force: true });
}

async function startContainer(name, volume, extra = []) {
  await ok('podman', ['run', '-d', '--name', name, ...extra, '-e', `PARTYD_ADMIN_TOKEN=${TOKEN}`, '-v', `${volume}:/var/lib/partyd`,
    '-p', '127.0.0.1::1999', '-p', '127.0.0.1::1998', IMAGE,
    // flags after the image replace its default command: these are the default's, and two shards
    '--host', '0.0.0.0', '--port', '1999', '--admin', '0.0.0.0:1998', '--data-dir', '/var/lib/partyd', '--shards', '2']);
  const port = async (p) => Number(/:(\d+)\s*$/.exec((await ok('podman', ['port', name, String(p)])).trim())[1]);
  const c = { name, port: await port(1999), adminPort: await port(1998) };
  await waitFor(async () => (await fetch(`http://127.0.0.1:${c.port}/health`)).status === 200, { timeout: 60000, what: `${name}: /health 200` });
  return c;
}

// The counter party through partysocket: `increment` is acknowledged ({"type":"count"}) once the write is on disk.
async function increment(c, room, times) {
  const s = new PartySocket({ host: `127.0.0.1:${c.port}`, party: 'counter', room, WebSocket, id: 'container-test' });
  const counts = [];
  s.addEventListener('message', (e) => { const m = JSON.parse(e.data); if (m.type === 'count') counts.push(m.count); });
  await waitFor(() => counts.length > 0, { timeout: 20000, what: 'the first count' });
  const first = counts[0];
  for (let i = 0; i < times; ++i) s.send('increment');
  await waitFor(() => counts.at(-1) === first + times, { timeout: 20000, what: `count ${first + times}` });
  s.close();
  return first + times;
}

// The image builds its own partyd from the tree, so PARTYD_BIN does not matter: tests/run runs the integration files
// once per binary, and this one runs in the plain binary's pass only (the ASan pass would build the same image again).
const asanPass = /build-asan/.test(process.env.PARTYD_BIN ?? '');

test('the container image: built from deploy/Containerfile, driven with partysocket, drains on SIGTERM, keeps its volume',
  { skip: (!isRoot && 'needs root: podman and debootstrap run as root here (CI runs as root)') ||
      (asanPass && 'the image builds its own partyd: run in the plain binary\'s pass only'), timeout: 1800000 }, async (t) => {
    for (const tool of ['podman', 'debootstrap', 'runc']) {
      assert.equal(spawnSync('sh', ['-c', `command -v ${tool}`]).status, 0, `${tool} is not installed: run deploy/install-deps --test`);
    }
    assert.ok(fs.existsSync('/usr/libexec/podman/catatonit'), 'podman --init needs catatonit: run deploy/install-deps --test');
    const volume = `partyd-test-${process.pid}`;
    const names = [`partyd-test-${process.pid}-a`, `partyd-test-${process.pid}-b`];
    t.after(async () => {
      for (const n of names) await run('podman', ['rm', '-f', '-v', '-t', '0', n]);
      await run('podman', ['volume', 'rm', '-f', volume]);
      await run('podman', ['rmi', '-f', IMAGE]);
      fs.rmSync(work, { recursive: true, force: true });
    });

    await baseImage();
    await ok('podman', ['build', '-f', path.join(ROOT, 'deploy', 'Containerfile'), '--build-arg', `BASE=${BASE}`, '-t', IMAGE, ROOT],
      { timeout: 1500000 });
    const user = (await ok('podman', ['image', 'inspect', IMAGE, '--format', '{{.Config.User}}'])).trim();
    assert.equal(user, 'partyd:partyd', 'the image runs as its own user');
    await ok('podman', ['volume', 'create', volume]);

    // first container: rooms through the published port, then SIGTERM
    const a = await startContainer(names[0], volume);
    const count = await increment(a, 'kept', 3);
    const chatter = new Client(`ws://127.0.0.1:${a.port}/parties/main/lobby?_pk=watcher`);
    await chatter.opened;
    const admin = await fetch(`http://127.0.0.1:${a.adminPort}/admin/shards`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(admin.status, 200, 'the admin port is published and takes the token');
    assert.equal((await admin.json()).length, 2);
    await ok('podman', ['stop', '-t', '30', names[0]]);
    assert.equal((await chatter.closed).code, 1001, 'a client hears the node going away');
    const state = JSON.parse(await ok('podman', ['inspect', names[0], '--format', '{{json .State}}']));
    const logs = await run('podman', ['logs', names[0]]);
    assert.equal(state.ExitCode, 0, `exit status after SIGTERM:\n${logs.stdout}${logs.stderr}`);
    assert.match(logs.stderr, /SIGTERM received/);
    assert.match(logs.stderr, /stopped/);

    // second container, same volume: the count is there; the first ran partyd as PID 1, this one under --init
    const b = await startContainer(names[1], volume, ['--init']);
    const r = await fetch(`http://127.0.0.1:${b.port}/parties/counter/kept`);
    assert.equal(r.status, 200);
    assert.equal((await r.json()).count, count, 'the data survived a new container on the same volume');
    assert.equal(await increment(b, 'kept', 1), count + 1);
    await ok('podman', ['stop', '-t', '30', names[1]]);
    const state2 = JSON.parse(await ok('podman', ['inspect', names[1], '--format', '{{json .State}}']));
    assert.equal(state2.ExitCode, 0);
  });
