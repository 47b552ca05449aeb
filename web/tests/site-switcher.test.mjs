// End-to-end: the console's site switcher (docs/sites.md). Visitors of two sites write; an agent
// of both sites switches between "All sites" and one site, an agent of one site sees no switcher
// and never the other site's conversation, listed or live. Real chat-gateway binary, real
// Chromium.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, waitForText, openWidget,
  widgetSend, openConsole,
} from './harness.mjs';

useGatewayAndBrowser();

const items = (page) => page.getByTestId('conversation-item');

// Waits until the list holds exactly `n` conversations.
async function waitForCount(page, n, what) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid="conversation-item"]').length === n, n, { timeout: WAIT });
  } catch (e) {
    throw new Error(`${what}: expected ${n} conversations, saw ${await items(page).count()}\n${e.message}`);
  }
}

test('an agent of two sites switches between all sites and one; an agent of one site sees only it', { timeout: 240_000 }, async () => {
  const shopper1 = await browser.newContext();
  const shopper2 = await browser.newContext();
  const agentCtx = await browser.newContext();
  const soloCtx = await browser.newContext();
  try {
    await serveShop(shopper1, gw, { site: 'shop1' });
    await serveShop(shopper2, gw, { site: 'shop2' });
    const v1 = await shopper1.newPage();
    await openWidget(gw, v1);
    await widgetSend(gw, v1, 'Question on shop1');
    const v2 = await shopper2.newPage();
    await openWidget(gw, v2);
    await widgetSend(gw, v2, 'Question on shop2');
    const c1 = (await v1.evaluate(() => window.ChatWidget.state)).conversationId;
    const c2 = (await v2.evaluate(() => window.ChatWidget.state)).conversationId;

    // An agent of both sites: the switcher, "All sites" first, each conversation with its site.
    const both = await mintToken(gw, 'ann', 'Ann', 'shop1,shop2');
    const agent = await agentCtx.newPage();
    await openConsole(gw, agent, both, 'Ann');
    const switcher = agent.getByTestId('site-switcher');
    await switcher.waitFor({ state: 'visible', timeout: WAIT });
    const options = await switcher.locator('option').evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
    assert.deepEqual(options, [['', 'All sites'], ['shop1', 'shop1'], ['shop2', 'shop2']]);
    assert.equal(await switcher.inputValue(), '');
    await waitForCount(agent, 2, 'all sites');
    const siteOf = async (cid) => agent.locator(`[data-testid="conversation-item"][data-conversation-id="${cid}"] [data-testid="conversation-site"]`).textContent();
    assert.equal(await siteOf(c1), 'shop1');
    assert.equal(await siteOf(c2), 'shop2');

    // One site: only its conversation, no site labels (one site needs none).
    await switcher.selectOption('shop1');
    await waitForCount(agent, 1, 'shop1 only');
    assert.equal(await items(agent).first().getAttribute('data-conversation-id'), c1);
    assert.equal(await agent.getByTestId('conversation-site').count(), 0);

    // Remembered across reloads; a live message of the other site does not enter the list.
    await agent.reload({ timeout: WAIT });
    await waitForText(gw, agent.getByTestId('connection-banner'), /Connected as Ann/, 'console after reload');
    await waitForCount(agent, 1, 'still shop1 after a reload');
    assert.equal(await switcher.inputValue(), 'shop1');
    await widgetSend(gw, v2, 'More from shop2');
    await widgetSend(gw, v1, 'More from shop1');
    await waitForText(gw, agent.locator('.preview'), 'More from shop1', 'the live shop1 message');
    await agent.waitForTimeout(1000); // past the console's relist delay
    await waitForCount(agent, 1, 'shop2 stays out while shop1 is chosen');

    // Back to every site.
    await switcher.selectOption('');
    await waitForCount(agent, 2, 'all sites again');
    assert.equal(await agent.getByTestId('conversation-site').count(), 2);

    // An agent of one site: no switcher, never the other site's conversation.
    const one = await mintToken(gw, 'sol', 'Sol', 'shop1');
    const solo = await soloCtx.newPage();
    await openConsole(gw, solo, one, 'Sol');
    await waitForCount(solo, 1, 'one site\'s conversations');
    assert.equal(await items(solo).first().getAttribute('data-conversation-id'), c1);
    assert.equal(await solo.getByTestId('site-switcher').isVisible(), false, 'no switcher for one site');
    assert.equal(await solo.getByTestId('conversation-site').count(), 0);
    await widgetSend(gw, v2, 'Shop2 again');
    await widgetSend(gw, v1, 'Shop1 again');
    await waitForText(gw, solo.locator('.preview'), 'Shop1 again', 'the live shop1 message');
    await solo.waitForTimeout(1000);
    await waitForCount(solo, 1, 'shop2 never reaches the shop1 agent');
    assert.equal(await solo.locator(`[data-conversation-id="${c2}"]`).count(), 0);
  } finally {
    await shopper1.close();
    await shopper2.close();
    await agentCtx.close();
    await soloCtx.close();
  }
});
