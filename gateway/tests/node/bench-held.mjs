// A session that never sends `resume` under a message flood (issue 12): one agent connects and
// never resumes while VISITORS visitors send RATE msg/s in all for SECONDS (pipelined, no wait for
// acks). For each gateway binary and rate, in turn: whether the agent was closed (code, when),
// how many messages it got, whether every conversation arrived exactly once in order, how long
// after the last ack it had them all, and the gateway's peak RSS (VmHWM).
//
//   BINS=before=/path/a,after=target/debug/chat-gateway RATES=100,250,500,1000 \
//     node gateway/tests/node/bench-held.mjs
import WebSocket from 'ws';
import { readFileSync } from 'node:fs';
import { startGateway, once, sleep } from './harness.mjs';

const BINS = (process.env.BINS || `current=${process.env.CHAT_GATEWAY_BIN || ''}`)
  .split(',').map((s) => s.split('=')).filter(([, p]) => p);
const RATES = (process.env.RATES || '100,250,500,1000').split(',').map(Number);
const SECONDS = Number(process.env.SECONDS || 3);
const VISITORS = Number(process.env.VISITORS || 10);

function vmHwmKiB(pid) {
  const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

async function run(bin, rate) {
  const gw = await startGateway({ CHAT_SEND_RATE_PER_SEC: '0' }, bin);
  try {
    const token = await gw.token('held', 'Held');
    const agent = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-admin/?token=${token}`);
    const opened = Date.now();
    const got = new Map();
    let closed = null;
    agent.on('message', (d) => {
      const f = JSON.parse(d.toString());
      if (f.type !== 'message') return;
      const c = f.message.conversation_id;
      if (!got.has(c)) got.set(c, []);
      got.get(c).push(f.message.seq);
    });
    agent.on('close', (code) => { closed = { code, afterMs: Date.now() - opened }; });
    await once(agent, 'open');
    const last = new Map();
    let lastAck = 0;
    const perVisitor = Math.round((rate / VISITORS) * SECONDS);
    const every = 1000 / (rate / VISITORS);
    await Promise.all(Array.from({ length: VISITORS }, async (_, n) => {
      const v = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-visitor/?site=default`);
      let acked = 0;
      const done = new Promise((resolve) => v.on('message', (d) => {
        const f = JSON.parse(d.toString());
        if (f.type === 'error') throw new Error(`visitor ${n}: ${JSON.stringify(f)}`);
        if (f.type !== 'ack') return;
        last.set(f.message.conversation_id, Math.max(last.get(f.message.conversation_id) || 0, f.message.seq));
        lastAck = Date.now();
        if (++acked === perVisitor) resolve();
      }));
      await once(v, 'open');
      const start = Date.now();
      for (let i = 0; i < perVisitor; i++) {
        const wait = start + i * every - Date.now();
        if (wait > 0) await sleep(wait);
        v.send(JSON.stringify({ type: 'send', id: `${n}-${i}`, client_msg_id: `${n}-${i}`, body: `m${i}` }));
      }
      await done;
      v.close();
    }));
    const total = [...last.values()].reduce((a, b) => a + b, 0);
    const deadline = Date.now() + 20_000;
    const count = () => [...got.values()].reduce((a, b) => a + b.length, 0);
    while (!closed && count() < total && Date.now() < deadline) await sleep(20);
    const caughtUpMs = count() >= total ? Date.now() - lastAck : NaN;
    await sleep(200);
    let exact = true;
    for (const [c, upto] of last) {
      const seqs = got.get(c) || [];
      if (seqs.length !== upto || seqs.some((s, i) => s !== i + 1)) exact = false;
    }
    const rss = vmHwmKiB(gw.child.pid);
    agent.close();
    return { total, delivered: count(), exact, closed, caughtUpMs, rss };
  } finally {
    await gw.stop();
  }
}

console.log(`held session, ${VISITORS} visitors, ${SECONDS} s per rate; agent never sends resume`);
console.log('binary      rate/s  sent  delivered  exactly-once-in-order  agent closed          caught up after last ack  peak RSS');
for (const rate of RATES) {
  for (const [name, bin] of BINS) {
    const r = await run(bin, rate);
    console.log(`${name.padEnd(10)} ${String(rate).padStart(6)} ${String(r.total).padStart(5)} ${String(r.delivered).padStart(10)}  ${String(r.exact).padEnd(21)}  ${(r.closed ? `${r.closed.code} at ${r.closed.afterMs} ms` : 'no').padEnd(20)}  ${(Number.isNaN(r.caughtUpMs) ? '-' : `${r.caughtUpMs} ms`).padStart(24)}  ${(r.rss / 1024).toFixed(1)} MiB`);
  }
}
