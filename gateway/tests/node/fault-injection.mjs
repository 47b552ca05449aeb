#!/usr/bin/env node
// Fault-injection run: two real chat-gateway processes on one Postgres, visitors and agents on all
// transports (raw WebSocket, HTTP long-polling, Socket.IO polling→WebSocket, Socket.IO WebSocket
// only) sending continuously with retries, while the run SIGKILLs and restarts a gateway every few
// seconds, cuts client connections at random and stalls readers. At the end it checks, from the
// clients' own records and the database, promises 1–3 of docs/promises.md, prints one FAULT_SUMMARY line
// and exits non-zero on any violation. See docs/fault-injection.md.
//
//   node fault-injection.mjs [--duration 40] [--visitors 24] [--agents 6] [--seed N] …
//   npm run fault                                    (CI size)
//   npm run fault -- --duration 600 --visitors 200 --agents 12   (the long run)
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BIN, startGateway, sleep, MANY_CLIENTS_FROM_ONE_ADDRESS } from './harness.mjs';
import { startPostgres } from './fault-pg.mjs';
import { ChatClient, TRANSPORTS } from './fault-clients.mjs';

const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '40' }, // seconds of sending (all phases)
    visitors: { type: 'string', default: '24' },
    agents: { type: 'string', default: '6' },
    seed: { type: 'string' },
    'kill-every': { type: 'string', default: '6' }, // seconds between SIGKILLs (chaos phase)
    'kill-pause': { type: 'string', default: '1000' }, // ms a killed gateway stays down
    'cut-every': { type: 'string', default: '500' }, // ms between random connection cuts
    'stall-every': { type: 'string', default: '2500' }, // ms between random reader stalls (chaos)
    'stall-ms': { type: 'string', default: '8000' }, // how long a stalled reader reads nothing
    'calm-ms': { type: 'string', default: '6000' }, // latency baseline phase (no faults)
    queue: { type: 'string', default: '32' }, // CHAT_SESSION_QUEUE of both gateways
    'body-bytes': { type: 'string', default: '8000' },
    'send-gap-ms': { type: 'string', default: '400' }, // mean pause between a visitor's sends
    'reply-prob': { type: 'string', default: '0.5' },
    'stall-factor': { type: 'string', default: '3' }, // allowed p99 ratio, stall phase vs calm
    single: { type: 'boolean', default: false }, // every client on gateway A (checker validation)
    verbose: { type: 'boolean', default: false },
  },
});
const N = (k) => Number(opt[k]);
const DURATION_MS = N('duration') * 1000;
const CALM_MS = N('calm-ms');
const STALL_MS = N('stall-ms');
const STALL_PHASE_MS = STALL_MS + 2000;
const CHAOS_MS = Math.max(0, DURATION_MS - CALM_MS - STALL_PHASE_MS);
const seed = opt.seed ? Number(opt.seed) : randomBytes(4).readUInt32LE(0);

