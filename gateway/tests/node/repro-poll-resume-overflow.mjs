// The long-polling resume livelock the fault-injection run ran into (fixed in 2ed6ca8; this checks
// it stays fixed): a polling client more than CHAT_SESSION_QUEUE messages behind could never catch
// up. `resume` queues the whole
// replay at once into the session's event log, which holds at most CHAT_SESSION_QUEUE
// unacknowledged events; the log overflows before the client's next GET, the session ends, and
// the GET gets 410. The client opens a new session and resumes from the same cursor (it received
// nothing), and the same happens again. Now the replay must flow through GETs that follow the cursor.
// Exits 1 when the client does not get all 20 messages, 0 when it catches up.
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
    // Follow the event stream, as a client does, until the 20 messages are in or the session ends.
    let cursor = open.cursor;
    let status = 200;
    const seqs = [];
    let body = null;
    for (let gets = 0; gets < 20 && seqs.length < 20 && status === 200; gets++) {
      const get = await fetch(`${base}?sid=${open.sid}&cursor=${cursor}`);
      status = get.status;
      body = await get.json();
      if (status !== 200) break;
      cursor = body.cursor;
      seqs.push(...body.events.filter((e) => e.type === 'message').map((e) => e.message.seq));
    }
    console.log(`attempt ${attempt}: resume ${post.status} replayed=${answer.answers?.[0]?.replayed}; GETs ended ${status}; messages ${seqs.join(',')}${status === 200 ? '' : ` ${JSON.stringify(body)}`}`);
    caughtUp = seqs.length === 20 && seqs.every((q, i) => q === i + 1);
  }
  console.log(caughtUp ? 'not reproduced: the polling client caught up' : 'REPRODUCED: a polling client 20 messages behind with CHAT_SESSION_QUEUE=8 never gets its replay (410 every time)');
  process.exitCode = caughtUp ? 0 : 1;
} finally {
  await gw.stop();
}
