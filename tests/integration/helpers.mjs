// helpers.mjs — small additions to lib.mjs shared by relay/chat/partysocket/routes tests.
//
//  * start(opts): startNode, remembered so that a failing test does not leave partyd running into the next test
//    (lib.mjs kills every process at the end of the file in any case). cleanupAfterEach() registers the hook that
//    closes what a test left behind and kills its nodes, through lib.mjs's kill().
//  * open(url): a Client that is open, or a fast failure naming the HTTP refusal. (Client.open never settles when
//    the upgrade is refused: with an 'unexpected-response' listener, ws leaves the socket to the listener.)
//  * refused(url): the HTTP response an upgrade was refused with ({status, headers, body}).
//  * partySocket(node, opts, {onOpen, openTimeout, binaryType}): a real PartySocket that records its events;
//    closeAll(...recs) closes such sockets and waits for each.
//  * stopClean(node, clients): closes the clients, stops the node, asserts exit code 0 and that partyd printed no
//    sanitizer report (UBSan — a separate libubsan under GCC — writes to stderr and ignores log_path, so the
//    harness's sanitizer directory alone misses it) and had no unplanned process restart.
import { afterEach } from 'node:test';
import assert from 'node:assert/strict';
import PartySocket from 'partysocket';
import { startNode, Client, waitFor, WebSocket, kill } from './lib.mjs';

const tracked = { nodes: new Set(), clients: new Set(), closers: new Set() };

export function cleanupAfterEach() {
  afterEach(async () => {
    for (const close of tracked.closers) {
      try { close(); } catch {}
    }
    tracked.closers.clear();
    for (const c of tracked.clients) if (c.ws.readyState !== 3) c.ws.terminate();
    tracked.clients.clear();
    for (const n of tracked.nodes) {
      if (n.exitCode === undefined && !n.exitSignal) await kill(n.proc);
    }
    tracked.nodes.clear();
  });
}

// Something else to close when a test fails (e.g. a PartySocket, which would otherwise reconnect forever).
export function track(closer) {
  tracked.closers.add(closer);
}

// A PartySocket (quick reconnects) that records its events: opens and the URL of each, close codes, errors, messages.
// `onOpen` runs on every open (the place to (re)join); rec.opened(n) waits up to `openTimeout` ms for the n-th open;
// rec.waitJson(pred, what, from) for a JSON message after the first `from`.
export function partySocket(node, opts, { onOpen, openTimeout = 5000, binaryType } = {}) {
  const s = new PartySocket({ host: node.host, WebSocket, minReconnectionDelay: 50, maxReconnectionDelay: 200, ...opts });
  if (binaryType) s.binaryType = binaryType;
  const rec = { s, opens: 0, closes: [], errors: 0, messages: [], urls: [] };
  s.addEventListener('open', () => {
    rec.opens++;
    rec.urls.push(s.url);
    onOpen?.(s);
  });
  s.addEventListener('close', (e) => rec.closes.push(e.code));
  s.addEventListener('error', () => { rec.errors++; });
  s.addEventListener('message', (e) => rec.messages.push(e.data));
  rec.json = () => rec.messages.filter((m) => typeof m === 'string').map((m) => JSON.parse(m));
  rec.waitJson = (pred, what, from = 0) => waitFor(() => rec.json().slice(from).find(pred), { what, timeout: 5000 });
  rec.opened = (n = 1) => waitFor(() => rec.opens >= n, { what: `PartySocket ${s.id} open #${n}`, timeout: openTimeout });
  track(() => s.close());
  return rec;
}

// Closes recorded PartySockets and waits until each is closed.
export async function closeAll(...recs) {
  for (const r of recs) {
    r.s.close();
    await waitFor(() => r.s.readyState === 3, { what: 'PartySocket to close' });
  }
}

export async function start(opts) {
  const node = await startNode(opts);
  tracked.nodes.add(node);
  return node;
}

export async function open(url, opts) {
  const c = new Client(url, opts);
  tracked.clients.add(c);
  await waitFor(() => c.ws.readyState === 1 || c.unexpected || c.closeCode !== undefined, { what: `${url} to open` });
  if (c.ws.readyState !== 1) {
    const why = c.unexpected ? `HTTP ${c.unexpected.status} ${c.unexpected.body}` : `closed ${c.closeCode} ${c.error?.message ?? ''}`;
    c.ws.terminate();
    throw new Error(`WebSocket ${url} did not open: ${why}`);
  }
  return c;
}

export async function refused(url, opts) {
  const c = new Client(url, opts);
  tracked.clients.add(c);
  await waitFor(() => c.unexpected || c.ws.readyState === 1 || c.closeCode !== undefined, { what: `${url} to be refused` });
  const opened = c.ws.readyState === 1;
  c.ws.terminate();
  assert.ok(!opened, `the upgrade to ${url} was accepted`);
  assert.ok(c.unexpected, `no HTTP response refused ${url} (closed ${c.closeCode} ${c.error?.message ?? ''})`);
  return c.refusal();
}

export const SANITIZER_REPORT = /runtime error:|ERROR: \w+Sanitizer|SUMMARY: \w+Sanitizer/;

export async function stopClean(node, clients = [], { allowRestarts = false } = {}) {
  await Promise.all(clients.map((c) => c.close()));
  const { code, signal } = await node.stop();
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.doesNotMatch(node.stderr, SANITIZER_REPORT, 'partyd printed a sanitizer report');
  if (!allowRestarts) assert.doesNotMatch(node.stderr, /restarting in \d+ ms/, 'a partyd process died and was restarted');
}
