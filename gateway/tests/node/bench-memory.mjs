// Idle memory per connection: the real chat-gateway (raw WebSocket, Socket.IO over WebSocket, raw
// and Socket.IO HTTP long-polling, and the WebSocket cases over TLS) beside the stock Node
// `socket.io` server, in one run, on loopback. Not a test (`npm test` does not pick it up); run
// it with
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
//   BENCH_GATEWAYS             several gateway binaries side by side: `label=path,label=path`
//                              (default: one, `gateway=$CHAT_GATEWAY_BIN`); every gateway case runs
//                              once per binary, alternating, in each round
//   BENCH_ROUNDS               rounds over all cases (default 1); the table shows every round
//   BENCH_PORT_BASE            listen on BENCH_PORT_BASE, +1, … instead of ports the kernel picks
//                              (for a machine where each user has a port range)
//
// Method: for every case a fresh server process is started. The clients live in separate child
// processes (this file run with `--clients`), so only the server's memory is measured. The bench
// opens BENCH_WARMUP connections, waits 2 s, reads the server's VmRSS from /proc/<pid>/status,
// opens N more (each awaits its `welcome`), keeps them idle, waits BENCH_SETTLE_SECS, reads VmRSS
// again and checks that every connection is still open. Reported: (after − before) / N.
//
// The stock server is this file run with `--sio-server`: socket.io 4.8.4 with default options on
// path /ws-visitor, emitting a `welcome` event on connection, in its own node process (started with
// --expose-gc so a post-GC figure can be reported beside the plain one). The TLS cases give both
// servers the same self-signed certificate (made with `openssl` into a temporary directory).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { createServer } from 'node:net';
import https from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO, envNum, forkClients, gitRevision, procStatus, sh, sleep, softFdLimit } from './bench-util.mjs';

const SELF = fileURLToPath(import.meta.url);

// ---------------------------------------------------------------------------------------------
// Stock socket.io server (its own process).

async function sioServer() {
  const { Server } = await import('socket.io');
  const server = process.env.TLS_CERT
    ? https.createServer({ cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) })
    : http.createServer();
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

function startSioServer(port, tls) {
  const child = spawn(process.execPath, ['--expose-gc', SELF, '--sio-server'], {
    env: { ...process.env, PORT: String(port), ...(tls ? { TLS_CERT: tls.cert, TLS_KEY: tls.key } : {}) },
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

  function openRaw(port, tls) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}/ws-visitor/`, { rejectUnauthorized: false });
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

  function openSio(port, transport, tls) {
    return new Promise((resolve, reject) => {
      // One Engine.IO connection per socket (forceNew), no silent reconnects; for polling a
      // keep-alive agent of its own per connection, as a browser tab would have.
      // BENCH_POLLING_KEEPALIVE=0: socket.io-client's own Node default instead (no agent: every
      // poll and every POST on a fresh TCP connection, `Connection: close`).
      const keepAlive = process.env.BENCH_POLLING_KEEPALIVE !== '0';
      const agent = transport === 'polling' && keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 2 }) : undefined;
      const socket = io(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`, {
        path: '/ws-visitor',
        rejectUnauthorized: false,
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

  // Raw long-polling (docs/protocol.md): POST opens the session (its answer carries `welcome`),
  // then one GET is always outstanding, re-issued as soon as it is answered (an empty batch after
  // the 25 s hold), on a keep-alive agent of its own (one socket, like a browser tab's).
  function openPolling(port) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const c = { sid: null, cursor: 0, open: false, closed: false };
    c.isOpen = () => c.open;
    c.close = () => { c.closed = true; agent.destroy(); };
    const request = (method, pathAndQuery) => new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: pathAndQuery, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d) => { body += d; }).on('end', () => {
          try { resolve({ status: res.statusCode, json: JSON.parse(body) }); } catch (err) { reject(err); }
        }).on('error', reject);
      });
      req.setTimeout(60_000, () => req.destroy(new Error('no answer within 60 s')));
      req.on('error', reject);
      req.end();
    });
    return request('POST', '/ws-visitor/poll?site=default').then((r) => {
      if (r.status !== 200 || !r.json?.sid || r.json.events?.[0]?.type !== 'welcome') throw new Error(`POST /ws-visitor/poll: ${r.status}`);
      c.sid = r.json.sid;
      c.cursor = r.json.cursor;
      c.open = true;
      (async () => {
        while (!c.closed) {
          try {
            const g = await request('GET', `/ws-visitor/poll?sid=${encodeURIComponent(c.sid)}&cursor=${c.cursor}`);
            if (g.status !== 200) { c.open = false; return; }
            c.cursor = g.json.cursor;
          } catch { if (!c.closed) c.open = false; return; }
        }
      })();
      return c;
    });
  }

  async function open({ kind, port, tls, count, concurrency }) {
    const opener = kind === 'ws' ? () => openRaw(port, tls)
      : kind === 'sio-ws' ? () => openSio(port, 'websocket', tls)
        : kind === 'polling' ? () => openPolling(port)
          : () => openSio(port, 'polling', tls);
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
  { id: 'gateway-ws', server: 'gateway', kind: 'ws', label: 'raw WebSocket' },
  { id: 'gateway-sio-ws', server: 'gateway', kind: 'sio-ws', label: 'Socket.IO over WebSocket' },
  { id: 'gateway-polling', server: 'gateway', kind: 'polling', label: 'raw long-polling' },
  { id: 'gateway-sio-polling', server: 'gateway', kind: 'sio-polling', label: 'Socket.IO over polling' },
  { id: 'gateway-wss', server: 'gateway', kind: 'ws', tls: true, label: 'raw WebSocket over TLS (wss)' },
  { id: 'gateway-sio-wss', server: 'gateway', kind: 'sio-ws', tls: true, label: 'Socket.IO over WebSocket over TLS' },
  { id: 'node-sio-ws', server: 'node', kind: 'sio-ws', label: 'Socket.IO over WebSocket' },
  { id: 'node-sio-polling', server: 'node', kind: 'sio-polling', label: 'Socket.IO over polling' },
  { id: 'node-sio-wss', server: 'node', kind: 'sio-ws', tls: true, label: 'Socket.IO over WebSocket over TLS' },
];

