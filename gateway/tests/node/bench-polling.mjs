// Idle visitors: request rate and gateway CPU for 2-second short polling (the old widget's
// behaviour, simulated by the client), HTTP long-polling and raw WebSocket, side by side in one
// run, against the real chat-gateway on loopback. Not a test (`npm test` does not pick it up); run
// it with
//
//   npm run bench:polling                     # or: node bench-polling.mjs
//
// Knobs (environment):
//   CHAT_GATEWAY_BIN           gateway binary (default: <repo>/target/release/chat-gateway; built by
//                              `cargo build --release -p chat-gateway`, this script builds nothing)
//   BENCH_VISITORS             idle visitors per case (default 1000)
//   BENCH_SECONDS              measurement window per case, in seconds (default 60)
//   BENCH_SHORT_POLL_SECS      short-polling interval: wait after each answer (default 2)
//   BENCH_STAGGER_SECS         client start is spread evenly over this many seconds (default 5)
//   BENCH_SETTLE_SECS          wait after the last client is connected, before the window (default 3)
//   BENCH_PER_CLIENT_PROCESS   visitors per client child process (default 500)
//   BENCH_CASES                comma-separated subset of case ids (default: all), see CASES below
//
// Method: every case gets a fresh gateway (embedded store, CHAT_LOG=warn). The clients live in
// separate child processes (this file run with `--clients`), each visitor with its own keep-alive
// http.Agent (one socket, like a browser tab's connection):
//   short-poll  gateway with CHAT_POLL_HOLD_SECS=0 (a GET with nothing to deliver is answered at
//               once); each visitor POSTs /ws-visitor/poll (session + welcome), then loops:
//               GET /ws-visitor/poll?sid=S&cursor=N → wait BENCH_SHORT_POLL_SECS → GET again;
//   long-poll   gateway with the default hold (25 s); each visitor keeps one GET outstanding and
//               re-polls as soon as it is answered;
//   websocket   raw `ws` visitor to /ws-visitor/, connected at `welcome`, then idle (the gateway's
//               pings every 25 s are answered by `ws` automatically).
// When every visitor is connected (and BENCH_SETTLE_SECS later) the bench reads the gateway's
// utime+stime from /proc/<pid>/stat and every client process's counters, waits BENCH_SECONDS and
// reads both again. Reported over the window: HTTP requests answered (counted by the clients),
// requests per minute, gateway CPU seconds per minute and average % of one core (CPU ticks /
// `getconf CLK_TCK`), WebSocket frames received by the clients, and the gateway VmRSS at the end.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO, envNum, forkClients, gitRevision, procStatus, sh, sleep, softFdLimit } from './bench-util.mjs';

const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Client process: opens idle visitors on request from the parent and counts what they do.

