// End-to-end (issue 15, item 8): images and files in the widget and the console. A visitor
// attaches a PNG (on the demo page, under its Content-Security-Policy) and the console shows it
// inline; the agent sends an image, a PDF and an image in an internal note from the console, and
// the widget shows the image inline, the PDF as a download link, and never the note's image.
// Over long-polling, on a shop of another origin (CORS): a text file as a download link in the
// console, a type the gateway refuses (its message shown, nothing sent, the caption kept) and a
// file over the limit (refused before any upload). Images must decode (naturalWidth) from object URLs: their bytes are fetched with
// the token, never put in a URL. Real chat-gateway binary, real Chromium.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { deflateSync } from 'node:zlib';
import { createServer } from 'node:http';
import {
  WAIT, startGateway, stopGateway, launchBrowser, mintToken, waitForText, openConsole,
} from './harness.mjs';

// Small enough to test the widget's own size check with a file of a few dozen KiB.
const MAX_UPLOAD_BYTES = 64 * 1024;

let gw;
let browser;

before(async () => {
  gw = await startGateway({ CHAT_MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES) });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await stopGateway(gw);
});

// ---------------------------------------------------------------------------------------------
// Files

function crc32(bytes) {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

// A real PNG of `width` x `height` pixels of one colour, so that a decoded image has that size.
function png(width, height, rgb) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // truecolour
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => rgb).flat())]);
  const pixels = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header), pngChunk('IDAT', deflateSync(pixels)), pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const VISITOR_PNG = { name: 'leak.png', mimeType: 'image/png', buffer: png(4, 3, [200, 30, 30]) };
const AGENT_PNG = { name: 'diagram.png', mimeType: 'image/png', buffer: png(7, 5, [30, 30, 200]) };
const NOTE_PNG = { name: 'internal.png', mimeType: 'image/png', buffer: png(6, 6, [30, 160, 30]) };
const PDF = { name: 'invoice.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n') };
const TEXT = { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('Serial number: 12345\nBought in 2024\n') };
const EXE = { name: 'setup.exe', mimeType: 'application/x-msdownload', buffer: Buffer.from('MZ\x90\x00\x03\x00\x00\x00') };

// ---------------------------------------------------------------------------------------------
// Helpers

// Waits until the image `locator` points at has decoded from an object URL; returns its size.
async function decoded(gw, page, locator, what) {
  try {
    await locator.waitFor({ state: 'attached', timeout: WAIT });
    const handle = await locator.elementHandle({ timeout: WAIT });
    await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, handle, { timeout: WAIT });
    return await handle.evaluate((img) => ({ width: img.naturalWidth, height: img.naturalHeight, src: img.getAttribute('src') }));
  } catch (e) {
    throw new Error(`${what}: no decoded image\n${e.message}\n${gw.log.slice(-4000)}`);
  }
}

// Clicks a download link and returns the file the browser saved: its name and bytes.
async function download(page, link) {
  const [got] = await Promise.all([page.waitForEvent('download', { timeout: WAIT }), link.click({ timeout: WAIT })]);
  return { name: got.suggestedFilename(), bytes: await readFile(await got.path()) };
}

async function openItem(page, cid) {
  await page.locator(`[data-testid="conversation-item"][data-conversation-id="${cid}"]`).click({ timeout: WAIT });
}

// The widget on the demo page, which carries the gateway's Content-Security-Policy.
async function openDemoWidget(gw, page) {
  await page.goto(`${gw.base}/chat/demo/`, { timeout: WAIT });
  await page.getByTestId('chat-bubble').click({ timeout: WAIT });
  await waitForText(gw, page.getByTestId('chat-connection'), /^Connected$/, 'widget connection on the demo page');
}

