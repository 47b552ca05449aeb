// End-to-end: canned replies and search in the agent console (issue 15). A known visitor
// writes; the agent adds a canned reply in the console's "Canned replies" dialog, types `/gre`
// in the reply box, sees it offered, presses Enter and gets it with the visitor's name filled in;
// then searches a word of the visitor's message and opens the conversation from the result.
// Real chat-gateway binary, real Chromium.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, waitForText, openWidget,
  widgetSend, openConsole,
} from './harness.mjs';

useGatewayAndBrowser();

test('a canned reply is offered on /gre and inserted with the visitor\'s name; a search finds the conversation', { timeout: 240_000 }, async () => {
  const shopper = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(shopper, gw, { user: { id: 'u-77', name: 'Bob Buyer', email: 'bob@example.com' } });
    const visitor = await shopper.newPage();
    await openWidget(gw, visitor);
    await widgetSend(gw, visitor, 'Where is my parcel? It is late.');
    const conversationId = (await visitor.evaluate(() => window.ChatWidget.state)).conversationId;
    assert.ok(conversationId);

    // Another conversation, which the search must leave out.
    const other = await (await browser.newContext()).newPage();
    await serveShop(other.context(), gw, {});
    await openWidget(gw, other);
    await widgetSend(gw, other, 'Just browsing');

    const token = await mintToken(gw, 'ann', 'Ann Agent');
    const agent = await agentCtx.newPage();
    await openConsole(gw, agent, token, 'Ann Agent');
    await agent.locator(`[data-testid="conversation-item"][data-conversation-id="${conversationId}"]`).click({ timeout: WAIT });

    // Add a canned reply in the dialog.
    await agent.getByTestId('canned-manage-button').click({ timeout: WAIT });
    await agent.getByTestId('canned-dialog').waitFor({ state: 'visible', timeout: WAIT });
    await agent.getByTestId('canned-shortcut').fill('greet');
    await agent.getByTestId('canned-title').fill('Greeting');
    await agent.getByTestId('canned-body').fill('Hi {{visitor.name|there}}, {{agent.name}} here. {{visitor.phone}}');
    await agent.getByTestId('canned-save').click();
    await agent.locator('[data-testid="canned-item"][data-shortcut="greet"]').waitFor({ timeout: WAIT });
    // It is stored on the conversation's site, over the HTTP API.
    const listed = await fetch(`${gw.base}/chat/api/canned-responses?site=default`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(listed.status, 200);
    const { canned_responses: stored } = await listed.json();
    assert.deepEqual(stored.map((c) => c.shortcut), ['greet']);
    await agent.getByTestId('canned-done').click();

    // `/gre` offers it; Enter inserts it, placeholders filled (an unknown one left as written).
    const reply = agent.getByTestId('reply-input');
    await reply.click();
    await reply.pressSequentially('/gre');
    const option = agent.locator('[data-testid="canned-option"][data-shortcut="greet"]');
    await option.waitFor({ state: 'visible', timeout: WAIT });
    await reply.press('Enter');
    await agent.waitForFunction(() => document.querySelector('[data-testid="reply-input"]').value.startsWith('Hi '), null, { timeout: WAIT });
    assert.equal(await reply.inputValue(), 'Hi Bob Buyer, Ann Agent here. {{visitor.phone}}');
    assert.equal(await agent.getByTestId('canned-menu').isHidden(), true);
    // Nothing was sent by that Enter.
    assert.equal(await agent.locator('[data-testid="message"][data-role="agent"]').count(), 0);
    // A shortcut that matches nothing offers nothing.
    await reply.fill('');
    await reply.pressSequentially('/zzz');
    await agent.waitForTimeout(300);
    assert.equal(await agent.getByTestId('canned-menu').isHidden(), true);
    await reply.fill('');

    // Search: a word of the visitor's message finds its conversation only, with the snippet.
    await agent.getByTestId('search-input').fill('parcel');
    await agent.getByTestId('search-input').press('Enter');
    const result = agent.getByTestId('search-result');
    await waitForText(gw, agent.getByTestId('search-snippet'), /Where is my parcel\?/, 'search snippet');
    assert.equal(await result.count(), 1);
    assert.equal(await result.first().getAttribute('data-conversation-id'), conversationId);
    assert.equal(await agent.getByTestId('conversation-list').isHidden(), true);
    // By the visitor's email too.
    await agent.getByTestId('search-input').fill('bob@example');
    await agent.getByTestId('search-input').press('Enter');
    await waitForText(gw, agent.getByTestId('search-snippet'), /name or email/, 'search by email');
    // Opening a result opens the conversation; emptying the box brings the list back.
    await agent.getByTestId('search-input').fill('late');
    await agent.getByTestId('search-input').press('Enter');
    await waitForText(gw, agent.getByTestId('search-snippet'), /late/, 'search snippet');
    await agent.getByTestId('search-result').first().click();
    await waitForText(gw, agent.getByTestId('message-body'), /Where is my parcel/, 'opened from the search');
    await agent.getByTestId('search-input').fill('');
    await agent.getByTestId('search-input').press('Enter');
    await agent.getByTestId('conversation-list').waitFor({ state: 'visible', timeout: WAIT });
  } finally {
    await shopper.close().catch(() => {});
    await agentCtx.close().catch(() => {});
  }
});

