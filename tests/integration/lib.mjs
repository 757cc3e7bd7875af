// lib.mjs — the harness for partyd's integration tests.
//
// Every test starts a real partyd (the binary in $PARTYD_BIN, default build/partyd) on free loopback ports in its
// own temporary data directory, and talks to it with the real `ws` and `partysocket` npm clients. Nothing is mocked.
// Conditions are polled with deadlines, never slept on. Every process started here is killed when the test file
// ends, and a node that ran under AddressSanitizer/UBSan must leave no sanitizer report behind.

import { spawn } from 'node:child_process';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '..', '..');
export const BIN = process.env.PARTYD_BIN ? path.resolve(process.env.PARTYD_BIN) : path.join(ROOT, 'build', 'partyd');
export { WebSocket };

// The one registry of the processes a test file starts: partyd, nginx, partyload, Chromium. Each goes through
// spawnChild (or adopt, adoptPid for one a library started), runs in a process group of its own, and is killed —
// SIGCONT (it may be stopped), then SIGKILL to its whole group — when the test file ends (an after-hook of the file,
// and process exit as a last resort), or earlier with kill(). Nothing else in tests/integration kills by hand what it
// started, so a failing test cannot leave a process behind that would keep the file from ending.
const children = new Map(); // pid → { name, exited: Promise }

function killGroup(pid) {
  for (const sig of ['SIGCONT', 'SIGKILL']) {
    try { process.kill(-pid, sig); } catch { try { process.kill(pid, sig); } catch {} }
  }
}

function alive(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

// Registers a ChildProcess (spawned with detached: true, so it leads its own group). Returns it.
export function adopt(proc, name = 'child') {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return proc;
  const entry = { name, exited: new Promise((resolve) => proc.once('exit', resolve)) };
  children.set(proc.pid, entry);
  entry.exited.then(() => children.delete(proc.pid));
  return proc;
}

// Registers a process by pid that some library started (playwright's Chromium), with its group.
export function adoptPid(pid, name = 'child') {
  if (children.has(pid)) return;
  const entry = { name, exited: waitFor(() => !alive(pid) || !children.has(pid), { timeout: 60000, what: `${name} ${pid} to exit` }).catch(() => {}) };
  children.set(pid, entry);
  entry.exited.then(() => children.delete(pid));
}

// Registers the children of this process whose command name matches `comm` and that are not registered yet: the
// processes a library spawned for a test (playwright's Chromium). Returns their pids.
export function adoptSpawned(comm, name = 'child') {
  const pids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(fs.readFileSync(`/proc/${d}/stat`, 'utf8'));
      if (m && Number(m[2]) === process.pid && comm.test(m[1]) && !children.has(Number(d))) pids.push(Number(d));
    } catch {}
  }
  for (const pid of pids) adoptPid(pid, name);
  return pids;
}

// spawn() into the registry: its own process group (detached), killed when the test file ends at the latest.
export function spawnChild(cmd, args, opts = {}) {
  return adopt(spawn(cmd, args, { ...opts, detached: true }), path.basename(cmd));
}

// Kills a registered process (a ChildProcess or a pid) and its group now; resolves once it has exited. A process
// that already exited is left alone (its pid may be someone else's by now).
export async function kill(procOrPid) {
  const pid = typeof procOrPid === 'number' ? procOrPid : procOrPid.pid;
  const entry = children.get(pid);
  if (!entry) return;
  killGroup(pid);
  await entry.exited;
}

// Kills every process still registered and waits for each (the file's after-hook; a test may call it too).
export async function killChildren() {
  await Promise.all([...children.keys()].map((pid) => kill(pid)));
}

// Only in a test file: a script that imports this harness (tests/bench/) would otherwise print a TAP report.
if (process.env.NODE_TEST_CONTEXT !== undefined || /\.test\.mjs$/.test(process.argv[1] ?? '')) after(killChildren);
process.on('exit', () => { for (const pid of children.keys()) killGroup(pid); });
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { for (const pid of children.keys()) killGroup(pid); process.exit(1); });