// A seeded generator for the run's own choices (which gateway, whom to cut…), so a failing
// schedule can be replayed approximately with --seed.
let rngState = seed >>> 0;
function rand() {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (arr) => arr[Math.floor(rand() * arr.length)];

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s]`, ...a);

// ---- cleanup: every child and the Postgres cluster go away, whatever happens ----------------
const gateways = [];
let pg = null;
function cleanup() {
  for (const gw of gateways) {
    try { gw.child?.removeAllListeners('exit'); gw.child?.kill('SIGKILL'); } catch { /* gone */ }
    try { rmSync(gw.dataDir, { recursive: true, force: true }); } catch { /* gone */ }
  }
  try { pg?.stop(); } catch (e) { console.error(`postgres cleanup: ${e.message}`); }
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { console.error(`\n${sig}: stopping`); process.exit(130); });
process.on('uncaughtException', (e) => { console.error('uncaught:', e); process.exit(2); });
process.on('unhandledRejection', (e) => { console.error('unhandled rejection:', e); process.exit(2); });
const hardTimer = setTimeout(() => { console.error('FAULT_RUN timed out'); process.exit(3); }, DURATION_MS + 240_000);
hardTimer.unref();

// ---- the world the clients live in -----------------------------------------------------------
const world = {
  gateways,
  phase: 'setup',
  phaseStart: {},
  sending: true,
  bodies: new Map(), // client_msg_id -> body (what its sender sent)
  attemptAt: new Map(), // client_msg_id -> time of its latest send attempt
  seenGlobal: new Map(), // "conv:seq" -> { cmid, body ok } as shown to clients
  shownMismatch: [],
  latency: { calm: [], stall: [], chaos: [] },
  agents: [],
  verbose: opt.verbose,
  resumeDelays: [], // ms from welcome to the resume being sent (raw WebSocket, polling)
  log,
  base: (i) => `http://127.0.0.1:${gateways[i].port}`,
  pickGateway: () => (opt.single ? 0 : (rand() < 0.5 ? 0 : 1)),
  registerBody(cmid, body) { this.bodies.set(cmid, body); },
  observe(client, m, now, notLive) {
    const key = `${m.conversation_id}:${m.seq}`;
    const prev = this.seenGlobal.get(key);
    if (!prev) this.seenGlobal.set(key, { cmid: m.client_msg_id, body: m.body });
    else if (prev.cmid !== m.client_msg_id || prev.body !== m.body) {
      this.shownMismatch.push(`${client.name} saw ${key} as ${m.client_msg_id}, others as ${prev.cmid}`);
    }
    if (notLive || !this.latency[this.phase]) return;
    const at = this.attemptAt.get(m.client_msg_id);
    if (at === undefined || at < this.phaseStart[this.phase]) return;
    // Stall phase: only messages sent while the readers are stalled (their catch-up afterwards
    // runs in this same Node process and would be measured as everyone's latency).
    if (this.phase === 'stall' && at > this.phaseStart.stall + STALL_MS) return;
    if (this.phase === 'stall' && client.stalledInPhase) return;
    this.latency[this.phase].push(now - at);
  },
  maybeReply(agent, m) {
    if (!this.sending) return;
    const owner = this.agents[parseInt(m.conversation_id.replace(/-/g, '').slice(0, 8), 16) % this.agents.length];
    if (owner !== agent || rand() >= N('reply-prob')) return;
    if (agent.replyQueue.length < 20) agent.replyQueue.push(m.conversation_id);
  },
};

function body(cmid) {
  const pad = Math.max(0, N('body-bytes') - cmid.length - 1);
  return `${cmid} ${'x'.repeat(pad)}`;
}

// ---- gateways ----------------------------------------------------------------------------------
function runBin(args, env) {
  return new Promise((resolve, reject) => {
    execFile(BIN, args, { env }, (err, stdout, stderr) => (err ? reject(new Error(`${args[0]} failed: ${stderr || err.message}`)) : resolve(stdout.trim())));
  });
}

const faults = { killed: 0, restarts: [], cuts: 0, stalls: 0, unexpectedExits: [] };

function watchExit(gw, i) {
  gw.child.on('exit', (code, signal) => {
    faults.unexpectedExits.push(`gateway ${'AB'[i]} exited on its own (code ${code}, signal ${signal})`);
    log(`gateway ${'AB'[i]} exited unexpectedly (code ${code}, signal ${signal}); restarting`);
    gw.launch().then(() => watchExit(gw, i), (e) => faults.unexpectedExits.push(`restart failed: ${e.message}`));
  });
}

async function launchWithRetry(gw) {
  for (let attempt = 1; ; attempt++) {
    try { return await gw.launch(); } catch (e) {
      if (attempt >= 5) throw e;
      await sleep(300);
    }
  }
}

// ---- phases and faults -------------------------------------------------------------------------
function setPhase(name) {
  world.phase = name;
  world.phaseStart[name] = Date.now();
  log(`phase ${name}`);
}

