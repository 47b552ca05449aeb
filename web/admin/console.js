/*
 * Agent console, served at /chat/admin/. Speaks the raw WebSocket protocol of docs/protocol.md on
 * /ws-admin/ with an agent JWT. Plain ES2020, no build step. All data is rendered with
 * textContent: message bodies and names come from anonymous visitors.
 *
 * The token comes from the main site (window.ChatConsoleConfig.tokenUrl, written by the gateway
 * in ./config.js from CHAT_ADMIN_TOKEN_URL; fetched with the agent's site cookies by
 * ./site-token.js) and is renewed over the open socket with `auth` before it expires, or is
 * pasted (development). See docs/agent-sign-in.md.
 */
(function () {
  'use strict';

  const TOKEN_KEY = 'chat-admin-token';
  const SELECTED_KEY = 'chat-admin-selected';
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 30000;
  const HISTORY_PAGE = 500;
  const LIST_LIMIT = 500;
  const PENDING_KEY_BASE = 1e15; // sort key offset that keeps unconfirmed replies after every seq
  const REFRESH_RETRY_MIN_MS = 2000;
  const REFRESH_RETRY_MAX_MS = 30000;
  // A site token this close to its expiry (at most a quarter of its life) is replaced before
  // (re)connecting with it.
  const STALE_MARGIN_MS = 10000;

  const CONFIG = readConfig();
  const I18n = window.ChatConsoleI18n; // ./language.js
  const t = I18n.t;
  const Alerts = window.ChatConsoleAlerts; // ./alerts.js
  const SiteToken = window.ChatSiteToken; // ./site-token.js
  const Sites = window.ChatSiteSwitcher; // ./site-switcher.js
  const Attachments = window.ChatConsoleAttachments; // ./attachments.js

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
    filter: $('filter'),
    list: $('conversations'),
    noConversations: $('no-conversations'),
    paneEmpty: $('pane-empty'),
    pane: $('pane'),
    paneTitle: $('pane-title'),
    paneMeta: $('pane-meta'),
    paneError: $('pane-error'),
    assign: $('assign'),
    transfer: $('transfer'),
    noteToggle: $('note-toggle'),
    close: $('close'),
    messages: $('messages'),
    replyForm: $('reply-form'),
    reply: $('reply'),
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
  let attempt = 0;
  let retryTimer = null;
  let countdownTimer = null;
  let requestSeq = 0;
  let relistTimer = null;

  const conversations = new Map(); // id -> conversation (+ preview)
  const requests = new Map(); // request id -> { resolve, reject }
  const pending = new Map(); // client_msg_id -> { cid, body, note, attachment, el, inFlight, failed }
  let selectedId = null;
  let paneMessages = new Map(); // seq -> message, for the selected conversation only
  let typedSeq = 0;
  // Read receipts (docs/protocol.md, "Read receipts"): each conversation carries, from the
  // server, `unread` (visitor messages after this agent's position), `read_seq` (this agent's
  // position) and `visitor_read_seq` (the visitor's, shown as "Seen"). `read` goes out when the
  // open conversation is seen, at most every READ_INTERVAL_MS (the gateway allows 2 a second).
  const READ_INTERVAL_MS = 600;
  const UNREAD_CAP = 100; // the gateway stops counting here
  let readTimer = null;
  let lastReadAt = 0;

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

  function randomId(prefix) {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
  }

  // Builds an element; string children become text nodes, never markup.
  function h(tag, attrs, children) {
    const el = document.createElement(tag);
    for (const name of Object.keys(attrs || {})) {
      const v = attrs[name];
      if (v === null || v === undefined || v === false) continue;
      if (name === 'text') el.textContent = String(v);
      else if (name.startsWith('on')) el.addEventListener(name.slice(2), v);
      else el.setAttribute(name, v === true ? '' : String(v));
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  function formatTime(iso) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? I18n.time(d) : I18n.shortDateTime(d);
  }

  function timeOf(iso) {
    const t = Date.parse(iso);
    return isNaN(t) ? 0 : t;
  }

  function visitorLabel(conv) {
    const id = conv && conv.visitor_id ? String(conv.visitor_id) : '';
    return t('console.visitorLabel', { id: id ? id.slice(0, 8) : '?' });
  }

  function unreadOf(conv) {
    return Math.max(0, Math.min(UNREAD_CAP, conv.unread || 0));
  }
  function unreadText(n) {
    return n >= UNREAD_CAP ? '99+' : String(n);
  }

  // An agent status (`online`, `away`, `offline`) in the console's language.
  function statusText(status) {
    if (status === 'away') return t('console.agentStatus.away');
    if (status === 'offline') return t('console.agentStatus.offline');
    return t('console.agentStatus.online');
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
    attempt = 0;
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
    attempt = 0;
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
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
    if (ws) {
      const old = ws;
      ws = null; // detach first so its close event is not treated as a failure
      old.close(1000);
    }
    onSocketGone();
  }

  // `fresh`: the token was fetched just now and is used as it is.
  function connect(fresh) {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
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
    for (const p of pending.values()) p.inFlight = false;
    renderPane();
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
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * Math.pow(2, attempt));
    // Jitter spreads the reconnect wave of many consoles after a gateway restart.
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    attempt++;
    const due = Date.now() + delay;
    const show = function () {
      const secs = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setBanner(state || 'error', t('console.reconnectingIn', { why: why, seconds: secs }));
    };
    show();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(show, 1000);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
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
    if (f.type === 'message') return onMessage(f.message, true);
    if (f.type === 'conversation') return onConversation(f.conversation);
    if (f.type === 'read') return onRead(f);
    // Unknown events (newer gateway) are ignored on purpose; `typing` and `agent_status` are
    // ./signals.js's.
  }

  function onWelcome(f) {
    welcomed = true;
    attempt = 0;
    clearInterval(countdownTimer);
    me = f.agent && f.agent.id ? { id: String(f.agent.id), name: String(f.agent.name || f.agent.id) } : { id: '?', name: t('console.agent') };
    Sites.welcome(f.sites, me.id);
    setBanner('connected', t('console.connectedAs', { name: me.name }));
    showLogin(false);
    scheduleRefresh();

    // Replay what the open pane missed while we were away; the list is simply fetched again.
    // Always resume (with no cursor when no pane is open): until its first resume the gateway
    // holds live messages back, so that replayed and live ones arrive in order.
    const cursors = {};
    if (selectedId) cursors[selectedId] = contiguousSeq();
    request('resume', { cursors: cursors }).catch(logFailure('resume'));
    refreshList().then(function () {
      const remembered = storageGet(SELECTED_KEY);
      if (!selectedId && remembered && conversations.has(remembered)) openConversation(remembered);
    });
    flushPending();
    // What ./canned.js, ./search.js and ./attachments.js need: this socket, the token (for the
    // HTTP API), who we are, a way to open a conversation that may not be in the list, the
    // upload limits and a way to send an uploaded file.
    document.dispatchEvent(new CustomEvent('chat-console:ready', {
      detail: {
        request: request,
        token: function () { return token; },
        agent: me,
        open: function (conv) { onConversation(conv); openConversation(conv.id); },
        uploads: f.uploads || null,
        send: queueReply,
      },
    }));
  }

  function logFailure(what) {
    return function (err) {
      if (err.code !== 'disconnected') console.warn('[chat-console]', what, 'failed:', err.code, err.message);
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Conversation list

  function refreshList() {
    return request('list_conversations', Object.assign({ limit: LIST_LIMIT }, Sites.filter())).then(function (ack) {
      Sites.seen(ack.conversations || []);
      const states = (ack.read_state && typeof ack.read_state === 'object') ? ack.read_state : {};
      const fresh = new Map();
      for (const c of ack.conversations || []) {
        const old = conversations.get(c.id);
        // The server's read state; a field it leaves out is 0.
        const state = states[c.id] || {};
        fresh.set(c.id, Object.assign({ preview: old ? old.preview : null }, c, {
          unread: state.unread || 0,
          read_seq: state.read_seq || 0,
          visitor_read_seq: Math.max(state.visitor_read_seq || 0, old ? old.visitor_read_seq || 0 : 0),
        }));
      }
      // Keep the open conversation even if it fell off the list window.
      if (selectedId && !fresh.has(selectedId) && conversations.has(selectedId)) fresh.set(selectedId, conversations.get(selectedId));
      conversations.clear();
      for (const [id, c] of fresh) conversations.set(id, c);
      renderList();
      renderPane();
      renderSeen();
      scheduleRead();
    }, logFailure('list_conversations'));
  }

  // A message for a conversation we have never heard of (its `conversation` event raced us or
  // fell outside the list window): fetch the list once things settle.
  function scheduleRelist() {
    clearTimeout(relistTimer);
    relistTimer = setTimeout(refreshList, 300);
  }

  function onConversation(conv) {
    if (!conv || typeof conv.id !== 'string') return;
    const old = conversations.get(conv.id);
    // Read state is not in `conversation` events: keep what the list and live events said.
    // `waiting` is sent only when true: an update without it clears the mark.
    conversations.set(conv.id, Object.assign({}, old || {}, conv, { waiting: conv.waiting === true, preview: old ? old.preview : null }));
    if (!old && welcomed && Sites.shows(conv)) {
      Alerts.conversation(conv, visitorLabel(conv), function () { openConversation(conv.id); });
    }
    renderList();
    if (conv.id === selectedId) renderPane();
  }

  function sortedConversations() {
    const filter = els.filter.value;
    return Array.from(conversations.values())
      .filter(function (c) { return Sites.shows(c) && (filter === 'all' || c.status === filter || c.id === selectedId); })
      .sort(function (a, b) { return timeOf(b.updated_at) - timeOf(a.updated_at); });
  }

  function renderList() {
    // Rebuilding is simplest; keep keyboard focus on the same conversation across rebuilds.
    const focusedId = document.activeElement && document.activeElement.getAttribute('data-conversation-id');
    const items = sortedConversations();
    const frag = document.createDocumentFragment();
    let unreadCount = 0;
    for (const c of items) {
      const count = unreadOf(c);
      const unread = count > 0;
      if (unread) unreadCount++;
      const assignee = c.assignee ? (me && c.assignee.id === me.id ? t('console.you') : c.assignee.name || c.assignee.id) : t('console.unassigned');
      const button = h('button', {
        type: 'button', class: 'conversation', 'data-testid': 'conversation-item', 'data-conversation-id': c.id,
        'data-status': c.status, 'data-unread': String(unread), 'data-unread-count': String(count),
        'data-waiting': String(Boolean(c.waiting)), 'aria-current': c.id === selectedId ? 'true' : null,
        onclick: function () { openConversation(c.id); },
      }, [
        h('div', { class: 'row' }, [
          h('span', { class: 'name', text: visitorLabel(c) }),
          unread ? h('span', { class: 'unread', 'data-testid': 'conversation-unread', 'aria-label': t('console.unreadCount', { count: unreadText(count) }), text: unreadText(count) }) : null,
          c.waiting ? h('span', { class: 'badge waiting', 'data-testid': 'conversation-waiting', title: t('console.waitingHint'), text: t('console.waiting') }) : null,
          h('span', { class: 'badge', 'data-status': c.status, text: c.status === 'closed' ? t('console.status.closed') : t('console.status.open') }),
        ]),
        Sites.spansSeveral() ? h('div', { class: 'site', 'data-testid': 'conversation-site', text: c.site_id || '' }) : null,
        h('div', { class: 'row' }, [
          h('span', { class: 'who', 'data-testid': 'conversation-assignee', text: assignee }),
          h('span', { class: 'time', text: formatTime(c.updated_at) }),
        ]),
        c.preview ? h('div', { class: 'preview', text: c.preview.body }) : null,
      ]);
      frag.appendChild(h('li', null, [button]));
    }
    els.list.replaceChildren(frag);
    els.noConversations.hidden = items.length > 0;
    Alerts.listed(unreadCount);
    if (focusedId) {
      const again = els.list.querySelector('[data-conversation-id="' + CSS.escape(focusedId) + '"]');
      if (again) again.focus();
    }
  }

  els.filter.addEventListener('change', renderList);

  // Another site chosen (./site-switcher.js): the open conversation goes if it is not of it.
  document.addEventListener('chat-console:site', function () {
    const open = selectedId ? conversations.get(selectedId) : null;
    if (open && !Sites.shows(open)) {
      selectedId = null;
      storageSet(SELECTED_KEY, null);
      els.messages.replaceChildren();
      renderPane();
      announce('close', null);
    }
    renderList();
    refreshList();
  });

  // ---------------------------------------------------------------------------------------------
  // Conversation pane

  function openConversation(id) {
    selectedId = id;
    storageSet(SELECTED_KEY, id);
    paneMessages = new Map();
    els.messages.replaceChildren();
    showPaneError(null);
    // Replies typed here earlier and still unconfirmed stay visible.
    for (const p of pending.values()) if (p.cid === id) placeMessage(p.el, p.key);
    renderList();
    renderPane();
    loadHistory(id, 0);
    loadAgents(id);
    announce('open', id);
    els.reply.focus();
  }

  // Tells ./visitor-panel.js which conversation is open, and that something happened in it.
  function announce(what, id) {
    const conv = id ? conversations.get(id) : null;
    const detail = what === 'open' ? { id: id, request: request, site: conv ? conv.site_id : null } : { id: id };
    document.dispatchEvent(new CustomEvent('chat-console:' + what, { detail: detail }));
  }

  function loadHistory(id, afterSeq) {
    request('history', { conversation_id: id, after_seq: afterSeq, limit: HISTORY_PAGE }).then(function (ack) {
      if (selectedId !== id) return;
      const list = ack.messages || [];
      for (const m of list) addPaneMessage(m);
      // A page is cut by count or by bytes (CHAT_WS_MAX_FRAME_BYTES); `more` says another
      // follows.
      const more = typeof ack.more === 'boolean' ? ack.more : list.length >= HISTORY_PAGE;
      if (more && list.length) loadHistory(id, list[list.length - 1].seq);
    }, function (err) {
      // A disconnect is healed by `resume` after reconnecting; anything else the agent should see.
      if (err.code !== 'disconnected' && selectedId === id) showPaneError(t('console.historyFailed', { reason: err.message || err.code }));
    });
  }

  function renderPane() {
    const conv = selectedId ? conversations.get(selectedId) : null;
    els.pane.hidden = !selectedId;
    els.paneEmpty.hidden = Boolean(selectedId);
    if (!selectedId) return;
    els.paneTitle.textContent = conv ? visitorLabel(conv) : t('console.conversation');
    const parts = [];
    if (conv) {
      parts.push(conv.status === 'closed' ? t('console.closed') : t('console.open'));
      if (conv.waiting) parts.push(t('console.waitingMeta'));
      parts.push(conv.assignee ? t('console.assignedTo', { name: me && conv.assignee.id === me.id ? t('console.youLower') : conv.assignee.name || conv.assignee.id }) : t('console.unassigned'));
      if (conv.created_at) parts.push(t('console.started', { time: formatTime(conv.created_at) }));
    }
    els.paneMeta.textContent = parts.join(' · ');
    const mine = Boolean(conv && conv.assignee && me && conv.assignee.id === me.id);
    els.assign.textContent = mine ? t('console.assignedToYou') : t('console.assignToMe');
    els.assign.disabled = !welcomed || mine || !conv;
    els.transfer.disabled = !welcomed || !conv;
    els.close.disabled = !welcomed || !conv || conv.status === 'closed';
  }

  function showPaneError(text) {
    els.paneError.hidden = !text;
    els.paneError.textContent = text || '';
  }

  function placeMessage(el, key) {
    el._key = key;
    const list = els.messages;
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    let after = list.lastElementChild;
    while (after && after._key > key) after = after.previousElementSibling;
    if (after) after.after(el);
    else list.prepend(el);
    if (stick) list.scrollTop = list.scrollHeight;
  }

  // `attachment`: an element of ./attachments.js showing the message's file, above its text.
  function messageElement(role, who, body, meta, kind, attachment) {
    const metaEl = h('span', { class: 'meta', text: meta });
    const el = h('li', { class: 'message', 'data-testid': 'message', 'data-role': role, 'data-kind': kind || 'text' }, [
      h('span', { class: 'who', text: who }),
      attachment
        ? h('div', { class: 'body', 'data-testid': 'message-body' }, [attachment, body ? h('span', { class: 'caption', text: body }) : null])
        : h('div', { class: 'body', 'data-testid': 'message-body', text: body }),
      metaEl,
    ]);
    el._meta = metaEl;
    return el;
  }

  function addPaneMessage(m) {
    if (paneMessages.has(m.seq)) return; // the same message arrives as ack, event and replay
    paneMessages.set(m.seq, m);
    const role = (m.sender && m.sender.role) || 'visitor';
    let who;
    if (role === 'visitor') who = t('console.visitor');
    else if (me && m.sender.id === me.id) who = t('console.you');
    else who = m.sender.name || m.sender.id || t('console.agentName');
    const kind = m.kind === 'note' || m.kind === 'system' ? m.kind : 'text';
    const el = messageElement(role, who, String(m.body), formatTime(m.created_at), kind, m.attachment ? Attachments.view(m.attachment) : null);
    el.setAttribute('data-seq', String(m.seq));
    placeMessage(el, m.seq);
    if (role === 'agent') renderSeen();
    scheduleRead();
  }

  // Highest seq up to which the pane holds every message: resuming from it leaves no hole.
  function contiguousSeq() {
    let seq = 0;
    while (paneMessages.has(seq + 1)) seq++;
    return seq;
  }

  // `live`: a `message` event (not an ack, a replay or history), which may call for an alert.
  function onMessage(m, live) {
    if (!m || typeof m.conversation_id !== 'string' || typeof m.seq !== 'number') return;
    const known = conversations.get(m.conversation_id);
    const isNew = !known || (known.last_seq || 0) < m.seq; // not seen by this console before
    if (m.client_msg_id && pending.has(m.client_msg_id)) confirmPending(m.client_msg_id);
    let conv = conversations.get(m.conversation_id);
    if (!conv) {
      conv = { id: m.conversation_id, status: 'open', assignee: null, last_seq: 0, updated_at: m.created_at, preview: null, unread: 0, read_seq: 0, visitor_read_seq: 0 };
      conversations.set(conv.id, conv);
      scheduleRelist();
    }
    // A visitor message this agent has not seen yet adds to the server's count until the next
    // list; the open conversation, while the tab is visible, is read at once instead.
    const fresh = m.seq > (conv.last_seq || 0) && m.seq > (conv.read_seq || 0);
    const seenNow = m.conversation_id === selectedId && document.visibilityState !== 'hidden';
    if (fresh && !seenNow && m.sender && m.sender.role === 'visitor') conv.unread = Math.min(UNREAD_CAP, (conv.unread || 0) + 1);
    conv.last_seq = Math.max(conv.last_seq || 0, m.seq);
    if (timeOf(m.created_at) > timeOf(conv.updated_at)) conv.updated_at = m.created_at;
    if (!conv.preview || conv.preview.seq < m.seq) conv.preview = { seq: m.seq, body: String(m.body) || (m.attachment ? String(m.attachment.name) : '') };
    if (m.conversation_id === selectedId) {
      addPaneMessage(m);
      announce('activity', m.conversation_id);
    }
    renderList();
    if (live && isNew && m.sender && m.sender.role === 'visitor' && Sites.shows(conv)) {
      Alerts.message(m, visitorLabel(conv), function () { openConversation(m.conversation_id); });
    }
  }

  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible' && selectedId) scheduleRead();
  });

  // ---------------------------------------------------------------------------------------------
  // Read receipts

  // Tells the gateway this agent has seen the open conversation up to what the pane holds
  // without a hole; throttled (READ_INTERVAL_MS) and only when that moves this agent's position.
  function scheduleRead() {
    if (readTimer || !selectedId || document.visibilityState === 'hidden') return;
    const wait = Math.max(0, lastReadAt + READ_INTERVAL_MS - Date.now());
    readTimer = setTimeout(sendRead, wait);
  }

  function sendRead() {
    readTimer = null;
    const id = selectedId;
    const conv = id ? conversations.get(id) : null;
    if (!conv || !welcomed || document.visibilityState === 'hidden') return;
    const seq = contiguousSeq();
    if (seq <= (conv.read_seq || 0)) {
      // Nothing new to store (read already, in another tab perhaps): the pane, once loaded,
      // tells what is left unread.
      if (unreadOf(conv) && paneMessages.size) { conv.unread = unreadInPane(conv.read_seq || 0); renderList(); }
      return;
    }
    // Agents' messages (this agent's replies) need no receipt: only the visitor's count.
    if (!unreadInRange(conv.read_seq || 0, seq)) return;
    lastReadAt = Date.now();
    request('read', { conversation_id: id, seq: seq }).then(function (ack) {
      if (typeof ack.read_seq === 'number') noteOwnRead(id, ack.read_seq);
    }, function (err) {
      if (err.code === 'rate_limited') setTimeout(scheduleRead, err.retry_after_ms || READ_INTERVAL_MS);
      else logFailure('read')(err);
    });
  }

  // Visitor messages after `seq` in the open pane (which holds the whole conversation).
  function unreadInPane(seq) {
    return unreadInRange(seq, Infinity);
  }

  // Visitor messages with a seq in (after, upto] in the open pane.
  function unreadInRange(after, upto) {
    let n = 0;
    for (const m of paneMessages.values()) {
      if (m.seq > after && m.seq <= upto && m.sender && m.sender.role === 'visitor') n++;
    }
    return n;
  }

  function noteOwnRead(id, seq) {
    const conv = conversations.get(id);
    if (!conv || seq < (conv.read_seq || 0)) return;
    conv.read_seq = seq;
    if (id === selectedId) conv.unread = unreadInPane(seq);
    else if (seq >= (conv.last_seq || 0)) conv.unread = 0;
    else scheduleRelist(); // read elsewhere part of the way: the server counts the rest
    renderList();
  }

  function onRead(f) {
    if (typeof f.conversation_id !== 'string' || typeof f.seq !== 'number') return;
    if (f.role === 'agent') {
      // This agent's own read from another tab or device clears its badge here too.
      if (me && f.agent_id === me.id) noteOwnRead(f.conversation_id, f.seq);
      return;
    }
    if (f.role !== 'visitor') return;
    const conv = conversations.get(f.conversation_id);
    if (!conv) return;
    conv.visitor_read_seq = Math.max(conv.visitor_read_seq || 0, f.seq);
    if (f.conversation_id === selectedId) renderSeen();
  }

  // "Seen" under the newest agent message of the open conversation the visitor has read.
  function renderSeen() {
    const old = els.messages.querySelector('[data-testid="message-seen"]');
    const conv = selectedId ? conversations.get(selectedId) : null;
    const upto = conv ? conv.visitor_read_seq || 0 : 0;
    let target = null;
    let best = 0;
    for (const el of els.messages.querySelectorAll('[data-role="agent"][data-seq]')) {
      const seq = Number(el.getAttribute('data-seq'));
      if (seq <= upto && seq > best) { best = seq; target = el; }
    }
    if (old && old.parentElement === target) return;
    if (old) old.remove();
    if (target) target.appendChild(h('span', { class: 'seen', 'data-testid': 'message-seen', text: t('console.seen') }));
  }

  // ---------------------------------------------------------------------------------------------
  // Actions

  els.assign.addEventListener('click', function () {
    const id = selectedId;
    els.assign.disabled = true;
    request('assign', { conversation_id: id }).then(function (ack) {
      showPaneError(null);
      if (ack.conversation) onConversation(ack.conversation);
    }, function (err) {
      showPaneError(t('console.assignFailed', { reason: err.message || err.code }));
      renderPane();
    });
  });

  // Internal notes: the reply box turns into a note box while the toggle is on.
  els.noteToggle.addEventListener('change', function () {
    els.replyForm.setAttribute('data-note', String(els.noteToggle.checked));
    els.reply.placeholder = els.noteToggle.checked
      ? t('console.notePlaceholder')
      : t('console.replyPlaceholder');
    els.reply.focus();
  });

  // Transfer: the agents of the conversation's site (list_agents), and "Unassigned".
  function loadAgents(id) {
    const conv = conversations.get(id);
    const fields = conv && conv.site_id ? { site: conv.site_id } : {};
    request('list_agents', fields).then(function (ack) {
      if (selectedId !== id) return;
      const options = [h('option', { value: '', text: t('console.transferTo') })];
      // Each as an `agent_status` event shows them: { agent: { id, name }, status, connected }.
      for (const view of ack.agents || []) {
        const a = view && view.agent;
        if (!a || typeof a.id !== 'string' || (me && a.id === me.id)) continue;
        const name = a.name || a.id;
        const label = view.connected ? t('console.agentWithStatus', { name: name, status: statusText(view.status) }) : name;
        options.push(h('option', { value: 'agent:' + a.id, 'data-testid': 'transfer-option', text: label }));
      }
      options.push(h('option', { value: 'nobody', text: t('console.unassigned') }));
      els.transfer.replaceChildren.apply(els.transfer, options);
    }, logFailure('list_agents'));
  }

  els.transfer.addEventListener('change', function () {
    const id = selectedId;
    const choice = els.transfer.value;
    els.transfer.value = '';
    if (!id || !choice) return;
    const done = function (ack) {
      showPaneError(null);
      if (ack.conversation) onConversation(ack.conversation);
    };
    const failed = function (err) {
      showPaneError(t('console.transferFailed', { reason: err.message || err.code }));
      renderPane();
    };
    if (choice === 'nobody') request('unassign', { conversation_id: id }).then(done, failed);
    else request('assign', { conversation_id: id, agent_id: choice.slice('agent:'.length) }).then(done, failed);
  });

  els.close.addEventListener('click', function () {
    const id = selectedId;
    els.close.disabled = true;
    request('close', { conversation_id: id }).then(function (ack) {
      showPaneError(null);
      if (ack.conversation) onConversation(ack.conversation);
    }, function (err) {
      showPaneError(t('console.closeFailed', { reason: err.message || err.code }));
      renderPane();
    });
  });

  els.replyForm.addEventListener('submit', function (e) {
    e.preventDefault();
    sendReply();
  });
  els.reply.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendReply();
    }
  });

  function sendReply() {
    const body = els.reply.value;
    if (!body.trim() || !selectedId) return;
    els.reply.value = '';
    queueReply(selectedId, body, els.noteToggle.checked, null);
  }

  // Shows a reply (or note) as sending and sends it; `attachment`: a file ./attachments.js
  // uploaded for conversation `cid`, which may no longer be the open one.
  function queueReply(cid, body, note, attachment) {
    const clientMsgId = randomId('a-');
    const el = messageElement('agent', t('console.you'), body, t('console.sending'), note ? 'note' : 'text', attachment ? Attachments.label(attachment) : null);
    el.setAttribute('data-pending', 'true');
    const p = { cid: cid, body: body, note: note, attachment: attachment, el: el, key: PENDING_KEY_BASE + (++typedSeq), inFlight: false, failed: false };
    pending.set(clientMsgId, p);
    if (cid === selectedId) {
      placeMessage(el, p.key);
      els.messages.scrollTop = els.messages.scrollHeight;
    }
    flushPending();
  }

  // Unconfirmed replies are (re)sent with their original client_msg_id, so a reply whose ack was
  // lost in a disconnect is stored once, never twice.
  function flushPending() {
    if (!welcomed) return;
    for (const [clientMsgId, p] of pending) {
      if (p.inFlight || p.failed) continue;
      p.inFlight = true;
      const frame = { conversation_id: p.cid, client_msg_id: clientMsgId, body: p.body };
      if (p.note) frame.note = true;
      if (p.attachment) frame.attachment_id = p.attachment.id;
      request('send', frame).then(function (ack) {
        if (ack.message) onMessage(ack.message);
        confirmPending(clientMsgId);
      }, function (err) {
        p.inFlight = false;
        if (err.code === 'disconnected') return; // flushed again after reconnecting
        if (err.code === 'unavailable' || err.code === 'internal') {
          p.el._meta.textContent = t('console.retrying');
          setTimeout(flushPending, 2000);
          return;
        }
        p.failed = true;
        p.el.setAttribute('data-failed', 'true');
        p.el._meta.textContent = t('console.notSent', { reason: err.message || err.code });
      });
    }
  }

  function confirmPending(clientMsgId) {
    const p = pending.get(clientMsgId);
    if (!p) return;
    pending.delete(clientMsgId);
    p.el.remove();
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

  // Only once every deferred script of the page has run (DOMContentLoaded follows them): the
  // files after this one (./canned.js, ./search.js, ./signals.js, ...) listen for
  // `chat-console:ready`, `chat-console:open` and `chat-console:event`, and a welcome that
  // arrived while one of them was still loading (slow network, busy machine) was an event it
  // never heard, leaving its part of the console dead until the next reconnect.
  if (document.readyState === 'complete') start();
  else document.addEventListener('DOMContentLoaded', start, { once: true });
})();
