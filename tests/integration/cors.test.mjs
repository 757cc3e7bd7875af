// cors.test.mjs — "cors" for the whole node and per party (issue 20), as partyserver's `cors` option: a preflight
// OPTIONS is answered by the router (204, Access-Control-Allow-Methods/-Headers/-Max-Age) before the room or its edge
// hook; every other answer for the party carries Access-Control-Allow-Origin ("*", or the request's Origin when it is
// listed, with Vary: Origin). Without the key: today's behaviour (OPTIONS reaches the room, no CORS header).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanupAfterEach, start, stopClean } from './helpers.mjs';

cleanupAfterEach();
const T = { timeout: 60000 };
const APP = 'https://app.example';

async function req(node, p, init = {}) {
  const r = await node.fetch(p, init);
  const body = await r.text();
  return { status: r.status, h: r.headers, body };
}
const preflight = (origin, headers = 'content-type, x-trace') => ({
  method: 'OPTIONS',
  headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': headers },
});

test('cors: off by default: OPTIONS reaches the room and no Access-Control header is added', T, async () => {
  const node = await start({ config: { parties: { counter: { kind: 'counter' } } } });
  const g = await req(node, '/parties/counter/c1', { headers: { origin: APP } });
  assert.equal(g.status, 200);
  assert.equal(g.h.get('access-control-allow-origin'), null);
  const o = await req(node, '/parties/counter/c1', preflight(APP));
  assert.notEqual(o.status, 204, 'the preflight was answered without "cors"');
  assert.equal(o.h.get('access-control-allow-origin'), null);
  assert.equal(o.h.get('access-control-allow-methods'), null);
  await stopClean(node);
});

test('cors: true for the node; a party\'s own origins and headers; a party\'s false', T, async () => {
  const node = await start({
    config: {
      cors: true,
      parties: {
        counter: { kind: 'counter' },
        listed: { kind: 'counter', cors: { origins: [APP], headers: ['content-type', 'authorization'] } },
        closed: { kind: 'counter', cors: false },
      },
    },
  });
  // the node's: any origin, the asked headers echoed
  const p = await req(node, '/parties/counter/c1', preflight('https://any.example'));
  assert.equal(p.status, 204);
  assert.equal(p.body, '');
  assert.equal(p.h.get('access-control-allow-origin'), '*');
  assert.match(p.h.get('access-control-allow-methods'), /\bPOST\b/);
  assert.match(p.h.get('access-control-allow-methods'), /\bDELETE\b/);
  assert.equal(p.h.get('access-control-allow-headers'), 'content-type, x-trace');
  assert.equal(p.h.get('access-control-max-age'), '86400');
  const post = await req(node, '/parties/counter/c1', { method: 'POST', headers: { origin: 'https://any.example' } });
  assert.equal(post.status, 200);
  assert.equal(JSON.parse(post.body).count, 1, 'the preflight did not reach the room; the POST did');
  assert.equal(post.h.get('access-control-allow-origin'), '*');

  // a party's list: only that origin, echoed, with Vary; its own headers
  const lp = await req(node, '/parties/listed/l1', preflight(APP));
  assert.equal(lp.status, 204);
  assert.equal(lp.h.get('access-control-allow-origin'), APP);
  assert.match(lp.h.get('vary'), /Origin/);
  assert.equal(lp.h.get('access-control-allow-headers'), 'content-type, authorization');
  const lg = await req(node, '/parties/listed/l1', { headers: { origin: APP } });
  assert.equal(lg.status, 200);
  assert.equal(lg.h.get('access-control-allow-origin'), APP);
  const other = await req(node, '/parties/listed/l1', { headers: { origin: 'https://evil.example' } });
  assert.equal(other.status, 200, 'CORS does not refuse a request: the browser withholds the answer');
  assert.equal(other.h.get('access-control-allow-origin'), null);
  assert.match(other.h.get('vary'), /Origin/);
  const op = await req(node, '/parties/listed/l1', preflight('https://evil.example'));
  assert.equal(op.status, 204);
  assert.equal(op.h.get('access-control-allow-origin'), null);

  // a party's false turns the node's off for it
  const c = await req(node, '/parties/closed/x', { headers: { origin: APP } });
  assert.equal(c.status, 200);
  assert.equal(c.h.get('access-control-allow-origin'), null);
  const cp = await req(node, '/parties/closed/x', preflight(APP));
  assert.notEqual(cp.status, 204);
  assert.equal(cp.h.get('access-control-allow-methods'), null);
  await stopClean(node);
});

test('cors: a malformed value stops the node from starting, naming the field', T, async () => {
  for (const [cors, field] of [[42, 'cors'], [{ origins: ['app.example'] }, 'cors'], [{ headers: ['bad header'] }, 'cors'], [{ methods: [] }, 'cors']]) {
    const node = await start({ ready: false, config: { cors, parties: { counter: { kind: 'counter' } } } });
    const { code } = await node.exited;
    assert.notEqual(code, 0, `cors ${JSON.stringify(cors)} was accepted`);
    assert.match(node.stderr, new RegExp(`${field}: `), node.stderr);
  }
  const node = await start({ ready: false, config: { parties: { p: { kind: 'counter', cors: 'yes' } } } });
  const { code } = await node.exited;
  assert.notEqual(code, 0);
  assert.match(node.stderr, /parties\.p\.cors: /);
});
