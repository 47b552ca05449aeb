// End-to-end (issue 15): offline capture — with no agent online the widget asks for an email,
// the visitor leaves one and writes, and an agent whose console connects later sees the address
// and the conversation marked waiting — and the console's alerts while its tab is hidden: the
// title counts new visitor messages, one desktop notification per conversation, nothing when
// muted. Real chat-gateway binary, real Chromium (Notification stubbed in the page to record).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, waitForText, openWidget,
  widgetSend, openConsole,
} from './harness.mjs';

useGatewayAndBrowser();

test('no agent online: the widget asks for an email; the agent connecting later sees it and the waiting mark', { timeout: 180_000 }, async () => {
  const shopper = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(shopper, gw, {});
    const visitor = await shopper.newPage();
    await openWidget(gw, visitor);
    const form = visitor.getByTestId('chat-offline');
    await form.waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await form.getAttribute('data-state'), 'ask');
    assert.match(await visitor.getByTestId('chat-offline-note').textContent(), /No one is online/);

    // A malformed address is caught in the page; a good one is acknowledged by the gateway.
    await visitor.getByTestId('chat-offline-email').fill('not-an-email');
    await visitor.getByTestId('chat-offline-submit').click();
    assert.equal(await form.getAttribute('data-state'), 'error');
    await visitor.getByTestId('chat-offline-email').fill('ann@example.com');
    await visitor.getByTestId('chat-offline-submit').click();
    await visitor.waitForFunction(() => window.ChatWidget.state.contact === 'sent', null, { timeout: WAIT });
    await waitForText(gw, visitor.getByTestId('chat-offline-note'), /ann@example\.com/, 'the form says where we answer');
    // The visitor can still write.
    await widgetSend(gw, visitor, 'Do you ship to Norway?');
    const conversation = (await visitor.evaluate(() => window.ChatWidget.state)).conversationId;

    // After a reload the form remembers the address instead of asking again.
    await visitor.reload({ timeout: WAIT });
    await visitor.getByTestId('chat-offline').waitFor({ state: 'visible', timeout: WAIT });
    assert.equal(await visitor.getByTestId('chat-offline').getAttribute('data-state'), 'sent');
    assert.equal(await visitor.getByTestId('chat-offline-email').isVisible(), false);

    // The agent's console, connecting later.
    const token = await mintToken(gw, 'ann', 'Ann');
    const agent = await agentCtx.newPage();
    await openConsole(gw, agent, token, 'Ann');
    const item = agent.locator(`[data-testid="conversation-item"][data-conversation-id="${conversation}"]`);
    await item.waitFor({ timeout: WAIT });
    assert.equal(await item.getAttribute('data-waiting'), 'true');
    assert.equal(await item.getByTestId('conversation-waiting').textContent(), 'waiting');
    await item.click();
    const panel = agent.getByTestId('visitor-panel');
    await waitForText(gw, panel.getByTestId('visitor-email'), /^ann@example\.com$/, 'the email in the visitor panel');
    assert.equal(await panel.getByTestId('visitor-verified').getAttribute('data-verified'), 'false');
    assert.match(await agent.getByTestId('conversation-meta').textContent(), /Waiting/);

    // With an agent online the widget stops asking; the agent's reply ends the wait.
    await visitor.getByTestId('chat-offline').waitFor({ state: 'hidden', timeout: WAIT });
    await agent.getByTestId('reply-input').fill('Yes, we do.');
    await agent.getByTestId('reply-input').press('Enter');
    await agent.waitForFunction((cid) => document.querySelector(`[data-testid="conversation-item"][data-conversation-id="${cid}"]`)?.getAttribute('data-waiting') === 'false', conversation, { timeout: WAIT });
    assert.equal(await agent.getByTestId('conversation-waiting').count(), 0);
  } finally {
    await shopper.close();
    await agentCtx.close();
  }
});

