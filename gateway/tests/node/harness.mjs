// Starts the real chat-gateway binary for the Node tests and mints agent tokens with it.
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = process.env.CHAT_GATEWAY_BIN || path.join(REPO, 'target', 'debug', 'chat-gateway');

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Admission limits for runs whose many clients all come from 127.0.0.1, each standing for a
 * different visitor (fault injection, benchmarks): one address here is hundreds on the internet.
 */
export const MANY_CLIENTS_FROM_ONE_ADDRESS = {
  CHAT_MAX_CONNECTIONS: '100000',
  CHAT_MAX_CONNECTIONS_PER_IP: '100000',
  CHAT_SESSION_OPENS_PER_IP_PER_MIN: '1000000',
  CHAT_MAX_HTTP_CONNECTIONS: '100000',
  CHAT_MAX_HTTP_CONNECTIONS_PER_IP: '100000',
};

/** Starts a gateway (`bin`, by default `BIN`); `gw.restart()` starts it again on the same port
 * and data directory. */
export async function startGateway(extraEnv = {}, bin = BIN) {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'chat-gateway-node-'));
  const env = {
    ...process.env,
    CHAT_HTTP_LISTEN: `127.0.0.1:${port}`,
    CHAT_DATA_DIR: dataDir,
    CHAT_ADMIN_JWT_SECRET: randomBytes(32).toString('hex'),
    CHAT_LOG: 'info,chat_gateway=debug',
    // Its own metrics port: several gateways may run at once.
    CHAT_METRICS_LISTEN: `127.0.0.1:${await freePort()}`,
    ...extraEnv,
  };
  const gw = { env, bin, port, dataDir, base: `http://127.0.0.1:${port}`, log: '', child: null };
  gw.launch = () => launch(gw);
  gw.kill = (signal = 'SIGKILL') => kill(gw, signal);
  gw.restart = async () => { await kill(gw, 'SIGKILL'); await launch(gw); };
  gw.stop = async () => { await kill(gw, 'SIGTERM'); await rm(dataDir, { recursive: true, force: true }); };
  gw.token = (agent = 'alice', name = 'Alice') => new Promise((resolve, reject) => {
    execFile(gw.bin, ['token', '--agent', agent, '--name', name], { env }, (err, stdout, stderr) => {
      if (err) reject(new Error(`token failed: ${stderr}`));
      else resolve(stdout.trim());
    });
  });
  await launch(gw);
  return gw;
}

function launch(gw) {
  const child = spawn(gw.bin, [], { env: gw.env, stdio: ['ignore', 'pipe', 'pipe'] });
  gw.child = child;
  child.stderr.setEncoding('utf8').on('data', (d) => { gw.log += d; });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no SERVER_OK within 30 s\n${gw.log}`)), 30_000);
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      gw.log += d;
      if (/^SERVER_OK/m.test(out)) { clearTimeout(timer); resolve(gw); }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (code ${code}, signal ${signal})\n${gw.log}`));
    });
  });
}

function kill(gw, signal) {
  const child = gw.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** Resolves with the first `event` emitted on `emitter` matching `pred`, or rejects after `ms`. */
export function once(emitter, event, pred = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    function handler(...args) {
      if (!pred(...args)) return;
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args);
    }
    emitter.on(event, handler);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

