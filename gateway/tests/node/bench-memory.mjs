// Idle memory per connection: the real chat-gateway (raw WebSocket, Socket.IO over WebSocket,
// Socket.IO over HTTP long-polling) beside the stock Node `socket.io` server, in one run, on
// loopback. Not a test (`npm test` does not pick it up); run it with
//
//   npm run bench:memory                      # or: node bench-memory.mjs
//
// Knobs (environment):
//   CHAT_GATEWAY_BIN           gateway binary (default: <repo>/target/release/chat-gateway; built by
//                              `cargo build --release -p chat-gateway`, this script builds nothing)
//   BENCH_CONNECTIONS          idle connections measured per case (default 1000)
//   BENCH_WARMUP               warm-up connections opened before the "before" reading (default 20)
//   BENCH_SETTLE_SECS          wait after the last connection before the "after" reading (default 3)
//   BENCH_CONNECT_CONCURRENCY  handshakes in flight per client process (default 32)
//   BENCH_PER_CLIENT_PROCESS   connections per client child process (default 4000)
//   BENCH_CASES                comma-separated subset of case ids (default: all), see CASES below
//   BENCH_POLLING_KEEPALIVE=0  polling clients without a keep-alive agent (default: one keep-alive
//                              agent per connection, at most 2 sockets: the pending GET and a POST)
//
// Method: for every case a fresh server process is started. The clients live in separate child
// processes (this file run with `--clients`), so only the server's memory is measured. The bench
// opens BENCH_WARMUP connections, waits 2 s, reads the server's VmRSS from /proc/<pid>/status,
// opens N more (each awaits its `welcome`), keeps them idle, waits BENCH_SETTLE_SECS, reads VmRSS
// again and checks that every connection is still open. Reported: (after − before) / N.
//
// The stock server is this file run with `--sio-server`: socket.io 4.8.4 with default options on
// path /ws-visitor, emitting a `welcome` event on connection, in its own node process (started with
// --expose-gc so a post-GC figure can be reported beside the plain one).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO, envNum, forkClients, gitRevision, procStatus, sh, sleep, softFdLimit } from './bench-util.mjs';

const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Stock socket.io server (its own process).

async function sioServer() {
  const { Server } = await import('socket.io');
  const server = http.createServer();
  const io = new Server(server, { path: '/ws-visitor', serveClient: false });
  io.on('connection', (socket) => {
    // Roughly the shape and size of the gateway's visitor welcome.
    socket.emit('welcome', {
      role: 'visitor',
      visitor_id: randomBytes(16).toString('hex'),
      visitor_token: randomBytes(48).toString('base64url'),
      agents_online: 0,
    });
  });
  process.on('message', async (msg) => {
    if (msg?.cmd === 'mem') {
      if (msg.gc && typeof globalThis.gc === 'function') { globalThis.gc(); await sleep(500); }
      process.send({ mem: process.memoryUsage(), sockets: io.engine.clientsCount });
    }
  });
  server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('SIO_OK'));
}

