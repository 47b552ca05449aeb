// Visitor context over Socket.IO with the stock socket.io-client: the `context` event is stored
// with the client address (the one admitted at the Engine.IO handshake, over polling and over a
// direct WebSocket alike), agents read it with the `visitor` event and over the HTTP API, and
// visitors cannot read it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startGateway, once } from './harness.mjs';

const gateways = [];
after(async () => { for (const gw of gateways) await gw.stop(); });

const PAGE = {
  url: 'https://shop.example/checkout',
  title: 'Checkout',
  language: 'en-GB',
  time_zone: 'Europe/London',
  user_agent: 'socket.io-client test',
  attributes: { plan: 'team', seats: 12, trial: true },
};

for (const [label, transports] of [['polling', ['polling']], ['websocket', ['websocket']]]) {
  test(`context over Socket.IO (${label}) is stored with the client address and read by agents`, async () => {
    const gw = await startGateway();
    gateways.push(gw);
    const token = await gw.token();
    const v = io(gw.base, { path: '/ws-visitor', transports });
    const a = io(gw.base, { path: '/ws-admin', auth: { token }, transports });
    try {
      await Promise.all([once(v, 'welcome'), once(a, 'welcome')]);
      const sent = await v.timeout(10_000).emitWithAck('send', { body: 'hello' });
      const conversation = sent.message.conversation_id;
      const ack = await v.timeout(10_000).emitWithAck('context', { context: PAGE });
      assert.ok(!ack.error, `context acknowledged: ${JSON.stringify(ack)}`);

      const read = await a.timeout(10_000).emitWithAck('visitor', { conversation_id: conversation });
      assert.equal(read.visitor.context.url, PAGE.url, JSON.stringify(read));
      assert.equal(read.visitor.context.title, 'Checkout');
      assert.equal(read.visitor.context.ip, '127.0.0.1');
      assert.equal(read.visitor.context.country, null, 'no CHAT_GEOIP_DB: no country');
      assert.deepEqual(read.visitor.context.attributes, PAGE.attributes);

      const refused = await v.timeout(10_000).emitWithAck('visitor', { conversation_id: conversation });
      assert.equal(refused.error?.code, 'forbidden', JSON.stringify(refused));
      const tooLong = await v.timeout(10_000).emitWithAck('context', { context: { title: 'x'.repeat(257) } });
      assert.equal(tooLong.error?.code, 'too_large', JSON.stringify(tooLong));

      const res = await fetch(`${gw.base}/chat/api/conversations/${conversation}/visitor`, {
        headers: { Authorization: `Bearer ${token}` },
      });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.visitor.context.url, PAGE.url);
      assert.equal(body.visitor.site_id, 'default');
    } finally {
      v.close();
      a.close();
    }
  });
}
