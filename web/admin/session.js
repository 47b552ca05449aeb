/*
 * The agent console's session (docs/agent-sign-in.md, docs/protocol.md): where the agent JWT
 * comes from, the /ws-admin/ WebSocket that carries it, and what the connection banner and the
 * sign-in panels say about both. The token comes from the main site
 * (window.ChatConsoleConfig.tokenUrl, written by the gateway in ./config.js from
 * CHAT_ADMIN_TOKEN_URL; fetched with the agent's site cookies by ./site-token.js) and is renewed
 * over the open socket with `auth` before it expires, or is pasted (development). A refused
 * upgrade is diagnosed over plain HTTP; a lost socket reconnects with a back-off.
 *
 * Loaded before console.js, which calls it once, at the moment it starts (so the token is taken
 * out of the address bar and the panels' buttons are wired exactly when they always were):
 *
 *   ChatConsoleSession({ welcome(frame, me), event(frame), gone() })
 *     welcome: the session was welcomed (the banner says so already); me is { id, name }
 *     event:   a server event other than `welcome`, `ack` and `error`
 *     gone:    the socket is gone (its pending requests were rejected with `disconnected`)
 *   returns { start(), request(type, fields) -> Promise of the ack, welcomed(), token(),
 *             storageGet(key), storageSet(key, value) }
 *
 * Every server event also goes out as a `chat-console:event` DOM event (detail {event, request})
 * for the console's other parts (./signals.js).
 */
