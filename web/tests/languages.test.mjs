// End-to-end: the widget and the console in Simplified Chinese (issue 15), chosen by
// ChatWidgetConfig.locale or by the browser's language, and the console's language selector.
// Real chat-gateway binary, real Chromium.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gw, browser, useGatewayAndBrowser, WAIT, mintToken, serveShop, waitForText } from './harness.mjs';

useGatewayAndBrowser();

// Opens the shop's widget and waits until it is connected, in whatever language.
async function openWidgetIn(page, connected) {
  await page.goto(`${gw.base}/shop/`, { timeout: WAIT });
  await page.getByTestId('chat-bubble').click({ timeout: WAIT });
  await waitForText(gw, page.getByTestId('chat-connection'), connected, 'widget connection');
}

async function widgetTexts(page) {
  return {
    locale: await page.evaluate(() => window.ChatWidget.state.locale),
    status: await page.getByTestId('chat-status').textContent(),
    placeholder: await page.getByTestId('chat-input').getAttribute('placeholder'),
    send: await page.getByTestId('chat-send').textContent(),
    bubble: await page.getByTestId('chat-bubble').getAttribute('aria-label'),
  };
}

test('the widget speaks Chinese when ChatWidgetConfig.locale says so, whatever the browser', { timeout: 120_000 }, async () => {
  const ctx = await browser.newContext({ locale: 'en-US' });
  try {
    await serveShop(ctx, gw, { locale: 'zh-CN' });
    const page = await ctx.newPage();
    assert.equal(await page.evaluate(() => navigator.language), 'en-US');
    await openWidgetIn(page, /^已连接$/);
    assert.deepEqual(await widgetTexts(page), {
      locale: 'zh-CN', status: '离线', placeholder: '输入消息…', send: '发送', bubble: '关闭聊天',
    });
    await page.getByTestId('chat-input').fill('你好');
    await page.getByTestId('chat-input').press('Enter');
    const mine = page.locator('[data-testid="chat-message"][data-seq="1"]');
    await mine.waitFor({ timeout: WAIT });
    assert.equal(await mine.locator('.who').textContent(), '我');
    // The time is formatted for the language (24-hour digits, as zh-CN writes it).
    assert.match(await mine.locator('.meta').textContent(), /^\d{2}:\d{2}$/);
  } finally {
    await ctx.close();
  }
});

test('the widget follows the browser\'s language, and English stays the default', { timeout: 120_000 }, async () => {
  const zh = await browser.newContext({ locale: 'zh-CN' });
  const fr = await browser.newContext({ locale: 'fr-FR' });
  try {
    await serveShop(zh, gw, {});
    const page = await zh.newPage();
    await openWidgetIn(page, /^已连接$/);
    const texts = await widgetTexts(page);
    assert.equal(texts.locale, 'zh-CN');
    assert.equal(texts.placeholder, '输入消息…');
    assert.equal(await page.locator('.empty').first().textContent(), '给我们留言，我们会在这里回复您。');

    await serveShop(fr, gw, {});
    const other = await fr.newPage();
    await openWidgetIn(other, /^Connected$/);
    assert.deepEqual(await widgetTexts(other), {
      locale: 'en', status: 'Offline', placeholder: 'Type a message…', send: 'Send', bubble: 'Close chat',
    });
  } finally {
    await zh.close();
    await fr.close();
  }
});

test('the console speaks the browser\'s language, and its selector switches it', { timeout: 120_000 }, async () => {
  const ctx = await browser.newContext({ locale: 'zh-CN' });
  try {
    const token = await mintToken(gw, 'li', 'Li Lei');
    const page = await ctx.newPage();
    await page.goto(`${gw.base}/chat/admin/?token=${encodeURIComponent(token)}`, { timeout: WAIT });
    await waitForText(gw, page.getByTestId('connection-banner'), /^已连接：Li Lei$/, 'console banner in Chinese');
    // (Conversations of the other tests are unread here: the title counts them.)
    assert.match(await page.title(), /^(\(\d+\) )?客服控制台$/);
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');
    assert.equal(await page.locator('#list-title').textContent(), '会话');
    const filter = await page.getByTestId('conversation-filter').locator('option').allTextContents();
    assert.deepEqual(filter, ['全部', '进行中', '已结束']);
    assert.equal(await page.getByTestId('reply-input').getAttribute('placeholder'), '输入回复（Enter 发送，Shift+Enter 换行）');
    assert.equal(await page.getByTestId('signout-button').textContent(), '退出登录');
    const select = page.getByTestId('language-select');
    assert.equal(await select.inputValue(), 'zh-CN');
    assert.deepEqual(await select.locator('option').allTextContents(), ['English', '简体中文']);

    // The choice beats the browser, and is remembered.
    await Promise.all([page.waitForEvent('load', { timeout: WAIT }), select.selectOption('en')]);
    await waitForText(gw, page.getByTestId('connection-banner'), /^Connected as Li Lei$/, 'console banner in English');
    assert.match(await page.title(), /^(\(\d+\) )?Chat console$/);
    assert.equal(await page.locator('#list-title').textContent(), 'Conversations');
    await page.reload({ timeout: WAIT });
    await waitForText(gw, page.getByTestId('connection-banner'), /^Connected as Li Lei$/, 'English after a reload');
  } finally {
    await ctx.close();
  }
});
