// Read receipts over Socket.IO with the stock socket.io-client: `read` both ways (the agent's
// read reaches the visitor as "an agent read", the visitor's reaches the agent), the unread
// count in `list_conversations` goes to 0, and a flood of `read` is refused.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startGateway, once } from './harness.mjs';

const gateways = [];
after(async () => { for (const gw of gateways) await gw.stop(); });

for (const [label, transports] of [['polling', ['polling']], ['websocket', ['websocket']]]) {
  test(`read receipts over Socket.IO (${label})`, async () => {
    const gw = await startGateway();
    gateways.push(gw);
    const token = await gw.token();
    const a = io(gw.base, { path: '/ws-admin', auth: { token }, transports });
    const v = io(gw.base, { path: '/ws-visitor', transports });
    try {
      await Promise.all([once(a, 'welcome'), once(v, 'welcome')]);
      const agentSaw = once(a, 'message', (p) => p.message.seq === 2);
      await v.timeout(10_000).emitWithAck('send', { body: 'one' });
      const sent = await v.timeout(10_000).emitWithAck('send', { body: 'two' });
      const conversation = sent.message.conversation_id;
      await agentSaw;

      const listed = await a.timeout(10_000).emitWithAck('list_conversations', {});
      assert.equal(listed.read_state[conversation].unread, 2, JSON.stringify(listed));

      // The agent reads: the visitor is told, without the agent's id.
      const visitorTold = once(v, 'read');
      const ack = await a.timeout(10_000).emitWithAck('read', { conversation_id: conversation, seq: 2 });
      assert.equal(ack.read_seq, 2, JSON.stringify(ack));
      const [seen, offset] = await visitorTold;
      assert.deepEqual(seen, { conversation_id: conversation, role: 'agent', seq: 2 });
      assert.equal(typeof offset, 'string', 'events carry a recovery offset');
      const after = await a.timeout(10_000).emitWithAck('list_conversations', {});
      assert.equal(after.read_state[conversation].unread, undefined, JSON.stringify(after));
      assert.equal(after.read_state[conversation].read_seq, 2);

      // The visitor reads (its open conversation by default): the agent is told.
      const agentTold = once(a, 'read', (p) => p.role === 'visitor');
      const mine = await v.timeout(10_000).emitWithAck('read', { seq: 2 });
      assert.equal(mine.read_seq, 2, JSON.stringify(mine));
      const [told] = await agentTold;
      assert.deepEqual(told, { conversation_id: conversation, role: 'visitor', seq: 2 });

      // A flood is refused past the burst.
      const answers = await Promise.all(Array.from({ length: 30 }, () =>
        v.timeout(10_000).emitWithAck('read', { seq: 2 })));
      const limited = answers.filter((x) => x.error?.code === 'rate_limited').length;
      assert.ok(limited >= 15, `only ${limited} of 30 refused: ${JSON.stringify(answers)}`);
    } finally {
      v.close();
      a.close();
    }
  });
}