// A customer page on another origin than the gateway's (its own port on 127.0.0.1, allowed by
// the gateway's local-development origins), served by a real server (Chromium lets only a
// loopback page reach loopback addresses), embedding the widget from the gateway: uploads and
// downloads are CORS requests there, as on a real customer site.
async function serveCrossOriginShop(config) {
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>
<link rel="icon" href="data:,"></head><body><main>Shop</main>
<script>window.ChatWidgetConfig = ${JSON.stringify(config).replace(/</g, '\\u003c')};</script>
<script src="${gw.base}/chat/widget/widget.js" async></script></body></html>`;
  const server = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/shop/` };
}

const committed = (page) => page.locator('[data-testid="chat-message"][data-seq]');

// ---------------------------------------------------------------------------------------------

test('images go both ways inline, a PDF is a download link, a note\'s image stays in the console', { timeout: 240_000 }, async () => {
  const shopper = await browser.newContext();
  const aliceCtx = await browser.newContext();
  try {
    const widget = await shopper.newPage();
    const blocked = [];
    widget.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) blocked.push(m.text()); });
    await openDemoWidget(gw, widget);
    await widget.getByTestId('chat-attach').waitFor({ state: 'visible', timeout: WAIT });
    const accept = await widget.getByTestId('chat-attach-input').getAttribute('accept');
    assert.match(accept, /image\/png/, 'the picker offers the gateway\'s types');

    // The visitor attaches a PNG with a caption: the first message, which opens the conversation.
    await widget.getByTestId('chat-input').fill('Here is the leak');
    await widget.getByTestId('chat-attach-input').setInputFiles(VISITOR_PNG);
    await waitForText(gw, committed(widget), /Here is the leak/, 'the visitor\'s image committed in the widget');
    const own = await decoded(gw, widget, committed(widget).getByTestId('chat-attachment-image').first(), 'the visitor\'s own image');
    assert.deepEqual([own.width, own.height], [4, 3]);
    assert.equal(await widget.getByTestId('chat-input').inputValue(), '', 'the caption went with the file');
    assert.equal(await widget.getByTestId('chat-attach-status').isVisible(), false, 'no upload status left');
    const cid = (await widget.evaluate(() => window.ChatWidget.state)).conversationId;
    assert.ok(cid, 'the widget knows its conversation');

    // The console shows it inline, decoded from the bytes fetched with the agent's token.
    const alice = await aliceCtx.newPage();
    await openConsole(gw, alice, await mintToken(gw, 'alice', 'Alice'), 'Alice');
    await openItem(alice, cid);
    const paneMessages = alice.locator('[data-testid="message"][data-seq]');
    await waitForText(gw, paneMessages, /Here is the leak/, 'the visitor\'s image in the console');
    const seen = await decoded(gw, alice, paneMessages.first().getByTestId('attachment-image'), 'the visitor\'s image in the console');
    assert.deepEqual([seen.width, seen.height], [4, 3]);
    assert.match(seen.src, /^blob:/, 'an object URL, never the token in a URL');
    assert.equal(await paneMessages.first().getByTestId('attachment-image').getAttribute('alt'), 'leak.png');

    // The agent sends an image with a caption: the widget shows it inline.
    await alice.getByTestId('attach-button').waitFor({ state: 'visible', timeout: WAIT });
    await alice.getByTestId('reply-input').fill('Like this diagram');
    await alice.getByTestId('attach-input').setInputFiles(AGENT_PNG);
    await waitForText(gw, paneMessages, /Like this diagram/, 'the agent\'s image committed in the console');
    await waitForText(gw, committed(widget), /Like this diagram/, 'the agent\'s image in the widget');
    const agentImage = committed(widget).filter({ hasText: 'Like this diagram' }).getByTestId('chat-attachment-image');
    const got = await decoded(gw, widget, agentImage, 'the agent\'s image in the widget');
    assert.deepEqual([got.width, got.height], [7, 5]);
    assert.match(got.src, /^blob:/);
    assert.equal(await committed(widget).filter({ hasText: 'Like this diagram' }).getAttribute('data-role'), 'agent');

    // A PDF without a caption: a link with its name that downloads it, in the widget and the console.
    await alice.getByTestId('attach-input').setInputFiles(PDF);
    const widgetLink = committed(widget).getByTestId('chat-attachment-file');
    await waitForText(gw, widgetLink, /invoice\.pdf/, 'the PDF as a link in the widget');
    assert.equal(await committed(widget).getByTestId('chat-attachment-image').count(), 2, 'a PDF is not shown as an image');
    const saved = await download(widget, widgetLink.first());
    assert.equal(saved.name, 'invoice.pdf');
    assert.deepEqual(saved.bytes, PDF.buffer, 'the widget downloads the PDF\'s bytes');
    const consoleLink = paneMessages.getByTestId('attachment-file');
    await waitForText(gw, consoleLink, /invoice\.pdf/, 'the PDF as a link in the console');
    assert.deepEqual((await download(alice, consoleLink.first())).bytes, PDF.buffer, 'the console downloads it too');

    // An image in an internal note: inline in the console, never in the widget.
    await alice.getByTestId('note-toggle').check();
    await alice.getByTestId('reply-input').fill('Photo for the plumber only');
    await alice.getByTestId('attach-input').setInputFiles(NOTE_PNG);
    const note = alice.locator('[data-testid="message"][data-kind="note"][data-seq]').filter({ hasText: 'Photo for the plumber only' });
    await note.waitFor({ state: 'visible', timeout: WAIT });
    const noteImage = await decoded(gw, alice, note.getByTestId('attachment-image'), 'the note\'s image in the console');
    assert.deepEqual([noteImage.width, noteImage.height], [6, 6]);
    const noteAttachment = await note.getByTestId('attachment').getAttribute('data-attachment-id');
    await alice.getByTestId('note-toggle').uncheck();
    await alice.getByTestId('reply-input').fill('Someone is on the way');
    await alice.getByTestId('reply-input').press('Enter');
    await waitForText(gw, committed(widget), /Someone is on the way/, 'the reply after the note in the widget');
    assert.equal(await widget.locator(`[data-attachment-id="${noteAttachment}"]`).count(), 0, 'the widget never shows the note\'s image');
    assert.ok(!(await committed(widget).allTextContents()).join('\n').includes('Photo for the plumber only'));

    // After a reload the widget loads them again through `history`.
    await widget.reload({ timeout: WAIT });
    await widget.waitForFunction(() => window.ChatWidget && window.ChatWidget.version, null, { timeout: WAIT });
    await widget.evaluate(() => window.ChatWidget.open());
    await waitForText(gw, committed(widget), /Someone is on the way/, 'the conversation after a reload');
    const again = await decoded(gw, widget, committed(widget).filter({ hasText: 'Here is the leak' }).getByTestId('chat-attachment-image'), 'the visitor\'s image after a reload');
    assert.deepEqual([again.width, again.height], [4, 3], 'fetched from the gateway this time');
    assert.deepEqual(blocked, [], 'the demo page\'s policy allows blob: images');
  } finally {
    await shopper.close();
    await aliceCtx.close();
  }
});

