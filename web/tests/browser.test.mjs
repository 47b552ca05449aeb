// End-to-end: the real chat-gateway binary, the real widget and console, a real Chromium.
//
//   CHAT_GATEWAY_BIN  gateway binary (default <repo>/target/debug/chat-gateway)
//   CHROMIUM_PATH     browser (default /usr/bin/chromium)
//
// Run with `npm test` from web/tests.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { randomBytes, createHmac, createHash } from 'node:crypto';
import path from 'node:path';
import {
  REPO, BIN, WAIT, startGateway, terminateGateway, restartGateway, stopGateway, dumpGatewayOutput,
  launchBrowser, mintToken,
} from './harness.mjs';

const TEST_TIMEOUT = 240_000;

let gateway; // { child, base, env, dataDir, log }
let browser;
let agentToken;

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
  browser = await launchBrowser();
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

// An HS256 agent JWT signed with the gateway's secret, expiring in `ttlSecs`.
function shortToken(gw, sub, name, ttlSecs) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, name, iat: now, exp: now + ttlSecs })}`;
  return `${input}.${createHmac('sha256', gw.env.CHAT_ADMIN_JWT_SECRET).update(input).digest('base64url')}`;
}

test('console asks for a fresh token when its token expires and continues where it was', { timeout: TEST_TIMEOUT }, withGatewayLog(async () => {
  // A visitor (over long-polling, from here) with a conversation of one message.
  const opened = await (await fetch(`${gateway.base}/ws-visitor/poll`, { method: 'POST' })).json();
  const send = (body, id) => fetch(`${gateway.base}/ws-visitor/poll?sid=${opened.sid}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'send', id, client_msg_id: id, body }),
  }).then((r) => r.json());
  const first = await send('before the token expired', 'e1');
  const conversationId = first.answers[0].message.conversation_id;

  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    trackConsole(page, 'console');
    await page.goto(`${gateway.base}/chat/admin/?token=${shortToken(gateway, 'carol', 'Carol', 12)}`, { timeout: WAIT });
    await waitForText(page.getByTestId('connection-banner'), /Connected as Carol/, 'console banner');
    const item = page.locator(`[data-testid="conversation-item"][data-conversation-id="${conversationId}"]`);
    await item.click({ timeout: WAIT });
    await waitForText(page.locator('[data-testid="message"][data-seq="1"]'), 'before the token expired', 'message before expiry');

    // The token runs out: the gateway closes with 4001 and the console asks for a new one.
    await waitForText(page.getByTestId('connection-banner'), /token expired/i, 'banner after expiry');
    await page.getByTestId('login-token').waitFor({ state: 'visible', timeout: WAIT });
    // Meanwhile the visitor writes again.
    await send('while the console waited for a token', 'e2');

    await page.getByTestId('login-token').fill(shortToken(gateway, 'carol', 'Carol', 600));
    await page.getByTestId('login-submit').click();
    await waitForText(page.getByTestId('connection-banner'), /Connected as Carol/, 'console banner with the fresh token');
    // Same place: the conversation is still open in the pane, and what was missed arrives.
    await waitForText(page.locator('[data-testid="message"][data-seq="1"]'), 'before the token expired', 'message kept');
    await waitForText(page.locator('[data-testid="message"][data-seq="2"]'), 'while the console waited for a token', 'missed message');
    assert.equal(await page.getByTestId('message').count(), 2, 'no duplicates after the new token');
  } finally {
    await ctx.close();
  }
}));

// data-seq of every message element in a list, in DOM order (null for an unconfirmed one).
function seqsIn(locator) {
  return locator.evaluateAll((els) => els.map((el) => el.getAttribute('data-seq')));
}

function oneToN(n) {
  return Array.from({ length: n }, (_, i) => String(i + 1));
}