export const SANITIZER_REPORT = /runtime error:|ERROR: \w+Sanitizer|SUMMARY: \w+Sanitizer/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `fn` until it returns a truthy value (returned) or the deadline passes (throws, naming `what`).
export async function waitFor(fn, { timeout = 10000, interval = 20, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(interval);
  }
}

export function tmpDir(prefix = 'partyd-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// Starts a node. Options:
//   shards (2), config (object written to partyd.json and passed with --config), args (extra flags),
//   admin (true), env (extra environment), ready (wait for /health 200; true), dir (reuse a temp dir),
//   bin (another partyd binary, e.g. an installed one)
export async function startNode(opts = {}) {
  const dir = opts.dir ?? tmpDir();
  const args = ['--port', '0', '--data-dir', path.join(dir, 'data'), '--shards', String(opts.shards ?? 2)];
  args.push('--admin', opts.admin === false ? 'off' : '127.0.0.1:0');
  if (opts.config) {
    const file = path.join(dir, 'partyd.json');
    fs.writeFileSync(file, JSON.stringify(opts.config));
    args.push('--config', file);
  }
  args.push(...(opts.args ?? []));
  const sanDir = path.join(dir, 'sanitizer');
  fs.mkdirSync(sanDir, { recursive: true });
  const env = {
    ...process.env,
    // verify_asan_link_order=0: a test may LD_PRELOAD a library of its own (tests/preload/) ahead of ASan's runtime
    ASAN_OPTIONS: `log_path=${sanDir}/asan:detect_leaks=1:abort_on_error=0:verify_asan_link_order=0`,
    UBSAN_OPTIONS: `log_path=${sanDir}/ubsan:print_stacktrace=1:halt_on_error=1`,
    LSAN_OPTIONS: `suppressions=${path.join(ROOT, 'tests', 'lsan.supp')}:print_suppressions=0`,
    ...(opts.env ?? {}),
  };
  const proc = spawnChild(opts.bin ?? BIN, args, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const node = new Node(proc, dir, sanDir);
  if (opts.ready === false) return node;
  await node.ready();
  return node;
}

export class Node {
  constructor(proc, dir, sanDir) {
    this.proc = proc;
    this.dir = dir;
    this.sanDir = sanDir;
    this.stdout = '';
    this.stderr = '';
    this.exitCode = undefined;
    this.exitSignal = undefined;
    proc.stdout.on('data', (d) => { this.stdout += d; });
    proc.stderr.on('data', (d) => { this.stderr += d; });
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
      this.exitCode = code;
      this.exitSignal = signal;
      resolve({ code, signal });
    }));
  }

  async ready() {
    await waitFor(() => {
      if (this.exitCode !== undefined || this.exitSignal) throw new Error(`partyd exited early:\n${this.stderr}`);
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(this.stdout);
      if (m) this.port = Number(m[1]);
      const a = /admin on http:\/\/127\.0\.0\.1:(\d+)/.exec(this.stdout);
      if (a) this.adminPort = Number(a[1]);
      return this.port;
    }, { what: 'partyd to print its port' });
    await waitFor(async () => (await this.fetch('/health')).status === 200, { what: '/health to answer 200' });
    return this;
  }

  url(p) { return `http://127.0.0.1:${this.port}${p}`; }
  wsUrl(p) { return `ws://127.0.0.1:${this.port}${p}`; }
  get host() { return `127.0.0.1:${this.port}`; }

  fetch(p, init) { return fetch(this.url(p), init); }
  async json(p, init) {
    const r = await this.fetch(p, init);
    return { status: r.status, headers: r.headers, body: await r.json() };
  }
  async admin(p, init = {}) {
    // as partyctl does: without a token, the admin endpoint takes changes only with this header (or a JSON body)
    const headers = { 'X-Partyd-Admin': '1', ...(init.headers ?? {}) };
    const r = await fetch(`http://127.0.0.1:${this.adminPort}${p}`, { ...init, headers });
    const text = await r.text();
    let body;
    try { body = JSON.parse(text); } catch { body = text; }
    return { status: r.status, headers: r.headers, body };
  }
  async shards() { return (await this.admin('/admin/shards')).body; }
  async room(party, room) { return (await this.admin(`/admin/rooms/${party}/${room}`)).body; }

  // The pid of the shard that owns party/room.
  async shardPidOf(party, room) {
    const info = await this.room(party, room);
    const shards = await this.shards();
    return { shard: info.shard, pid: shards[info.shard].pid };
  }

  // Children of this node, as the kernel sees them: [{pid, comm}]
  children() {
    const out = [];
    for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat);
        if (m && Number(m[2]) === this.proc.pid) out.push({ pid: Number(pid), comm: m[1] });
      } catch {}
    }
    return out;
  }
  routerPid() {
    const r = this.children().find((c) => c.comm === 'partyd-router');
    return r?.pid;
  }

  signal(sig) { process.kill(this.proc.pid, sig); }

  // SIGTERM and wait for a clean exit; then check the sanitizer logs.
  async stop({ timeout = 20000 } = {}) {
    if (this.exitCode === undefined && !this.exitSignal) {
      this.signal('SIGTERM');
      const t = setTimeout(() => kill(this.proc), timeout);
      await this.exited;
      clearTimeout(t);
    }
    this.checkSanitizers();
    return { code: this.exitCode, signal: this.exitSignal };
  }

  // Fails if any process of this node wrote an AddressSanitizer/UBSan/LeakSanitizer report: into the log
  // directory, or to stderr (GCC's UBSan runtime does not honour log_path).
  checkSanitizers() {
    const reports = fs.existsSync(this.sanDir) ? fs.readdirSync(this.sanDir) : [];
    let text = reports.map((f) => fs.readFileSync(path.join(this.sanDir, f), 'utf8')).join('\n');
    const m = SANITIZER_REPORT.exec(this.stderr);
    if (m) text += this.stderr.slice(Math.max(0, m.index - 200), m.index + 4000);
    if (text) throw new Error(`sanitizer reports from partyd:\n${text.slice(0, 8000)}`);
  }
}

