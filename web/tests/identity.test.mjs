// End-to-end: known visitors (docs/identity.md) in the real widget and console. The test plays
// the main site's server: it computes each user's hash in Node with CHAT_IDENTITY_SECRET and
// hands ChatWidgetConfig.user to the page, which computes nothing itself. Real chat-gateway
// binary, real Chromium; each browser context is one device.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import {
  gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, waitForText, openWidget,
  widgetSend, openConsole,
} from './harness.mjs';

const SECRET = randomBytes(32).toString('hex');
let agentToken;

const hashOf = (id) => createHmac('sha256', SECRET).update(String(id)).digest('hex');

useGatewayAndBrowser({ CHAT_IDENTITY_SECRET: SECRET }, async () => {
  agentToken = await mintToken(gw, 'alice', 'Alice');
});

const widgetState = (page) => page.evaluate(() => window.ChatWidget.state);

// Opens the console on the conversation `cid` and returns the visitor panel.
async function consoleOn(page, cid) {
  await openConsole(gw, page, agentToken, 'Alice');
  await page.locator(`[data-testid="conversation-item"][data-conversation-id="${cid}"]`).click({ timeout: WAIT });
  return page.getByTestId('visitor-panel');
}

test('one verified user on two devices sees one conversation', { timeout: 180_000 }, async () => {
  const user = { id: 'u-42', name: 'Ann Lee', email: 'ann@example.com', hash: hashOf('u-42') };
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(laptop, gw, { user });
    await serveShop(phone, gw, { user, transports: ['polling'] }); // the other transport too
    const a = await laptop.newPage();
    await openWidget(gw, a);
    await widgetSend(gw, a, 'Hello from the laptop');
    const first = await widgetState(a);

    const b = await phone.newPage();
    await openWidget(gw, b);
    // The laptop's message is in the phone's history: the same visitor, the same conversation.
    await waitForText(gw, b.getByTestId('chat-message'), 'Hello from the laptop', 'phone shows the laptop message');
    const second = await widgetState(b);
    assert.equal(second.visitorId, first.visitorId, 'one visitor for the user on both devices');
    assert.equal(second.conversationId, first.conversationId, 'one conversation');
    assert.equal(second.transport, 'polling');
    assert.deepEqual(second.user, { id: 'u-42', verified: true });

    // Live both ways.
    await widgetSend(gw, b, 'And from the phone');
    await waitForText(gw, a.getByTestId('chat-message'), 'And from the phone', 'laptop gets the phone message live');

    // The token is kept under the user's own key, not the anonymous visitor's.
    const keys = await a.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('chat-widget:')));
    assert.deepEqual(keys, [`chat-widget:v1:${gw.base}|default|user:u-42`]);

    const agent = await agentCtx.newPage();
    const panel = await consoleOn(agent, first.conversationId);
    await waitForText(gw, panel.getByTestId('visitor-name'), /^Ann Lee$/, 'console shows the name');
    await waitForText(gw, panel.getByTestId('visitor-email'), /^ann@example\.com$/, 'and the email');
    await waitForText(gw, panel.getByTestId('visitor-user-id'), /^u-42$/, 'and the user id');
    const mark = panel.getByTestId('visitor-verified');
    await waitForText(gw, mark, /^✓ verified$/, 'verified mark');
    assert.equal(await mark.getAttribute('data-verified'), 'true');
    assert.equal(await agent.getByTestId('conversation-item').count(), 1, 'one conversation in the console');
  } finally {
    await laptop.close();
    await phone.close();
    await agentCtx.close();
  }
});

for (const transports of [['websocket'], ['polling']]) {
  test(`a wrong hash is refused and the widget says so (${transports[0]})`, { timeout: 120_000 }, async () => {
    const ctx = await browser.newContext();
    try {
      // The hash of another user: a page that tries to pass as u-1.
      await serveShop(ctx, gw, { user: { id: 'u-1', name: 'Mallory', hash: hashOf('u-2') }, transports });
      const page = await ctx.newPage();
      let sockets = 0;
      page.on('websocket', () => { sockets++; });
      await page.goto(`${gw.base}/shop/`, { timeout: WAIT });
      await page.getByTestId('chat-bubble').click({ timeout: WAIT });
      const conn = page.getByTestId('chat-connection');
      await waitForText(gw, conn, /could not be verified.*hash/, 'widget shows the refusal');
      assert.equal(await conn.getAttribute('data-state'), 'refused');
      const before = sockets;
      // No reconnect loop: nothing more is tried, the message stays.
      await page.waitForTimeout(4000);
      assert.equal(sockets, before, 'no new WebSocket after the refusal');
      assert.equal(await conn.getAttribute('data-state'), 'refused');
      const state = await widgetState(page);
      assert.match(state.refused, /HMAC-SHA256/, 'the gateway\'s own explanation is kept');
      assert.equal(state.visitorId, null, 'never welcomed');
    } finally {
      await ctx.close();
    }
  });
}

