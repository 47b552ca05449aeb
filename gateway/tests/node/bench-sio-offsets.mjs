// What Socket.IO recovery offsets cost an agent with many conversations (issue 12). CONVERSATIONS
// raw-WebSocket visitors each open a conversation; one stock socket.io-client agent (WebSocket
// only) receives every message. Then the visitors send RATE msg/s in all for SECONDS. For each
// gateway binary, in turn and ROUNDS times: the size of the agent's `message` packets (mean and
// largest, offset included), the largest offset, and the gateway's CPU (utime+stime) per message
// over the timed part.
//
//   BINS=before=/path/a,after=target/release/chat-gateway CONVERSATIONS=200 RATE=500 \
//     node gateway/tests/node/bench-sio-offsets.mjs
import WebSocket from 'ws';
import { io } from 'socket.io-client';
import { readFileSync } from 'node:fs';
import { startGateway, once, sleep } from './harness.mjs';

const BINS = (process.env.BINS || `current=${process.env.CHAT_GATEWAY_BIN || ''}`)
  .split(',').map((s) => s.split('=')).filter(([, p]) => p);
const CONVERSATIONS = Number(process.env.CONVERSATIONS || 200);
const RATE = Number(process.env.RATE || 500);
const SECONDS = Number(process.env.SECONDS || 4);
const ROUNDS = Number(process.env.ROUNDS || 2);
const TICKS = 100; // USER_HZ

function cpuTicks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

async function run(bin) {
  const gw = await startGateway({ CHAT_SEND_RATE_PER_SEC: '0', CHAT_SESSION_OPENS_PER_IP_PER_MIN: '100000', CHAT_MAX_CONNECTIONS_PER_IP: '100000', CHAT_LOG: 'warn' }, bin);
  try {
    const token = await gw.token('bench', 'Bench');
    const agent = io(gw.base, { path: '/ws-admin', auth: { token }, transports: ['websocket'] });
    let received = 0;
    let packetBytes = 0;
    let packets = 0;
    let largestPacket = 0;
    let largestOffset = 0;
    agent.io.on('open', () => agent.io.engine.on('packet', (p) => {
      if (typeof p.data !== 'string' || !p.data.startsWith('2["message"')) return;
      packets++;
      packetBytes += p.data.length;
      largestPacket = Math.max(largestPacket, p.data.length);
    }));
    agent.on('message', (_m, offset) => {
      received++;
      largestOffset = Math.max(largestOffset, offset.length);
    });
    await once(agent, 'welcome');
    const visitors = [];
    for (let n = 0; n < CONVERSATIONS; n++) {
      const v = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-visitor/?site=default`);
      await once(v, 'open');
      v.acked = 0;
      v.on('message', (d) => { if (JSON.parse(d.toString()).type === 'ack') v.acked++; });
      v.send(JSON.stringify({ type: 'send', id: 'first', body: `hello from ${n}` }));
      visitors.push(v);
    }
    for (let i = 0; i < 500 && received < CONVERSATIONS; i++) await sleep(20);
    const warm = received;
    packetBytes = 0; packets = 0; largestPacket = 0;
    const cpuBefore = cpuTicks(gw.child.pid);
    const total = RATE * SECONDS;
    const start = Date.now();
    for (let i = 0; i < total; i++) {
      const wait = start + (i * 1000) / RATE - Date.now();
      if (wait > 0) await sleep(wait);
      visitors[i % visitors.length].send(JSON.stringify({ type: 'send', id: `m${i}`, body: `message ${i} `.padEnd(100, '.') }));
    }
    const deadline = Date.now() + 30_000;
    while (received < warm + total && Date.now() < deadline) await sleep(20);
    const cpuMs = ((cpuTicks(gw.child.pid) - cpuBefore) * 1000) / TICKS;
    const delivered = received - warm;
    agent.close();
    for (const v of visitors) v.close();
    return { delivered, total, cpuUsPerMessage: (cpuMs * 1000) / Math.max(1, delivered), meanPacket: packetBytes / Math.max(1, packets), largestPacket, largestOffset };
  } finally {
    await gw.stop();
  }
}

console.log(`Socket.IO agent, ${CONVERSATIONS} conversations, ${RATE} msg/s for ${SECONDS} s, ${ROUNDS} rounds; loadavg ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
console.log('binary      round  delivered  message packet mean / largest (B)  largest offset (chars)  gateway CPU per message');
for (let round = 1; round <= ROUNDS; round++) {
  for (const [name, bin] of BINS) {
    const r = await run(bin);
    console.log(`${name.padEnd(10)} ${String(round).padStart(6)} ${`${r.delivered}/${r.total}`.padStart(10)}  ${`${r.meanPacket.toFixed(0)} / ${r.largestPacket}`.padStart(33)}  ${String(r.largestOffset).padStart(22)}  ${r.cpuUsPerMessage.toFixed(0).padStart(20)} µs`);
  }
}