test('widget and console resume after a gateway restart without a reload', { timeout: TEST_TIMEOUT }, async () => {
  // A gateway of its own: the shared one must stay up for the other tests.
  const gw = await startGateway();
  const visitorCtx = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    const token = await mintToken(gw, 'alice', 'Alice');

    const visitor = await visitorCtx.newPage();
    trackConsole(visitor, 'widget');
    // Every frame the widget sends or receives, on every socket it opens.
    const frames = [];
    visitor.on('websocket', (ws) => {
      const keep = (dir) => (f) => {
        try { frames.push({ dir, ...JSON.parse(f.payload) }); } catch (_) { /* not JSON */ }
      };
      ws.on('framesent', keep('sent'));
      ws.on('framereceived', keep('received'));
    });
    await visitor.goto(`${gw.base}/chat/demo/`, { timeout: WAIT });
    await visitor.getByTestId('chat-bubble').click({ timeout: WAIT });
    await visitor.getByTestId('chat-panel').waitFor({ state: 'visible', timeout: WAIT });
    const conn = visitor.getByTestId('chat-connection');
    await waitForText(conn, /^Connected$/, 'widget connection');

    const agent = await agentCtx.newPage();
    trackConsole(agent, 'console');
    await agent.goto(`${gw.base}/chat/admin/?token=${encodeURIComponent(token)}`, { timeout: WAIT });
    const banner = agent.getByTestId('connection-banner');
    await waitForText(banner, /Connected as Alice/, 'console banner');

    const widgetMsgs = visitor.getByTestId('chat-message');
    const consoleMsgs = agent.getByTestId('message');
    const widgetSeq = (seq) => visitor.locator(`[data-testid="chat-message"][data-seq="${seq}"]`);
    const consoleSeq = (seq) => agent.locator(`[data-testid="message"][data-seq="${seq}"]`);

    // Before the restart: one message each way.
    const first = 'Visitor before the restart';
    await visitor.getByTestId('chat-input').fill(first);
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(widgetSeq(1), first, 'widget: first visitor message acknowledged');

    const item = agent.getByTestId('conversation-item');
    await item.first().waitFor({ state: 'visible', timeout: WAIT });
    const conversationId = await item.first().getAttribute('data-conversation-id');
    assert.ok(conversationId, 'conversation item carries its id');
    await item.first().click();
    await waitForText(consoleSeq(1), first, 'console: first visitor message');
    await agent.getByTestId('assign-button').click();
    await waitForText(agent.getByTestId('assign-button'), /Assigned to you/, 'assign button after assigning');

    const reply1 = 'Agent reply before the restart';
    await agent.getByTestId('reply-input').fill(reply1);
    await agent.getByTestId('send-button').click();
    await waitForText(consoleSeq(2), reply1, 'console: own reply before restart');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-role="agent"][data-seq="2"]'), reply1, 'widget: reply before restart');

    // Record every banner text, so a quickly replaced "Disconnected (code …)" is still seen.
    await agent.evaluate(() => {
      const el = document.querySelector('[data-testid="connection-banner"]');
      window.__bannerLog = [el.textContent];
      new MutationObserver(() => window.__bannerLog.push(el.textContent))
        .observe(el, { childList: true, characterData: true, subtree: true });
    });

    // Stop the gateway (SIGTERM); both pages notice without being told.
    await terminateGateway(gw);
    await waitForText(conn, /Reconnecting/, 'widget connection while the gateway is down');
    assert.notEqual(await conn.getAttribute('data-state'), 'open', 'widget connection state while down');
    assert.notEqual(await visitor.evaluate(() => window.ChatWidget.state.connection), 'open');
    await waitForText(banner, /Disconnected|Connection failed|unreachable/, 'console banner while the gateway is down');
    assert.notEqual(await banner.getAttribute('data-state'), 'connected', 'console banner state while down');
    assert.doesNotMatch(await banner.textContent(), /Connected as/, 'console banner while down');
    const bannerLog = await agent.evaluate(() => window.__bannerLog);
    assert.ok(bannerLog.some((t) => /^Disconnected \(code \d+/.test(t)), `console said it was disconnected: ${JSON.stringify(bannerLog)}`);

    // The visitor writes while the gateway is down: the message waits, visibly pending.
    const offline = 'Typed while the gateway was down';
    await visitor.getByTestId('chat-input').fill(offline);
    await visitor.getByTestId('chat-input').press('Enter');
    const pendingEl = visitor.locator('[data-testid="chat-message"][data-pending="true"]');
    await waitForText(pendingEl, offline, 'widget: message typed while down is pending');
    assert.equal(await pendingEl.count(), 1, 'one pending message');
    assert.equal(await pendingEl.getAttribute('data-seq'), null, 'a pending message has no seq yet');
    assert.equal(await visitor.evaluate(() => window.ChatWidget.state.pending), 1);

    // Same port, same data dir, same secrets. Neither page is reloaded.
    await restartGateway(gw);
    await waitForText(conn, /^Connected$/, 'widget reconnects after the restart');
    assert.equal(await conn.getAttribute('data-state'), 'open', 'widget connection state after the restart');
    await waitForText(banner, /Connected as Alice/, 'console reconnects after the restart');

    // The pending message is delivered once (same client_msg_id), in the same conversation.
    await waitForText(visitor.locator('[data-testid="chat-message"][data-role="visitor"][data-seq="3"]'), offline, 'widget: pending message delivered');
    await waitForText(consoleSeq(3), offline, 'console: message typed while down');
    assert.equal(await pendingEl.count(), 0, 'nothing left pending in the widget');
    assert.equal(await visitor.evaluate(() => window.ChatWidget.state.pending), 0);
    assert.equal(await visitor.evaluate(() => window.ChatWidget.state.conversationId), conversationId);
    // Every attempt to send it carried one client_msg_id, and the committed message is that one.
    const offlineSends = frames.filter((f) => f.dir === 'sent' && f.type === 'send' && f.body === offline);
    assert.ok(offlineSends.length >= 1, 'the widget sent the pending message');
    const ids = new Set(offlineSends.map((f) => f.client_msg_id));
    assert.equal(ids.size, 1, `one client_msg_id across retries: ${JSON.stringify([...ids])}`);
    const committed = frames.filter((f) => f.dir === 'received' && (f.type === 'ack' || f.type === 'message')
      && f.message && f.message.body === offline);
    assert.ok(committed.length >= 1, 'the gateway committed the pending message');
    assert.ok(committed.every((f) => f.message.seq === 3 && ids.has(f.message.client_msg_id)),
      `committed once, as seq 3 with the widget's client_msg_id: ${JSON.stringify(committed)}`);

    // Live traffic after the restart, both ways.
    const reply2 = 'Agent reply after the restart';
    await agent.getByTestId('reply-input').fill(reply2);
    await agent.getByTestId('send-button').click();
    await waitForText(consoleSeq(4), reply2, 'console: own reply after restart');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-role="agent"][data-seq="4"]'), reply2, 'widget: reply after restart');

    const last = 'Visitor after the restart';
    await visitor.getByTestId('chat-input').fill(last);
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(widgetSeq(5), last, 'widget: visitor message after restart acknowledged');
    await waitForText(consoleSeq(5), last, 'console: visitor message after restart');

    // Let any late replay or duplicate event land before counting.
    await visitor.waitForTimeout(1500);
    const bodies = [first, reply1, offline, reply2, last];
    for (const [i, body] of bodies.entries()) {
      assert.equal(await widgetMsgs.filter({ hasText: body }).count(), 1, `widget shows ${JSON.stringify(body)} once`);
      assert.equal(await consoleMsgs.filter({ hasText: body }).count(), 1, `console shows ${JSON.stringify(body)} once`);
      assert.equal(await widgetSeq(i + 1).locator('.body').textContent(), body, `widget seq ${i + 1}`);
      assert.equal(await consoleSeq(i + 1).getByTestId('message-body').textContent(), body, `console seq ${i + 1}`);
    }
    assert.deepEqual(await seqsIn(widgetMsgs), oneToN(bodies.length), 'widget messages: seq 1..N in order, no duplicates');
    assert.deepEqual(await seqsIn(consoleMsgs), oneToN(bodies.length), 'console messages: seq 1..N in order, no duplicates');
    assert.equal(await item.count(), 1, 'still exactly one conversation in the console');
  } catch (e) {
    dumpGatewayOutput(gw);
    throw e;
  } finally {
    await visitorCtx.close();
    await agentCtx.close();
    await stopGateway(gw);
  }
});