// A WebSocket client that records what it receives. `ws` options pass through (e.g. maxPayload).
export class Client {
  constructor(url, opts = {}) {
    this.url = url;
    this.messages = [];
    this.ws = new WebSocket(url, opts);
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      resolve({ code, reason: this.closeReason });
    }));
    this.unexpected = null;
    this.ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        this.unexpected = { status: res.statusCode, headers: res.headers, body };
        // with this listener ws leaves the socket to us: end the handshake so `closed` settles
        this.ws.terminate();
      });
    });
    this.ws.on('error', (e) => { this.error = e; });
    this.ws.on('message', (data, isBinary) => {
      this.messages.push(isBinary ? { binary: true, data: Buffer.from(data) } : { binary: false, text: data.toString() });
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.on('open', resolve);
      this.ws.on('close', () => reject(new Error(`closed before open (${this.unexpected?.status ?? this.error?.message ?? ''})`)));
    });
    this.opened.catch(() => {});
  }
  static async open(url, opts) {
    const c = new Client(url, opts);
    await c.opened;
    return c;
  }
  // The HTTP status the server refused the upgrade with.
  async refusal() {
    await this.closed;
    await waitFor(() => this.unexpected, { what: 'the refusal response' });
    return this.unexpected;
  }
  send(data) { this.ws.send(data); }
  json() { return this.messages.filter((m) => !m.binary).map((m) => JSON.parse(m.text)); }
  // Waits for the first message (from index `from`) matching pred; returns it.
  async waitMessage(pred = () => true, { timeout = 5000, from = 0, what = 'a message' } = {}) {
    return waitFor(() => this.messages.slice(from).find(pred), { timeout, what });
  }
  async waitJson(pred = () => true, opts = {}) {
    const m = await this.waitMessage((m) => !m.binary && pred(JSON.parse(m.text)), opts);
    return JSON.parse(m.text);
  }
  close(code, reason) { this.ws.close(code, reason); return this.closed; }
  terminate() { this.ws.terminate(); return this.closed; }
}
