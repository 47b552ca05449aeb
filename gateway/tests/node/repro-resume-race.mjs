// Reproduces the resume boundary race the fault-injection run reports as `boundary_races`:
// a raw-WebSocket session is live from `welcome`, before the client could send `resume`. A message
// committed in that window is delivered live; the client still misses older ones, so its only
// gap-free cursor is below the live one, and the replay sends the live message a second time (and
// after a later seq). Exits 1 when the duplicate shows, 0 when it does not.
//
//   CHAT_GATEWAY_BIN=target/debug/chat-gateway node gateway/tests/node/repro-resume-race.mjs
import WebSocket from 'ws';
import { startGateway, once, sleep } from './harness.mjs';

const gw = await startGateway();
try {
  const token = await gw.token('alice', 'Alice');
  const agent = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-admin/?token=${token}`);
  await once(agent, 'open');
  const agentSend = (conversation_id, body) => agent.send(JSON.stringify({ type: 'send', id: body, conversation_id, body, client_msg_id: body }));

  function connectVisitor(visitorToken) {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-visitor/?site=default${visitorToken ? `&token=${visitorToken}` : ''}`);
    ws.frames = [];
    ws.on('message', (d) => { const f = JSON.parse(d.toString()); ws.frames.push(f); ws.emit('frame', f); });
    return ws;
  }

  // 1. A visitor writes seq 1..3 and goes away.
  let v = connectVisitor();
  const [welcome] = await once(v, 'frame', (f) => f.type === 'welcome');
  for (const i of [1, 2, 3]) {
    v.send(JSON.stringify({ type: 'send', id: `v${i}`, body: `v${i}`, client_msg_id: `v${i}` }));
    await once(v, 'frame', (f) => f.type === 'ack' && f.id === `v${i}`);
  }
  const conversation = v.frames.find((f) => f.type === 'ack').message.conversation_id;
  v.close();
  await once(v, 'close');

  // 2. While it is away, the agent writes seq 4 and 5.
  agentSend(conversation, 'a4');
  agentSend(conversation, 'a5');
  await sleep(300);

  // 3. It reconnects. Between `welcome` and its `resume` (one round trip in real life), the agent
  //    writes seq 6, which arrives live.
  v = connectVisitor(welcome.visitor_token);
  await once(v, 'frame', (f) => f.type === 'welcome');
  agentSend(conversation, 'a6');
  await once(v, 'frame', (f) => f.type === 'message' && f.message.seq === 6);

  // 4. The client holds 1..3 (and 6): its gap-free cursor is 3.
  v.send(JSON.stringify({ type: 'resume', id: 'r', cursors: { [conversation]: 3 } }));
  await once(v, 'frame', (f) => f.type === 'ack' && f.id === 'r');
  await sleep(500);
  const seqs = v.frames.filter((f) => f.type === 'message').map((f) => f.message.seq);
  console.log(`message events after reconnecting: seq ${seqs.join(', ')}`);
  const dup = seqs.length !== new Set(seqs).size;
  console.log(dup ? 'REPRODUCED: seq 6 was delivered twice (live, then in the replay)' : 'not reproduced: no duplicate');
  v.close();
  agent.close();
  process.exitCode = dup ? 1 : 0;
} finally {
  await gw.stop();
}