/* global chatBackoff */
window.ChatConsoleSession = function (hooks) {
  'use strict';
  const TOKEN_KEY = 'chat-admin-token';
  const REFRESH_RETRY_MIN_MS = 2000;
  const REFRESH_RETRY_MAX_MS = 30000;
  // A site token this close to its expiry (at most a quarter of its life) is replaced before
  // (re)connecting with it.
  const STALE_MARGIN_MS = 10000;

  const CONFIG = readConfig();
  const I18n = window.ChatConsoleI18n; // ./language.js
  const t = I18n.t;
  const SiteToken = window.ChatSiteToken; // ./site-token.js

  // Why a socket closed, in words an agent can act on (the close reason, when sent, wins).
  const CLOSE_REASONS = {
    1000: t('console.close.1000'),
    1001: t('console.close.1001'),
    1006: t('console.close.1006'),
    1008: t('console.close.1008'),
    1009: t('console.close.1009'),
    1011: t('console.close.1011'),
    1013: t('console.close.1013'),
    4001: t('console.close.4001'),
  };

  const $ = function (id) { return document.getElementById(id); };
  const els = {
    banner: $('banner'),
    signout: $('signout'),
    useToken: $('use-token'),
    signin: $('signin'),
    signinLink: $('signin-link'),
    signinRetry: $('signin-retry'),
    signinPaste: $('signin-paste'),
    loginSite: $('login-site'),
    login: $('login'),
    loginForm: $('login-form'),
    tokenInput: $('token-input'),
    app: $('app'),
  };

  let token = takeTokenFromUrl() || storageGet(TOKEN_KEY);
  // 'site': fetched from CONFIG.tokenUrl and renewed; 'pasted': typed in or given in the URL.
  let tokenSource = token ? 'pasted' : null;
  let siteToken = null; // { receivedAt, lifetimeMs } of the current site token (lifetime 0: unknown)
  let siteGeneration = 0; // bumped to drop the answer of a token fetch that is no longer wanted
  let refreshTimer = null;
  let refreshAttempt = 0;
  let ws = null;
  let welcomed = false;
  let me = null; // { id, name } from welcome
  const backoff = chatBackoff(); // ./shared/backoff.js: reconnects and their countdown
  let requestSeq = 0;

  const requests = new Map(); // request id -> { resolve, reject }

  // ---------------------------------------------------------------------------------------------
  // Helpers

  // Settings from ./config.js; missing or odd values mean pasting only.
  function readConfig() {
    const c = (typeof window.ChatConsoleConfig === 'object' && window.ChatConsoleConfig) || {};
    const url = function (v) { return typeof v === 'string' && v ? v : null; };
    return { tokenUrl: url(c.tokenUrl), loginUrl: url(c.loginUrl) };
  }

  function storageGet(key) {
    try { return sessionStorage.getItem(key); } catch (_) { return null; }
  }
  function storageSet(key, value) {
    try {
      if (value === null || value === undefined) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, value);
    } catch (_) { /* private mode: the session still works, only reloads forget */ }
  }

  // A token in the address bar leaks into history, screenshots and Referer headers, so move it to
  // sessionStorage (gone when the tab closes) and strip it from the URL.
  function takeTokenFromUrl() {
    const url = new URL(location.href);
    const hash = new URLSearchParams(url.hash.replace(/^#/, ''));
    const found = url.searchParams.get('token') || hash.get('token');
    if (!url.searchParams.has('token') && !hash.has('token')) return null;
    url.searchParams.delete('token');
    hash.delete('token');
    const rest = hash.toString();
    history.replaceState(null, '', url.pathname + url.search + (rest ? '#' + rest : ''));
    if (found) storageSet(TOKEN_KEY, found.trim());
    return found ? found.trim() : null;
  }

  // ---------------------------------------------------------------------------------------------
  // Banner and login

  function setBanner(state, text) {
    els.banner.setAttribute('data-state', state);
    els.banner.textContent = text;
  }

  // One of 'app', 'login' (paste a token) and 'signin' (sign in on the main site) is shown.
  function showPanel(name) {
    els.login.hidden = name !== 'login';
    els.signin.hidden = name !== 'signin';
    els.app.hidden = name !== 'app';
    els.signout.hidden = name !== 'app';
    if (name !== 'app') els.useToken.hidden = true;
    if (name === 'login') {
      els.loginSite.hidden = !CONFIG.tokenUrl;
      els.tokenInput.value = '';
      els.tokenInput.focus();
    }
  }

  function showLogin(show) {
    showPanel(show ? 'login' : 'app');
  }

  els.loginForm.addEventListener('submit', function (e) {
    e.preventDefault();
    const value = els.tokenInput.value.trim();
    if (!value) return;
    leaveSiteMode();
    token = value;
    tokenSource = 'pasted';
    storageSet(TOKEN_KEY, token);
    showLogin(false);
    backoff.reset();
    connect();
  });

  els.signout.addEventListener('click', function () {
    stop();
    leaveSiteMode();
    token = null;
    tokenSource = null;
    storageSet(TOKEN_KEY, null);
    setBanner('rejected', CONFIG.tokenUrl ? t('console.signedOut') : t('console.signedOutPaste'));
    showLogin(true);
  });

  function pasteInstead() {
    stop();
    leaveSiteMode();
    token = null;
    tokenSource = null;
    setBanner('rejected', t('console.pasteToConnect'));
    showLogin(true);
  }
  els.useToken.addEventListener('click', pasteInstead);
  els.signinPaste.addEventListener('click', pasteInstead);
  els.signinRetry.addEventListener('click', signInWithSite);
  els.loginSite.addEventListener('click', signInWithSite);

  // ---------------------------------------------------------------------------------------------
  // Tokens from the main site

  // Starts (over) with a token from CONFIG.tokenUrl.
  function signInWithSite() {
    stop();
    leaveSiteMode();
    storageSet(TOKEN_KEY, null);
    token = null;
    tokenSource = 'site';
    backoff.reset();
    showPanel('app');
    connect();
  }

  function leaveSiteMode() {
    siteGeneration++;
    siteToken = null;
    clearTimeout(refreshTimer);
    refreshTimer = null;
    refreshAttempt = 0;
  }

  function adoptSiteToken(got) {
    token = got.token;
    siteToken = { receivedAt: got.receivedAt, lifetimeMs: got.lifetimeMs };
  }

  function siteTokenStale() {
    if (!siteToken || !siteToken.lifetimeMs) return false;
    const margin = Math.min(STALE_MARGIN_MS, siteToken.lifetimeMs / 4);
    return Date.now() > siteToken.receivedAt + siteToken.lifetimeMs - margin;
  }

  // Gets a site token, then connects; 401/403 stops at the sign-in panel, other failures retry.
  function connectWithSiteToken() {
    setBanner('connecting', t('console.gettingToken'));
    const generation = ++siteGeneration;
    SiteToken.fetch(CONFIG.tokenUrl).then(function (got) {
      if (generation !== siteGeneration || tokenSource !== 'site') return;
      adoptSiteToken(got);
      els.useToken.hidden = true;
      connect(true); // this token, however short-lived: never straight back to the main site
    }, function (err) {
      if (generation !== siteGeneration || tokenSource !== 'site') return;
      if (err.kind === 'signin') {
        showSignIn(err.status);
      } else {
        els.useToken.hidden = false;
        scheduleReconnect(t('console.tokenFetchFailed', { reason: err.message }), 'error');
      }
    });
  }

  function showSignIn(status) {
    stop();
    token = null;
    siteToken = null;
    if (CONFIG.loginUrl) els.signinLink.setAttribute('href', CONFIG.loginUrl);
    els.signinLink.hidden = !CONFIG.loginUrl;
    showPanel('signin');
    const why = status === 'redirect' ? t('console.tokenUrlRedirected') : 'HTTP ' + status;
    setBanner('rejected', t('console.notSignedInSite', { reason: why }));
  }

  // Renews the token some time before it expires (SiteToken.renewAfterMs): the main site's
  // answer goes to the open session as `auth`, so nothing reconnects.
  function scheduleRefresh(delayMs) {
    clearTimeout(refreshTimer);
    refreshTimer = null;
    if (tokenSource !== 'site' || !siteToken || !siteToken.lifetimeMs) return;
    if (delayMs === undefined) delayMs = siteToken.receivedAt + SiteToken.renewAfterMs(siteToken.lifetimeMs) - Date.now();
    refreshTimer = setTimeout(refreshToken, Math.max(0, delayMs));
  }

  function refreshToken() {
    refreshTimer = null;
    if (tokenSource !== 'site' || !ws || !welcomed) return;
    const generation = siteGeneration;
    const retry = function (why) {
      const delay = Math.min(REFRESH_RETRY_MAX_MS, REFRESH_RETRY_MIN_MS * Math.pow(2, refreshAttempt++));
      console.warn('[chat-console] token renewal failed:', why, '— retrying in', delay, 'ms');
      setBanner('error', t('console.renewFailed', { name: me ? me.name : t('console.agent'), reason: why }));
      scheduleRefresh(delay);
    };
    SiteToken.fetch(CONFIG.tokenUrl).then(function (got) {
      if (generation !== siteGeneration) return;
      return request('auth', { token: got.token }).then(function () {
        if (generation !== siteGeneration) return;
        adoptSiteToken(got);
        refreshAttempt = 0;
        if (me) setBanner('connected', t('console.connectedAs', { name: me.name }));
        scheduleRefresh();
      }, function (err) {
        if (generation !== siteGeneration || err.code === 'disconnected') return; // reconnecting fetches anew
        if (err.code === 'forbidden') {
          // The main site now signs in another agent: reconnect as that one.
          adoptSiteToken(got);
          if (ws) ws.close(1000);
          return;
        }
        retry(t('console.renewRefused', { reason: err.message || err.code }));
      });
    }, function (err) {
      if (generation !== siteGeneration) return;
      // Signed out on the main site: the session lasts until the token expires (4001), then the
      // sign-in panel shows. Keep asking now and then in case the agent signs in again.
      if (err.kind === 'signin') retry(t('console.renewSignedOut'));
      else retry(err.message);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Connection

  function stop() {
    backoff.cancel();
    if (ws) {
      const old = ws;
      ws = null; // detach first so its close event is not treated as a failure
      old.close(1000);
    }
    onSocketGone();
  }

  // `fresh`: the token was fetched just now and is used as it is.
  function connect(fresh) {
    backoff.cancel();
    if (tokenSource === 'site' && (!token || (fresh !== true && siteTokenStale()))) { connectWithSiteToken(); return; }
    if (!token) { showLogin(true); return; }
    setBanner('connecting', t('console.connecting'));
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = proto + '//' + location.host + '/ws-admin/?token=' + encodeURIComponent(token);
    let sock;
    try {
      sock = new WebSocket(url);
    } catch (_) {
      scheduleReconnect(t('console.noWebSocket'));
      return;
    }
    ws = sock;
    welcomed = false;
    sock.onmessage = function (ev) {
      if (sock !== ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch (_) { return; }
      if (frame && typeof frame === 'object') handleFrame(frame);
    };
    sock.onclose = function (ev) {
      if (sock !== ws) return;
      const hadWelcome = welcomed;
      ws = null;
      onSocketGone();
      if (ev.code === 4001 && tokenSource === 'site') {
        // Not renewed in time (laptop asleep, main site down): fetch a new one and resume. Through
        // the back-off, so that tokens that keep expiring at once cannot spin.
        token = null;
        scheduleReconnect(t('console.tokenExpiredSite'), 'connecting');
      } else if (ev.code === 4001) {
        // The token expired: a new one from the main site continues where this left off
        // (conversations stay on screen; the next session resumes from them).
        token = null;
        storageSet(TOKEN_KEY, null);
        showLogin(true);
        setBanner('rejected', t('console.tokenExpiredPaste'));
      } else if (hadWelcome) {
        const reason = ev.reason || CLOSE_REASONS[ev.code] || t('console.close.unknown');
        scheduleReconnect(t('console.disconnected', { code: ev.code, reason: reason }));
      } else {
        diagnoseFailedConnect();
      }
    };
  }

  function onSocketGone() {
    welcomed = false;
    clearTimeout(refreshTimer); // renewal runs on an open session; a new one schedules it again
    refreshTimer = null;
    for (const r of requests.values()) r.reject({ code: 'disconnected', message: t('console.close.1006') });
    requests.clear();
    hooks.gone();
  }

  // Browsers hide the HTTP status of a refused upgrade, so ask the gateway over plain HTTP with
  // the same token why it would refuse us.
  function diagnoseFailedConnect() {
    setBanner('error', t('console.checkingWhy'));
    const tokenTried = token;
    fetch('/chat/api/whoami', { headers: { Authorization: 'Bearer ' + tokenTried }, cache: 'no-store' })
      .then(function (res) {
        return res.json().catch(function () { return {}; }).then(function (body) { return { status: res.status, body: body || {} }; });
      })
      .then(function (r) {
        if (token !== tokenTried) return; // signed out or replaced meanwhile
        const message = typeof r.body.message === 'string' && r.body.message ? r.body.message : null;
        if (r.status === 401 && tokenSource === 'site') {
          // A fresh one may do (it expired meanwhile); if the main site keeps minting tokens the
          // gateway refuses (another secret), the back-off keeps this slow and the banner says why.
          token = null;
          scheduleReconnect(t('console.siteTokenRefused', { reason: message || t('console.invalid') }), 'error');
          els.useToken.hidden = false;
        } else if (r.status === 401) {
          // Retrying cannot fix a bad token: stop and ask for a new one.
          token = null;
          storageSet(TOKEN_KEY, null);
          showLogin(true);
          setBanner('rejected', t('console.tokenRejected', { reason: message || t('console.expiredOrInvalid') }));
        } else if (r.status === 403) {
          scheduleReconnect(message ? t('console.originRefusedWhy', { reason: message }) : t('console.originRefused'), 'error');
        } else if (r.status >= 200 && r.status < 300) {
          scheduleReconnect(t('console.upgradeRefused'), 'error');
        } else {
          scheduleReconnect(t('console.connectFailed', { status: r.status + (message ? ': ' + message : '') }), 'error');
        }
      }, function () {
        if (token !== tokenTried) return;
        scheduleReconnect(t('console.unreachable'), 'error');
      });
  }

  function scheduleReconnect(why, state) {
    backoff.schedule(function (secs) {
      setBanner(state || 'error', t('console.reconnectingIn', { why: why, seconds: secs }));
    }, connect);
  }

  function request(type, fields) {
    return new Promise(function (resolve, reject) {
      if (!ws || !welcomed) {
        reject({ code: 'disconnected', message: t('console.notConnected') });
        return;
      }
      const id = 'a' + (++requestSeq);
      requests.set(id, { resolve: resolve, reject: reject });
      ws.send(JSON.stringify(Object.assign({ type: type, id: id }, fields)));
    });
  }

  function handleFrame(f) {
    // Other parts of the console (./signals.js) follow the server's events too.
    if (f.type !== 'ack' && f.type !== 'error') {
      document.dispatchEvent(new CustomEvent('chat-console:event', { detail: { event: f, request: request } }));
    }
    if (f.type === 'welcome') return onWelcome(f);
    if (f.type === 'ack' || f.type === 'error') {
      const r = f.id ? requests.get(f.id) : null;
      if (!r) {
        if (f.type === 'error') console.warn('[chat-console] gateway error', f.code, f.message);
        return;
      }
      requests.delete(f.id);
      if (f.type === 'ack') r.resolve(f);
      else r.reject({ code: f.code, message: f.message });
      return;
    }
    hooks.event(f);
  }

  function onWelcome(f) {
    welcomed = true;
    backoff.reset();
    backoff.cancel();
    me = f.agent && f.agent.id ? { id: String(f.agent.id), name: String(f.agent.name || f.agent.id) } : { id: '?', name: t('console.agent') };
    setBanner('connected', t('console.connectedAs', { name: me.name }));
    showLogin(false);
    scheduleRefresh();
    hooks.welcome(f, me);
  }

  // ---------------------------------------------------------------------------------------------
  // Start

  function start() {
    if (token) {
      showLogin(false);
      connect();
    } else if (CONFIG.tokenUrl) {
      signInWithSite();
    } else {
      setBanner('rejected', t('console.notSignedIn'));
      showLogin(true);
    }
  }

  return {
    start: start,
    request: request,
    welcomed: function () { return welcomed; },
    token: function () { return token; },
    storageGet: storageGet,
    storageSet: storageSet,
  };
};
