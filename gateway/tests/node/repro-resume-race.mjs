// The resume boundary, as the fault-injection run first found it broken (`boundary_races`): a
// raw-WebSocket session is live from `welcome`, one round trip before the client's `resume`. A
// message committed in that window used to be delivered live and then again in the replay, after
// older ones (seq 6, 4, 5, 6). Since 2ed6ca8 a new session holds live events back until its first
// resume (1 s at most). This sends `resume` within that second, as docs/protocol.md asks, and
// expects exactly 4, 5, 6. Exits 1 on a duplicate or a disorder.
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

  // 3. It reconnects. Between `welcome` and its `resume` (one round trip in real life, 200 ms
  //    here), the agent writes seq 6.
  v = connectVisitor(welcome.visitor_token);
  await once(v, 'frame', (f) => f.type === 'welcome');
  agentSend(conversation, 'a6');
  await sleep(200);

  // 4. The client holds 1..3: it resumes from 3.
  v.send(JSON.stringify({ type: 'resume', id: 'r', cursors: { [conversation]: 3 } }));
  await once(v, 'frame', (f) => f.type === 'ack' && f.id === 'r');
  await sleep(500);
  const seqs = v.frames.filter((f) => f.type === 'message').map((f) => f.message.seq);
  console.log(`message events after reconnecting: seq ${seqs.join(', ')}`);
  const ok = seqs.join(',') === '4,5,6';
  console.log(ok ? 'ok: 4, 5, 6 once each, in order' : 'REPRODUCED: not exactly 4, 5, 6 (a duplicate or a disorder at the resume boundary)');
  v.close();
  agent.close();
  process.exitCode = ok ? 0 : 1;
} finally {
  await gw.stop();
}
