// proxy.test.mjs — the reverse-proxy alternative of README ("TLS"): deploy/nginx-partyd.conf, as shipped (only its
// ports and certificate paths changed), in front of a real partyd. A partysocket client over wss:// through nginx
// reaches its room, an HTTPS request reaches the same room, and a room's broadcast crosses the proxy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import PartySocket from 'partysocket';
import { WebSocket, waitFor, tmpDir, startNode, spawnChild, kill } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const T = { timeout: 60000 };
let dir, ca, node, nginx, port;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function request(method, p, body) {
  return new Promise((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port, method, path: p, ca, servername: 'localhost', agent: false }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

before(async () => {
  dir = tmpDir('partyd-proxy-');
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'pipe' });
  ca = fs.readFileSync(cert);
  node = await startNode({ shards: 2 });
  port = await freePort();
  const site = fs.readFileSync(path.join(ROOT, 'deploy', 'nginx-partyd.conf'), 'utf8')
    .replace('listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`)
    .replace('/etc/ssl/partyd/fullchain.pem', cert)
    .replace('/etc/ssl/partyd/privkey.pem', key)
    .replace('server 127.0.0.1:1999;', `server 127.0.0.1:${node.port};`);
  assert.ok(site.includes(`127.0.0.1:${node.port}`) && site.includes(cert), 'the shipped file has the lines the test rewrites');
  fs.writeFileSync(path.join(dir, 'site.conf'), site);
  fs.mkdirSync(path.join(dir, 'logs'));
  fs.writeFileSync(path.join(dir, 'nginx.conf'), `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log;
events { worker_connections 256; }
http {
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  include ${dir}/site.conf;
}
`);
  nginx = spawnChild('nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  nginx.stderr.on('data', (d) => { err += d; });
  await waitFor(async () => {
    if (nginx.exitCode !== null) throw new Error(`nginx exited: ${err}`);
    return (await request('GET', '/health')).status === 200;
  }, { what: 'nginx to proxy /health' });
});

after(async () => {
  if (nginx) await kill(nginx);
  await node?.stop();
});

test('partysocket over wss:// through nginx reaches its room; HTTPS reaches the same room', T, async () => {
  const room = `proxied-${Date.now()}`;
  const posted = await request('POST', `/parties/counter/${room}`);
  assert.equal(posted.status, 200, posted.text);
  assert.equal(JSON.parse(posted.text).count, 1);

  // partysocket with a WebSocket that trusts the test certificate
  class TrustingWebSocket extends WebSocket {
    constructor(url, protocols) { super(url, protocols, { ca, servername: 'localhost' }); }
  }
  const ps = new PartySocket({ host: `localhost:${port}`, protocol: 'wss', party: 'counter', room, WebSocket: TrustingWebSocket });
  const seen = [];
  ps.addEventListener('message', (e) => seen.push(JSON.parse(e.data)));
  try {
    await waitFor(() => seen.some((m) => m.count === 1), { what: 'the count on connect, through the proxy' });
    // a write over HTTPS is broadcast to the WebSocket client, across nginx both ways
    assert.equal((await request('POST', `/parties/counter/${room}`)).status, 200);
    await waitFor(() => seen.some((m) => m.count === 2), { what: 'the broadcast after an HTTPS write' });
    // the room, seen directly on partyd, has the partysocket connected
    const info = await node.room('counter', room);
    assert.equal(info.connections, 1);
  } finally {
    ps.close();
  }
  // nginx logs the upgraded request when the WebSocket closes
  const upgraded = new RegExp(`"GET /parties/counter/${room}\\?_pk=[^ ]+ HTTP/1.1" 101 `);
  await waitFor(() => upgraded.test(fs.readFileSync(path.join(dir, 'logs', 'access.log'), 'utf8')),
    { what: 'nginx to log the upgrade (101)' });
});

test('a body up to limits.body_bytes passes the proxy; partyd answers 413 beyond it (nginx agrees on the size)', T, async () => {
  const ok = await request('POST', '/parties/main/proxied-chat', JSON.stringify({ content: 'x'.repeat(1000) }));
  assert.equal(ok.status, 201, ok.text); // the chat party's POST creates a message
  const big = await request('POST', '/parties/main/proxied-chat', 'x'.repeat(1048577));
  assert.equal(big.status, 413);
});
