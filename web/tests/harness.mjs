// Shared by the browser tests (*.test.mjs): a real chat-gateway binary on a free port with its
// own data dir (stopped and started again by the restart tests), a headless Chromium, and a
// customer page served by the browser itself (the gateway's main site is absent here).
// `useGatewayAndBrowser()` gives a test file the usual pair, one gateway and one browser for all
// its tests.
//
//   CHAT_GATEWAY_BIN  gateway binary (default <repo>/target/debug/chat-gateway)
//   CHROMIUM_PATH     browser (default /usr/bin/chromium)

import { before, after } from 'node:test';
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = process.env.CHAT_GATEWAY_BIN || path.join(REPO, 'target', 'debug', 'chat-gateway');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// CI machines are slow; every single wait gets this long.
export const WAIT = 30_000;

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

// Starts the gateway with `extraEnv` (which may replace the defaults, the agent secret too);
// resolves { child, base, env, dataDir, log } once it printed SERVER_OK.
export async function startGateway(extraEnv = {}) {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'chat-gateway-web-'));
  const env = {
    ...process.env,
    CHAT_HTTP_LISTEN: `127.0.0.1:${port}`,
    CHAT_DATA_DIR: dataDir,
    CHAT_ADMIN_JWT_SECRET: randomBytes(32).toString('hex'),
    CHAT_METRICS_LISTEN: `127.0.0.1:${await freePort()}`,
    ...extraEnv,
  };
  const gw = { child: null, env, dataDir, base: `http://127.0.0.1:${port}`, log: '' };
  await launchGateway(gw);
  return gw;
}

// Spawns the binary with gw.env and waits for its next SERVER_OK line. Its output (stdout and
// stderr) accumulates on gw.log, so a restarted gateway's log follows the previous run's.
async function launchGateway(gw) {
  const child = spawn(BIN, [], { env: gw.env, stdio: ['ignore', 'pipe', 'pipe'] });
  gw.child = child;
  const okBefore = (gw.log.match(/^SERVER_OK/gm) || []).length;
  child.stderr.setEncoding('utf8').on('data', (d) => { gw.log += d; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no SERVER_OK line within ${WAIT} ms\n${gw.log}`)), WAIT);
    child.stdout.setEncoding('utf8').on('data', (d) => {
      gw.log += d;
      if ((gw.log.match(/^SERVER_OK/gm) || []).length > okBefore) { clearTimeout(timer); resolve(); }
    });
    child.once('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${BIN}: ${e.message}`)); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited before SERVER_OK (code ${code}, signal ${signal})\n${gw.log}`));
    });
  }).catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
}

// SIGTERM (SIGKILL after 10 s) and waits for the exit; keeps the data dir for a restart.
export async function terminateGateway(gw) {
  if (!gw || !gw.child) return;
  if (gw.child.exitCode === null && gw.child.signalCode === null) {
    const exited = new Promise((resolve) => gw.child.once('exit', resolve));
    gw.child.kill('SIGTERM');
    const timer = setTimeout(() => gw.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

// Starts a stopped gateway again: same port, data dir, secret and the rest of its env.
export async function restartGateway(gw) {
  if (gw.child.exitCode === null && gw.child.signalCode === null) {
    throw new Error('restartGateway needs a stopped gateway');
  }
  gw.log += '\n----- restarted -----\n';
  await launchGateway(gw);
}

// Stops the gateway and removes its data dir.
export async function stopGateway(gw) {
  if (!gw) return;
  await terminateGateway(gw);
  await rm(gw.dataDir, { recursive: true, force: true });
}

// Prints what the gateway said (usually the real story of a failed test).
export function dumpGatewayOutput(gw) {
  if (gw) console.error(`----- gateway output -----\n${gw.log}\n--------------------------`);
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: WAIT * 2,
  });
}

// The gateway and the browser of a test file that called `useGatewayAndBrowser()`, set before
// its first test (imports of them see the values as they are set: ES module bindings are
// live). Each test file runs in a process of its own.
export let gw;
export let browser;

// Registers the hooks most test files share: before their tests, a gateway with `extraEnv`
// (`gw`) and a headless Chromium (`browser`), then `ready` (what else the file needs of them
// before its tests); after them, both stopped. Call once, at the top level of the test file. A
// file's own top-level `before` hooks do not wait for this one (Node starts them together), so
// what needs `gw` or `browser` goes in `ready`.
export function useGatewayAndBrowser(extraEnv = {}, ready = async () => {}) {
  before(async () => {
    gw = await startGateway(extraEnv);
    browser = await launchBrowser();
    await ready();
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await stopGateway(gw);
  });
}

// An agent JWT minted by the binary with the gateway's secret (`sites`: "shop1,shop2", "*").
export function mintToken(gw, agent, name, sites) {
  const args = ['token', '--agent', agent, '--name', name];
  if (sites) args.push('--sites', sites);
  return new Promise((resolve, reject) => {
    execFile(BIN, args, { env: gw.env, timeout: WAIT }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`token command failed: ${err.message}\n${stderr}`));
      const jwt = stdout.trim();
      if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(jwt)) return reject(new Error(`token command printed no JWT: ${JSON.stringify(stdout)}`));
      resolve(jwt);
    });
  });
}

// A customer page at <base>/shop/ that embeds the widget with `ctx.shopConfig` (changed by a
// test between reloads: logging in and out). The config is serialised as JSON, never as code.
export async function serveShop(ctx, gw, shopConfig) {
  ctx.shopConfig = shopConfig;
  await ctx.route(`${gw.base}/shop/**`, (route) => {
    const config = JSON.stringify(ctx.shopConfig).replace(/</g, '\\u003c');
    const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="icon" href="data:,"></head><body><main>Shop</main>
<script>window.ChatWidgetConfig = Object.assign({ serverBaseUrl: location.origin }, ${config});</script>
<script src="/chat/widget/widget.js" async></script></body></html>`;
    return route.fulfill({ contentType: 'text/html', body });
  });
}

// Waits until one of the locator's elements has text matching `pattern`.
export async function waitForText(gw, locator, pattern, what) {
  try {
    await locator.filter({ hasText: pattern }).first().waitFor({ state: 'visible', timeout: WAIT });
  } catch (e) {
    const now = await locator.first().textContent({ timeout: 1000 }).catch(() => '<absent>');
    throw new Error(`${what}: expected ${pattern}, last saw ${JSON.stringify(now)}\n${e.message}\n${gw.log.slice(-4000)}`);
  }
}

// Opens the shop page and the widget, and waits for its welcome.
export async function openWidget(gw, page) {
  await page.goto(`${gw.base}/shop/`, { timeout: WAIT });
  await page.getByTestId('chat-bubble').click({ timeout: WAIT });
  await waitForText(gw, page.getByTestId('chat-connection'), /^Connected$/, 'widget connection');
}

// Sends `body` from the widget and waits for its committed message.
export async function widgetSend(gw, page, body) {
  await page.getByTestId('chat-input').fill(body);
  await page.getByTestId('chat-input').press('Enter');
  await waitForText(gw, page.locator('[data-testid="chat-message"][data-seq]'), body, `widget shows "${body}" committed`);
}

// Opens the console with a pasted token and waits for its welcome.
export async function openConsole(gw, page, token, agentName) {
  await page.goto(`${gw.base}/chat/admin/?token=${encodeURIComponent(token)}`, { timeout: WAIT });
  await waitForText(gw, page.getByTestId('connection-banner'), new RegExp(`Connected as ${agentName}`), 'console banner');
}
