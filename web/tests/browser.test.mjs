// End-to-end: the real chat-gateway binary, the real widget and console, a real Chromium.
//
//   CHAT_GATEWAY_BIN  gateway binary (default <repo>/target/debug/chat-gateway)
//   CHROMIUM_PATH     browser (default /usr/bin/chromium)
//
// Run with `npm test` from web/tests.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.CHAT_GATEWAY_BIN || path.join(REPO, 'target', 'debug', 'chat-gateway');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// CI machines are slow; every single wait gets this long.
const WAIT = 30_000;
const TEST_TIMEOUT = 240_000;

let gateway; // { child, base, env, stdout, stderr }
let browser;
let agentToken;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startGateway() {
  const port = await freePort();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'chat-gateway-test-'));
  const env = {
    ...process.env,
    CHAT_HTTP_LISTEN: `127.0.0.1:${port}`,
    CHAT_DATA_DIR: dataDir,
    CHAT_ADMIN_JWT_SECRET: randomBytes(32).toString('hex'),
  };
  const child = spawn(BIN, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const gw = { child, env, dataDir, base: `http://127.0.0.1:${port}`, stdout: '', stderr: '' };
  child.stderr.setEncoding('utf8').on('data', (d) => { gw.stderr += d; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no SERVER_OK line within ${WAIT} ms`)), WAIT);
    child.stdout.setEncoding('utf8').on('data', (d) => {
      gw.stdout += d;
      if (/^SERVER_OK/m.test(gw.stdout)) { clearTimeout(timer); resolve(); }
    });
    child.once('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${BIN}: ${e.message}`)); });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited before SERVER_OK (code ${code}, signal ${signal})`));
    });
  }).catch((e) => {
    dumpGatewayOutput(gw);
    child.kill('SIGKILL');
    throw e;
  });
  return gw;
}

async function stopGateway(gw) {
  if (!gw) return;
  if (gw.child.exitCode === null && gw.child.signalCode === null) {
    const exited = new Promise((resolve) => gw.child.once('exit', resolve));
    gw.child.kill('SIGTERM');
    const timer = setTimeout(() => gw.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
  await rm(gw.dataDir, { recursive: true, force: true });
}

function dumpGatewayOutput(gw) {
  if (!gw) return;
  console.error(`----- gateway stdout -----\n${gw.stdout}\n----- gateway stderr -----\n${gw.stderr}\n--------------------------`);
}

function mintToken(gw, agent, name) {
  return new Promise((resolve, reject) => {
    execFile(BIN, ['token', '--agent', agent, '--name', name], { env: gw.env, timeout: WAIT }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`token command failed: ${err.message}\n${stderr}`));
      const jwt = stdout.trim();
      if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(jwt)) return reject(new Error(`token command printed no JWT: ${JSON.stringify(stdout)}`));
      resolve(jwt);
    });
  });
}

// Runs a test body; on failure shows what the gateway said, which is usually the real story.
function withGatewayLog(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      dumpGatewayOutput(gateway);
      throw e;
    }
  };
}

// Waits until the locator's text matches. Playwright locators pierce the widget's open shadow root.
async function waitForText(locator, pattern, what) {
  try {
    await locator.filter({ hasText: pattern }).first().waitFor({ state: 'visible', timeout: WAIT });
  } catch (e) {
    const now = await locator.first().textContent({ timeout: 1000 }).catch(() => '<absent>');
    throw new Error(`${what}: expected text ${pattern}, last saw ${JSON.stringify(now)}\n${e.message}`);
  }
}

function trackConsole(page, label) {
  page.on('pageerror', (e) => console.error(`[${label}] page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[${label}] console: ${m.text()}`); });
}

before(async () => {
  gateway = await startGateway();
  agentToken = await mintToken(gateway, 'alice', 'Alice');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: WAIT * 2,
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await stopGateway(gateway);
});

test('widget loader is served under the current and legacy paths', { timeout: TEST_TIMEOUT }, withGatewayLog(async () => {
  for (const p of ['/chat/widget/widget.js', '/widget/widget.js', '/widget/widgetScript.js']) {
    const res = await fetch(gateway.base + p);
    assert.equal(res.status, 200, `${p} status`);
    assert.match(res.headers.get('content-type') || '', /javascript/, `${p} content-type`);
    assert.match(await res.text(), /window\.ChatWidget\s*=/, `${p} body`);
  }
}));

test('visitor and agent chat live, text stays literal, history survives reloads', { timeout: TEST_TIMEOUT }, withGatewayLog(async () => {
  const visitorCtx = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    const visitor = await visitorCtx.newPage();
    trackConsole(visitor, 'widget');
    await visitor.goto(`${gateway.base}/chat/demo/`, { timeout: WAIT });
    await visitor.getByTestId('chat-bubble').click({ timeout: WAIT });
    await visitor.getByTestId('chat-panel').waitFor({ state: 'visible', timeout: WAIT });
    await waitForText(visitor.getByTestId('chat-connection'), /^Connected$/, 'widget connection');
    await waitForText(visitor.getByTestId('chat-status'), /Offline/, 'widget status before any agent');

    const agent = await agentCtx.newPage();
    trackConsole(agent, 'console');
    await agent.goto(`${gateway.base}/chat/admin/?token=${encodeURIComponent(agentToken)}`, { timeout: WAIT });
    await waitForText(agent.getByTestId('connection-banner'), /Connected as Alice/, 'console banner');
    assert.ok(!agent.url().includes('token='), `token must be removed from the address bar: ${agent.url()}`);

    await waitForText(visitor.getByTestId('chat-status'), /Online/, 'widget status with Alice online');

    const hello = 'Hello from the widget <b>bold</b>';
    await visitor.getByTestId('chat-input').fill(hello);
    await visitor.getByTestId('chat-input').press('Enter');
    const sent = visitor.locator('[data-testid="chat-message"][data-role="visitor"][data-seq="1"]');
    await waitForText(sent, hello, 'visitor message acknowledged');

    // The conversation shows up in the console live, without a reload.
    const item = agent.getByTestId('conversation-item');
    await item.first().waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await item.count(), 1, 'exactly one conversation');
    const conversationId = await item.first().getAttribute('data-conversation-id');
    assert.ok(conversationId, 'conversation item carries its id');
    await item.first().click();
    await waitForText(agent.locator('[data-testid="message"][data-seq="1"]'), hello, 'console shows visitor message');

    await agent.getByTestId('assign-button').click();
    await waitForText(agent.getByTestId('assign-button'), /Assigned to you/, 'assign button after assigning');
    await waitForText(agent.getByTestId('conversation-assignee'), /You/, 'list shows the assignee');

    await agent.getByTestId('reply-input').fill('Hi, Alice here');
    await agent.getByTestId('send-button').click();
    await waitForText(agent.locator('[data-testid="message"][data-role="agent"][data-seq="2"]'), 'Hi, Alice here', 'console shows own reply');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-role="agent"][data-seq="2"]'), 'Hi, Alice here', 'widget shows reply');

    // Markup typed by a visitor is text, never elements, on both sides.
    assert.equal(await sent.locator('.body').textContent(), hello);
    assert.equal(await visitor.getByTestId('chat-messages').locator('b').count(), 0, 'no <b> element in widget');
    assert.equal(await agent.getByTestId('message-list').locator('b').count(), 0, 'no <b> element in console');

    // Reload the widget: same visitor (stored token), conversation loaded from history.
    await visitor.reload({ timeout: WAIT });
    await visitor.waitForFunction(() => window.ChatWidget && window.ChatWidget.version, null, { timeout: WAIT });
    await visitor.evaluate(() => window.ChatWidget.open());
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="1"]'), hello, 'widget history after reload (visitor)');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="2"]'), 'Hi, Alice here', 'widget history after reload (agent)');
    assert.equal(await visitor.getByTestId('chat-message').count(), 2, 'no duplicates in widget after reload');
    assert.equal(await visitor.evaluate(() => window.ChatWidget.state.conversationId), conversationId);

    // Reload the console: token kept for the tab, conversation reloaded from history.
    await agent.reload({ timeout: WAIT });
    await waitForText(agent.getByTestId('connection-banner'), /Connected as Alice/, 'console banner after reload');
    const again = agent.locator(`[data-testid="conversation-item"][data-conversation-id="${conversationId}"]`);
    await again.waitFor({ state: 'visible', timeout: WAIT });
    await again.click();
    await waitForText(agent.locator('[data-testid="message"][data-seq="1"]'), hello, 'console history after reload (visitor)');
    await waitForText(agent.locator('[data-testid="message"][data-seq="2"]'), 'Hi, Alice here', 'console history after reload (agent)');
    assert.equal(await agent.getByTestId('message').count(), 2, 'no duplicates in console after reload');
  } finally {
    await visitorCtx.close();
    await agentCtx.close();
  }
}));

test('console explains a rejected token and asks for a new one', { timeout: TEST_TIMEOUT }, withGatewayLog(async () => {
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    trackConsole(page, 'console');
    await page.goto(`${gateway.base}/chat/admin/?token=not.a-valid.token`, { timeout: WAIT });
    await waitForText(page.getByTestId('connection-banner'), /Token rejected \(401\)/, 'banner for a bad token');
    await page.getByTestId('login-token').waitFor({ state: 'visible', timeout: WAIT });
    // No retry loop: the banner keeps saying why instead of counting down.
    await page.waitForTimeout(2000);
    assert.match(await page.getByTestId('connection-banner').textContent(), /Token rejected \(401\).*paste a new token/);
  } finally {
    await ctx.close();
  }
}));
