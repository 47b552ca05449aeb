// Offline capture over Socket.IO with the stock socket.io-client: a visitor with no agent online
// leaves an email with the `contact` event (validated: a bad one gets an error ack), writes, and
// an agent connecting later reads the address with `visitor` and finds the conversation marked
// `waiting`, a mark its reply clears.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startGateway, once } from './harness.mjs';

const gateways = [];
after(async () => { for (const gw of gateways) await gw.stop(); });

for (const [label, transports] of [['polling', ['polling']], ['websocket', ['websocket']]]) {
  test(`contact and the waiting mark over Socket.IO (${label})`, async () => {
    const gw = await startGateway();
    gateways.push(gw);
    const v = io(gw.base, { path: '/ws-visitor', transports });
    let a;
    try {
      const [welcome] = await once(v, 'welcome');
      assert.equal(welcome.agents_online, 0);
      const bad = await v.timeout(10_000).emitWithAck('contact', { email: 'nobody' });
      assert.equal(bad.error?.code, 'bad_request', JSON.stringify(bad));
      const ok = await v.timeout(10_000).emitWithAck('contact', { email: 'sio@example.com' });
      assert.ok(!ok.error, `contact acknowledged: ${JSON.stringify(ok)}`);

      const marked = once(v, 'conversation', (p) => p.conversation.waiting === true);
      const sent = await v.timeout(10_000).emitWithAck('send', { body: 'anyone there?' });
      const conversation = sent.message.conversation_id;
      await marked;

      const token = await gw.token();
      a = io(gw.base, { path: '/ws-admin', auth: { token }, transports });
      await once(a, 'welcome');
      const read = await a.timeout(10_000).emitWithAck('visitor', { conversation_id: conversation });
      assert.equal(read.visitor.profile.email, 'sio@example.com', JSON.stringify(read));
      assert.equal(read.visitor.profile.verified, false);
      const list = await a.timeout(10_000).emitWithAck('list_conversations', {});
      assert.equal(list.conversations.find((c) => c.id === conversation)?.waiting, true, JSON.stringify(list));

      const forbidden = await a.timeout(10_000).emitWithAck('contact', { email: 'agent@example.com' });
      assert.equal(forbidden.error?.code, 'forbidden', JSON.stringify(forbidden));
      const cleared = once(a, 'conversation', (p) => p.conversation.id === conversation && !p.conversation.waiting);
      await a.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'here now' });
      await cleared;
    } finally {
      v.close();
      a?.close();
    }
  });
}
