// Socket.IO connection-state recovery and conversations created while an agent was away (an open
// problem the fault-injection run found, docs/fault-injection.md): the stock client reconnects
// with `socket.recovered === true`, but the offset only covers conversations the previous
// connection had seen, so a conversation created meanwhile is not replayed; its next message
// arrives live with no earlier ones. Exits 1 when that happens, 0 when the agent gets seq 1, 2, 3.
//
//   CHAT_GATEWAY_BIN=target/debug/chat-gateway node gateway/tests/node/repro-sio-agent-recovery.mjs
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { startGateway, once, sleep } from './harness.mjs';

const gw = await startGateway();
try {
  const token = await gw.token('alice', 'Alice');
  const agent = io(gw.base, { path: '/ws-admin', auth: { token }, transports: ['websocket'], reconnectionDelay: 100 });
  const seen = [];
  agent.on('message', ({ message }) => seen.push(message.seq));
  await once(agent, 'welcome');

  // The agent's connection drops.
  agent.io.reconnection(false);
  const gone = once(agent, 'disconnect');
  agent.io.engine.close();
  await gone;

  // Meanwhile a visitor opens a conversation with two messages.
  const v = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-visitor/?site=default`);
  v.on('message', (d) => v.emit('frame', JSON.parse(d.toString())));
  await once(v, 'frame', (f) => f.type === 'welcome');
  for (const i of [1, 2]) {
    v.send(JSON.stringify({ type: 'send', id: `m${i}`, body: `m${i}`, client_msg_id: `m${i}` }));
    await once(v, 'frame', (f) => f.type === 'ack' && f.id === `m${i}`);
  }

  // The agent comes back (the stock client recovers), then the visitor writes again.
  agent.io.reconnection(true);
  const back = once(agent, 'connect');
  agent.connect();
  await back;
  await sleep(500);
  v.send(JSON.stringify({ type: 'send', id: 'm3', body: 'm3', client_msg_id: 'm3' }));
  await sleep(1000);
  console.log(`socket.recovered=${agent.recovered}; message events after reconnecting: seq ${seen.join(', ') || '(none)'}`);
  const ok = seen.join(',') === '1,2,3';
  console.log(ok ? 'ok: the agent got 1, 2, 3' : 'REPRODUCED: recovered, but the conversation created while away was not replayed');
  process.exitCode = ok ? 0 : 1;
  agent.close();
  v.close();
} finally {
  await gw.stop();
}