// ---------------------------------------------------------------------------------------------
// HTTP long-polling fallback

// Every long-polling request a page makes to the gateway, with its answer status.
function trackPolling(page) {
  const log = [];
  page.on('requestfinished', async (req) => {
    if (!/\/ws-visitor\/poll/.test(req.url())) return;
    const res = await req.response().catch(() => null);
    log.push({ method: req.method(), url: req.url(), status: res ? res.status() : null });
  });
  return log;
}

// A customer page on the gateway's origin (served by the browser, not the gateway) that embeds
// the widget with its own ChatWidgetConfig.
async function serveCustomPage(page, base, widgetConfig) {
  const url = `${base}/chat/test-page-${randomBytes(4).toString('hex')}.html`;
  await page.route(url, (route) => route.fulfill({
    status: 200,
    contentType: 'text/html; charset=utf-8',
    body: `<!doctype html><html><head><meta charset="utf-8"><title>Custom page</title></head><body>
<h1>Custom customer page</h1>
<script>window.ChatWidgetConfig = ${JSON.stringify(widgetConfig)};</script>
<script src="/chat/widget/widget.js" async></script>
</body></html>`,
  }));
  return url;
}

async function widgetTransport(page) {
  return page.evaluate(() => window.ChatWidget && window.ChatWidget.state.transport);
}