async function clientProcess() {
  const { default: WebSocket } = await import('ws');
  const stats = { requests: 0, events: 0, errors: 0, reopened: 0, wsFrames: 0, wsPings: 0, firstError: null };
  const visitors = [];
  let stopping = false;

  function request(agent, port, method, pathAndQuery, timeoutMs) {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: pathAndQuery, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          let json = null;
          try { json = JSON.parse(body); } catch { /* reported below */ }
          resolve({ status: res.statusCode, json, body });
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  function noteError(err) {
    stats.errors++;
    stats.firstError ??= String(err?.message ?? err);
  }

  async function openSession(v) {
    const r = await request(v.agent, v.port, 'POST', '/ws-visitor/poll?site=default', 30_000);
    if (r.status !== 200 || !r.json?.sid) throw new Error(`POST /ws-visitor/poll: ${r.status} ${r.body.slice(0, 200)}`);
    v.sid = r.json.sid;
    v.cursor = r.json.cursor;
  }

  // One polling visitor: session, then GET loop (wait `intervalMs` after each answer; 0 = long-poll).
  async function pollVisitor(port, intervalMs) {
    const v = { port, agent: new http.Agent({ keepAlive: true, maxSockets: 1 }), sid: null, cursor: 0, open: false };
    v.close = () => v.agent.destroy();
    v.isOpen = () => v.open;
    await openSession(v);
    v.open = true;
    visitors.push(v);
    (async () => {
      while (!stopping) {
        try {
          const r = await request(v.agent, port, 'GET', `/ws-visitor/poll?sid=${encodeURIComponent(v.sid)}&cursor=${v.cursor}`, 60_000);
          if (stopping) break;
          if (r.status === 200 && r.json) {
            stats.requests++;
            stats.events += r.json.events?.length ?? 0;
            v.cursor = r.json.cursor;
          } else if (r.status === 410) {
            noteError(new Error('410 session_expired'));
            stats.reopened++;
            v.open = false;
            await openSession(v);
            v.open = true;
            continue;
          } else {
            noteError(new Error(`GET poll: ${r.status} ${r.body.slice(0, 200)}`));
            await sleep(1000);
            continue;
          }
        } catch (err) {
          if (stopping) break;
          noteError(err);
          await sleep(1000);
          continue;
        }
        if (intervalMs > 0) await sleep(intervalMs);
      }
    })();
  }

  function wsVisitor(port) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws-visitor/?site=default`);
      const v = { isOpen: () => ws.readyState === WebSocket.OPEN, close: () => ws.terminate() };
      let welcomed = false;
      const timer = setTimeout(() => { ws.terminate(); reject(new Error('no welcome within 30 s')); }, 30_000);
      ws.on('message', (data) => {
        stats.wsFrames++;
        if (welcomed) return;
        let frame;
        try { frame = JSON.parse(data.toString()); } catch { return; }
        if (frame.type === 'welcome') { welcomed = true; clearTimeout(timer); visitors.push(v); resolve(); }
      });
      ws.on('ping', () => { stats.wsFrames++; stats.wsPings++; });
      ws.on('error', (err) => { clearTimeout(timer); if (!welcomed) reject(err); else noteError(err); });
      ws.on('close', (code) => {
        clearTimeout(timer);
        if (!welcomed) reject(new Error(`closed before welcome (${code})`));
        else if (!stopping) noteError(new Error(`WebSocket closed (${code})`));
      });
    });
  }

  async function open({ kind, port, count, staggerMs, intervalMs }) {
    const opener = kind === 'websocket' ? () => wsVisitor(port) : () => pollVisitor(port, intervalMs);
    const started = Date.now();
    let failed = 0;
    let firstError = null;
    const all = [];
    for (let i = 0; i < count; i++) {
      const at = started + (count > 1 ? (i * staggerMs) / (count - 1) : 0);
      const wait = at - Date.now();
      if (wait > 0) await sleep(wait);
      all.push(opener().catch((err) => { failed++; firstError ??= String(err?.message ?? err); }));
    }
    await Promise.all(all);
    return { opened: count - failed, failed, firstError, secs: (Date.now() - started) / 1000 };
  }

  process.on('message', async (msg) => {
    if (msg.cmd === 'open') process.send(await open(msg));
    else if (msg.cmd === 'stats') {
      const cpu = process.cpuUsage();
      process.send({ ...stats, open: visitors.filter((v) => v.isOpen()).length, cpuMicros: cpu.user + cpu.system });
    } else if (msg.cmd === 'close') {
      stopping = true;
      for (const v of visitors) v.close();
      process.send({ closed: true });
      setTimeout(() => process.exit(0), 100);
    }
  });
  process.send({ ready: true });
}

const startClients = () => forkClients(SELF);

// ---------------------------------------------------------------------------------------------
// Main: runs every case and prints the table.

/** utime + stime of `pid`, in clock ticks (fields 14 and 15 of /proc/<pid>/stat). */
function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field k is fields[k - 3].
  return Number(fields[14 - 3]) + Number(fields[15 - 3]);
}

const CASES = [
  { id: 'short-poll', kind: 'poll', label: 'short polling every 2 s (hold 0)', env: { CHAT_POLL_HOLD_SECS: '0' }, short: true },
  { id: 'long-poll', kind: 'poll', label: 'long-polling (hold 25 s)', env: {} },
  { id: 'websocket', kind: 'websocket', label: 'raw WebSocket', env: {} },
];

async function main() {
  process.env.CHAT_GATEWAY_BIN ||= path.join(REPO, 'target', 'release', 'chat-gateway');
  const bin = process.env.CHAT_GATEWAY_BIN;
  if (!existsSync(bin)) {
    console.error(`gateway binary not found: ${bin}\nbuild it first: cargo build --release -p chat-gateway (or set CHAT_GATEWAY_BIN)`);
    process.exit(2);
  }
  // harness.mjs reads CHAT_GATEWAY_BIN when it is loaded, so load it only now.
  const { startGateway, MANY_CLIENTS_FROM_ONE_ADDRESS } = await import('./harness.mjs');

  const N = envNum('BENCH_VISITORS', 1000);
  const SECONDS = envNum('BENCH_SECONDS', 60);
  const SHORT_SECS = envNum('BENCH_SHORT_POLL_SECS', 2);
  const STAGGER = envNum('BENCH_STAGGER_SECS', 5);
  const SETTLE = envNum('BENCH_SETTLE_SECS', 3);
  const PER_PROCESS = Math.max(1, envNum('BENCH_PER_CLIENT_PROCESS', 500));
  const only = (process.env.BENCH_CASES || '').split(',').map((s) => s.trim()).filter(Boolean);
  const cases = only.length ? CASES.filter((c) => only.includes(c.id)) : CASES;
  if (!cases.length) throw new Error(`BENCH_CASES matched nothing; ids: ${CASES.map((c) => c.id).join(', ')}`);
  if (N < 1 || SECONDS <= 0) throw new Error('BENCH_VISITORS must be at least 1 and BENCH_SECONDS positive');
  const TCK = Number(sh('getconf', ['CLK_TCK']));
  if (!Number.isFinite(TCK) || TCK <= 0) throw new Error('getconf CLK_TCK failed');

  // The gateway inherits this process's soft limit; a visitor holds one socket (+ slack).
  const limit = softFdLimit();
  if (2 * N + 200 > limit) {
    console.error(`open-files limit ${limit} is too small for ${N} visitors; raise it with ulimit -n`);
    process.exit(2);
  }

  const machine = {
    date: new Date().toISOString(),
    nproc: sh('nproc', []),
    cpu: os.cpus()[0]?.model ?? '?',
    kernel: os.release(),
    node: process.version,
    ...gitRevision(),
  };
  console.log(`# idle visitors: ${N} per case, window ${SECONDS} s, start staggered over ${STAGGER} s, settle ${SETTLE} s, short-poll interval ${SHORT_SECS} s, CLK_TCK ${TCK}`);
  console.log(`# ${machine.date}  nproc=${machine.nproc}  ${machine.cpu}  linux ${machine.kernel}  node ${machine.node}`);
  console.log(`# gateway ${bin} (repo HEAD ${machine.commit}${machine.dirty ? ' + uncommitted changes' : ''})`);
  console.log(`# loadavg at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const results = [];
  for (const c of cases) {
    process.stdout.write(`\n${c.label}: starting gateway… `);
    const gw = await startGateway({ CHAT_LOG: 'warn', ...MANY_CLIENTS_FROM_ONE_ADDRESS, ...c.env });
    const pid = gw.child.pid;
    const clients = [];
    try {
      const nProcs = Math.ceil(N / PER_PROCESS);
      for (let i = 0; i < nProcs; i++) clients.push(await startClients());
      process.stdout.write(`opening ${N} visitors over ${nProcs} client process(es)… `);
      // Every process gets its share at once; each spreads its own starts over the stagger time.
      const base = Math.floor(N / nProcs);
      const replies = await Promise.all(clients.map((cl, i) => cl.request({
        cmd: 'open',
        kind: c.kind,
        port: gw.port,
        count: base + (i < N % nProcs ? 1 : 0),
        staggerMs: STAGGER * 1000,
        intervalMs: c.short ? SHORT_SECS * 1000 : 0,
      })));
      const failed = replies.reduce((s, r) => s + r.failed, 0);
      if (failed) throw new Error(`${failed} of ${N} visitors failed to connect: ${replies.find((r) => r.firstError)?.firstError}`);
      const connectSecs = Math.max(...replies.map((r) => r.secs));
      process.stdout.write(`connected in ${connectSecs.toFixed(1)} s; settle ${SETTLE} s; measuring ${SECONDS} s… `);
      await sleep(SETTLE * 1000);

      const statsAll = async () => {
        const all = await Promise.all(clients.map((cl) => cl.request({ cmd: 'stats' })));
        const sum = (k) => all.reduce((s, r) => s + r[k], 0);
        return { requests: sum('requests'), events: sum('events'), errors: sum('errors'), reopened: sum('reopened'),
          wsFrames: sum('wsFrames'), wsPings: sum('wsPings'), open: sum('open'), cpuMicros: sum('cpuMicros'),
          firstError: all.find((r) => r.firstError)?.firstError ?? null };
      };
      const s0 = await statsAll();
      const t0 = process.hrtime.bigint();
      const cpu0 = cpuTicks(pid);
      await sleep(SECONDS * 1000);
      const cpu1 = cpuTicks(pid);
      const t1 = process.hrtime.bigint();
      const s1 = await statsAll();
      const end = procStatus(pid);
      const secs = Number(t1 - t0) / 1e9;
      const cpuSecs = (cpu1 - cpu0) / TCK;
      const row = {
        ...c,
        n: N,
        secs,
        requests: s1.requests - s0.requests,
        events: s1.events - s0.events,
        errors: s1.errors - s0.errors,
        reopened: s1.reopened - s0.reopened,
        wsFrames: s1.wsFrames - s0.wsFrames,
        wsPings: s1.wsPings - s0.wsPings,
        cpuSecs,
        cpuPerMin: (cpuSecs * 60) / secs,
        cpuPct: (100 * cpuSecs) / secs,
        clientCpuPct: (100 * (s1.cpuMicros - s0.cpuMicros) / 1e6) / secs,
        rssMiB: end.rssKiB / 1024,
        threads: end.threads,
        fds: end.fds,
        open: s1.open,
        connectSecs,
        firstError: s1.firstError,
      };
      row.reqPerMin = (row.requests * 60) / secs;
      results.push(row);
      console.log(`${row.requests} requests (${row.reqPerMin.toFixed(0)}/min), gateway CPU ${cpuSecs.toFixed(2)} s (${row.cpuPct.toFixed(2)} % of a core), RSS ${row.rssMiB.toFixed(1)} MiB, ${row.open}/${N} open, errors ${row.errors}`);
      if (row.open !== N) console.log(`  WARNING: only ${row.open} of ${N} visitors still open at the end of the window`);
      if (row.errors) console.log(`  WARNING: ${row.errors} client errors in the window (first: ${row.firstError})`);
    } finally {
      for (const cl of clients) {
        await Promise.race([cl.request({ cmd: 'close' }).catch(() => {}), sleep(5000)]);
        await cl.kill();
      }
      await gw.kill('SIGKILL');
      await gw.stop();
    }
  }

  const knobs = ['BENCH_CASES', 'BENCH_SHORT_POLL_SECS', 'BENCH_STAGGER_SECS', 'BENCH_SETTLE_SECS', 'BENCH_PER_CLIENT_PROCESS']
    .filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]} `).join('');
  console.log(`\n# command: ${knobs}BENCH_VISITORS=${N} BENCH_SECONDS=${SECONDS} npm run bench:polling   (cwd gateway/tests/node)`);
  console.log('\n| case | visitors | window (s) | HTTP requests answered | requests / min | WS frames to clients (pings) | gateway CPU (s) | gateway CPU s / min | avg % of one core | gateway RSS at end (MiB) | client procs CPU % | still open | errors |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const frames = r.kind === 'websocket' ? `${r.wsFrames} (${r.wsPings})` : '—';
    console.log(`| ${r.label} | ${r.n} | ${r.secs.toFixed(1)} | ${r.requests} | ${r.reqPerMin.toFixed(0)} | ${frames} | ${r.cpuSecs.toFixed(2)} | ${r.cpuPerMin.toFixed(2)} | ${r.cpuPct.toFixed(2)} | ${r.rssMiB.toFixed(1)} | ${r.clientCpuPct.toFixed(1)} | ${r.open}/${r.n} | ${r.errors} |`);
  }
  console.log(`\n# loadavg at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (results.some((r) => r.open !== r.n || r.errors)) process.exitCode = 1;
}

// Dispatch last, so that every top-level const above is initialised.
const role = process.argv[2];
if (role === '--clients') await clientProcess();
else await main();