// SIGKILLs a gateway and restarts it on the same port after a pause, alternating A and B; every
// third time both go down together (a whole-cluster restart: every client has to come back to a
// restarted process, which is what "restart → all clients resumed" measures).
async function killLoop(until) {
  let target = 0;
  for (let k = 0; Date.now() + 500 < until; k++) {
    await sleep(N('kill-every') * 1000 * (0.8 + 0.4 * rand()));
    if (Date.now() + 500 >= until) break;
    const both = !opt.single && k % 3 === 2;
    const targets = opt.single ? [0] : both ? [0, 1] : [target];
    const affected = clients.filter((c) => c.conn && targets.includes(c.conn.gw)).map((c) => c.name);
    const killAt = Date.now();
    await Promise.all(targets.map((i) => gateways[i].kill('SIGKILL')));
    faults.killed += targets.length;
    await sleep(N('kill-pause'));
    await Promise.all(targets.map(async (i) => { await launchWithRetry(gateways[i]); watchExit(gateways[i], i); }));
    const restartAt = Date.now();
    faults.restarts.push({ gw: targets.map((i) => 'AB'[i]).join('+'), both, killAt, restartAt, affected });
    if (opt.verbose) log(`killed ${targets.map((i) => 'AB'[i]).join('+')} (${affected.length} clients on it), back after ${restartAt - killAt} ms`);
    if (!both) target = 1 - target;
  }
}

async function cutLoop(until) {
  while (Date.now() < until) {
    await sleep(N('cut-every') * (0.5 + rand()));
    const live = clients.filter((c) => c.connReady && c.conn);
    if (live.length && pick(live).cut()) faults.cuts++;
  }
}

async function stallLoop(until) {
  while (Date.now() + STALL_MS < until) {
    await sleep(N('stall-every') * (0.5 + rand()));
    const candidates = clients.filter((c) => (c.transport === 'ws' || c.transport === 'poll') && c.connReady && c.stalledUntil < Date.now());
    if (candidates.length && pick(candidates).stall(STALL_MS * (0.5 + 0.5 * rand()))) faults.stalls++;
  }
}

// ---- run ---------------------------------------------------------------------------------------
const clients = [];