// Visitor sends, the console (on its WebSocket) receives, the agent assigns and replies, the
// widget shows the reply. Returns the conversation id.
async function chatRoundTrip(visitor, agent, { visitorText, replyText, visitorSeq, replySeq, firstTime }) {
  await visitor.getByTestId('chat-input').fill(visitorText);
  await visitor.getByTestId('chat-input').press('Enter');
  await waitForText(visitor.locator(`[data-testid="chat-message"][data-role="visitor"][data-seq="${visitorSeq}"]`), visitorText, 'widget: visitor message acknowledged');
  const item = agent.getByTestId('conversation-item');
  await item.first().waitFor({ state: 'visible', timeout: WAIT });
  const conversationId = await item.first().getAttribute('data-conversation-id');
  if (firstTime) {
    await item.first().click();
  }
  await waitForText(agent.locator(`[data-testid="message"][data-seq="${visitorSeq}"]`), visitorText, 'console: visitor message');
  if (firstTime) {
    await agent.getByTestId('assign-button').click();
    await waitForText(agent.getByTestId('assign-button'), /Assigned to you/, 'assign button after assigning');
  }
  await agent.getByTestId('reply-input').fill(replyText);
  await agent.getByTestId('send-button').click();
  await waitForText(agent.locator(`[data-testid="message"][data-seq="${replySeq}"]`), replyText, 'console: own reply');
  await waitForText(visitor.locator(`[data-testid="chat-message"][data-role="agent"][data-seq="${replySeq}"]`), replyText, 'widget: reply');
  return conversationId;
}

async function assertEachOnce(visitor, agent, bodies) {
  // Let any late replay or duplicate event land before counting.
  await visitor.waitForTimeout(1500);
  const widgetMsgs = visitor.getByTestId('chat-message');
  const consoleMsgs = agent.getByTestId('message');
  for (const [i, body] of bodies.entries()) {
    assert.equal(await widgetMsgs.filter({ hasText: body }).count(), 1, `widget shows ${JSON.stringify(body)} once`);
    assert.equal(await consoleMsgs.filter({ hasText: body }).count(), 1, `console shows ${JSON.stringify(body)} once`);
    assert.equal(await visitor.locator(`[data-testid="chat-message"][data-seq="${i + 1}"] .body`).textContent(), body, `widget seq ${i + 1}`);
  }
  assert.deepEqual(await seqsIn(widgetMsgs), oneToN(bodies.length), 'widget messages: seq 1..N in order, no duplicates');
  assert.deepEqual(await seqsIn(consoleMsgs), oneToN(bodies.length), 'console messages: seq 1..N in order, no duplicates');
}

