// Issue 15 over Socket.IO with the stock socket.io-client: an agent's internal note never
// reaches the visitor, live or through Socket.IO connection-state recovery, and a transfer
// between two agents shows its system message to everyone.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startGateway, once, sleep } from './harness.mjs';

const gateways = [];
after(async () => { for (const gw of gateways) await gw.stop(); });

const SECRET = 'internal: refund approved, do not tell yet';

function visitor(gw, opts = {}) {
  return io(gw.base, { path: '/ws-visitor', reconnectionDelay: 200, reconnectionDelayMax: 1000, ...opts });
}

function agent(gw, token, opts = {}) {
  return io(gw.base, { path: '/ws-admin', auth: { token }, reconnectionDelay: 200, reconnectionDelayMax: 1000, ...opts });
}

/** Every event a socket gets, as [name, payload]. */
function recordAll(socket) {
  const events = [];
  socket.onAny((name, payload) => events.push([name, payload]));
  return events;
}

function assertNoNote(events) {
  for (const [name, payload] of events) {
    const text = JSON.stringify(payload);
    assert.ok(!text.includes(SECRET), `the visitor got the note in a ${name} event: ${text}`);
    assert.notEqual(payload && payload.message && payload.message.kind, 'note');
  }
}

const messageSeqs = (events) => events.filter(([n]) => n === 'message').map(([, p]) => p.message.seq);

async function waitFor(check, what) {
  for (let i = 0; i < 250; i++) {
    if (check()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${what}`);
}

for (const transports of [['websocket'], ['polling']]) {
  test(`a note never reaches the visitor, live or by recovery (${transports[0]})`, async () => {
    const gw = await startGateway();
    gateways.push(gw);
    const alice = agent(gw, await gw.token('alice', 'Alice'), { transports });
    await once(alice, 'welcome');
    const bob = agent(gw, await gw.token('bob', 'Bob'), { transports });
    const bobEvents = recordAll(bob);
    await once(bob, 'welcome');

    const v = visitor(gw, { transports });
    const seen = recordAll(v);
    await once(v, 'welcome');
    const first = await v.timeout(10_000).emitWithAck('send', { body: 'hello', client_msg_id: 'v1' });
    const conversation = first.message.conversation_id;

    const refused = await v.timeout(10_000).emitWithAck('send', { body: 'mine', note: true });
    assert.equal(refused.error.code, 'forbidden', JSON.stringify(refused));

    // Live: a note, then a reply; the visitor gets the reply only, another agent both.
    const note = await alice.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: SECRET, note: true });
    assert.equal(note.message.kind, 'note');
    assert.equal(note.message.seq, 2);
    await alice.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'reply one' });
    await waitFor(() => messageSeqs(seen).includes(3), 'the reply');
    await waitFor(() => messageSeqs(bobEvents).includes(3), 'the reply at bob');
    const bobNote = bobEvents.find(([n, p]) => n === 'message' && p.message.seq === 2);
    assert.equal(bobNote[1].message.kind, 'note');
    assert.equal(bobNote[1].message.body, SECRET);

    // Recovery: the visitor's connection drops; meanwhile a note and a reply are written.
    v.io.reconnection(false);
    const gone = once(v, 'disconnect');
    v.io.engine.close();
    await gone;
    await alice.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: `${SECRET} (while away)`, note: true });
    await alice.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'reply two' });
    v.io.reconnection(true);
    const back = once(v, 'connect');
    v.connect();
    await back;
    assert.equal(v.recovered, true, 'the stock client recovered its session');
    await waitFor(() => messageSeqs(seen).includes(5), 'the reply written while away');
    await sleep(300);
    assert.deepEqual(messageSeqs(seen), [1, 3, 5]);

    const history = await v.timeout(10_000).emitWithAck('history', { conversation_id: conversation });
    assert.deepEqual(history.messages.map((m) => m.seq), [1, 3, 5]);
    assertNoNote(seen);
    assertNoNote([['history', history]]);
    v.close();
    alice.close();
    bob.close();
  });
}

test('a transfer to another agent over Socket.IO: both agents and the visitor see it', async () => {
  const gw = await startGateway();
  gateways.push(gw);
  const alice = agent(gw, await gw.token('alice', 'Alice'));
  await once(alice, 'welcome');
  const bob = agent(gw, await gw.token('bob', 'Bob'));
  const bobEvents = recordAll(bob);
  await once(bob, 'welcome');
  const v = visitor(gw);
  const seen = recordAll(v);
  await once(v, 'welcome');
  const first = await v.timeout(10_000).emitWithAck('send', { body: 'who can help?' });
  const conversation = first.message.conversation_id;

  const listed = await alice.timeout(10_000).emitWithAck('list_agents', { site: 'default' });
  const bobEntry = listed.agents.find((a) => a.agent.id === 'bob');
  assert.equal(bobEntry.agent.name, 'Bob');
  assert.equal(bobEntry.connected, true);
  assert.equal(bobEntry.status, 'online');

  await alice.timeout(10_000).emitWithAck('assign', { conversation_id: conversation });
  const moved = await alice.timeout(10_000).emitWithAck('assign', { conversation_id: conversation, agent_id: 'bob' });
  assert.equal(moved.conversation.assignee.id, 'bob');
  const line = 'Alice transferred the conversation to Bob';
  await waitFor(() => seen.some(([n, p]) => n === 'message' && p.message.body === line), 'the system message at the visitor');
  const atVisitor = seen.find(([n, p]) => n === 'message' && p.message.body === line)[1];
  assert.equal(atVisitor.message.kind, 'system');
  assert.equal(atVisitor.message.seq, 2);
  await waitFor(() => bobEvents.some(([n, p]) => n === 'conversation' && p.conversation.assignee && p.conversation.assignee.id === 'bob'), 'the conversation event at bob');
  await waitFor(() => bobEvents.some(([n, p]) => n === 'message' && p.message.kind === 'system'), 'the system message at bob');
  v.close();
  alice.close();
  bob.close();
});
