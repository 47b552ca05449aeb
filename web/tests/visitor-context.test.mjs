// End-to-end: a single-page shop embeds the real widget; the visitor writes, then navigates with
// history.pushState (no page load); the agent console shows the new URL and title beside the
// conversation, with the site's attributes, language and time zone. Real chat-gateway binary,
// real Chromium.
//
//   CHAT_GATEWAY_BIN  gateway binary (default <repo>/target/debug/chat-gateway)
//   CHROMIUM_PATH     browser (default /usr/bin/chromium)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gw, browser, useGatewayAndBrowser, WAIT, mintToken as mintWith } from './harness.mjs';

useGatewayAndBrowser();

function mintToken(agent, name) {
  return mintWith(gw, agent, name);
}

// A single-page shop: links change the URL with pushState and the title, no page load.
const SHOP = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop home</title><link rel="icon" href="data:,"></head>
<body>
  <nav><a id="to-cart" href="/shop/cart">Cart</a></nav>
  <main id="view">Welcome</main>
  <script>
    document.getElementById('to-cart').addEventListener('click', function (e) {
      e.preventDefault();
      history.pushState({}, '', '/shop/cart?step=2');
      document.title = 'Your cart (2 items)';
      document.getElementById('view').textContent = 'Cart';
    });
    window.ChatWidgetConfig = {
      serverBaseUrl: location.origin,
      attributes: { plan: 'pro', orders: 3, 'bad key!': 'left out' },
    };
  </script>
  <script src="/chat/widget/widget.js" async></script>
</body></html>`;

async function waitForText(locator, pattern, what) {
  try {
    await locator.filter({ hasText: pattern }).first().waitFor({ state: 'visible', timeout: WAIT });
  } catch (e) {
    const now = await locator.first().textContent({ timeout: 1000 }).catch(() => '<absent>');
    throw new Error(`${what}: expected ${pattern}, last saw ${JSON.stringify(now)}\n${e.message}\n${gw.log.slice(-4000)}`);
  }
}

test('console shows the page a single-page-app visitor navigated to', { timeout: 180_000 }, async () => {
  const token = await mintToken('alice', 'Alice');
  const visitorCtx = await browser.newContext({ locale: 'de-DE', timezoneId: 'Europe/Berlin' });
  const agentCtx = await browser.newContext();
  try {
    const visitor = await visitorCtx.newPage();
    // The shop is the gateway's main site; it has none here, so the browser is handed the page.
    await visitor.route(`${gw.base}/shop/**`, (route) => route.fulfill({ contentType: 'text/html', body: SHOP }));
    await visitor.goto(`${gw.base}/shop/`, { timeout: WAIT });
    await visitor.getByTestId('chat-bubble').click({ timeout: WAIT });
    await waitForText(visitor.getByTestId('chat-connection'), /^Connected$/, 'widget connection');
    await visitor.getByTestId('chat-input').fill('Is this in stock?');
    await visitor.getByTestId('chat-input').press('Enter');
    await visitor.locator('[data-testid="chat-message"][data-seq="1"]').waitFor({ timeout: WAIT });

    const agent = await agentCtx.newPage();
    await agent.goto(`${gw.base}/chat/admin/?token=${encodeURIComponent(token)}`, { timeout: WAIT });
    await waitForText(agent.getByTestId('connection-banner'), /Connected as Alice/, 'console banner');
    await agent.getByTestId('conversation-item').first().click({ timeout: WAIT });
    const panel = agent.getByTestId('visitor-panel');
    await waitForText(panel.getByTestId('visitor-url'), `${gw.base}/shop/`, 'panel shows the first page');
    await waitForText(panel.getByTestId('visitor-title'), /^Shop home$/, 'first title');
    await waitForText(panel.getByTestId('visitor-language'), /^de-DE$/, 'language');
    await waitForText(panel.getByTestId('visitor-time-zone'), /^Europe\/Berlin$/, 'time zone');
    await waitForText(panel.getByTestId('visitor-address'), /^127\.0\.0\.1$/, 'client address');
    await waitForText(panel.getByTestId('visitor-attribute'), /^pro$/, 'attribute plan');
    const attributes = await panel.getByTestId('visitor-attribute').allTextContents();
    assert.deepEqual(attributes.sort(), ['3', 'pro'], 'valid attributes only');

    // A navigation inside the single-page app: no page load, no message.
    await visitor.click('#to-cart');
    assert.equal(await visitor.evaluate(() => location.pathname), '/shop/cart');
    await waitForText(panel.getByTestId('visitor-url'), `${gw.base}/shop/cart?step=2`, 'panel shows the new URL');
    await waitForText(panel.getByTestId('visitor-title'), /^Your cart \(2 items\)$/, 'panel shows the new title');
    // The URL is a link that opens outside the console, never a script.
    const href = await panel.getByTestId('visitor-url').locator('a').getAttribute('href');
    assert.equal(href, `${gw.base}/shop/cart?step=2`);
  } finally {
    await visitorCtx.close();
    await agentCtx.close();
  }
});