test('widget with offlineEmail: false never asks', { timeout: 120_000 }, async () => {
  const shopper = await browser.newContext();
  try {
    await serveShop(shopper, gw, { offlineEmail: false });
    const visitor = await shopper.newPage();
    await openWidget(gw, visitor);
    await visitor.waitForTimeout(500);
    assert.equal(await visitor.getByTestId('chat-offline').isVisible(), false);
    assert.equal(await visitor.getByTestId('chat-status').textContent(), 'Offline');
  } finally {
    await shopper.close();
  }
});

// Records desktop notifications and lets the test hide and show the tab.
function stubAlerts() {
  window.__notifications = [];
  window.Notification = class {
    constructor(title, options) { window.__notifications.push({ title, body: options && options.body }); }
    close() {}
    static requestPermission() { return Promise.resolve('granted'); }
  };
  window.Notification.permission = 'granted';
  window.__hidden = false;
  Object.defineProperty(Document.prototype, 'visibilityState', {
    configurable: true, get() { return window.__hidden ? 'hidden' : 'visible'; },
  });
}

async function setHidden(page, hidden) {
  await page.evaluate((h) => {
    window.__hidden = h;
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

test('console alerts while hidden: the title counts, one notification per conversation, none when muted', { timeout: 180_000 }, async () => {
  const shopper = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await agentCtx.addInitScript(stubAlerts);
    const token = await mintToken(gw, 'bo', 'Bo');
    const agent = await agentCtx.newPage();
    await openConsole(gw, agent, token, 'Bo');
    assert.equal(await agent.getByTestId('notify-enable').isVisible(), false, 'permission already granted');

    await serveShop(shopper, gw, {});
    const visitor = await shopper.newPage();
    await openWidget(gw, visitor);
    await widgetSend(gw, visitor, 'First question');
    const conversation = (await visitor.evaluate(() => window.ChatWidget.state)).conversationId;
    const item = agent.locator(`[data-testid="conversation-item"][data-conversation-id="${conversation}"]`);
    await item.waitFor({ timeout: WAIT });
    await item.click();
    // Visible, this conversation open: the title counts only the other tests' unread conversations.
    await agent.waitForFunction(() => /^(\(\d+\) )?Chat console$/.test(document.title), null, { timeout: WAIT });
    const base = await agent.title();
    assert.equal(await agent.evaluate(() => window.__notifications.length), 0, 'nothing while visible');

    // Hidden: each visitor message counts in the title; one notification for the conversation.
    await setHidden(agent, true);
    await widgetSend(gw, visitor, 'Are you there?');
    await agent.waitForFunction(() => document.title === '(1) Chat console', null, { timeout: WAIT });
    await widgetSend(gw, visitor, 'Hello?');
    await agent.waitForFunction(() => document.title === '(2) Chat console', null, { timeout: WAIT });
    const notes = await agent.evaluate(() => window.__notifications);
    assert.equal(notes.length, 1, JSON.stringify(notes));
    assert.match(notes[0].title, /^New message from Visitor /);
    assert.equal(notes[0].body, 'Are you there?');

    // Visible again: the count goes.
    await setHidden(agent, false);
    await agent.waitForFunction((base) => document.title === base, base, { timeout: WAIT });

    // Muted (remembered): the title still counts, nothing is shown.
    await agent.getByTestId('mute-toggle').click();
    assert.equal(await agent.getByTestId('mute-toggle').getAttribute('aria-pressed'), 'true');
    await agent.reload({ timeout: WAIT });
    await waitForText(gw, agent.getByTestId('connection-banner'), /Connected as Bo/, 'console after reload');
    assert.equal(await agent.getByTestId('mute-toggle').getAttribute('aria-pressed'), 'true');
    await setHidden(agent, true);
    await widgetSend(gw, visitor, 'Still here');
    await agent.waitForFunction(() => document.title === '(1) Chat console', null, { timeout: WAIT });
    assert.equal(await agent.evaluate(() => window.__notifications.length), 0, 'muted');
  } finally {
    await shopper.close();
    await agentCtx.close();
  }
});