test('widget falls back to long-polling when WebSockets are blocked', { timeout: TEST_TIMEOUT }, withGatewayLog(async () => {
  const visitorCtx = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    const visitor = await visitorCtx.newPage();
    trackConsole(visitor, 'widget');
    // A proxy that kills every upgrade on the visitor endpoint: the socket never gets `welcome`.
    let blocked = 0;
    await visitor.routeWebSocket(/\/ws-visitor\//, (ws) => { blocked++; ws.close(); });
    const polls = trackPolling(visitor);

    await visitor.goto(`${gateway.base}/chat/demo/`, { timeout: WAIT });
    await visitor.getByTestId('chat-bubble').click({ timeout: WAIT });
    const conn = visitor.getByTestId('chat-connection');
    await waitForText(conn, /^Connected$/, 'widget connection over polling');
    assert.equal(await widgetTransport(visitor), 'polling', 'state.transport');
    assert.equal(await conn.getAttribute('data-transport'), 'polling', 'data-transport');
    assert.ok(blocked >= 2, `the widget tried WebSocket first (${blocked} attempts)`);
    assert.ok(polls.some((r) => r.method === 'POST' && /[?&]site=default/.test(r.url) && r.status === 200), 'a polling session was opened');

    const agent = await agentCtx.newPage();
    trackConsole(agent, 'console');
    await agent.goto(`${gateway.base}/chat/admin/?token=${encodeURIComponent(agentToken)}`, { timeout: WAIT });
    await waitForText(agent.getByTestId('connection-banner'), /Connected as Alice/, 'console banner');
    await waitForText(visitor.getByTestId('chat-status'), /Online/, 'widget status with Alice online (presence over polling)');

    const hello = 'Hello over long-polling <i>x</i>';
    const reply = 'Alice answers a polling visitor';
    await chatRoundTrip(visitor, agent, { visitorText: hello, replyText: reply, visitorSeq: 1, replySeq: 2, firstTime: true });
    const more = 'Second message over polling';
    await visitor.getByTestId('chat-input').fill(more);
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="3"]'), more, 'widget: second message acknowledged');
    await waitForText(agent.locator('[data-testid="message"][data-seq="3"]'), more, 'console: second message');

    await assertEachOnce(visitor, agent, [hello, reply, more]);
    assert.equal(await visitor.getByTestId('chat-messages').locator('i').count(), 0, 'no <i> element in widget');
    assert.equal(await widgetTransport(visitor), 'polling', 'still on polling');
    assert.equal(await visitor.evaluate(() => window.ChatWidget.state.pending), 0, 'nothing pending');
    // The agent never leaves its WebSocket.
    assert.ok(!polls.some((r) => /ws-admin/.test(r.url)));
  } finally {
    await visitorCtx.close();
    await agentCtx.close();
  }
}));

