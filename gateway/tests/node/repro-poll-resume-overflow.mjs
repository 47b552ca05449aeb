// Reproduces the long-polling resume livelock the fault-injection run ran into: a polling client
// that is more than CHAT_SESSION_QUEUE messages behind can never catch up. `resume` queues the whole
// replay at once into the session's event log, which holds at most CHAT_SESSION_QUEUE
// unacknowledged events; the log overflows before the client's next GET, the session ends, and
// the GET gets 410. The client opens a new session and resumes from the same cursor (it received
// nothing), and the same happens again. Exits 1 when it reproduces, 0 when the client catches up.
//
//   CHAT_GATEWAY_BIN=target/debug/chat-gateway node gateway/tests/node/repro-poll-resume-overflow.mjs
import WebSocket from 'ws';
import { startGateway, once } from './harness.mjs';

const gw = await startGateway({ CHAT_SESSION_QUEUE: '8' });
try {
  // A raw WebSocket visitor writes 20 messages.
  const v = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-visitor/?site=default`);
  v.on('message', (d) => v.emit('frame', JSON.parse(d.toString())));
  const [welcome] = await once(v, 'frame', (f) => f.type === 'welcome');
  let conversation = null;
  for (let i = 1; i <= 20; i++) {
    v.send(JSON.stringify({ type: 'send', id: `m${i}`, body: `m${i}`, client_msg_id: `m${i}` }));
    const [ack] = await once(v, 'frame', (f) => f.type === 'ack' && f.id === `m${i}`);
    conversation = ack.message.conversation_id;
  }
  v.close();

  // The same visitor comes back over long-polling, holding nothing: resume from 0, three times.
  const base = `${gw.base}/ws-visitor/poll`;
  let caughtUp = false;
  for (let attempt = 1; attempt <= 3 && !caughtUp; attempt++) {
    const open = await (await fetch(`${base}?site=default&token=${encodeURIComponent(welcome.visitor_token)}`, { method: 'POST', body: '' })).json();
    const post = await fetch(`${base}?sid=${open.sid}`, { method: 'POST', body: JSON.stringify({ type: 'resume', id: 'r', cursors: { [conversation]: 0 } }) });
    const answer = await post.json();
    const get = await fetch(`${base}?sid=${open.sid}&cursor=${open.cursor}`);
    const body = await get.json();
    const seqs = (body.events || []).filter((e) => e.type === 'message').map((e) => e.message.seq);
    console.log(`attempt ${attempt}: resume ${post.status} replayed=${answer.answers?.[0]?.replayed}; GET ${get.status} ${get.status === 200 ? `messages ${seqs.join(',')}` : JSON.stringify(body)}`);
    caughtUp = get.status === 200 && seqs.length === 20;
  }
  console.log(caughtUp ? 'not reproduced: the polling client caught up' : 'REPRODUCED: a polling client 20 messages behind with CHAT_SESSION_QUEUE=8 never gets its replay (410 every time)');
  process.exitCode = caughtUp ? 0 : 1;
} finally {
  await gw.stop();
}
