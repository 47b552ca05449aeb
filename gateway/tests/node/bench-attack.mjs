// Peak memory of the gateway under the hostile-client attacks of issue 10, for one or two
// binaries side by side (before/after a change):
//
//   1. history flood over long-polling: a polling visitor writes 60 messages of 4,000 characters,
//      then POSTs 700 `history` frames (limit 500) in one request; when that is refused (413),
//      the same 700 frames in POSTs of 16;
//   2. history over WebSocket: an agent asks for the 500 messages of a conversation of 500
//      messages of 4,000 characters, following `more` (a gateway without pages answers one frame,
//      which used to kill the session with 1005).
//
// For each binary: the gateway's VmHWM (peak RSS) after start, after the setup and after each
// attack, the bytes answered, and whether the agent's session stayed open.
//
//   CHAT_GATEWAY_BIN=target/release/chat-gateway [BENCH_BASELINE_BIN=/path/to/old] \
//     node bench-attack.mjs
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { startGateway, BIN } from './harness.mjs';
import { gitRevision } from './bench-util.mjs';

const LONG = 'x'.repeat(4000);

function peakKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmHWM:\s+(\d+)/m.exec(status)?.[1]);
}

async function post(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  const text = await res.text();
  return { status: res.status, text };
}

async function pollingFlood(gw) {
  const poll = `${gw.base}/ws-visitor/poll`;
  const opened = JSON.parse((await post(poll, '')).text);
  const url = `${poll}?sid=${opened.sid}`;
  let conversation = null;
  for (let b = 0; b < 6; b++) {
    const frames = Array.from({ length: 10 }, (_, i) => ({ type: 'send', id: `s${b}-${i}`, client_msg_id: `m${b}-${i}`, body: LONG }));
    const r = await post(url, JSON.stringify(frames));
    if (r.status !== 200) throw new Error(`setup send: ${r.status} ${r.text.slice(0, 200)}`);
    conversation = JSON.parse(r.text).answers[0].message.conversation_id;
  }
  const setup = peakKiB(gw.child.pid);
  const history = { type: 'history', conversation_id: conversation, limit: 500 };
  // Without ids, 700 frames fit under the default 64 KiB body limit.
  const flood = Array.from({ length: 700 }, () => history);
  const body = JSON.stringify(flood);
  if (body.length > 65536) throw new Error(`the flood is ${body.length} bytes, over the body limit`);
  let answered = 0;
  let statuses = [];
  const one = await post(url, body);
  answered += one.text.length;
  statuses.push(one.status);
  if (one.status === 413) {
    for (let i = 0; i < flood.length; i += 16) {
      const r = await post(url, JSON.stringify(flood.slice(i, i + 16)));
      answered += r.text.length;
      statuses.push(r.status);
    }
  }
  return { setupKiB: setup, afterKiB: peakKiB(gw.child.pid), answeredBytes: answered, statuses: [...new Set(statuses)].join('/') };
}

async function agentHistory(gw) {
  const visitor = new WebSocket(`${gw.base.replace('http', 'ws')}/ws-visitor/`);
  const frames = [];
  let conversation = null;
  await new Promise((resolve, reject) => {
    let sent = 0;
    visitor.on('message', (data) => {
      const f = JSON.parse(String(data));
      if (f.type === 'welcome' || f.type === 'ack') {
        if (f.type === 'ack') conversation = f.message.conversation_id;
        if (sent === 500) return resolve();
        visitor.send(JSON.stringify({ type: 'send', id: `v${sent}`, client_msg_id: `w${sent}`, body: LONG }));
        sent++;
      } else if (f.type === 'error') reject(new Error(JSON.stringify(f)));
    });
    visitor.on('error', reject);
  });
  const token = await gw.token('alice', 'Alice');
  const agent = new WebSocket(`${gw.base.replace('http', 'ws')}/ws-admin/?token=${token}`);
  let closeCode = null;
  let pages = 0;
  let got = 0;
  await new Promise((resolve) => {
    const ask = (after) => agent.send(JSON.stringify({ type: 'history', id: `h${after}`, conversation_id: conversation, after_seq: after, limit: 500 }));
    agent.on('message', (data) => {
      frames.push(data.length);
      const f = JSON.parse(String(data));
      if (f.type === 'welcome') return ask(0);
      if (f.type !== 'ack' || !Array.isArray(f.messages)) return;
      pages++;
      got += f.messages.length;
      if (f.more && f.messages.length) ask(f.messages[f.messages.length - 1].seq);
      else resolve();
    });
    agent.on('close', (code) => { closeCode = code; resolve(); });
  });
  const open = closeCode === null;
  agent.close();
  visitor.close();
  return { messages: got, pages, largestFrame: Math.max(...frames), sessionOpen: open, closeCode, afterKiB: peakKiB(gw.child.pid) };
}

async function measure(bin) {
  const gw = await startGateway({ CHAT_LOG: 'warn', CHAT_SEND_RATE_PER_SEC: '100000', CHAT_SEND_BURST: '100000' }, bin);
  try {
    const startKiB = peakKiB(gw.child.pid);
    const flood = await pollingFlood(gw);
    const history = await agentHistory(gw);
    return { bin, startKiB, flood, history };
  } finally {
    await gw.stop();
  }
}

const bins = [BIN, process.env.BENCH_BASELINE_BIN].filter(Boolean);
const rev = gitRevision();
console.log(`bench-attack at ${rev.commit}${rev.dirty ? ' (dirty)' : ''}`);
for (const bin of bins) {
  const r = await measure(bin);
  console.log(`\n${r.bin}`);
  console.log(`  peak RSS at start                 ${(r.startKiB / 1024).toFixed(1)} MiB`);
  console.log(`  after 60 long messages            ${(r.flood.setupKiB / 1024).toFixed(1)} MiB`);
  console.log(`  after 700 history frames (poll)   ${(r.flood.afterKiB / 1024).toFixed(1)} MiB; answered ${(r.flood.answeredBytes / 1e6).toFixed(2)} MB, status ${r.flood.statuses}`);
  console.log(`  agent history of 500 × 4000 chars ${r.history.messages} messages in ${r.history.pages} page(s), largest frame ${r.history.largestFrame} B, session ${r.history.sessionOpen ? 'open' : `closed ${r.history.closeCode}`}; peak ${(r.history.afterKiB / 1024).toFixed(1)} MiB`);
}