// The console's later scripts (canned replies, search) may load after the session's welcome
// (a slow network, a busy machine): they must still get the session, or the search box and the
// canned replies dialog silently do nothing. Their load is held back here to make that certain.
test('the canned replies and the search work when their scripts load after the welcome', { timeout: 240_000 }, async () => {
  const shopper = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(shopper, gw, {});
    const visitor = await shopper.newPage();
    await openWidget(gw, visitor);
    await widgetSend(gw, visitor, 'My tracking number does not work');
    const conversationId = (await visitor.evaluate(() => window.ChatWidget.state)).conversationId;

    const token = await mintToken(gw, 'cid', 'Cid Agent');
    const agent = await agentCtx.newPage();
    let welcomed = false;
    agent.on('websocket', (ws) => ws.on('framereceived', (f) => {
      if (typeof f.payload === 'string' && f.payload.includes('"welcome"')) welcomed = true;
    }));
    const late = [];
    await agent.route(/\/chat\/admin\/(canned|search)\.js$/, async (route) => {
      // Released only once the welcome has arrived (or after a while, so a console that waits
      // for its scripts before connecting is not held up for ever).
      const until = Date.now() + 2000;
      while (!welcomed && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      late.push(welcomed);
      await route.continue();
    });
    await openConsole(gw, agent, token, 'Cid Agent');
    assert.equal(late.length, 2);

    await agent.getByTestId('search-input').fill('tracking');
    await agent.getByTestId('search-input').press('Enter');
    await waitForText(gw, agent.getByTestId('search-snippet'), /My tracking number/, 'search snippet');
    assert.equal(await agent.getByTestId('search-result').first().getAttribute('data-conversation-id'), conversationId);
    await agent.getByTestId('search-result').first().click();
    await waitForText(gw, agent.getByTestId('message-body'), /My tracking number/, 'opened from the search');

    await agent.getByTestId('canned-manage-button').click({ timeout: WAIT });
    await agent.getByTestId('canned-shortcut').fill('thanks');
    await agent.getByTestId('canned-title').fill('Thanks');
    await agent.getByTestId('canned-body').fill('Thank you!');
    await agent.getByTestId('canned-save').click();
    await agent.locator('[data-testid="canned-item"][data-shortcut="thanks"]').waitFor({ timeout: WAIT });
  } finally {
    await shopper.close().catch(() => {});
    await agentCtx.close().catch(() => {});
  }
});

// A search cut by a reconnect (its socket closed before the answer) is not left unanswered: the
// console rejects it, the box says so, and the search runs again once the console is back.
test('a search whose socket closes before the answer runs again after the reconnect', { timeout: 240_000 }, async () => {
  const shopper = await browser.newContext();
  const agentCtx = await browser.newContext();
  try {
    await serveShop(shopper, gw, {});
    const visitor = await shopper.newPage();
    await openWidget(gw, visitor);
    await widgetSend(gw, visitor, 'The voucher code was refused');

    const token = await mintToken(gw, 'dee', 'Dee Agent');
    const agent = await agentCtx.newPage();
    let searches = 0;
    // The console's socket goes through this proxy, which drops the first search and closes the
    // socket instead of passing it on (a gateway restart or network blip at that moment).
    await agent.routeWebSocket(/\/ws-admin\//, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((frame) => {
        if (typeof frame === 'string' && frame.includes('"search_conversations"') && ++searches === 1) {
          ws.close({ code: 1012, reason: 'restarting' });
          server.close();
          return;
        }
        server.send(frame);
      });
    });
    await openConsole(gw, agent, token, 'Dee Agent');

    await agent.getByTestId('search-input').fill('voucher');
    await agent.getByTestId('search-input').press('Enter');
    await waitForText(gw, agent.getByTestId('search-snippet'), /The voucher code/, 'search snippet after the reconnect');
    assert.equal(searches, 2);
    await waitForText(gw, agent.getByTestId('connection-banner'), /Connected as Dee Agent/, 'console banner');
  } finally {
    await shopper.close().catch(() => {});
    await agentCtx.close().catch(() => {});
  }
});
