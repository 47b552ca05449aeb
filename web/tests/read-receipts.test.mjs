// End-to-end read receipts (issue 15): the console's unread badge is the server's count (a fresh
// browser profile shows it, nothing in localStorage) and clears when the agent opens the
// conversation; the widget then shows "Seen" under the visitor's last message; the console shows
// "Seen" on the agent's reply once the visitor has read it. Real chat-gateway binary, real
// Chromium.
//
//   CHAT_GATEWAY_BIN  gateway binary (default <repo>/target/debug/chat-gateway)
//   CHROMIUM_PATH     browser (default /usr/bin/chromium)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, openWidget, widgetSend,
  openConsole, waitForText,
} from './harness.mjs';

useGatewayAndBrowser();

async function waitForAttribute(locator, name, value, what) {
  try {
    await locator.and(locator.page().locator(`[${name}="${value}"]`)).waitFor({ timeout: WAIT });
  } catch (e) {
    const now = await locator.getAttribute(name, { timeout: 1000 }).catch(() => '<absent>');
    throw new Error(`${what}: expected ${name}=${value}, saw ${now}\n${e.message}\n${gw.log.slice(-4000)}`);
  }
}

test('"Seen" in the widget and the console, unread badge from the server', { timeout: 180_000 }, async () => {
  const token = await mintToken(gw, 'alice', 'Alice');
  const visitorCtx = await browser.newContext();
  const agentCtx = await browser.newContext();
  const laterCtx = await browser.newContext();
  const bobCtx = await browser.newContext();
  try {
    const visitor = await visitorCtx.newPage();
    await serveShop(visitorCtx, gw, {});
    await openWidget(gw, visitor);
    await widgetSend(gw, visitor, 'First question');
    await widgetSend(gw, visitor, 'Second question');
    assert.equal(await visitor.getByTestId('chat-seen').count(), 0, 'nobody has read it yet');

    // A fresh profile (nothing stored in the browser): the badge is the server's count.
    const agent = await agentCtx.newPage();
    await openConsole(gw, agent, token, 'Alice');
    const item = agent.getByTestId('conversation-item').first();
    await waitForAttribute(item, 'data-unread-count', '2', 'server unread count');
    await waitForText(gw, item.getByTestId('conversation-unread'), /^2$/, 'badge shows 2');
    assert.equal(await agent.evaluate(() => localStorage.length), 0, 'nothing kept in localStorage');

    // The agent opens the conversation: the badge clears, the widget says "Seen".
    await item.click({ timeout: WAIT });
    await waitForAttribute(item, 'data-unread-count', '0', 'badge cleared');
    assert.equal(await item.getByTestId('conversation-unread').count(), 0);
    const seen = visitor.getByTestId('chat-seen');
    await seen.waitFor({ timeout: WAIT });
    assert.equal(await seen.getAttribute('data-seq'), '2', 'under the last visitor message');

    // The agent replies; the visitor, panel open, reads it: "Seen" on the reply in the console.
    await agent.getByTestId('reply-input').fill('Happy to help');
    await agent.getByTestId('reply-input').press('Enter');
    await waitForText(gw, visitor.locator('[data-testid="chat-message"][data-seq="3"]'), /Happy to help/, 'widget shows the reply');
    const reply = agent.locator('[data-testid="message"][data-seq="3"]');
    await reply.getByTestId('message-seen').waitFor({ timeout: WAIT });

    // Another console of the same agent, later: the server remembers what was read.
    const later = await laterCtx.newPage();
    await openConsole(gw, later, token, 'Alice');
    const again = later.getByTestId('conversation-item').first();
    await waitForAttribute(again, 'data-conversation-id', await item.getAttribute('data-conversation-id'), 'same conversation');
    await waitForAttribute(again, 'data-unread-count', '0', 'read on the server');

    // A new visitor message while the first console has it open is read at once there (so this
    // agent's other console does not count it); another agent, who read nothing, counts all 3.
    await widgetSend(gw, visitor, 'Third question');
    await agent.locator('[data-testid="message"][data-seq="4"]').waitFor({ timeout: WAIT });
    await visitor.locator('[data-testid="chat-seen"][data-seq="4"]').waitFor({ timeout: WAIT });
    await waitForAttribute(again, 'data-unread-count', '0', 'read by the same agent elsewhere');
    const bob = await bobCtx.newPage();
    await openConsole(gw, bob, await mintToken(gw, 'bob', 'Bob'), 'Bob');
    const bobs = bob.getByTestId('conversation-item').first();
    await waitForAttribute(bobs, 'data-unread-count', '3', 'another agent');
    await waitForText(gw, bobs.getByTestId('conversation-unread'), /^3$/, 'badge shows 3');
  } finally {
    await visitorCtx.close();
    await agentCtx.close();
    await laterCtx.close();
    await bobCtx.close();
  }
});
