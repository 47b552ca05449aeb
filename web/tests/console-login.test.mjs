// End-to-end: the agent console signs in the way agents did with the old main site. A small
// Node server plays the main site behind the real gateway (CHAT_UPSTREAM): it answers
// /api/admin/chat/token with an HS256 agent JWT for a signed-in agent (a session cookie) and 401
// otherwise. The console, in a real Chromium, fetches its token there through the gateway,
// renews it over the open WebSocket before it expires, and shows "Sign in on the main site"
// when the main site says 401.
//
//   CHAT_GATEWAY_BIN  gateway binary (default <repo>/target/debug/chat-gateway)
//   CHROMIUM_PATH     browser (default /usr/bin/chromium)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { randomBytes, createHmac } from 'node:crypto';
import { WAIT, startGateway, stopGateway, dumpGatewayOutput, launchBrowser } from './harness.mjs';

// Short enough that a renewal and the first token's expiry happen within the test, long enough
// for a slow machine to load the console first. The console renews half-way (10 s).
const TOKEN_TTL_SECS = 20;
// The gateway tolerates this much clock skew on `exp`.
const EXP_LEEWAY_SECS = 5;
const LOGIN_PATH = '/login?callbackUrl=%2Fchat%2Fadmin%2F';

const SECRET = randomBytes(32).toString('hex');
// Dave's tokens are shorter-lived: his test lets one run out.
const SESSIONS = { 's-alice': { id: 'alice', name: 'Alice' }, 's-dave': { id: 'dave', name: 'Dave', ttl: 8 } };
// Sessions for which the main site answers 503 (down) for now.
const UNAVAILABLE = new Set();

let site; // { server, base, port, tokenRequests: [{ at, cookie, status, exp }] }
let gateway; // { child, base, env, dataDir, log }
let browser;

// An agent JWT as a main site mints it: HS256 over the shared CHAT_ADMIN_JWT_SECRET.
function signJwt(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}

