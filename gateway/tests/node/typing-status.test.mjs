// Typing indicators and agent status over Socket.IO with the stock socket.io-client
// (docs/protocol.md, "Typing indicators", "Agent status"): typing both ways, never replayed by
// a recovery; an away agent out of the visitors' presence and back.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startGateway, once } from './harness.mjs';

const gateways = [];
after(async () => { for (const gw of gateways) await gw.stop(); });

for (const [label, transports] of [['polling', ['polling']], ['websocket', ['websocket']]]) {
  test(`typing both ways over Socket.IO (${label}), never stored`, async () => {
    const gw = await startGateway();
    gateways.push(gw);
    const token = await gw.token();
    const v = io(gw.base, { path: '/ws-visitor', transports });
    const a = io(gw.base, { path: '/ws-admin', auth: { token }, transports });
    try {
      await Promise.all([once(v, 'welcome'), once(a, 'welcome')]);
      const sent = await v.timeout(10_000).emitWithAck('send', { body: 'hello' });
      const conversation = sent.message.conversation_id;

      const agentSaw = once(a, 'typing');
      const ack = await v.timeout(10_000).emitWithAck('typing', { typing: true });
      assert.ok(!ack.error, JSON.stringify(ack));
      const [seen, offset] = await agentSaw;
      assert.equal(seen.conversation_id, conversation);
      assert.equal(seen.sender.role, 'visitor');
      assert.equal(seen.typing, true);
      assert.equal(seen.expires_in_ms, 6000);
      assert.equal(typeof offset, 'string', 'typing carries a recovery offset like every event');

      const visitorSaw = once(v, 'typing');
      await a.timeout(10_000).emitWithAck('typing', { conversation_id: conversation, typing: true });
      const [fromAgent] = await visitorSaw;
      assert.deepEqual(fromAgent.sender, { role: 'agent', id: 'alice', name: 'Alice' });

      const stopped = once(v, 'typing', (p) => p.typing === false);
      await a.timeout(10_000).emitWithAck('typing', { conversation_id: conversation, typing: false });
      await stopped;

      // Never stored: history holds the message only.
      const history = await a.timeout(10_000).emitWithAck('history', { conversation_id: conversation });
      assert.deepEqual(history.messages.map((m) => m.body), ['hello']);

      // Rate limited with a reason.
      const answers = await Promise.all(
        Array.from({ length: 12 }, (_, i) => v.timeout(10_000).emitWithAck('typing', { typing: i % 2 === 0 })),
      );
      const limited = answers.filter((x) => x.error);
      assert.ok(limited.length >= 5, `excess refused: ${JSON.stringify(answers)}`);
      assert.ok(limited.every((x) => x.error.code === 'rate_limited'), JSON.stringify(limited));
    } finally {
      v.close();
      a.close();
    }
  });
}

test('an away agent is out of the visitors presence over Socket.IO, and back online is in', async () => {
  const gw = await startGateway();
  gateways.push(gw);
  const [aliceToken, bobToken] = await Promise.all([gw.token('alice', 'Alice'), gw.token('bob', 'Bob')]);
  const alice = io(gw.base, { path: '/ws-admin', auth: { token: aliceToken }, transports: ['websocket'] });
  const bob = io(gw.base, { path: '/ws-admin', auth: { token: bobToken }, transports: ['websocket'] });
  const [[aliceWelcome]] = await Promise.all([once(alice, 'welcome'), once(bob, 'welcome')]);
  assert.equal(aliceWelcome.status, 'online');
  const v = io(gw.base, { path: '/ws-visitor', transports: ['websocket'] });
  try {
    const [welcome] = await once(v, 'welcome');
    assert.equal(welcome.agents_online, 2);

    const dropped = once(v, 'presence', (p) => p.agents_online === 1);
    const bobHeard = once(bob, 'agent_status', (s) => s.agent.id === 'alice' && s.status === 'away');
    const ack = await alice.timeout(10_000).emitWithAck('set_status', { status: 'away' });
    assert.equal(ack.agent_status.status, 'away', JSON.stringify(ack));
    await dropped;
    await bobHeard;

    const listed = await bob.timeout(10_000).emitWithAck('list_agents', {});
    assert.deepEqual(listed.agents.map((x) => [x.agent.id, x.status]), [['alice', 'away'], ['bob', 'online']]);

    const none = once(v, 'presence', (p) => p.agents_online === 0);
    await bob.timeout(10_000).emitWithAck('set_status', { status: 'offline' });
    await none;
    const back = once(v, 'presence', (p) => p.agents_online === 1);
    await alice.timeout(10_000).emitWithAck('set_status', { status: 'online' });
    await back;

    const refused = await v.timeout(10_000).emitWithAck('set_status', { status: 'away' });
    assert.equal(refused.error?.code, 'forbidden', JSON.stringify(refused));
  } finally {
    v.close();
    alice.close();
    bob.close();
  }
});