test('transports: ["polling"] forces long-polling, across reloads and a gateway restart', { timeout: TEST_TIMEOUT }, async () => {
  // A gateway of its own: it gets restarted.
  const gw = await startGateway();
  const visitorCtx = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    const token = await mintToken(gw, 'alice', 'Alice');
    const visitor = await visitorCtx.newPage();
    trackConsole(visitor, 'widget');
    const sockets = [];
    visitor.on('websocket', (ws) => sockets.push(ws.url()));
    const polls = trackPolling(visitor);
    const pageUrl = await serveCustomPage(visitor, gw.base, { transports: ['polling'], title: 'Polling only' });

    await visitor.goto(pageUrl, { timeout: WAIT });
    await visitor.getByTestId('chat-bubble').click({ timeout: WAIT });
    const conn = visitor.getByTestId('chat-connection');
    await waitForText(conn, /^Connected$/, 'widget connection over polling');
    assert.equal(await widgetTransport(visitor), 'polling', 'state.transport');
    assert.equal(await conn.getAttribute('data-transport'), 'polling', 'data-transport');

    const agent = await agentCtx.newPage();
    trackConsole(agent, 'console');
    await agent.goto(`${gw.base}/chat/admin/?token=${encodeURIComponent(token)}`, { timeout: WAIT });
    const banner = agent.getByTestId('connection-banner');
    await waitForText(banner, /Connected as Alice/, 'console banner');

    const first = 'Forced polling, first message';
    const reply1 = 'Reply to a forced-polling visitor';
    const conversationId = await chatRoundTrip(visitor, agent, { visitorText: first, replyText: reply1, visitorSeq: 1, replySeq: 2, firstTime: true });

    // Reload: same visitor (stored token), history over polling, no duplicates.
    await visitor.reload({ timeout: WAIT });
    await visitor.waitForFunction(() => window.ChatWidget && window.ChatWidget.version, null, { timeout: WAIT });
    await visitor.evaluate(() => window.ChatWidget.open());
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="2"]'), reply1, 'widget history after reload');
    assert.equal(await visitor.getByTestId('chat-message').count(), 2, 'no duplicates after reload');
    assert.equal(await visitor.evaluate(() => window.ChatWidget.state.conversationId), conversationId);

    // Gateway restart: the polling session is lost; the widget opens a new one (same token),
    // resumes, and delivers what was typed meanwhile exactly once.
    await terminateGateway(gw);
    await waitForText(conn, /Reconnecting/, 'widget connection while the gateway is down');
    const offline = 'Typed while the polling gateway was down';
    await visitor.getByTestId('chat-input').fill(offline);
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-pending="true"]'), offline, 'pending while down');
    await restartGateway(gw);
    await waitForText(conn, /^Connected$/, 'widget reconnects after the restart');
    await waitForText(banner, /Connected as Alice/, 'console reconnects after the restart');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-role="visitor"][data-seq="3"]'), offline, 'widget: pending message delivered');
    await waitForText(agent.locator('[data-testid="message"][data-seq="3"]'), offline, 'console: message typed while down');

    const reply2 = 'Reply after the restart, over polling';
    await agent.getByTestId('reply-input').fill(reply2);
    await agent.getByTestId('send-button').click();
    await waitForText(visitor.locator('[data-testid="chat-message"][data-role="agent"][data-seq="4"]'), reply2, 'widget: reply after restart');

    await assertEachOnce(visitor, agent, [first, reply1, offline, reply2]);
    assert.equal(await visitor.evaluate(() => window.ChatWidget.state.pending), 0, 'nothing pending');
    assert.equal(await widgetTransport(visitor), 'polling', 'still on polling');
    assert.deepEqual(sockets, [], 'the widget never opened a WebSocket');
    assert.ok(polls.filter((r) => r.method === 'POST' && /[?&]site=/.test(r.url) && r.status === 200).length >= 3,
      'a polling session per page load and one after the restart');
  } catch (e) {
    dumpGatewayOutput(gw);
    throw e;
  } finally {
    await visitorCtx.close();
    await agentCtx.close();
    await stopGateway(gw);
  }
});

test('widget follows the rollout to long-polling and remembers it', { timeout: TEST_TIMEOUT }, async () => {
  // Every visitor is sent to polling; WebSocket works but the gateway prefers polling.
  const gw = await startGateway({ CHAT_WS_ROLLOUT_PERCENT: '0' });
  const ctx = await browser.newContext();
  try {
    const visitor = await ctx.newPage();
    trackConsole(visitor, 'widget');
    const sockets = [];
    visitor.on('websocket', (ws) => sockets.push(ws.url()));
    await visitor.goto(`${gw.base}/chat/demo/`, { timeout: WAIT });
    await visitor.getByTestId('chat-bubble').click({ timeout: WAIT });
    const conn = visitor.getByTestId('chat-connection');
    await visitor.waitForFunction(() => window.ChatWidget.state.transport === 'polling' && window.ChatWidget.state.connection === 'open', null, { timeout: WAIT });
    assert.equal(await conn.getAttribute('data-transport'), 'polling', 'data-transport');
    assert.equal(sockets.length, 1, 'one WebSocket, whose welcome moved the widget to polling');

    const text = 'Sent after the rollout moved me';
    await visitor.getByTestId('chat-input').fill(text);
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="1"]'), text, 'widget: message acknowledged over polling');

    // Next page load starts on polling directly.
    await visitor.reload({ timeout: WAIT });
    await visitor.waitForFunction(() => window.ChatWidget && window.ChatWidget.state.connection === 'open', null, { timeout: WAIT });
    assert.equal(await widgetTransport(visitor), 'polling');
    assert.equal(sockets.length, 1, 'no WebSocket after the reload');
    await visitor.evaluate(() => window.ChatWidget.open());
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="1"]'), text, 'widget history after reload');
    assert.equal(await visitor.getByTestId('chat-message').count(), 1, 'no duplicates after reload');
    const storeKey = `chat-widget:v1:${gw.base}|default`;
    assert.equal(await visitor.evaluate((k) => JSON.parse(localStorage.getItem(k)).transport, storeKey), 'polling', 'remembered in localStorage');

    // The operator moves everyone back to WebSocket: the next polling session's welcome says so,
    // and the widget moves over without a reload.
    await terminateGateway(gw);
    gw.env.CHAT_WS_ROLLOUT_PERCENT = '100';
    await restartGateway(gw);
    await visitor.waitForFunction(() => window.ChatWidget.state.transport === 'websocket' && window.ChatWidget.state.connection === 'open', null, { timeout: WAIT });
    assert.equal(await conn.getAttribute('data-transport'), 'websocket', 'data-transport after the rollout change');
    assert.equal(await visitor.evaluate((k) => JSON.parse(localStorage.getItem(k)).transport, storeKey), undefined, 'preference forgotten');
    const after = 'Sent over WebSocket again';
    await visitor.getByTestId('chat-input').fill(after);
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="2"]'), after, 'widget: message acknowledged over WebSocket');
    await visitor.waitForTimeout(1000);
    assert.deepEqual(await seqsIn(visitor.getByTestId('chat-message')), ['1', '2'], 'each message once');
  } catch (e) {
    dumpGatewayOutput(gw);
    throw e;
  } finally {
    await ctx.close();
    await stopGateway(gw);
  }
});