function startSioServer(port) {
  const child = spawn(process.execPath, ['--expose-gc', SELF, '--sio-server'], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const srv = { child, pid: child.pid, port, log: '' };
  child.stderr.setEncoding('utf8').on('data', (d) => { srv.log += d; });
  srv.mem = (gc = false) => new Promise((resolve) => {
    child.once('message', resolve);
    child.send({ cmd: 'mem', gc });
  });
  srv.stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.removeAllListeners('exit');
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no SIO_OK within 30 s\n${srv.log}`)), 30_000);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      if (/^SIO_OK/m.test(out)) { clearTimeout(timer); resolve(srv); }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`socket.io server exited (code ${code}, signal ${signal})\n${srv.log}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Client process: opens and holds idle connections on request from the parent.

async function clientProcess() {
  const { io } = await import('socket.io-client');
  const { default: WebSocket } = await import('ws');
  const conns = [];

  function openRaw(port) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws-visitor/`);
      const c = { isOpen: () => ws.readyState === WebSocket.OPEN, close: () => ws.terminate() };
      const timer = setTimeout(() => { ws.terminate(); reject(new Error('no welcome within 30 s')); }, 30_000);
      ws.on('message', (data) => {
        let frame;
        try { frame = JSON.parse(data.toString()); } catch { return; }
        if (frame.type === 'welcome') { clearTimeout(timer); resolve(c); }
      });
      ws.on('error', (err) => { clearTimeout(timer); reject(err); });
      ws.on('close', (code) => { clearTimeout(timer); reject(new Error(`closed before welcome (${code})`)); });
    });
  }

  function openSio(port, transport) {
    return new Promise((resolve, reject) => {
      // One Engine.IO connection per socket (forceNew), no silent reconnects; for polling a
      // keep-alive agent of its own per connection, as a browser tab would have.
      // BENCH_POLLING_KEEPALIVE=0: socket.io-client's own Node default instead (no agent: every
      // poll and every POST on a fresh TCP connection, `Connection: close`).
      const keepAlive = process.env.BENCH_POLLING_KEEPALIVE !== '0';
      const agent = transport === 'polling' && keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 2 }) : undefined;
      const socket = io(`http://127.0.0.1:${port}`, {
        path: '/ws-visitor',
        transports: [transport],
        forceNew: true,
        reconnection: false,
        timeout: 30_000,
        ...(agent ? { agent } : {}),
      });
      const c = {
        isOpen: () => socket.connected && socket.io.engine?.transport?.name === transport,
        close: () => { socket.close(); agent?.destroy(); },
      };
      const timer = setTimeout(() => { c.close(); reject(new Error('no welcome within 30 s')); }, 30_000);
      socket.once('welcome', () => { clearTimeout(timer); resolve(c); });
      socket.once('connect_error', (err) => { clearTimeout(timer); c.close(); reject(err); });
    });
  }

  async function open({ kind, port, count, concurrency }) {
    const opener = kind === 'ws' ? () => openRaw(port)
      : kind === 'sio-ws' ? () => openSio(port, 'websocket')
        : () => openSio(port, 'polling');
    let next = 0;
    let failed = 0;
    let firstError = null;
    const started = process.hrtime.bigint();
    async function worker() {
      while (next < count) {
        next++;
        try { conns.push(await opener()); } catch (err) { failed++; firstError ??= String(err?.message ?? err); }
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
    const secs = Number(process.hrtime.bigint() - started) / 1e9;
    return { opened: count - failed, failed, firstError, secs };
  }

  process.on('message', async (msg) => {
    if (msg.cmd === 'open') process.send(await open(msg));
    else if (msg.cmd === 'check') process.send({ open: conns.filter((c) => c.isOpen()).length, total: conns.length });
    else if (msg.cmd === 'close') {
      for (const c of conns) c.close();
      process.send({ closed: true });
      setTimeout(() => process.exit(0), 100);
    }
  });
  process.send({ ready: true });
}

const startClients = () => forkClients(SELF);

// ---------------------------------------------------------------------------------------------
// Main: runs every case and prints the table.

const CASES = [
  { id: 'gateway-ws', server: 'gateway', kind: 'ws', label: 'gateway, raw WebSocket' },
  { id: 'gateway-sio-ws', server: 'gateway', kind: 'sio-ws', label: 'gateway, Socket.IO over WebSocket' },
  { id: 'gateway-sio-polling', server: 'gateway', kind: 'sio-polling', label: 'gateway, Socket.IO over polling' },
  { id: 'node-sio-ws', server: 'node', kind: 'sio-ws', label: 'node socket.io 4.8.4, over WebSocket' },
  { id: 'node-sio-polling', server: 'node', kind: 'sio-polling', label: 'node socket.io 4.8.4, over polling' },
];

async function main() {
  process.env.CHAT_GATEWAY_BIN ||= path.join(REPO, 'target', 'release', 'chat-gateway');
  const bin = process.env.CHAT_GATEWAY_BIN;
  if (!existsSync(bin)) {
    console.error(`gateway binary not found: ${bin}\nbuild it first: cargo build --release -p chat-gateway (or set CHAT_GATEWAY_BIN)`);
    process.exit(2);
  }
  // harness.mjs reads CHAT_GATEWAY_BIN when it is loaded, so load it only now.
  const { startGateway, freePort, MANY_CLIENTS_FROM_ONE_ADDRESS } = await import('./harness.mjs');

  const N = envNum('BENCH_CONNECTIONS', 1000);
  const WARMUP = envNum('BENCH_WARMUP', 20);
  const SETTLE = envNum('BENCH_SETTLE_SECS', 3);
  const CONCURRENCY = Math.max(1, envNum('BENCH_CONNECT_CONCURRENCY', 32));
  const PER_PROCESS = Math.max(1, envNum('BENCH_PER_CLIENT_PROCESS', 4000));
  const only = (process.env.BENCH_CASES || '').split(',').map((s) => s.trim()).filter(Boolean);
  const cases = only.length ? CASES.filter((c) => only.includes(c.id)) : CASES;
  if (!cases.length) throw new Error(`BENCH_CASES matched nothing; ids: ${CASES.map((c) => c.id).join(', ')}`);
  if (N < 1) throw new Error('BENCH_CONNECTIONS must be at least 1');

  // Servers inherit this process's soft limit; a polling client may hold two sockets at once.
  const limit = softFdLimit();
  if (2 * (N + WARMUP) + 200 > limit) {
    console.error(`open-files limit ${limit} is too small for ${N} connections (polling may need 2 sockets each); raise it with ulimit -n`);
    process.exit(2);
  }

  const machine = {
    date: new Date().toISOString(),
    nproc: sh('nproc', []),
    cpu: os.cpus()[0]?.model ?? '?',
    free: sh('free', ['-g']),
    kernel: os.release(),
    node: process.version,
    ...gitRevision(),
    bin,
  };
  console.log(`# idle memory per connection: ${N} connections per case (+${WARMUP} warm-up), settle ${SETTLE} s, ${CONCURRENCY} handshakes in flight`);
  console.log(`# ${machine.date}  nproc=${machine.nproc}  ${machine.cpu}  linux ${machine.kernel}  node ${machine.node}`);
  console.log(`# gateway ${bin} (repo HEAD ${machine.commit}${machine.dirty ? ' + uncommitted changes' : ''})`);
  if (process.env.BENCH_POLLING_KEEPALIVE === '0') console.log('# polling clients: no keep-alive agent (BENCH_POLLING_KEEPALIVE=0)');
  console.log(`# loadavg at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(machine.free.split('\n').map((l) => `# ${l}`).join('\n'));

  const results = [];
  for (const c of cases) {
    process.stdout.write(`\n${c.label}: starting server… `);
    let srv;
    let pid;
    let gw;
    if (c.server === 'gateway') {
      gw = await startGateway({ CHAT_LOG: 'warn', ...MANY_CLIENTS_FROM_ONE_ADDRESS });
      pid = gw.child.pid;
    } else {
      srv = await startSioServer(await freePort());
      pid = srv.pid;
    }
    const port = gw ? gw.port : srv.port;
    const clients = [];
    try {
      const nProcs = Math.ceil((N + WARMUP) / PER_PROCESS);
      for (let i = 0; i < nProcs; i++) clients.push(await startClients());

      if (WARMUP > 0) {
        const w = await clients[0].request({ cmd: 'open', kind: c.kind, port, count: WARMUP, concurrency: CONCURRENCY });
        if (w.failed) throw new Error(`${w.failed} warm-up connections failed: ${w.firstError}`);
      }
      await sleep(2000);
      // Stock server: collect warm-up garbage before the baseline (heapUsed is compared after a
      // forced GC at both ends; RSS "after" is read first, without forcing one).
      const heapBefore = srv ? (await srv.mem(true)).mem : null;
      const before = procStatus(pid);
      process.stdout.write(`before ${(before.rssKiB / 1024).toFixed(1)} MiB; opening ${N}… `);

      const started = process.hrtime.bigint();
      let remaining = N;
      let failed = 0;
      let firstError = null;
      for (let i = 0; i < clients.length && remaining > 0; i++) {
        const room = PER_PROCESS - (i === 0 ? WARMUP : 0);
        const count = Math.min(remaining, Math.max(0, room));
        if (!count) continue;
        const r = await clients[i].request({ cmd: 'open', kind: c.kind, port, count, concurrency: CONCURRENCY });
        failed += r.failed;
        firstError ??= r.firstError;
        remaining -= count;
      }
      const connectSecs = Number(process.hrtime.bigint() - started) / 1e9;
      if (failed) throw new Error(`${failed} of ${N} connections failed: ${firstError}`);
      await sleep(SETTLE * 1000);
      const after = procStatus(pid);
      let open = 0;
      for (const cl of clients) open += (await cl.request({ cmd: 'check' })).open;
      let afterGc = null;
      let heapAfter = null;
      let serverSockets = null;
      if (srv) {
        const m = await srv.mem(true);
        heapAfter = m.mem;
        serverSockets = m.sockets;
        afterGc = procStatus(pid);
      }
      const row = {
        ...c,
        n: N,
        beforeMiB: before.rssKiB / 1024,
        afterMiB: after.rssKiB / 1024,
        perConnKiB: (after.rssKiB - before.rssKiB) / N,
        perConnAfterGcKiB: afterGc ? (afterGc.rssKiB - before.rssKiB) / N : null,
        heapPerConnKiB: heapAfter ? (heapAfter.heapUsed - heapBefore.heapUsed) / 1024 / N : null,
        threads: after.threads,
        fds: after.fds,
        open: open,
        expectedOpen: N + WARMUP,
        serverSockets,
        connectSecs,
      };
      results.push(row);
      console.log(`after ${row.afterMiB.toFixed(1)} MiB → ${row.perConnKiB.toFixed(1)} KiB/conn; ${open}/${N + WARMUP} open; server fds ${after.fds}, threads ${after.threads}; connect ${connectSecs.toFixed(1)} s`);
      if (open !== N + WARMUP) console.log(`  WARNING: only ${open} of ${N + WARMUP} connections still open after settling`);
    } finally {
      for (const cl of clients) {
        await Promise.race([cl.request({ cmd: 'close' }).catch(() => {}), sleep(5000)]);
        await cl.kill();
      }
      if (gw) { await gw.kill('SIGKILL'); await gw.stop(); }
      if (srv) await srv.stop();
    }
  }

  const knobs = ['BENCH_CASES', 'BENCH_POLLING_KEEPALIVE', 'BENCH_WARMUP', 'BENCH_SETTLE_SECS', 'BENCH_CONNECT_CONCURRENCY']
    .filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]} `).join('');
  const cmd = `${knobs}BENCH_CONNECTIONS=${N} npm run bench:memory`;
  console.log(`\n# command: ${cmd}   (cwd gateway/tests/node)`);
  console.log('\n| server, transport | connections | RSS before (MiB) | RSS after (MiB) | per connection (KiB) | server threads / fds after | connect time (s) | still open |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(`| ${r.label} | ${r.n} | ${r.beforeMiB.toFixed(1)} | ${r.afterMiB.toFixed(1)} | ${r.perConnKiB.toFixed(1)} | ${r.threads} / ${r.fds} | ${r.connectSecs.toFixed(1)} | ${r.open}/${r.expectedOpen} |`);
  }
  const nodeRows = results.filter((r) => r.server === 'node');
  if (nodeRows.length) {
    console.log('\nStock node server only (V8): RSS per connection after a forced gc(), and V8 heapUsed growth per connection (both ends after gc()):');
    console.log('\n| server, transport | RSS per connection after gc() (KiB) | heapUsed per connection (KiB) | engine.io clients |');
    console.log('|---|---:|---:|---:|');
    for (const r of nodeRows) {
      console.log(`| ${r.label} | ${r.perConnAfterGcKiB.toFixed(1)} | ${r.heapPerConnKiB.toFixed(1)} | ${r.serverSockets} |`);
    }
  }
  console.log(`\n# loadavg at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (results.some((r) => r.open !== r.expectedOpen)) process.exitCode = 1;
}

// Dispatch last, so that every top-level const above is initialised.
const role = process.argv[2];
if (role === '--sio-server') await sioServer();
else if (role === '--clients') await clientProcess();
else await main();
