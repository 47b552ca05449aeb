// What the admission path and its limits cost: WebSocket handshakes per second and visitor →
// agent deliveries per second, side by side in one run, for
//   - `limits on`:  the admission path with every limit checked (connection caps and open rate
//                   raised so that this one-address load generator is not refused; the visitor
//                   send bucket on, at a rate it never reaches);
//   - `limits off`: the same binary with the send bucket off (CHAT_SEND_RATE_PER_SEC=0) and the
//                   caps raised (their bookkeeping still runs: it cannot be switched off);
//   - `baseline`:   optionally, an older binary (BENCH_BASELINE_BIN), e.g. one from before the
//                   admission path.
// Rounds alternate between the variants so that the machine's noise hits them alike; the median
// of the rounds is reported.
//
//   CHAT_GATEWAY_BIN=target/release/chat-gateway [BENCH_BASELINE_BIN=…] [BENCH_ROUNDS=3]
//   [BENCH_HANDSHAKES=2000] [BENCH_VISITORS=50] [BENCH_MESSAGES=100] node bench-admission.mjs
import WebSocket from 'ws';
import { startGateway, BIN, MANY_CLIENTS_FROM_ONE_ADDRESS } from './harness.mjs';
import { envNum, gitRevision } from './bench-util.mjs';

const ROUNDS = envNum('BENCH_ROUNDS', 3);
const HANDSHAKES = envNum('BENCH_HANDSHAKES', 2000);
const CONCURRENCY = envNum('BENCH_CONNECT_CONCURRENCY', 32);
const VISITORS = envNum('BENCH_VISITORS', 50);
const MESSAGES = envNum('BENCH_MESSAGES', 100);

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('message', () => resolve(ws)); // the welcome
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

async function handshakesPerSec(gw) {
  const url = `${gw.base.replace('http', 'ws')}/ws-visitor/`;
  const sockets = [];
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < HANDSHAKES) {
      next++;
      sockets.push(await open(url));
    }
  }));
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  for (const ws of sockets) ws.terminate();
  return HANDSHAKES / secs;
}

async function deliveriesPerSec(gw) {
  const base = gw.base.replace('http', 'ws');
  const token = await gw.token('bench', 'Bench');
  const agent = await open(`${base}/ws-admin/?token=${token}`);
  let delivered = 0;
  const total = VISITORS * MESSAGES;
  const allDelivered = new Promise((resolve, reject) => {
    agent.on('message', (data) => {
      if (JSON.parse(String(data)).type === 'message' && ++delivered === total) resolve();
    });
    agent.on('close', (code) => reject(new Error(`the agent's session closed (${code}) after ${delivered} of ${total}`)));
  });
  // As every client does after `welcome`: the session holds live messages back until then.
  agent.send(JSON.stringify({ type: 'resume', id: 'resume', cursors: {} }));
  const visitors = await Promise.all(Array.from({ length: VISITORS }, () => open(`${base}/ws-visitor/`)));
  const started = process.hrtime.bigint();
  await Promise.all(visitors.map((ws, v) => new Promise((resolve, reject) => {
    let sent = 0;
    const send = () => ws.send(JSON.stringify({ type: 'send', id: `r${sent}`, client_msg_id: `v${v}-${sent}`, body: `message ${sent} of visitor ${v}` }));
    ws.on('message', (data) => {
      const f = JSON.parse(String(data));
      if (f.type === 'error') return reject(new Error(JSON.stringify(f)));
      if (f.type !== 'ack') return;
      if (++sent === MESSAGES) return resolve();
      send();
    });
    send();
  })));
  await allDelivered;
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  for (const ws of visitors) ws.terminate();
  agent.terminate();
  return total / secs;
}

const raised = { ...MANY_CLIENTS_FROM_ONE_ADDRESS, CHAT_LOG: 'warn' };
const variants = [
  { name: 'limits on', bin: BIN, env: { ...raised, CHAT_SEND_RATE_PER_SEC: '1000000', CHAT_SEND_BURST: '1000000' } },
  { name: 'limits off', bin: BIN, env: { ...raised, CHAT_SEND_RATE_PER_SEC: '0' } },
];
if (process.env.BENCH_BASELINE_BIN) variants.push({ name: 'baseline', bin: process.env.BENCH_BASELINE_BIN, env: raised });

const results = new Map(variants.map((v) => [v.name, { handshakes: [], deliveries: [] }]));
for (let round = 0; round < ROUNDS; round++) {
  for (const v of variants) {
    const gw = await startGateway(v.env, v.bin);
    try {
      const r = results.get(v.name);
      r.handshakes.push(await handshakesPerSec(gw));
      r.deliveries.push(await deliveriesPerSec(gw));
    } finally {
      await gw.stop();
    }
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rev = gitRevision();
console.log(`bench-admission at ${rev.commit}${rev.dirty ? ' (dirty)' : ''}: ${ROUNDS} rounds, ${HANDSHAKES} handshakes (${CONCURRENCY} in flight), ${VISITORS} visitors × ${MESSAGES} messages`);
const ref = results.get('limits off');
for (const v of variants) {
  const r = results.get(v.name);
  const h = median(r.handshakes);
  const d = median(r.deliveries);
  const span = (xs) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
  console.log(`${v.name.padEnd(11)} handshakes/s ${h.toFixed(0).padStart(6)} (${(h / median(ref.handshakes)).toFixed(2)}×, ${span(r.handshakes)})   deliveries/s ${d.toFixed(0).padStart(6)} (${(d / median(ref.deliveries)).toFixed(2)}×, ${span(r.deliveries)})   ${v.bin}`);
}