test('widget on a cross-origin page falls back to polling and returns to WebSocket once it gets through', { timeout: TEST_TIMEOUT }, async () => {
  // The customer's site: another origin, served for real on loopback (a page fulfilled by the
  // browser's router counts as public, and Chrome keeps public pages off loopback addresses).
  let gw;
  const shop = createHttpServer((req, res) => {
    if (req.url !== '/shop.html') { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><html><head><meta charset="utf-8"><title>Shop</title></head><body><h1>Shop</h1>
<script>window.ChatWidgetConfig = ${JSON.stringify({ serverBaseUrl: gw.base })};</script>
<script src="${gw.base}/chat/widget/widget.js" async></script></body></html>`);
  });
  await new Promise((resolve) => shop.listen(0, '127.0.0.1', resolve));
  const customer = `http://127.0.0.1:${shop.address().port}`;
  gw = await startGateway({ CHAT_ALLOWED_ORIGINS: customer });
  const visitorCtx = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    const token = await mintToken(gw, 'alice', 'Alice');
    const visitor = await visitorCtx.newPage();
    trackConsole(visitor, 'widget');
    // Fake timers that run in real time until fast-forwarded past the 5-minute WebSocket retry.
    await visitor.clock.install();
    let blocked = true;
    await visitor.routeWebSocket(/\/ws-visitor\//, (ws) => { if (blocked) ws.close(); else ws.connectToServer(); });
    const polls = trackPolling(visitor);
    await visitor.goto(`${customer}/shop.html`, { timeout: WAIT });
    await visitor.getByTestId('chat-bubble').click({ timeout: WAIT });
    const conn = visitor.getByTestId('chat-connection');
    await waitForText(conn, /^Connected$/, 'widget connection over polling');
    assert.equal(await widgetTransport(visitor), 'polling');

    const agent = await agentCtx.newPage();
    trackConsole(agent, 'console');
    await agent.goto(`${gw.base}/chat/admin/?token=${encodeURIComponent(token)}`, { timeout: WAIT });
    await waitForText(agent.getByTestId('connection-banner'), /Connected as Alice/, 'console banner');
    const first = 'Cross-origin over polling';
    const reply1 = 'Reply while the visitor polls';
    await chatRoundTrip(visitor, agent, { visitorText: first, replyText: reply1, visitorSeq: 1, replySeq: 2, firstTime: true });

    // The proxy lets upgrades through again; five minutes later the widget tries and moves over.
    blocked = false;
    await visitor.clock.fastForward('05:01');
    await visitor.waitForFunction(() => window.ChatWidget.state.transport === 'websocket' && window.ChatWidget.state.connection === 'open', null, { timeout: WAIT });
    assert.equal(await conn.getAttribute('data-transport'), 'websocket');
    const getsAfterSwitch = polls.filter((r) => r.method === 'GET').length;

    const reply2 = 'Reply after the move to WebSocket';
    await agent.getByTestId('reply-input').fill(reply2);
    await agent.getByTestId('send-button').click();
    await waitForText(visitor.locator('[data-testid="chat-message"][data-role="agent"][data-seq="3"]'), reply2, 'widget: reply over WebSocket');
    const last = 'Visitor over WebSocket again';
    await visitor.getByTestId('chat-input').fill(last);
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(visitor.locator('[data-testid="chat-message"][data-seq="4"]'), last, 'widget: message acknowledged over WebSocket');
    await waitForText(agent.locator('[data-testid="message"][data-seq="4"]'), last, 'console: message over WebSocket');

    await assertEachOnce(visitor, agent, [first, reply1, reply2, last]);
    // The polling session was let go: at most the GET that was being held when we moved ends.
    assert.ok(polls.filter((r) => r.method === 'GET').length <= getsAfterSwitch + 1, 'no polling after the move');
    assert.equal(await widgetTransport(visitor), 'websocket');
  } catch (e) {
    dumpGatewayOutput(gw);
    throw e;
  } finally {
    await visitorCtx.close();
    await agentCtx.close();
    await stopGateway(gw);
    await new Promise((resolve) => shop.close(resolve));
  }
});

// The gateway's id of an imported conversation (docs/import.md: UUIDv5 of the old id).
function uuidv5(namespace, name) {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const hash = createHash('sha1').update(Buffer.concat([ns, Buffer.from(name, 'utf8')])).digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function importedConversationId(site, oldId) {
  const ns = uuidv5('6ba7b811-9dad-11d1-80b4-00c04fd430c8', 'chat-gateway import'); // URL namespace
  return uuidv5(ns, `conversation\n${site}\n${oldId}`);
}

test('console shows a history brought over with chat-gateway import', { timeout: TEST_TIMEOUT }, async () => {
  const gw = await startGateway();
  const agentCtx = await browser.newContext();
  try {
    const sample = path.join(REPO, 'gateway', 'tests', 'fixtures', 'import-sample.jsonl');
    const imported = await new Promise((resolve, reject) => {
      execFile(BIN, ['import', sample], { env: gw.env, timeout: WAIT }, (err, stdout, stderr) => {
        if (err) return reject(new Error(`import failed: ${err.message}\n${stderr}`));
        resolve(stdout.trim());
      });
    });
    assert.match(imported, /^IMPORT_OK lines=6 messages_new=5 /);

    const token = await mintToken(gw, 'alice', 'Alice');
    const agent = await agentCtx.newPage();
    trackConsole(agent, 'console');
    await agent.goto(`${gw.base}/chat/admin/?token=${encodeURIComponent(token)}`, { timeout: WAIT });
    await waitForText(agent.getByTestId('connection-banner'), /Connected as Alice/, 'console banner');
    await agent.getByTestId('conversation-filter').selectOption('all');

    const open = agent.locator(`[data-testid="conversation-item"][data-conversation-id="${importedConversationId('default', 'conv-1')}"]`);
    await open.waitFor({ state: 'visible', timeout: WAIT });
    await open.click();
    await waitForText(agent.locator('[data-testid="message"][data-seq="1"]'), 'Hello, my order #42 is late', 'imported visitor message');
    await waitForText(agent.locator('[data-testid="message"][data-role="agent"][data-seq="2"]'), 'Sorry about that <b>Ann</b>', 'imported agent message, literal');
    await waitForText(agent.locator('[data-testid="message"][data-seq="3"]'), 'merci ✓', 'imported last message');
    assert.equal(await agent.getByTestId('message').count(), 3, 'each imported message once');
    assert.equal(await agent.getByTestId('message-list').locator('b').count(), 0, 'imported markup stays text');

    const closed = agent.locator(`[data-testid="conversation-item"][data-conversation-id="${importedConversationId('default', 'conv-2')}"]`);
    assert.equal(await closed.getAttribute('data-status'), 'closed');
    await closed.click();
    await waitForText(agent.locator('[data-testid="message"][data-seq="2"]'), 'Yes, in 3–5 days.', 'imported closed conversation');
  } catch (e) {
    dumpGatewayOutput(gw);
    throw e;
  } finally {
    await agentCtx.close();
    await stopGateway(gw);
  }
});