async function main() {
  log(`fault-injection run: seed=${seed} duration=${N('duration')}s visitors=${N('visitors')} agents=${N('agents')} ${opt.single ? '(single process: every client on gateway A)' : 'over two gateways'}`);
  pg = await startPostgres(log);
  const secret = randomBytes(32).toString('hex');
  const env = {
    ...MANY_CLIENTS_FROM_ONE_ADDRESS,
    CHAT_DATABASE_URL: pg.url,
    CHAT_ADMIN_JWT_SECRET: secret,
    CHAT_VISITOR_TOKEN_SECRET: randomBytes(32).toString('hex'),
    CHAT_SESSION_QUEUE: String(N('queue')),
    CHAT_POLL_HOLD_SECS: '10',
    CHAT_POLL_SESSION_TTL_SECS: '30',
    CHAT_MAX_MESSAGE_CHARS: '20000',
    CHAT_ALLOWED_ORIGINS: '*',
    ADMIN_ALLOWED_ORIGINS: '*',
    CHAT_LOG: process.env.CHAT_LOG || 'warn',
  };
  log(await runBin(['migrate'], { ...process.env, ...env }));
  for (let i = 0; i < 2; i++) {
    const gw = await startGateway(env);
    gateways.push(gw);
    watchExit(gw, i);
  }
  log(`gateways A=:${gateways[0].port} B=:${gateways[1].port} pids ${gateways.map((g) => g.child.pid).join(',')}`);

  // Agents first, so that they see every conversation being created.
  const nAgents = N('agents');
  for (let i = 0; i < nAgents; i++) {
    const name = `a${String(i + 1).padStart(2, '0')}`;
    const token = await runBin(['token', '--agent', name, '--name', `Agent ${name}`, '--ttl-minutes', '240'], { ...process.env, ...env });
    const c = new ChatClient(world, { role: 'agent', name, transport: TRANSPORTS[i % TRANSPORTS.length], agentToken: token });
    clients.push(c);
    world.agents.push(c);
    c.start();
  }
  await Promise.all(world.agents.map((c) => c.ready()));
  const visitors = [];
  for (let i = 0; i < N('visitors'); i++) {
    const c = new ChatClient(world, { role: 'visitor', name: `v${String(i + 1).padStart(3, '0')}`, transport: TRANSPORTS[i % TRANSPORTS.length] });
    clients.push(c);
    visitors.push(c);
    c.start();
  }
  await Promise.all(visitors.map((c) => c.ready()));
  log(`${clients.length} clients connected (${TRANSPORTS.map((t) => `${t}=${clients.filter((c) => c.transport === t).length}`).join(' ')})`);

  const sendEnd = Date.now() + DURATION_MS;
  const hardDeadline = sendEnd + 30_000;
  const loops = [];
  for (const v of visitors) {
    loops.push((async () => {
      await sleep(rand() * N('send-gap-ms'));
      while (world.sending) {
        const cmid = `${v.name}-${++v.sendCount}`;
        await v.sendUntilAcked(cmid, body(cmid), null, hardDeadline);
        await sleep(N('send-gap-ms') * (0.5 + rand()));
      }
    })());
  }
  for (const a of world.agents) {
    loops.push((async () => {
      while (world.sending) {
        const conv = a.replyQueue.shift();
        if (!conv) { await sleep(50); continue; }
        const cmid = `${a.name}-${++a.sendCount}`;
        await a.sendUntilAcked(cmid, body(cmid), conv, hardDeadline);
      }
    })());
  }

  // Phase 1: no faults — the latency baseline.
  setPhase('calm');
  await sleep(CALM_MS);
  // Phase 2: only stalls — some readers stop reading; the others' latency is compared.
  setPhase('stall');
  const stallable = clients.filter((c) => c.transport === 'ws' || c.transport === 'poll');
  const stalled = [
    ...stallable.filter((c) => c.role === 'agent' && c.transport === 'ws'),
    ...stallable.filter((c) => c.role === 'visitor').filter((_, i) => i % 3 === 0),
  ];
  for (const c of stalled) { c.stalledInPhase = true; if (c.stall(STALL_MS)) faults.stalls++; }
  await sleep(STALL_PHASE_MS);
  // Phase 3: chaos — kills, cuts and stalls together.
  setPhase('chaos');
  const chaosEnd = Date.now() + CHAOS_MS;
  await Promise.all([killLoop(chaosEnd), cutLoop(chaosEnd), stallLoop(chaosEnd), sleep(CHAOS_MS)]);

  // Drain: no new messages; every send in flight is retried until acknowledged.
  setPhase('drain');
  world.sending = false;
  await Promise.all(loops);
  const drainedAt = Date.now();
  log(`all sends finished ${drainedAt - sendEnd} ms after the end of sending`);

  // Every client back, resumed, and given time to receive what is live.
  const settleDeadline = Date.now() + 20_000;
  while (Date.now() < settleDeadline && clients.some((c) => !c.connResumed || c.stalledUntil > Date.now())) await sleep(100);
  await sleep(2000);
  // One last resume on the live connection: anything it replays was missed by live delivery.
  await Promise.all(clients.map((c) => c.finalResume().catch((e) => c.violations.push(`final resume: ${e.message}`))));
  // Let the replays arrive.
  await sleep(1000);

  const db = readDatabase();
  const convergeDeadline = Date.now() + 10_000;
  while (Date.now() < convergeDeadline && !converged(db)) await sleep(200);
  return report(db);
}

function readDatabase() {
  const conversations = new Map();
  for (const [id, visitor, lastSeq] of pg.query('SELECT id, visitor_id, last_seq FROM conversations')) {
    conversations.set(id, { visitor, lastSeq: Number(lastSeq), rows: new Map() });
  }
  const byCmid = new Map();
  let rows = 0;
  for (const [conv, seq, cmid, role, sender, md5] of pg.query("SELECT conversation_id, seq, coalesce(client_msg_id, ''), sender_role, sender_id, md5(body) FROM messages ORDER BY conversation_id, seq")) {
    rows++;
    const row = { conv, seq: Number(seq), cmid, role, sender, md5 };
    const c = conversations.get(conv);
    if (c) c.rows.set(row.seq, row);
    if (!byCmid.has(cmid)) byCmid.set(cmid, []);
    byCmid.get(cmid).push(row);
  }
  return { conversations, byCmid, rows };
}

function followed(client, db) {
  if (client.role === 'agent') return [...db.conversations.keys()];
  return [...db.conversations.entries()].filter(([, c]) => c.visitor === client.visitorId).map(([id]) => id);
}

function converged(db) {
  return clients.every((c) => followed(c, db).every((id) => (c.convs.get(id)?.contiguous ?? 0) >= db.conversations.get(id).lastSeq));
}

