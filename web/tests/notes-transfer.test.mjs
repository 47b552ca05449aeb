// End-to-end (issue 15): in the console an agent writes an internal note (the "Note" toggle
// beside the reply box; notes styled apart) that the visitor's widget never shows, live or
// after a reload, while another agent's console does; then transfers the conversation to that
// agent from the console's select of agents, and the system message shows in the widget and in
// both consoles. Real chat-gateway binary, real Chromium.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, waitForText, openWidget,
  widgetSend, openConsole,
} from './harness.mjs';

useGatewayAndBrowser();

const SECRET = 'Internal: refund approved, tell them tomorrow';
const LINE = 'Alice transferred the conversation to Bob';

// Everything the widget shows (its UI is in an open shadow root, which locators pierce).
async function widgetText(page) {
  return (await page.locator('li').allTextContents()).join('\n');
}

async function openItem(page, cid) {
  await page.locator(`[data-testid="conversation-item"][data-conversation-id="${cid}"]`).click({ timeout: WAIT });
}

test('a note stays in the console; a transfer shows in the widget and both consoles', { timeout: 240_000 }, async () => {
  const shopper = await browser.newContext();
  const aliceCtx = await browser.newContext();
  const bobCtx = await browser.newContext();
  try {
    await serveShop(shopper, gw, {});
    const widget = await shopper.newPage();
    await openWidget(gw, widget);
    await widgetSend(gw, widget, 'Where is my refund?');
    const cid = (await widget.evaluate(() => window.ChatWidget.state)).conversationId;

    const bob = await bobCtx.newPage();
    await openConsole(gw, bob, await mintToken(gw, 'bob', 'Bob'), 'Bob');
    await openItem(bob, cid);
    const alice = await aliceCtx.newPage();
    await openConsole(gw, alice, await mintToken(gw, 'alice', 'Alice'), 'Alice');
    await openItem(alice, cid);
    await waitForText(gw, alice.getByTestId('message-body'), /Where is my refund\?/, 'the visitor message in the console');

    // A note: the toggle turns the reply box into a note box; the note is styled apart.
    await alice.getByTestId('note-toggle').check();
    assert.equal(await alice.locator('#reply-form').getAttribute('data-note'), 'true');
    await alice.getByTestId('reply-input').fill(SECRET);
    await alice.getByTestId('reply-input').press('Enter');
    const aliceNote = alice.locator('[data-testid="message"][data-kind="note"][data-seq]');
    await waitForText(gw, aliceNote, SECRET, 'the note committed in the author\'s console');
    assert.equal(await aliceNote.first().getAttribute('data-seq'), '2');
    const background = await aliceNote.first().locator('.body').evaluate((el) => getComputedStyle(el).backgroundColor);
    const replyBackground = 'rgb(37, 99, 235)'; // --accent: what an agent's reply looks like
    assert.notEqual(background, replyBackground, 'a note does not look like a reply');
    await waitForText(gw, bob.locator('[data-testid="message"][data-kind="note"]'), SECRET, 'the note in the other agent\'s console');

    // Then a reply: the widget shows it, and never the note.
    await alice.getByTestId('note-toggle').uncheck();
    await alice.getByTestId('reply-input').fill('Your refund is on its way');
    await alice.getByTestId('reply-input').press('Enter');
    await waitForText(gw, widget.locator('[data-testid="chat-message"][data-seq]'), /Your refund is on its way/, 'the reply in the widget');
    assert.match(await widgetText(widget), /Where is my refund/, 'the widget text is readable here');
    assert.ok(!(await widgetText(widget)).includes(SECRET), 'the widget never shows the note');
    assert.equal(await widget.locator('[data-seq="2"]').count(), 0);
    // A fresh page loads the conversation again (history): still no note.
    await widget.reload({ timeout: WAIT });
    await widget.waitForFunction(() => window.ChatWidget && window.ChatWidget.version, null, { timeout: WAIT });
    await widget.evaluate(() => window.ChatWidget.open());
    await waitForText(gw, widget.locator('[data-testid="chat-message"][data-seq]'), /Your refund is on its way/, 'the reply after a reload');
    assert.ok(!(await widgetText(widget)).includes(SECRET), 'no note after a reload either');

    // Alice takes it (nothing is written in the conversation for that), then transfers it from
    // the console's select of agents.
    await alice.getByTestId('assign-button').click({ timeout: WAIT });
    await waitForText(gw, alice.getByTestId('conversation-meta'), /Assigned to you/, 'Alice has it');
    const transfer = alice.getByTestId('transfer-select');
    await transfer.locator('option[value="agent:bob"]').waitFor({ state: 'attached', timeout: WAIT });
    const labels = await transfer.locator('option').allTextContents();
    assert.ok(!labels.some((l) => l.startsWith('Alice')), `one does not transfer to oneself: ${labels}`);
    await transfer.selectOption('agent:bob');
    await waitForText(gw, widget.getByTestId('chat-system'), LINE, 'the transfer in the widget');
    await waitForText(gw, alice.locator('[data-testid="message"][data-kind="system"]'), LINE, 'the transfer in Alice\'s console');
    await waitForText(gw, bob.locator('[data-testid="message"][data-kind="system"]'), LINE, 'the transfer in Bob\'s console');
    await waitForText(gw, bob.getByTestId('conversation-meta'), /Assigned to you/, 'Bob now has it');
    assert.ok(!(await widgetText(widget)).includes(SECRET));
  } finally {
    await shopper.close();
    await aliceCtx.close();
    await bobCtx.close();
  }
});