test('over long-polling on another origin: a text file is a link in the console; a refused type and a file over the limit send nothing', { timeout: 240_000 }, async () => {
  const shopper = await browser.newContext();
  const bobCtx = await browser.newContext();
  const shop = await serveCrossOriginShop({ serverBaseUrl: gw.base, transports: ['polling'] });
  try {
    const widget = await shopper.newPage();
    const uploads = [];
    widget.on('request', (r) => { if (r.method() === 'POST' && r.url().includes('/chat/api/attachments')) uploads.push(r.url()); });
    await widget.goto(shop.url, { timeout: WAIT });
    await widget.getByTestId('chat-bubble').click({ timeout: WAIT });
    await waitForText(gw, widget.getByTestId('chat-connection'), /^Connected$/, 'widget connection on the other origin');
    assert.notEqual(new URL(widget.url()).origin, gw.base, 'the shop is of another origin');
    assert.equal((await widget.evaluate(() => window.ChatWidget.state)).transport, 'polling');

    await widget.getByTestId('chat-attach-input').setInputFiles(TEXT);
    const link = committed(widget).getByTestId('chat-attachment-file');
    await waitForText(gw, link, /notes\.txt/, 'the text file in the widget');
    assert.deepEqual((await download(widget, link.first())).bytes, TEXT.buffer, 'the uploader downloads its own file');
    const cid = (await widget.evaluate(() => window.ChatWidget.state)).conversationId;

    const bob = await bobCtx.newPage();
    await openConsole(gw, bob, await mintToken(gw, 'bob', 'Bob'), 'Bob');
    await openItem(bob, cid);
    const consoleLink = bob.locator('[data-testid="message"][data-seq]').getByTestId('attachment-file');
    await waitForText(gw, consoleLink, /notes\.txt/, 'the text file as a link in the console');
    const saved = await download(bob, consoleLink.first());
    assert.equal(saved.name, 'notes.txt');
    assert.deepEqual(saved.bytes, TEXT.buffer);

    // The agent's image reaches the widget over polling and is fetched across origins.
    await bob.getByTestId('attach-input').setInputFiles(AGENT_PNG);
    const image = committed(widget).getByTestId('chat-attachment-image');
    const got = await decoded(gw, widget, image, 'the agent\'s image in the widget on another origin');
    assert.deepEqual([got.width, got.height], [7, 5]);

    // A type the gateway refuses: its message shows, nothing is sent, the caption is kept.
    const before = await widget.evaluate(() => window.ChatWidget.state.messages);
    await widget.getByTestId('chat-input').fill('My installer');
    await widget.getByTestId('chat-attach-input').setInputFiles(EXE);
    const status = widget.getByTestId('chat-attach-status');
    await waitForText(gw, status, /application\/x-msdownload.+not accepted/, 'the gateway\'s refusal in the widget');
    assert.equal(await status.getAttribute('data-state'), 'error');
    assert.match(await status.textContent(), /setup\.exe/, 'the message names the file');
    assert.equal(await widget.getByTestId('chat-input').inputValue(), 'My installer', 'the caption is back in the box');
    const state = await widget.evaluate(() => window.ChatWidget.state);
    assert.equal(state.messages, before, 'nothing committed');
    assert.equal(state.pending, 0, 'nothing waiting to be sent');
    assert.equal(await widget.locator('[data-testid="chat-message"]').filter({ hasText: 'My installer' }).count(), 0);

    // Over welcome.uploads.max_bytes: refused in the page, before any upload.
    const uploadsBefore = uploads.length;
    const big = { name: 'huge.png', mimeType: 'image/png', buffer: Buffer.concat([png(2, 2, [0, 0, 0]), Buffer.alloc(MAX_UPLOAD_BYTES)]) };
    await widget.getByTestId('chat-attach-input').setInputFiles(big);
    await waitForText(gw, status, /huge\.png is too large/, 'the size check in the widget');
    assert.equal(uploads.length, uploadsBefore, 'a file over the limit is never uploaded');

    // The next message follows the agent's image directly: nothing was written in between.
    await widget.getByTestId('chat-input').press('Enter');
    await waitForText(gw, committed(widget), /My installer/, 'the caption sent as a message');
    const seqs = await committed(widget).evaluateAll((els) => els.map((el) => Number(el.getAttribute('data-seq'))));
    assert.deepEqual(seqs, [1, 2, 3], 'the two files, then the message: no refused file in between');
    await waitForText(gw, bob.locator('[data-testid="message"][data-seq="3"]'), /My installer/, 'the console has the same three');
    assert.equal(await bob.locator('[data-testid="message"][data-seq]').count(), 3);
    assert.equal(await status.isVisible(), true, 'the error stays until the next file');
  } finally {
    await shopper.close();
    await bobCtx.close();
    shop.server.close();
  }
});