const md5 = (s) => createHash('md5').update(s).digest('hex');
const pct = (arr, p) => {
  if (!arr.length) return NaN;
  const s = [...arr].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

function report(db) {
  const v = { lostStored: [], dupStored: [], wrongSeq: [], phantom: [], lostDelivery: [], dupDelivery: [], order: [], missedLive: [], dbGap: [], unacked: [], other: [] };
  const add = (kind, msg) => v[kind].push(msg);

  // The database itself: per conversation seq 1..last_seq without a hole; client_msg_id unique.
  for (const [id, c] of db.conversations) {
    if (c.rows.size !== c.lastSeq) add('dbGap', `conversation ${id}: ${c.rows.size} rows, last_seq ${c.lastSeq}`);
    for (let s = 1; s <= c.lastSeq; s++) if (!c.rows.has(s)) { add('dbGap', `conversation ${id}: seq ${s} missing in the database`); break; }
  }
  for (const [cmid, rows] of db.byCmid) if (cmid && rows.length > 1) add('dupStored', `client_msg_id ${cmid} stored ${rows.length} times: ${rows.map((r) => `${r.conv}#${r.seq}`).join(', ')}`);

  // Every acknowledged message: stored exactly once, with the acknowledged seq and body.
  let sent = 0; let acked = 0; let retried = 0; let committedUnacked = 0;
  for (const c of clients) {
    retried += c.retries;
    for (const cmid of c.sendOrder) {
      const rec = c.sent.get(cmid);
      sent++;
      const rows = db.byCmid.get(cmid) || [];
      if (!rec.acks.length) {
        if (rows.length) committedUnacked++;
        add('unacked', `${c.name} ${cmid} never acknowledged (${rec.attempts} attempts: ${rec.errors.slice(-3).join(', ')}); ${rows.length ? 'it IS in the database' : 'not in the database'}`);
        continue;
      }
      acked++;
      const first = rec.acks[0];
      for (const a of rec.acks) {
        if (a.conv !== first.conv || a.seq !== first.seq) add('wrongSeq', `${c.name} ${cmid}: acknowledged as ${first.conv}#${first.seq} and as ${a.conv}#${a.seq}`);
        if (a.cmid !== cmid || a.body !== rec.body) add('wrongSeq', `${c.name} ${cmid}: ack carries ${a.cmid} / another body`);
      }
      if (!rows.length) { add('lostStored', `${c.name} ${cmid} acknowledged as ${first.conv}#${first.seq} but not in the database`); continue; }
      const row = rows[0];
      if (row.conv !== first.conv || row.seq !== first.seq) add('wrongSeq', `${c.name} ${cmid} acknowledged as ${first.conv}#${first.seq}, stored as ${row.conv}#${row.seq}`);
      if (row.md5 !== md5(rec.body)) add('wrongSeq', `${c.name} ${cmid}: stored body differs from the sent one`);
    }
  }

  // Nothing shown that is not stored (and as stored).
  for (const [key, shown] of world.seenGlobal) {
    const [conv, seq] = key.split(':');
    const row = db.conversations.get(conv)?.rows.get(Number(seq));
    if (!row) add('phantom', `message ${key} (${shown.cmid}) was shown to clients but is not in the database`);
    else if (row.cmid !== (shown.cmid || '') || row.md5 !== md5(shown.body)) add('phantom', `message ${key} shown as ${shown.cmid}, stored as ${row.cmid}`);
    else if (world.bodies.has(shown.cmid) && world.bodies.get(shown.cmid) !== shown.body) add('phantom', `message ${key} shown with a body its sender never sent`);
  }
  for (const m of world.shownMismatch) add('phantom', m);

  // Every client: every message of its conversations, in seq order, none twice.
  let deliveries = 0; let boundaryRaces = 0;
  for (const c of clients) {
    for (const id of followed(c, db)) {
      const last = db.conversations.get(id).lastSeq;
      const view = c.convs.get(id);
      const seen = view ? view.seen : new Set();
      deliveries += seen.size;
      const missing = [];
      for (let s = 1; s <= last; s++) if (!seen.has(s)) missing.push(s);
      if (missing.length) add('lostDelivery', `${c.name} (${c.role}, ${c.transport}) never saw ${missing.length} message(s) of ${id}: seq ${missing.slice(0, 8).join(',')}${missing.length > 8 ? '…' : ''} (last_seq ${last})`);
      if (!view) continue;
      // Arrival order across all the client's connections.
      const counted = new Set();
      let contiguous = 0;
      const have = new Set();
      for (const [conn, seq, pre, replay] of view.events) {
        const race = pre ? ' (arrived live before the resume was answered)' : '';
        if (have.has(seq)) {
          if (!counted.has(seq)) {
            const earlier = view.events.find((e) => e[1] === seq);
            const isRace = pre || earlier[2];
            if (isRace) boundaryRaces++;
            add('dupDelivery', `${c.name} (${c.role}, ${c.transport}) got ${id}#${seq} twice: connection ${earlier[0]}${earlier[2] ? ' pre-resume' : ''}${earlier[3] ? ' replay' : ''}, then connection ${conn}${pre ? ' pre-resume' : ''}${replay ? ' replay' : ''}`);
          }
          counted.add(seq);
          continue;
        }
        if (seq !== contiguous + 1) add('order', `${c.name} (${c.role}, ${c.transport}) got ${id}#${seq} on connection ${conn} while holding 1..${contiguous}${race}`);
        have.add(seq);
        while (have.has(contiguous + 1)) contiguous++;
      }
    }
    if (c.finalFresh) add('missedLive', `${c.name} (${c.role}, ${c.transport}, gateway ${'AB'[c.connGw]}): the final resume brought ${c.finalFresh} message(s) live delivery never had (it replayed ${c.finalReplayed})`);
    for (const m of c.violations) add('other', m);
  }
  for (const m of faults.unexpectedExits) add('other', m);

  // Restart → every affected client resumed.
  const kills = faults.restarts.map((r) => {
    const times = r.affected.map((name) => {
      const c = clients.find((x) => x.name === name);
      const t = c.resumes.find((x) => x > r.killAt);
      return t === undefined ? Infinity : t;
    });
    const all = times.length ? Math.max(...times) : r.killAt;
    return { ...r, killToAll: all - r.killAt, restartToAll: Math.max(0, all - r.restartAt), n: times.length };
  });
  for (const k of kills) if (!Number.isFinite(k.killToAll)) add('other', `after the kill of gateway ${k.gw} at +${((k.killAt - t0) / 1000).toFixed(1)}s some of its clients never resumed`);

  const lost = v.lostStored.length + v.lostDelivery.length + v.wrongSeq.length;
  const duplicated = v.dupStored.length + v.dupDelivery.length;
  const lat = (name) => ({ p50: pct(world.latency[name], 50), p99: pct(world.latency[name], 99), n: world.latency[name].length });
  const calm = lat('calm'); const stall = lat('stall'); const chaos = lat('chaos');
  const ratio = stall.p99 / calm.p99;
  const stallFactor = N('stall-factor');
  // Loopback latencies are a few ms: below 20 ms the ratio is noise, not a slowdown.
  const stallOk = Number.isFinite(ratio) && stall.p99 <= stallFactor * Math.max(calm.p99, 20);
  if (!stallOk) add('other', `stalled readers slowed the others: p99 ${stall.p99} ms with stalls vs ${calm.p99} ms without (allowed ${stallFactor}x, floor 20 ms)`);
  const med = (a) => pct(a, 50);
  const finite = kills.filter((k) => Number.isFinite(k.killToAll));
  // One gateway down: clients fail over to the other one (kill → all resumed). Both down: they
  // have to wait for a restarted process (restart → all resumed).
  const kt = finite.filter((k) => !k.both || opt.single).map((k) => k.killToAll);
  const rt = finite.filter((k) => k.both || opt.single).map((k) => k.restartToAll);
  const range = (a) => (a.length ? `min:${Math.min(...a)},median:${med(a)},max:${Math.max(...a)}` : 'n/a');
  const closes = {};
  for (const c of clients) for (const [why, n] of Object.entries(c.closes)) closes[why] = (closes[why] || 0) + n;
  const recovered = clients.reduce((s, c) => s + c.recovered, 0);
  const reconnects = clients.reduce((s, c) => s + c.reconnects, 0);
  const finalFresh = clients.reduce((s, c) => s + c.finalFresh, 0);

  const total = Object.values(v).reduce((s, a) => s + a.length, 0);
  console.log('');
  // What the gateways logged at WARN and above (and anything CHAT_LOG lets through), by message.
  for (const [i, gw] of gateways.entries()) {
    const counts = new Map();
    for (const line of gw.log.split('\n')) {
      // eslint-disable-next-line no-control-regex
      const plain = line.replace(/\x1b\[[0-9;]*m/g, '');
      if (!/\b(WARN|ERROR|DEBUG)\b/.test(plain)) continue;
      const key = plain.replace(/^\S*\d{4}-\d\d-\d\dT\S+\s+/, '').replace(/=("[^"]*"|\S+)/g, '=…').slice(0, 200);
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
    if (top.length) log(`gateway ${'AB'[i]} log (${process.env.CHAT_LOG || 'warn'}):\n${top.map(([k, n]) => `    ${String(n).padStart(6)} × ${k}`).join('\n')}`);
  }
  log(`database: ${db.conversations.size} conversations, ${db.rows} messages; ${deliveries} (client, message) deliveries checked`);
  log(`connection ends: ${Object.entries(closes).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(' ')}`);
  log(`latency (send → live delivery to other non-stalled clients): calm p50=${calm.p50}ms p99=${calm.p99}ms (n=${calm.n}); with stalls p50=${stall.p50}ms p99=${stall.p99}ms (n=${stall.n}); ratio p99=${ratio.toFixed(2)}; chaos p50=${chaos.p50}ms p99=${chaos.p99}ms (n=${chaos.n})`);
  const rd = world.resumeDelays;
  log(`welcome → resume sent (raw WebSocket and polling): p50=${pct(rd, 50)}ms p99=${pct(rd, 99)}ms max=${Math.max(...rd)}ms; ${rd.filter((d) => d >= 3000).length} of ${rd.length} after the gateway's 3 s hold`);
  if (kills.length) log(`restarts (gateway:clients on it): ${kills.map((k) => `${k.gw}:${k.n}c kill→all resumed=${k.killToAll}ms restart→all resumed=${k.restartToAll}ms`).join(' | ')}`);
  for (const [kind, list] of Object.entries(v)) {
    if (!list.length) continue;
    console.log(`VIOLATION ${kind}: ${list.length}`);
    for (const m of list.slice(0, 5)) console.log(`  - ${m}`);
  }
  const summary = [
    `FAULT_SUMMARY result=${total ? 'FAIL' : 'PASS'}`,
    `mode=${opt.single ? 'single-process' : 'two-process'}`, `seed=${seed}`, `duration=${N('duration')}s`,
    `visitors=${N('visitors')}`, `agents=${N('agents')}`,
    `sent=${sent}`, `acknowledged=${acked}`, `retried=${retried}`, `killed=${faults.killed}`,
    `recovered=${recovered}/${reconnects}`, `cuts=${faults.cuts}`, `stalls=${faults.stalls}`, `closed_1013=${closes['close 1013'] || 0}`, `expired_410=${closes['expired (410)'] || 0}`,
    `lost=${lost}`, `duplicated=${duplicated}`,
    `(lost_stored=${v.lostStored.length + v.wrongSeq.length} lost_delivery=${v.lostDelivery.length} dup_stored=${v.dupStored.length} dup_delivery=${v.dupDelivery.length} boundary_races=${boundaryRaces} out_of_order=${v.order.length} missed_live=${finalFresh} phantom=${v.phantom.length} unacked=${v.unacked.length} committed_unacked=${committedUnacked})`,
    `p50_calm=${calm.p50}ms p99_calm=${calm.p99}ms p50_stall=${stall.p50}ms p99_stall=${stall.p99}ms p99_ratio=${ratio.toFixed(2)}`,
    `failover_kill_to_all_resumed_ms=${range(kt)}`,
    `${opt.single ? '' : 'full_'}restart_to_all_resumed_ms=${range(rt)}`,
  ].join(' ');
  console.log(summary);
  return total ? 1 : 0;
}

main().then((code) => {
  for (const c of clients) c.stop();
  cleanup();
  process.exit(code);
}, (e) => {
  console.error('FAULT_RUN error:', e);
  for (const gw of gateways) if (gw.log) console.error(`--- gateway log (tail) ---\n${gw.log.slice(-3000)}`);
  process.exit(2);
});
