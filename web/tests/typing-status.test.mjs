// End-to-end: typing indicators and agent status in the widget and the console
// (docs/protocol.md, "Typing indicators", "Agent status"). A visitor types: the console shows
// "typing…" on the conversation and under its messages, cleared when the visitor sends; the agent
// types: the widget shows it, cleared by the agent's reply; the agent sets Away: the widget says
// Offline, and Online again when the agent is back. Real chat-gateway binary, real Chromium.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, waitForText, openWidget,
  widgetSend, openConsole,
} from './harness.mjs';

useGatewayAndBrowser();

async function waitHidden(locator, what) {
  try {
    await locator.waitFor({ state: 'hidden', timeout: WAIT });
  } catch (e) {
    throw new Error(`${what}: still shown (${JSON.stringify(await locator.textContent().catch(() => ''))})\n${e.message}\n${gw.log.slice(-3000)}`);
  }
}

test('typing shows both ways and clears; an away agent shows the widget offline', { timeout: 240_000 }, async () => {
  const shopper = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(shopper, gw, {});
    const visitor = await shopper.newPage();
    await openWidget(gw, visitor);
    await widgetSend(gw, visitor, 'Hello there');
    const cid = (await visitor.evaluate(() => window.ChatWidget.state)).conversationId;

    const token = await mintToken(gw, 'alice', 'Alice');
    const agent = await agentCtx.newPage();
    await openConsole(gw, agent, token, 'Alice');
    await waitForText(gw, visitor.getByTestId('chat-status'), /Online/, 'widget sees the agent');
    const item = agent.locator(`[data-testid="conversation-item"][data-conversation-id="${cid}"]`);
    await item.click({ timeout: WAIT });
    await waitForText(gw, agent.getByTestId('message-body'), 'Hello there', 'console shows the conversation');

    // The visitor types: the list and the open conversation say so.
    await visitor.getByTestId('chat-input').pressSequentially('Where is my', { delay: 20 });
    await item.getByTestId('conversation-typing').waitFor({ state: 'visible', timeout: WAIT });
    await waitForText(gw, agent.getByTestId('typing-indicator'), /^Visitor is typing…$/, 'console typing line');
    // Sending clears it (the widget's `false`, and the message itself).
    await visitor.getByTestId('chat-input').pressSequentially(' order?', { delay: 20 });
    await visitor.getByTestId('chat-input').press('Enter');
    await waitForText(gw, agent.getByTestId('message-body'), 'Where is my order?', 'the message');
    await waitHidden(agent.getByTestId('typing-indicator'), 'console typing line after the send');
    await waitHidden(item.getByTestId('conversation-typing'), 'list mark after the send');

    // The agent types: the widget shows who.
    await agent.getByTestId('reply-input').pressSequentially('Let me check', { delay: 20 });
    await waitForText(gw, visitor.getByTestId('chat-typing'), /^Alice is typing…$/, 'widget typing line');
    await agent.getByTestId('reply-input').press('Enter');
    await waitForText(gw, visitor.locator('[data-testid="chat-message"][data-seq]'), 'Let me check', 'the reply');
    await waitHidden(visitor.getByTestId('chat-typing'), 'widget typing line after the reply');
    assert.deepEqual((await visitor.evaluate(() => window.ChatWidget.state)).agentsTyping, []);

    // Typing that stops without a word clears on its own: the agent types, then leaves the input.
    await agent.getByTestId('reply-input').pressSequentially('One more', { delay: 20 });
    await waitForText(gw, visitor.getByTestId('chat-typing'), /Alice is typing/, 'widget typing line again');
    await agent.getByTestId('conversation-filter').focus();
    await waitHidden(visitor.getByTestId('chat-typing'), 'widget typing line after the agent left the input');

    // Away: the widget says Offline; the console's own list agrees.
    const status = agent.getByTestId('agent-status');
    assert.equal(await status.inputValue(), 'online');
    await status.selectOption('away');
    await waitForText(gw, visitor.getByTestId('chat-status'), /^Offline$/, 'widget after Away');
    assert.equal((await visitor.evaluate(() => window.ChatWidget.state)).agentsOnline, 0);
    await agent.locator('[data-testid="agent-item"][data-agent-id="alice"][data-status="away"]').waitFor({ timeout: WAIT });

    // The status is the agent's: a reload keeps it.
    await agent.reload({ timeout: WAIT });
    await waitForText(gw, agent.getByTestId('connection-banner'), /Connected as Alice/, 'console after reload');
    await agent.waitForFunction(() => document.getElementById('agent-status').value === 'away', null, { timeout: WAIT });
    await visitor.waitForTimeout(500);
    await waitForText(gw, visitor.getByTestId('chat-status'), /^Offline$/, 'widget stays offline across the reload');

    // Back online.
    await agent.getByTestId('agent-status').selectOption('online');
    await waitForText(gw, visitor.getByTestId('chat-status'), /^Online$/, 'widget after Online');
  } finally {
    await shopper.close();
    await agentCtx.close();
  }
});