test('user fields without a hash are shown as unverified, as text', { timeout: 120_000 }, async () => {
  const name = 'Bob <b>Builder</b>';
  const ctx = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(ctx, gw, { user: { id: 'u-7', name, email: 'bob@example.com' } });
    const page = await ctx.newPage();
    await openWidget(gw, page);
    await widgetSend(gw, page, 'Who am I?');
    const { conversationId, user } = await widgetState(page);
    assert.deepEqual(user, { id: 'u-7', verified: false });

    const agent = await agentCtx.newPage();
    const panel = await consoleOn(agent, conversationId);
    const mark = panel.getByTestId('visitor-verified');
    await waitForText(gw, mark, /^unverified$/, 'unverified mark');
    assert.equal(await mark.getAttribute('data-verified'), 'false');
    await waitForText(gw, panel.getByTestId('visitor-name'), name, 'the claimed name');
    assert.equal(await panel.getByTestId('visitor-name').textContent(), name, 'rendered as text');
    assert.equal(await panel.locator('b').count(), 0, 'never as markup');
  } finally {
    await ctx.close();
    await agentCtx.close();
  }
});

test('an anonymous visitor who logs in keeps the conversation; logging out does not reuse it', { timeout: 180_000 }, async () => {
  const ctx = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(ctx, gw, {});
    const page = await ctx.newPage();
    await openWidget(gw, page);
    await widgetSend(gw, page, 'Asked before logging in');
    const anonymous = await widgetState(page);
    assert.equal(anonymous.user, null);

    // The main site's user logs in: the next page carries the user and its hash.
    ctx.shopConfig = { user: { id: 'u-merge', name: 'Mia Merge', email: 'mia@example.com', hash: hashOf('u-merge') } };
    await page.reload({ timeout: WAIT });
    await page.getByTestId('chat-bubble').waitFor({ timeout: WAIT });
    if (!(await widgetState(page)).open) await page.getByTestId('chat-bubble').click();
    await waitForText(gw, page.getByTestId('chat-connection'), /^Connected$/, 'connected as the user');
    await waitForText(gw, page.locator('[data-testid="chat-message"][data-seq="1"]'), 'Asked before logging in', 'the same messages');
    const loggedIn = await widgetState(page);
    assert.notEqual(loggedIn.visitorId, anonymous.visitorId, 'now the user\'s visitor');
    assert.equal(loggedIn.conversationId, anonymous.conversationId, 'the same conversation continues');
    await widgetSend(gw, page, 'Now I am logged in');
    assert.equal(await page.locator(`[data-testid="chat-message"][data-conversation-id="${anonymous.conversationId}"][data-seq="2"]`).count(), 1);

    const agent = await agentCtx.newPage();
    const panel = await consoleOn(agent, anonymous.conversationId);
    await waitForText(gw, panel.getByTestId('visitor-name'), /^Mia Merge$/, 'console shows the verified name');
    await waitForText(gw, panel.getByTestId('visitor-verified'), /verified/, 'verified mark');
    assert.equal(await panel.getByTestId('visitor-verified').getAttribute('data-verified'), 'true');
    await waitForText(gw, agent.getByTestId('message-body'), 'Now I am logged in', 'both messages in one conversation');

    // Logging out: back to the anonymous visitor's own token, never the user's.
    ctx.shopConfig = {};
    await page.reload({ timeout: WAIT });
    await page.getByTestId('chat-bubble').waitFor({ timeout: WAIT });
    if (!(await widgetState(page)).open) await page.getByTestId('chat-bubble').click();
    await waitForText(gw, page.getByTestId('chat-connection'), /^Connected$/, 'connected anonymously again');
    const out = await widgetState(page);
    assert.equal(out.visitorId, anonymous.visitorId, 'the anonymous visitor again');
    assert.equal(out.conversationId, null, 'the conversation went with the user');
    await page.waitForTimeout(500);
    assert.equal(await page.getByTestId('chat-message').count(), 0, 'none of the user\'s messages');
    const stored = await page.evaluate(() => Object.fromEntries(Object.entries(localStorage)
      .filter(([k]) => k.startsWith('chat-widget:')).map(([k, v]) => [k, JSON.parse(v).token])));
    const anonKey = `chat-widget:v1:${gw.base}|default`;
    assert.ok(stored[anonKey] && stored[`${anonKey}|user:u-merge`], JSON.stringify(stored));
    assert.notEqual(stored[anonKey], stored[`${anonKey}|user:u-merge`], 'one token per identity');
  } finally {
    await ctx.close();
    await agentCtx.close();
  }
});
