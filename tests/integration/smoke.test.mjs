import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, Client } from './lib.mjs';

test('relay: a message reaches the other connection and a clean stop exits 0', async () => {
  const node = await startNode();
  const a = await Client.open(node.wsUrl('/parties/relay/smoke?_pk=a'));
  const b = await Client.open(node.wsUrl('/parties/relay/smoke?_pk=b'));
  a.send('hello');
  const m = await b.waitMessage();
  assert.equal(m.text, 'hello');
  a.close(); b.close();
  const { code } = await node.stop();
  assert.equal(code, 0);
});