/** A self-signed certificate for 127.0.0.1 in a temporary directory (both servers use it). */
function selfSignedCertificate() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-memory-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const out = sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', key, '-out', cert]);
  if (out === '?' || !existsSync(cert)) throw new Error('openssl could not make a self-signed certificate');
  return { cert, key, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `label=path,label=path` from BENCH_GATEWAYS, or the one CHAT_GATEWAY_BIN. */
function gatewayBinaries() {
  const list = (process.env.BENCH_GATEWAYS || '').split(',').map((s) => s.trim()).filter(Boolean);
  if (!list.length) return [{ name: 'gateway', bin: process.env.CHAT_GATEWAY_BIN }];
  return list.map((item) => {
    const at = item.indexOf('=');
    if (at < 1) throw new Error(`BENCH_GATEWAYS: expected label=path, got ${item}`);
    return { name: item.slice(0, at), bin: item.slice(at + 1) };
  });
}

async function main() {
  process.env.CHAT_GATEWAY_BIN ||= path.join(REPO, 'target', 'release', 'chat-gateway');
  const gateways = gatewayBinaries();
  for (const g of gateways) {
    if (!existsSync(g.bin)) {
      console.error(`gateway binary not found: ${g.bin}\nbuild it first: cargo build --release -p chat-gateway (or set CHAT_GATEWAY_BIN / BENCH_GATEWAYS)`);
      process.exit(2);
    }
  }
  // harness.mjs reads CHAT_GATEWAY_BIN when it is loaded, so load it only now.
  const { startGateway, freePort, MANY_CLIENTS_FROM_ONE_ADDRESS } = await import('./harness.mjs');
  const PORT_BASE = envNum('BENCH_PORT_BASE', 0);
  let portsTaken = 0;
  // From BENCH_PORT_BASE up (100 ports), skipping any that cannot be bound now (a client's
  // ephemeral source port may sit in the range).
  const canBind = (p) => new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(p, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
  const nextPort = async () => {
    if (!PORT_BASE) return freePort();
    for (let i = 0; i < 100; i++) {
      const p = PORT_BASE + (portsTaken++ % 100);
      if (await canBind(p)) return p;
    }
    throw new Error(`no free port in ${PORT_BASE}..${PORT_BASE + 99}`);
  };

  const N = envNum('BENCH_CONNECTIONS', 1000);
  const WARMUP = envNum('BENCH_WARMUP', 20);
  const SETTLE = envNum('BENCH_SETTLE_SECS', 3);
  const ROUNDS = Math.max(1, envNum('BENCH_ROUNDS', 1));
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
  };
  console.log(`# idle memory per connection: ${N} connections per case (+${WARMUP} warm-up), settle ${SETTLE} s, ${CONCURRENCY} handshakes in flight, ${ROUNDS} round(s)`);
  console.log(`# ${machine.date}  nproc=${machine.nproc}  ${machine.cpu}  linux ${machine.kernel}  node ${machine.node}`);
  for (const g of gateways) console.log(`# ${g.name}: ${g.bin}`);
  console.log(`# repo HEAD ${machine.commit}${machine.dirty ? ' + uncommitted changes' : ''}`);
  if (process.env.BENCH_POLLING_KEEPALIVE === '0') console.log('# polling clients: no keep-alive agent (BENCH_POLLING_KEEPALIVE=0)');
  console.log(`# loadavg at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log(machine.free.split('\n').map((l) => `# ${l}`).join('\n'));

  const tls = cases.some((c) => c.tls) ? selfSignedCertificate() : null;
  // One run = a case on one server (a gateway binary, or the stock node server).
  const runs = [];
  for (const c of cases) {
    if (c.server === 'node') runs.push({ ...c, serverName: 'node socket.io 4.8.4' });
    else for (const g of gateways) runs.push({ ...c, serverName: g.name, bin: g.bin });
  }
  const results = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const run of runs) {
        const row = await measure(run, round);
        results.push(row);
      }
    }
  } finally {
    tls?.remove();
  }

  async function measure(c, round) {
    const label = `${c.serverName}, ${c.label}`;
    process.stdout.write(`\n[round ${round}] ${label}: starting server… `);
    let srv;
    let pid;
    let gw;
    let port;
    if (c.server === 'gateway') {
      const env = { CHAT_LOG: 'warn', ...MANY_CLIENTS_FROM_ONE_ADDRESS };
      if (PORT_BASE) {
        port = await nextPort();
        env.CHAT_HTTP_LISTEN = `127.0.0.1:${port}`;
        env.CHAT_METRICS_LISTEN = `127.0.0.1:${await nextPort()}`;
      }
      if (c.tls) {
        port = await nextPort();
        Object.assign(env, { CHAT_TLS_CERT: tls.cert, CHAT_TLS_KEY: tls.key, CHAT_TLS_LISTEN: `127.0.0.1:${port}` });
      }
      gw = await startGateway(env, c.bin);
      pid = gw.child.pid;
      port ??= gw.port;
    } else {
      port = await nextPort();
      srv = await startSioServer(port, c.tls ? tls : null);
      pid = srv.pid;
    }
    const clients = [];
    try {
      const nProcs = Math.ceil((N + WARMUP) / PER_PROCESS);
      for (let i = 0; i < nProcs; i++) clients.push(await startClients());
      const openMsg = (count) => ({ cmd: 'open', kind: c.kind, port, tls: !!c.tls, count, concurrency: CONCURRENCY });

      if (WARMUP > 0) {
        const w = await clients[0].request(openMsg(WARMUP));
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
        const r = await clients[i].request(openMsg(count));
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
        label,
        round,
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
      console.log(`after ${row.afterMiB.toFixed(1)} MiB → ${row.perConnKiB.toFixed(1)} KiB/conn; ${open}/${N + WARMUP} open; server fds ${after.fds}, threads ${after.threads}; connect ${connectSecs.toFixed(1)} s`);
      if (open !== N + WARMUP) console.log(`  WARNING: only ${open} of ${N + WARMUP} connections still open after settling`);
      return row;
    } finally {
      for (const cl of clients) {
        await Promise.race([cl.request({ cmd: 'close' }).catch(() => {}), sleep(5000)]);
        await cl.kill();
      }
      if (gw) { await gw.kill('SIGKILL'); await gw.stop(); }
      if (srv) await srv.stop();
    }
  }

  const knobs = ['BENCH_CASES', 'BENCH_GATEWAYS', 'BENCH_ROUNDS', 'BENCH_POLLING_KEEPALIVE', 'BENCH_WARMUP', 'BENCH_SETTLE_SECS', 'BENCH_CONNECT_CONCURRENCY', 'BENCH_PORT_BASE']
    .filter((k) => process.env[k]).map((k) => `${k}=${process.env[k]} `).join('');
  const cmd = `${knobs}BENCH_CONNECTIONS=${N} npm run bench:memory`;
  console.log(`\n# command: ${cmd}   (cwd gateway/tests/node)`);
  console.log('\n| server, transport | round | connections | RSS before (MiB) | RSS after (MiB) | per connection (KiB) | server threads / fds after | connect time (s) | still open |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(`| ${r.label} | ${r.round} | ${r.n} | ${r.beforeMiB.toFixed(1)} | ${r.afterMiB.toFixed(1)} | ${r.perConnKiB.toFixed(1)} | ${r.threads} / ${r.fds} | ${r.connectSecs.toFixed(1)} | ${r.open}/${r.expectedOpen} |`);
  }
  // Per connection, KiB: one column per server, one row per transport, the median of the rounds.
  const servers = [...new Set(results.map((r) => r.serverName))];
  const transports = [...new Set(results.map((r) => r.label.slice(r.serverName.length + 2)))];
  const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : null; };
  console.log(`\nPer connection (KiB of server RSS), median of ${ROUNDS} round(s) [all rounds]:`);
  console.log(`\n| transport | ${servers.join(' | ')} |`);
  console.log(`|---|${servers.map(() => '---:').join('|')}|`);
  for (const t of transports) {
    const cells = servers.map((sv) => {
      const xs = results.filter((r) => r.serverName === sv && r.label === `${sv}, ${t}`).map((r) => r.perConnKiB);
      return xs.length ? `${median(xs).toFixed(1)} [${xs.map((x) => x.toFixed(1)).join(', ')}]` : '—';
    });
    console.log(`| ${t} | ${cells.join(' | ')} |`);
  }
  const nodeRows = results.filter((r) => r.server === 'node');
  if (nodeRows.length) {
    console.log('\nStock node server only (V8): RSS per connection after a forced gc(), and V8 heapUsed growth per connection (both ends after gc()):');
    console.log('\n| server, transport | round | RSS per connection after gc() (KiB) | heapUsed per connection (KiB) | engine.io clients |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of nodeRows) {
      console.log(`| ${r.label} | ${r.round} | ${r.perConnAfterGcKiB.toFixed(1)} | ${r.heapPerConnKiB.toFixed(1)} | ${r.serverSockets} |`);
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