function cookiesOf(req) {
  const out = {};
  for (const part of (req.headers.cookie || '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

// The main site: the token route of docs/agent-sign-in.md, and a login page that signs Alice in.
function startMainSite() {
  const s = { tokenRequests: [] };
  s.server = createHttpServer((req, res) => {
    const url = new URL(req.url, 'http://main-site');
    if (url.pathname === '/api/admin/chat/token' && req.method === 'GET') {
      const session = cookiesOf(req).site_session || null;
      const entry = { at: Date.now(), cookie: session, status: 0, exp: 0 };
      s.tokenRequests.push(entry);
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Content-Type', 'application/json');
      if (UNAVAILABLE.has(session)) {
        entry.status = 503;
        res.writeHead(503).end('{"error":"maintenance"}');
        return;
      }
      if (session === 'broken') {
        entry.status = 500;
        res.writeHead(500).end('{"error":"database down"}');
        return;
      }
      const agent = SESSIONS[session];
      if (!agent) {
        entry.status = 401;
        res.writeHead(401).end('{"error":"not signed in"}');
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      entry.status = 200;
      entry.exp = now + (agent.ttl || TOKEN_TTL_SECS);
      const token = signJwt({ sub: agent.id, name: agent.name, iat: now, exp: entry.exp });
      res.writeHead(200).end(JSON.stringify({ token, expires_at: entry.exp }));
      return;
    }
    if (url.pathname === '/login') {
      // Signs Alice in and goes back where the console asked to return.
      const back = url.searchParams.get('callbackUrl') || '/';
      res.writeHead(302, { 'Set-Cookie': 'site_session=s-alice; Path=/; HttpOnly; SameSite=Lax', Location: back }).end();
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('main site: not found');
  });
  return new Promise((resolve) => s.server.listen(0, '127.0.0.1', () => {
    s.port = s.server.address().port;
    resolve(s);
  }));
}

function withGatewayLog(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      dumpGatewayOutput(gateway);
      console.error(`main site token requests (${site?.tokenRequests.length}, the last 20):`, JSON.stringify(site?.tokenRequests.slice(-20)));
      throw e;
    }
  };
}

async function waitForText(locator, pattern, what) {
  try {
    await locator.filter({ hasText: pattern }).first().waitFor({ state: 'visible', timeout: WAIT });
  } catch (e) {
    const now = await locator.first().textContent({ timeout: 1000 }).catch(() => '<absent>');
    throw new Error(`${what}: expected text ${pattern}, last saw ${JSON.stringify(now)}\n${e.message}`);
  }
}

async function waitUntil(cond, what, timeout = WAIT) {
  const end = Date.now() + timeout;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Records every WebSocket the page opens and the JSON frames it sends and receives.
function watchSockets(page) {
  const sockets = [];
  page.on('websocket', (ws) => {
    const s = { ws, sent: [], received: [], closed: false };
    sockets.push(s);
    const parse = (payload) => { try { return JSON.parse(payload); } catch (_) { return null; } };
    ws.on('framesent', (f) => s.sent.push(parse(f.payload)));
    ws.on('framereceived', (f) => s.received.push(parse(f.payload)));
    ws.on('close', () => { s.closed = true; });
  });
  return sockets;
}

function trackConsole(page, label) {
  page.on('pageerror', (e) => console.error(`[${label}] page error: ${e.message}`));
}

before(async () => {
  site = await startMainSite();
  gateway = await startGateway({
    CHAT_ADMIN_JWT_SECRET: SECRET,
    CHAT_UPSTREAM: `127.0.0.1:${site.port}`,
    // CHAT_ADMIN_TOKEN_URL stays unset: the default /api/admin/chat/token is under test.
    CHAT_ADMIN_LOGIN_URL: LOGIN_PATH,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await stopGateway(gateway);
  await new Promise((resolve) => site?.server.close(resolve));
});

test('console signs in with the main-site session and renews its token without reconnecting', { timeout: 120_000 }, withGatewayLog(async () => {
  // A visitor (over long-polling) with a conversation of one message.
  const opened = await (await fetch(`${gateway.base}/ws-visitor/poll`, { method: 'POST' })).json();
  const sent = await (await fetch(`${gateway.base}/ws-visitor/poll?sid=${opened.sid}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'send', id: 'v1', client_msg_id: 'v1', body: 'hello from a visitor' }),
  })).json();
  const conversationId = sent.answers[0].message.conversation_id;

  const ctx = await browser.newContext();
  try {
    await ctx.addCookies([{ name: 'site_session', value: 's-alice', url: gateway.base, httpOnly: true }]);
    const page = await ctx.newPage();
    trackConsole(page, 'console');
    const sockets = watchSockets(page);
    await page.goto(`${gateway.base}/chat/admin/`, { timeout: WAIT });
    await waitForText(page.getByTestId('connection-banner'), /Connected as Alice/, 'console banner');

    // The token came from the main site, asked with the agent's cookie, through the gateway.
    const first = site.tokenRequests.find((r) => r.status === 200);
    assert.ok(first, 'the main site minted a token');
    assert.equal(first.cookie, 's-alice', 'the token request carried the site session cookie');
    assert.equal(await page.getByTestId('login').isVisible(), false, 'no paste form');

    await page.locator(`[data-testid="conversation-item"][data-conversation-id="${conversationId}"]`).click({ timeout: WAIT });
    await waitForText(page.locator('[data-testid="message"][data-seq="1"]'), 'hello from a visitor', 'visitor message');

    // Half-way through the first token's life the console asks the main site again and hands
    // the new token to the open session (`auth`), which acknowledges a later expiry.
    await waitUntil(() => site.tokenRequests.filter((r) => r.status === 200).length >= 2, 'a second token request', (TOKEN_TTL_SECS + 10) * 1000);
    await waitUntil(() => {
      const s = sockets[0];
      const auth = s && s.sent.find((f) => f && f.type === 'auth');
      return auth && s.received.some((f) => f && f.type === 'ack' && f.id === auth.id && f.expires_at > first.exp);
    }, 'the auth command acknowledged with a later expires_at');

    // Past the first token's expiry (and the gateway's leeway), the same session still works.
    const pastExpiry = first.exp * 1000 + (EXP_LEEWAY_SECS + 2) * 1000;
    await page.waitForTimeout(Math.max(0, pastExpiry - Date.now()));
    await page.getByTestId('reply-input').fill('answer after the first token expired');
    await page.getByTestId('reply-input').press('Enter');
    await waitForText(page.locator('[data-testid="message"][data-seq="2"]'), 'answer after the first token expired', 'reply after expiry');
    await waitForText(page.getByTestId('connection-banner'), /Connected as Alice/, 'banner still connected');

    assert.equal(sockets.length, 1, 'the console never reconnected');
    // Renewed about every half-life, not in a loop: the first token, one at 10 s, one at 20 s.
    const aliceAsked = site.tokenRequests.filter((r) => r.cookie === 's-alice').length;
    assert.ok(aliceAsked >= 2 && aliceAsked <= 5, `token requests: ${aliceAsked}`);
    assert.equal(sockets[0].closed, false, 'its WebSocket is still open');
    assert.ok(sockets[0].sent.every((f) => !f || f.type !== 'auth' || typeof f.token === 'string'));
    // The visitor sees the agent's reply.
    const events = await (await fetch(`${gateway.base}/ws-visitor/poll?sid=${opened.sid}&cursor=1`)).json();
    assert.ok(JSON.stringify(events).includes('answer after the first token expired'), 'visitor got the reply');
  } finally {
    await ctx.close();
  }
}));

test('console without a main-site session shows "Sign in on the main site" and stops', { timeout: 60_000 }, withGatewayLog(async () => {
  const ctx = await browser.newContext();
  try {
    const page = await ctx.newPage();
    trackConsole(page, 'console');
    const sockets = watchSockets(page);
    const before401 = site.tokenRequests.filter((r) => r.status === 401).length;
    await page.goto(`${gateway.base}/chat/admin/`, { timeout: WAIT });
    await page.getByTestId('signin').waitFor({ state: 'visible', timeout: WAIT });
    await waitForText(page.getByTestId('signin'), /Sign in on the main site/, 'sign-in panel');
    await waitForText(page.getByTestId('connection-banner'), /Not signed in on the main site \(HTTP 401\)/, 'banner');
    const link = page.getByTestId('signin-link');
    assert.equal(await link.isVisible(), true, 'the sign-in link is shown');
    assert.equal(await link.getAttribute('href'), LOGIN_PATH);
    assert.match(await link.textContent(), /Sign in on the main site/);

    // It stops: no retry loop against the main site, no WebSocket.
    await page.waitForTimeout(2000);
    assert.equal(site.tokenRequests.filter((r) => r.status === 401).length, before401 + 1, 'asked the main site once');
    assert.equal(sockets.length, 0, 'no WebSocket without a token');

    // The link leads to the main site's sign-in, which sends the agent back signed in.
    await link.click();
    await waitForText(page.getByTestId('connection-banner'), /Connected as Alice/, 'banner after signing in');
    assert.equal(new URL(page.url()).pathname, '/chat/admin/');
  } finally {
    await ctx.close();
  }
}));

test('console reports a failing token URL, retries, and still accepts a pasted token', { timeout: 60_000 }, withGatewayLog(async () => {
  const ctx = await browser.newContext();
  try {
    await ctx.addCookies([{ name: 'site_session', value: 'broken', url: gateway.base }]);
    const page = await ctx.newPage();
    trackConsole(page, 'console');
    await page.goto(`${gateway.base}/chat/admin/`, { timeout: WAIT });
    await waitForText(page.getByTestId('connection-banner'), /Could not get a token: the main site answered HTTP 500/, 'banner');
    await waitUntil(() => site.tokenRequests.filter((r) => r.cookie === 'broken').length >= 2, 'a retry');

    // Development escape hatch: paste a token instead.
    await page.getByTestId('use-token-button').click({ timeout: WAIT });
    const now = Math.floor(Date.now() / 1000);
    await page.getByTestId('login-token').fill(signJwt({ sub: 'bob', name: 'Bob', iat: now, exp: now + 600 }));
    await page.getByTestId('login-submit').click();
    await waitForText(page.getByTestId('connection-banner'), /Connected as Bob/, 'banner with a pasted token');
    const asked = site.tokenRequests.filter((r) => r.cookie === 'broken').length;
    await page.waitForTimeout(1500);
    assert.equal(site.tokenRequests.filter((r) => r.cookie === 'broken').length, asked, 'no more token requests once pasted');
  } finally {
    await ctx.close();
  }
}));

test('console whose renewal failed fetches a fresh token after the 4001 and resumes', { timeout: 60_000 }, withGatewayLog(async () => {
  const ctx = await browser.newContext();
  try {
    await ctx.addCookies([{ name: 'site_session', value: 's-dave', url: gateway.base }]);
    const page = await ctx.newPage();
    trackConsole(page, 'console');
    const sockets = watchSockets(page);
    await page.goto(`${gateway.base}/chat/admin/`, { timeout: WAIT });
    await waitForText(page.getByTestId('connection-banner'), /Connected as Dave/, 'console banner');

    // The main site goes down: renewals fail, and the gateway ends the session at expiry.
    UNAVAILABLE.add('s-dave');
    await waitUntil(() => sockets[0] && sockets[0].closed, 'the session to end when its token expired');
    assert.ok(sockets[0].received.some((f) => f && f.type === 'error' && f.code === 'token_expired'), 'ended by token_expired');
    assert.ok(site.tokenRequests.some((r) => r.cookie === 's-dave' && r.status === 503), 'a renewal was tried');

    // Back up: the console gets a fresh token and reconnects by itself, no paste form.
    UNAVAILABLE.delete('s-dave');
    await waitUntil(() => sockets.length >= 2, 'a new WebSocket');
    await waitForText(page.getByTestId('connection-banner'), /Connected as Dave/, 'banner after reconnecting');
    assert.equal(await page.getByTestId('login').isVisible(), false, 'no paste form');
    assert.equal(await page.getByTestId('signin').isVisible(), false, 'no sign-in panel');
    // Even 8-second tokens are fetched a handful of times, not in a loop.
    const daveAsked = site.tokenRequests.filter((r) => r.cookie === 's-dave').length;
    assert.ok(daveAsked < 15, `token requests: ${daveAsked}`);
  } finally {
    await ctx.close();
  }
}));
