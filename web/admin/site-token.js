/*
 * The agent token from the main site, for the console (session.js): fetched from
 * CHAT_ADMIN_TOKEN_URL with the agent's site cookies, and when to renew it. What the main site
 * must answer: docs/agent-sign-in.md. Plain ES2020, no build step.
 */
(function () {
  'use strict';

  const TOKEN_FETCH_TIMEOUT_MS = 15000;
  const MAX_TOKEN_CHARS = 8192;

  // The claims of a JWT, unverified (the gateway verifies); only `exp` and `iat` are read.
  function jwtClaims(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const claims = JSON.parse(atob(part + '==='.slice((part.length + 3) % 4)));
      return claims && typeof claims === 'object' ? claims : {};
    } catch (_) {
      return {};
    }
  }

  // How long a freshly fetched token lives, in ms (0: unknown). Measured from its own `iat`
  // when it has one, so that a browser clock set wrong does not make it look expired.
  function lifetimeOf(jwt, expiresAt) {
    const claims = jwtClaims(jwt);
    let exp = typeof claims.exp === 'number' ? claims.exp : null;
    if (typeof expiresAt === 'number' && isFinite(expiresAt)) exp = expiresAt;
    else if (typeof expiresAt === 'string' && !isNaN(Date.parse(expiresAt))) exp = Date.parse(expiresAt) / 1000;
    if (exp === null) return 0;
    const from = typeof claims.iat === 'number' && claims.iat <= exp ? claims.iat : Date.now() / 1000;
    return Math.max(0, (exp - from) * 1000);
  }

  // Fetches a token with the agent's cookies. Resolves { token, receivedAt, lifetimeMs };
  // rejects { kind: 'signin', status } when the main site says the agent is not signed in, or
  // { kind: 'error', message } for anything else.
  function fetchSiteToken(url) {
    const controller = new AbortController();
    const timer = setTimeout(function () { controller.abort(); }, TOKEN_FETCH_TIMEOUT_MS);
    const fail = function (message) { return { kind: 'error', message: message }; };
    return fetch(url, {
      credentials: 'include',
      cache: 'no-store',
      // A redirect is the main site sending a signed-out agent to its login page.
      redirect: 'manual',
      headers: { Accept: 'application/json' },
      signal: controller.signal,
    }).then(function (res) {
      if (res.type === 'opaqueredirect') throw { kind: 'signin', status: 'redirect' };
      if (res.status === 401 || res.status === 403) throw { kind: 'signin', status: res.status };
      if (!res.ok) throw fail('the main site answered HTTP ' + res.status);
      return res.text().then(function (text) {
        let body = null;
        try { body = JSON.parse(text); } catch (_) { /* reported below */ }
        const jwt = body && typeof body.token === 'string' ? body.token.trim() : '';
        if (!jwt || jwt.length > MAX_TOKEN_CHARS || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(jwt)) {
          throw fail('the main site did not answer {"token": "<JWT>"}');
        }
        return { token: jwt, receivedAt: Date.now(), lifetimeMs: lifetimeOf(jwt, body.expires_at) };
      });
    }, function () {
      throw fail(controller.signal.aborted ? 'the main site did not answer in time' : 'the main site is unreachable');
    }).finally(function () { clearTimeout(timer); });
  }

  // When to renew a token that lives `lifetimeMs`, counted from its arrival: half-way at the
  // earliest (short test tokens), otherwise at 80 % of its life or a minute before its end,
  // whichever comes first (a 15-minute token: after 12 minutes).
  function renewAfterMs(lifetimeMs) {
    return Math.max(1000, lifetimeMs / 2, Math.min(lifetimeMs * 0.8, lifetimeMs - 60000));
  }

  window.ChatSiteToken = { fetch: fetchSiteToken, renewAfterMs: renewAfterMs, lifetimeOf: lifetimeOf };
})();
