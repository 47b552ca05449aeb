/*
 * Chat widget for customer sites. Embedded with two tags:
 *
 *   <script>window.ChatWidgetConfig = { serverBaseUrl: "https://example.com" }</script>
 *   <script src="https://example.com/chat/widget/widget.js" async></script>
 *
 * It speaks the protocol of docs/protocol.md over one of two transports with the same frames: a raw
 * WebSocket on /ws-visitor/ (the default) or HTTP long-polling on /ws-visitor/poll (when WebSockets
 * are blocked on the way, or the gateway's rollout prefers it for this visitor).
 * Plain ES2020 with no dependencies and no build step: it runs on pages we do not control, so it
 * touches nothing global except one host element and `window.ChatWidget`, keeps its UI in a
 * shadow root (site CSS cannot reach in, ours cannot leak out) and renders data with textContent.
 *
 * Config (window.ChatWidgetConfig): serverBaseUrl, site ("default"), title, position
 * ("bottom-right" | "bottom-left"), color (accent CSS colour), transports (["websocket", "polling"]:
 * the transports allowed, WebSocket first; ["polling"] forces long-polling, ["websocket"] disables
 * the fallback), attributes (a flat object of strings, numbers and booleans shown to agents with the
 * page the visitor is on, e.g. { plan: "pro", orderCount: 3 }: at most 20, keys [A-Za-z0-9_.-]),
 * user ({ id, name, email, hash }: the main site's logged-in user, hash computed on its server;
 * docs/identity.md), locale ("en" | "zh-CN"; default: the browser's languages), offlineEmail
 * (true: when no agent is online, ask for an email address to answer at; false: don't).
 *
 * Every string shown comes from web/i18n/<locale>.js through t(): the gateway serves those
 * tables and web/i18n/i18n.js in the same function scope as this file (gateway/src/assets.rs),
 * and ./attachments.js (images and files: the paperclip, uploads, how they show) with them.
 */
(function () {
  'use strict';

  // The same file is served under three paths; a page that includes two of them gets one widget.
  if (window.ChatWidget && window.ChatWidget.version) return;

  // currentScript is only set while this file first runs, so capture it before anything async.
  const scriptEl = document.currentScript;
  const config = Object.assign({}, window.ChatWidgetConfig || {});
  const i18n = chatI18n(config.locale, navigator.languages || [navigator.language]);
  const t = i18n.t;

  const baseUrl = normalizeBaseUrl(config.serverBaseUrl || scriptOrigin());
  const site = String(config.site || 'default');
  const title = String(config.title || t('widget.title'));
  // Ask for an email address while no agent is online (offline capture), unless told not to.
  const offlineEmail = config.offlineEmail !== false;
  const position = config.position === 'bottom-left' ? 'bottom-left' : 'bottom-right';

  // The logged-in user of the main site (docs/identity.md), or null: an anonymous visitor.
  const user = readUser(config.user);
  // One stored visitor token per identity: the anonymous visitor keeps the key widgets always
  // used, each user (verified or not) has their own, so logging out never reuses a user's token.
  const BASE_KEY = 'chat-widget:v1:' + baseUrl + '|' + site;
  const STORE_KEY = user ? BASE_KEY + (user.hash ? '|user:' : '|unverified:') + user.id : BASE_KEY;
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 30000;
  const HISTORY_PAGE = 200;
  const MAX_FRAMES_PER_POST = 16;
  // Failed upgrades while the server answers plain HTTP before we suspect our stored token.
  const TOKEN_SUSPECT_AFTER = 3;

  const TRANSPORTS = ['websocket', 'polling'];
  const allowedTransports = (function () {
    const list = Array.isArray(config.transports)
      ? config.transports.map(String).filter(function (t) { return TRANSPORTS.indexOf(t) >= 0; })
      : [];
    return list.length ? list : TRANSPORTS.slice();
  })();
  // WebSocket failures before `welcome`, in a row, while the server answers plain HTTP (a proxy
  // that kills upgrades), before we fall back to long-polling.
  const WS_FAILS_BEFORE_FALLBACK = 2;
  // WebSocket sessions that die this soon after `welcome`, in a row, before we fall back too.
  const WS_SHORT_LIVED_MS = 30000;
  const WS_SHORT_LIVED_BEFORE_FALLBACK = 3;
  // After a fallback, how long before we try a WebSocket again (alongside the running session).
  const WS_RETRY_AFTER_MS = 5 * 60 * 1000;
  const WS_PROBE_TIMEOUT_MS = 15000;
  // The gateway holds a poll up to ~25 s; a poll unanswered after this is considered lost.
  const POLL_HOLD_TIMEOUT_MS = 45000;
  const POLL_REQUEST_TIMEOUT_MS = 20000;
  // Lost polls retried (1 s, 2 s…) before the session is considered dead and reopened.
  const POLL_RETRIES = 2;

  // ---------------------------------------------------------------------------------------------
  // State

  let saved = loadSaved(); // { token, transport } for this visitor, in localStorage
  let token = typeof saved.token === 'string' ? saved.token : null;
  let transport = null; // the current transport: { kind, send(frame), close() }
  let transportKind = 'websocket'; // the kind the next connect() opens
  // Why we are on polling: 'only' (the only one allowed or available), 'preferred' (the gateway's
  // rollout said so) or 'fallback' (WebSockets kept failing).
  let pollingReason = null;
  let wsFailStreak = 0;
  let wsShortStreak = 0;
  let wsRetryTimer = null;
  let probe = null; // a WebSocket tried alongside a running polling session
  let probeTimer = null;
  let welcomed = false;
  let welcomedAt = 0;
  let attempt = 0;
  let retryTimer = null;
  let countdownTimer = null;
  let suspectFailures = 0;
  let tryWithoutToken = false;
  let requestSeq = 0;
  let typedSeq = 0;
  let refused = null; // why the gateway refused the user: no reconnecting then
  // On login, the anonymous visitor's token goes along once, so the gateway can move their open
  // conversation to the user (the merge rule of docs/identity.md).
  let mergeToken = user && user.hash ? anonymousTokenToMerge() : null;

  let visitorId = null;
  let agentsOnline = 0;
  let currentConversationId = null;
  let panelOpen = false;
  let unread = 0;
  let connection = { state: 'connecting', text: t('widget.connecting') };
  // The offline form: 'ask', 'sending', 'sent' or 'error'.
  let contactState = typeof saved.email === 'string' && saved.email ? 'sent' : 'ask';

  const conversations = new Map(); // id -> { index, status, closedNoted, agentRead, readSent }
  const messages = new Map(); // "cid:seq" -> message
  // "cid:seq" of numbers we will never get: agents' internal notes take a seq too, and the
  // gateway sends visitors none. Known from gaps within one answer or one session's stream,
  // inside which the gateway promises no gap (docs/protocol.md, "Internal notes").
  const hidden = new Set();
  let streamLast = new Map(); // cid -> last seq of this session's message events (or cursor)
  const requests = new Map(); // request id -> { kind, ... } for acks/errors of in-flight commands
  const pending = new Map(); // client_msg_id -> { body, attachment, el, inFlight, failed }

  // Attachments (./attachments.js, served in this scope): the paperclip, the upload, and what a
  // message's `attachment` shows. A file goes out as a `send` with its caption.
  const attachments = chatWidgetAttachments({
    baseUrl: baseUrl, t: t, size: i18n.size, h: h,
    credentials: function () { return { token: token, user: user }; },
    takeCaption: function () {
      const text = ui.input.value.trim() ? ui.input.value : '';
      ui.input.value = '';
      stopTyping();
      return text;
    },
    restoreCaption: function (text) { if (text && !ui.input.value) ui.input.value = text; },
    send: queueSend,
  });

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  function scriptOrigin() {
    let el = scriptEl;
    if (!el || !el.src) {
      // Some loaders inject the tag in ways that leave currentScript null; find ourselves by path.
      el = Array.prototype.find.call(document.scripts, function (s) {
        return /\/widget\/widget(Script)?\.js(\?|#|$)/.test(s.src);
      });
    }
    try {
      return new URL(el.src, location.href).origin;
    } catch (_) {
      return location.origin;
    }
  }

  function normalizeBaseUrl(raw) {
    try {
      const u = new URL(String(raw), location.href);
      return u.origin + u.pathname.replace(/\/+$/, '');
    } catch (_) {
      return location.origin;
    }
  }

  // Storage can throw (disabled cookies, sandboxed iframes, Safari private mode): chat must still work.
  function storageGet(store, key) {
    try { return window[store].getItem(key); } catch (_) { return null; }
  }
  function storageSet(store, key, value) {
    try {
      if (value === null) window[store].removeItem(key);
      else window[store].setItem(key, value);
    } catch (_) { /* keep going without persistence */ }
  }

  function loadSaved() {
    try {
      const value = JSON.parse(storageGet('localStorage', STORE_KEY) || 'null');
      return value && typeof value === 'object' ? value : {};
    } catch (_) {
      return {};
    }
  }

  function persist() {
    const value = {};
    if (saved.token) value.token = saved.token;
    if (saved.transport === 'polling') value.transport = 'polling';
    if (saved.email) value.email = saved.email;
    storageSet('localStorage', STORE_KEY, Object.keys(value).length ? JSON.stringify(value) : null);
  }

  function saveToken(value) {
    token = value;
    saved.token = value || null;
    persist();
  }

  // The gateway's preference for this visitor, kept for the next page load.
  function rememberTransport(kind) {
    if (kind === 'polling' ? saved.transport === 'polling' : saved.transport !== 'polling') return;
    saved.transport = kind === 'polling' ? 'polling' : null;
    persist();
  }

  // ---------------------------------------------------------------------------------------------
  // Known user (docs/identity.md): ChatWidgetConfig.user goes with every session open as
  // user_id, user_name, user_email and user_hash; the gateway checks the hash.

  function readUser(u) {
    if (!u || typeof u !== 'object' || u.id === undefined || u.id === null || String(u.id) === '') return null;
    const text = function (v) { return typeof v === 'string' && v ? v : null; };
    return { id: String(u.id), name: text(u.name), email: text(u.email), hash: text(u.hash) };
  }

  // The anonymous visitor's token, unless a user already took its conversation since that
  // visitor last connected (the anonymous key's `merged` flag, dropped by its next welcome).
  function anonymousTokenToMerge() {
    try {
      const anon = JSON.parse(storageGet('localStorage', BASE_KEY) || 'null');
      return anon && typeof anon.token === 'string' && !anon.merged ? anon.token : null;
    } catch (_) {
      return null;
    }
  }

  function markMerged() {
    try {
      const anon = JSON.parse(storageGet('localStorage', BASE_KEY) || 'null');
      if (anon && anon.token) storageSet('localStorage', BASE_KEY, JSON.stringify(Object.assign(anon, { merged: true })));
    } catch (_) { /* the next login presents it again: harmless */ }
  }

  // The token a new session presents: the anonymous one while logging in, else our own.
  function presentedToken() {
    return mergeToken || token;
  }

  // The query parameters that open a visitor session (raw WebSocket and long-polling alike).
  function openParams(withToken) {
    const t = withToken ? presentedToken() : null;
    const params = { site: site, token: t };
    if (user) {
      params.user_id = user.id;
      params.user_name = user.name;
      params.user_email = user.email;
      params.user_hash = user.hash;
    }
    return params;
  }

  // The gateway refused the user (a wrong hash, no CHAT_IDENTITY_SECRET, a field out of bounds):
  // reconnecting cannot help, so say why and stop.
  function refuse(message) {
    refused = message || 'refused';
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    clearTimeout(wsRetryTimer);
    retryTimer = countdownTimer = wsRetryTimer = null;
    if (window.console) console.error('[chat-widget] the gateway refused ChatWidgetConfig.user:', refused);
    setConnection('refused', t('widget.refused', { reason: refused }));
  }

  // A 401 with a user: first without our token (it may be the stale part), then it is the user.
  function onRefusedOpen(message, withToken) {
    if (withToken) {
      tryWithoutToken = true;
      mergeToken = null;
    } else {
      refuse(message);
    }
  }

  function randomId(prefix) {
    const bytes = new Uint8Array(12);
    // randomUUID needs a secure context; customer sites may still be plain http.
    crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
  }

  // Builds an element; string children become text nodes, so data can never become markup.
  function h(tag, attrs, children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const name of Object.keys(attrs)) {
        const v = attrs[name];
        if (v === null || v === undefined || v === false) continue;
        if (name === 'text') el.textContent = String(v);
        else if (name.startsWith('on')) el.addEventListener(name.slice(2), v);
        else el.setAttribute(name, v === true ? '' : String(v));
      }
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return el;
  }

  function formatTime(iso) {
    return i18n.time(iso);
  }

  // ---------------------------------------------------------------------------------------------
  // UI

  const CSS = `
    :host { all: initial; }
    .root {
      --accent: #2563eb;
      position: fixed; bottom: 20px; right: 20px; z-index: 2147483647;
      font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
      color: #111827; -webkit-font-smoothing: antialiased;
    }
    .root.left { right: auto; left: 20px; }
    *, *::before, *::after { box-sizing: border-box; }
    [hidden] { display: none !important; }
    button, textarea { font: inherit; color: inherit; }
    .bubble {
      width: 56px; height: 56px; border-radius: 50%; border: none; cursor: pointer;
      background: var(--accent); color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25);
      display: flex; align-items: center; justify-content: center; position: relative;
    }
    .bubble:focus-visible, .send:focus-visible, .close:focus-visible { outline: 3px solid #93c5fd; outline-offset: 2px; }
    .bubble svg { width: 28px; height: 28px; fill: currentColor; }
    .badge {
      position: absolute; top: -4px; right: -4px; min-width: 20px; height: 20px; padding: 0 5px;
      border-radius: 10px; background: #dc2626; color: #fff; font-size: 12px; line-height: 20px;
      text-align: center; font-weight: 600;
    }
    .panel {
      position: absolute; bottom: 72px; right: 0; width: 360px; height: 520px;
      max-width: calc(100vw - 40px); max-height: calc(100vh - 112px);
      display: flex; flex-direction: column; background: #fff; border-radius: 12px; overflow: hidden;
      box-shadow: 0 12px 40px rgba(0,0,0,.25);
    }
    .root.left .panel { right: auto; left: 0; }
    .header { background: var(--accent); color: #fff; padding: 12px 14px; display: flex; align-items: flex-start; gap: 8px; }
    .heading { flex: 1; min-width: 0; }
    .title { margin: 0; font-size: 16px; font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
    .status { font-size: 12px; opacity: .95; display: flex; align-items: center; gap: 6px; }
    .dot { width: 8px; height: 8px; border-radius: 50%; background: #9ca3af; }
    .status[data-online="true"] .dot { background: #4ade80; }
    .close { background: transparent; border: none; color: #fff; font-size: 22px; line-height: 1; cursor: pointer; padding: 0 4px; }
    .conn { font-size: 12px; padding: 4px 14px; background: #fef3c7; color: #92400e; }
    .conn[data-state="open"] { background: #ecfdf5; color: #065f46; }
    .conn[data-state="refused"] { background: #fee2e2; color: #991b1b; }
    .list { flex: 1; overflow-y: auto; margin: 0; padding: 12px; list-style: none; background: #f9fafb; }
    .msg { display: flex; flex-direction: column; margin: 0 0 10px; max-width: 85%; }
    .msg[data-role="visitor"] { margin-left: auto; align-items: flex-end; }
    .msg .who { font-size: 11px; color: #6b7280; margin: 0 4px 2px; }
    .msg .body {
      padding: 8px 11px; border-radius: 12px; background: #fff; border: 1px solid #e5e7eb;
      white-space: pre-wrap; overflow-wrap: anywhere;
    }
    .msg[data-role="visitor"] .body { background: var(--accent); color: #fff; border-color: transparent; }
    .msg .meta { font-size: 11px; color: #6b7280; margin: 2px 4px 0; }
    .msg[data-pending="true"] .body { opacity: .7; }
    .msg[data-failed="true"] .meta { color: #b91c1c; }
    .note { text-align: center; font-size: 12px; color: #6b7280; margin: 6px 0 12px; }
    .seen { text-align: right; font-size: 11px; color: #6b7280; margin: -6px 4px 10px; }
    .empty { text-align: center; font-size: 13px; color: #6b7280; margin-top: 24px; }
    .typing { font-size: 12px; font-style: italic; color: #6b7280; padding: 2px 14px 4px; background: #f9fafb; }
    .composer { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e5e7eb; background: #fff; }
    .input {
      flex: 1; resize: none; height: 40px; max-height: 120px; padding: 9px 10px;
      border: 1px solid #d1d5db; border-radius: 8px; background: #fff; outline: none;
    }
    .input:focus { border-color: var(--accent); box-shadow: 0 0 0 2px rgba(37,99,235,.2); }
    .send { border: none; border-radius: 8px; padding: 0 14px; background: var(--accent); color: #fff; cursor: pointer; font-weight: 600; }
    .send:disabled { opacity: .5; cursor: default; }
    .offline { padding: 10px 12px; border-top: 1px solid #e5e7eb; background: #fffbeb; }
    .offline-note { margin: 0 0 6px; font-size: 13px; color: #92400e; }
    .offline[data-state="sent"] .offline-note { color: #065f46; margin: 0; }
    .offline-fields { display: flex; gap: 6px; }
    .offline-email { flex: 1; min-width: 0; padding: 6px 8px; border: 1px solid #d1d5db; border-radius: 6px; font: inherit; }
    .offline-submit { border: none; border-radius: 6px; padding: 0 10px; background: var(--accent); color: #fff; cursor: pointer; font: inherit; }
    .offline-submit:disabled { opacity: .5; cursor: default; }
    .sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
    @media (max-width: 480px) {
      .panel { position: fixed; inset: 0; width: auto; height: auto; max-width: none; max-height: none; border-radius: 0; }
      /* The full-screen panel has its own close button; the bubble would cover Send. */
      .root.open .bubble { display: none; }
    }
  `;

  let ui = null;

  function buildUi() {
    // A custom tag name is unlikely to be matched by site selectors such as `div { ... }`.
    const host = document.createElement('chat-widget');
    host.setAttribute('data-testid', 'chat-widget');
    // Inline !important beats any site rule aimed at the host; CSSOM writes are CSP-safe.
    host.style.setProperty('all', 'initial', 'important');
    host.style.setProperty('display', 'block', 'important');
    // Open mode so tests (and assistive tooling) can reach in; isolation is the same either way.
    const shadow = host.attachShadow({ mode: 'open' });

    if (shadow.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === 'function' && 'replaceSync' in CSSStyleSheet.prototype) {
      // Constructed sheets are not inline <style>, so a site CSP without 'unsafe-inline' still allows them.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS + attachments.css);
      shadow.adoptedStyleSheets = [sheet];
    } else {
      shadow.appendChild(h('style', { text: CSS + attachments.css }));
    }

    const panelId = 'chat-widget-panel';
    const inputId = 'chat-widget-input';

    const badge = h('span', { class: 'badge', 'aria-hidden': 'true', hidden: true });
    const bubble = h('button', {
      type: 'button', class: 'bubble', 'data-testid': 'chat-bubble',
      'aria-label': t('widget.open'), 'aria-controls': panelId, 'aria-expanded': 'false',
      onclick: function () { panelOpen ? closePanel() : openPanel(); },
    }, [badge]);
    // Built node by node: parsing markup would throw on sites that enforce Trusted Types.
    const SVG_NS = 'http://www.w3.org/2000/svg';
    const icon = document.createElementNS(SVG_NS, 'svg');
    icon.setAttribute('viewBox', '0 0 24 24');
    icon.setAttribute('aria-hidden', 'true');
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z');
    icon.appendChild(path);
    bubble.insertBefore(icon, badge);

    const status = h('div', { class: 'status', 'data-testid': 'chat-status', 'data-online': 'false' }, [
      h('span', { class: 'dot', 'aria-hidden': 'true' }),
      h('span', { class: 'status-text', text: t('widget.offline') }),
    ]);
    const conn = h('div', { class: 'conn', 'data-testid': 'chat-connection', role: 'status', 'aria-live': 'polite', 'data-state': 'connecting', text: t('widget.connecting') });
    const empty = h('li', { class: 'empty', text: t('widget.empty') });
    const list = h('ol', { class: 'list', 'data-testid': 'chat-messages', role: 'log', 'aria-live': 'polite', 'aria-label': t('widget.messages') }, [empty]);
    const input = h('textarea', {
      id: inputId, class: 'input', 'data-testid': 'chat-input', rows: '1', placeholder: t('widget.placeholder'),
      'aria-label': t('widget.message'), autocomplete: 'off',
    });
    const typing = h('div', { class: 'typing', 'data-testid': 'chat-typing', 'aria-live': 'polite', hidden: true });
    const sendButton = h('button', { type: 'submit', class: 'send', 'data-testid': 'chat-send', text: t('widget.send') });
    const form = h('form', { class: 'composer', 'aria-label': t('widget.compose') }, [attachments.button, attachments.input, input, sendButton]);
    const offline = buildOfflineForm();

    const panel = h('section', {
      id: panelId, class: 'panel', 'data-testid': 'chat-panel', role: 'dialog', 'aria-label': title, hidden: true,
    }, [
      h('div', { class: 'header' }, [
        h('div', { class: 'heading' }, [h('h2', { class: 'title', text: title }), status]),
        h('button', { type: 'button', class: 'close', 'aria-label': t('widget.close'), 'data-testid': 'chat-close', text: '×', onclick: closePanel }),
      ]),
      conn,
      list,
      typing,
      attachments.status,
      offline.box,
      form,
    ]);

    const root = h('div', { class: 'root' + (position === 'bottom-left' ? ' left' : '') }, [panel, bubble]);
    if (config.color) root.style.setProperty('--accent', String(config.color));
    shadow.appendChild(root);

    form.addEventListener('submit', function (e) { e.preventDefault(); submitInput(); });
    input.addEventListener('keydown', function (e) {
      // Enter sends, Shift+Enter is a newline; never interrupt an IME composition.
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitInput(); }
    });
    panel.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { closePanel(); bubble.focus(); }
    });
    input.addEventListener('input', onInputTyping);
    input.addEventListener('blur', stopTyping);

    document.body.appendChild(host);
    return { host, shadow, root, bubble, badge, panel, status, conn, list, empty, input, typing, offline };
  }

  function openPanel() {
    panelOpen = true;
    storageSet('sessionStorage', BASE_KEY + ':open', '1');
    if (!ui) return;
    ui.panel.hidden = false;
    ui.root.classList.add('open');
    ui.bubble.setAttribute('aria-expanded', 'true');
    ui.bubble.setAttribute('aria-label', t('widget.close'));
    unread = 0;
    renderBadge();
    scrollToEnd();
    ui.input.focus();
    scheduleRead();
  }

  function closePanel() {
    panelOpen = false;
    storageSet('sessionStorage', BASE_KEY + ':open', null);
    if (!ui) return;
    ui.panel.hidden = true;
    ui.root.classList.remove('open');
    ui.bubble.setAttribute('aria-expanded', 'false');
    renderBadge();
  }

  function renderBadge() {
    if (!ui) return;
    ui.badge.hidden = unread === 0;
    ui.badge.textContent = unread > 9 ? '9+' : String(unread);
    if (!panelOpen) ui.bubble.setAttribute('aria-label', unread ? t('widget.openUnread', { count: unread }) : t('widget.open'));
  }

  function renderStatus() {
    if (!ui) return;
    // Agents we cannot reach cannot answer: show Offline unless connected with someone online.
    const online = connection.state === 'open' && agentsOnline > 0;
    ui.status.setAttribute('data-online', String(online));
    ui.status.querySelector('.status-text').textContent = online ? t('widget.online') : t('widget.offline');
    renderOffline();
  }

  // ---------------------------------------------------------------------------------------------
  // Offline capture: while no agent of the site is online, say so and offer a field for an email
  // address (sent with `contact`, docs/protocol.md); the visitor can write all the same. Once
  // given (remembered with the visitor's token), the form says where we will answer.

  const EMAIL_SHAPE = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;
  const MAX_EMAIL_BYTES = 254;

  function buildOfflineForm() {
    const note = h('p', { class: 'offline-note', 'data-testid': 'chat-offline-note', text: t('widget.offlineAsk') });
    const email = h('input', {
      type: 'email', class: 'offline-email', 'data-testid': 'chat-offline-email', autocomplete: 'email',
      placeholder: t('widget.emailPlaceholder'), 'aria-label': t('widget.emailLabel'), maxlength: String(MAX_EMAIL_BYTES),
    });
    const submit = h('button', { type: 'submit', class: 'offline-submit', 'data-testid': 'chat-offline-submit', text: t('widget.emailSubmit') });
    const fields = h('div', { class: 'offline-fields' }, [email, submit]);
    const box = h('form', { class: 'offline', 'data-testid': 'chat-offline', 'data-state': contactState, 'aria-label': t('widget.offlineTitle'), novalidate: true, hidden: true }, [note, fields]);
    box.addEventListener('submit', function (e) { e.preventDefault(); submitContact(); });
    return { box: box, note: note, email: email, submit: submit, fields: fields };
  }

  function renderOffline() {
    if (!ui || !ui.offline) return;
    const o = ui.offline;
    const show = offlineEmail && connection.state === 'open' && agentsOnline === 0;
    o.box.hidden = !show;
    o.box.setAttribute('data-state', contactState);
    o.fields.hidden = contactState === 'sent';
    o.submit.disabled = contactState === 'sending' || !transport || !welcomed;
    if (contactState === 'sent') o.note.textContent = t('widget.emailSaved', { email: saved.email || '' });
    else if (contactState === 'error') o.note.textContent = o.errorText || t('widget.emailInvalid');
    else o.note.textContent = t('widget.offlineAsk');
  }

  function submitContact() {
    const email = ui.offline.email.value.trim();
    if (!EMAIL_SHAPE.test(email) || new TextEncoder().encode(email).length > MAX_EMAIL_BYTES) {
      ui.offline.errorText = t('widget.emailInvalid');
      contactState = 'error';
      renderOffline();
      return;
    }
    if (!transport || !welcomed) return;
    contactState = 'sending';
    request({ type: 'contact', email: email }, { kind: 'contact', email: email });
    renderOffline();
  }

  function onContactSaved(email) {
    saved.email = email;
    persist();
    contactState = 'sent';
    renderOffline();
  }

  function onContactFailed(err) {
    contactState = 'error';
    ui.offline.errorText = err.code === 'rate_limited' ? t('widget.emailTooOften') : t('widget.emailInvalid');
    renderOffline();
  }

  function setConnection(state, text) {
    connection = { state: state, text: text };
    if (ui) {
      ui.conn.setAttribute('data-state', state);
      ui.conn.textContent = text;
    }
    renderStatus();
    renderTransport();
  }

  function currentTransport() {
    return transport ? transport.kind : transportKind;
  }

  function renderTransport() {
    if (ui) ui.conn.setAttribute('data-transport', currentTransport());
  }

  function scrollToEnd() {
    if (ui) ui.list.scrollTop = ui.list.scrollHeight;
  }

  function nearBottom() {
    return !ui || ui.list.scrollHeight - ui.list.scrollTop - ui.list.clientHeight < 60;
  }

  // Order: conversations in the order first seen, then seq; notes close their conversation;
  // unconfirmed sends always sit at the end, in the order typed.
  function compareKeys(a, b) {
    return a[0] - b[0] || a[1] - b[1];
  }

  function placeInList(el, key) {
    el._chatKey = key;
    const list = ui.list;
    let after = list.lastElementChild;
    while (after && (!after._chatKey || compareKeys(after._chatKey, key) > 0)) {
      after = after.previousElementSibling;
    }
    const stick = nearBottom();
    if (after) after.after(el);
    else list.insertBefore(el, list.firstChild);
    ui.empty.hidden = true;
    if (stick) scrollToEnd();
  }

  function senderLabel(m) {
    if (m.sender && m.sender.role === 'visitor') return t('widget.you');
    return (m.sender && m.sender.name) || t('widget.agent');
  }

  // `attachment`: the message's file, shown above its text (the caption).
  function messageElement(role, who, body, meta, attachment) {
    const metaEl = h('span', { class: 'meta', text: meta });
    const el = h('li', { class: 'msg', 'data-testid': 'chat-message', 'data-role': role }, [
      h('span', { class: 'who', text: who }),
      attachment
        ? h('div', { class: 'body' }, [attachments.view(attachment), body ? h('span', { class: 'caption', text: body }) : null])
        : h('div', { class: 'body', text: body }),
      metaEl,
    ]);
    el._meta = metaEl;
    return el;
  }

  function conversationIndex(cid) {
    let c = conversations.get(cid);
    if (!c) {
      c = { index: conversations.size, status: 'open', closedNoted: false, agentRead: 0, readSent: 0 };
      conversations.set(cid, c);
    }
    return c.index;
  }

  // ---------------------------------------------------------------------------------------------
  // Messages

  // Adds a committed message once, wherever it came from (ack, live event, replay, history).
  function addMessage(m, live) {
    if (!m || typeof m.conversation_id !== 'string' || typeof m.seq !== 'number') return;
    const idx = conversationIndex(m.conversation_id);
    if (m.client_msg_id && pending.has(m.client_msg_id)) {
      // Our own send, confirmed via a live event or a replay after its ack was lost.
      const p = pending.get(m.client_msg_id);
      pending.delete(m.client_msg_id);
      if (p.el) p.el.remove();
    }
    const key = m.conversation_id + ':' + m.seq;
    if (messages.has(key)) return;
    messages.set(key, m);
    if (!currentConversationId || conversations.get(currentConversationId).index < idx) {
      currentConversationId = m.conversation_id;
    }
    const role = (m.sender && m.sender.role) || 'agent';
    const el = m.kind === 'system'
      ? h('li', { class: 'note', 'data-testid': 'chat-system', text: String(m.body) })
      : messageElement(role, senderLabel(m), String(m.body), formatTime(m.created_at), m.attachment);
    el.setAttribute('data-seq', String(m.seq));
    el.setAttribute('data-conversation-id', m.conversation_id);
    placeInList(el, [idx, m.seq]);
    if (role === 'agent' && m.sender && agentsTyping.has(m.sender.id)) clearAgentTyping(m.sender.id);
    if (live && role !== 'visitor' && !panelOpen) {
      unread++;
      renderBadge();
    }
    if (role === 'visitor' && m.conversation_id === currentConversationId) renderSeen();
    scheduleRead();
  }

  // ---------------------------------------------------------------------------------------------
  // Read receipts (docs/protocol.md, "Read receipts"): `read` tells the gateway how far the
  // visitor has seen the current conversation (panel open, tab visible), at most every
  // READ_INTERVAL_MS (the gateway allows 2 a second); a `read` event from an agent puts "Seen"
  // under the newest visitor message it covers.

  const READ_INTERVAL_MS = 600;
  let readTimer = null;
  let lastReadAt = 0;
  let seenEl = null;

  function scheduleRead() {
    if (readTimer || !panelOpen || !welcomed || document.visibilityState === 'hidden') return;
    const wait = Math.max(0, lastReadAt + READ_INTERVAL_MS - Date.now());
    readTimer = setTimeout(sendRead, wait);
  }

  function sendRead() {
    readTimer = null;
    const cid = currentConversationId;
    const c = cid ? conversations.get(cid) : null;
    if (!c || !transport || !welcomed || !panelOpen || document.visibilityState === 'hidden') return;
    const seq = contiguousSeq(cid);
    if (seq <= c.readSent) return;
    // Only what others wrote is worth telling: the visitor's own messages need no receipt.
    let news = false;
    for (let s = c.readSent + 1; s <= seq && !news; s++) {
      const m = messages.get(cid + ':' + s);
      news = !m || !m.sender || m.sender.role !== 'visitor';
    }
    if (!news) return;
    c.readSent = seq;
    lastReadAt = Date.now();
    request({ type: 'read', conversation_id: cid, seq: seq }, { kind: 'read', cid: cid });
  }

  function onRead(f) {
    if (typeof f.conversation_id !== 'string' || typeof f.seq !== 'number') return;
    const c = conversations.get(f.conversation_id);
    if (!c) return;
    if (f.role === 'agent') {
      c.agentRead = Math.max(c.agentRead, f.seq);
      renderSeen();
    } else if (f.role === 'visitor') {
      c.readSent = Math.max(c.readSent, f.seq); // read in another tab
    }
  }

  // One "Seen" line, under the newest visitor message of the current conversation an agent has
  // read.
  function renderSeen() {
    if (!ui) return;
    const cid = currentConversationId;
    const c = cid ? conversations.get(cid) : null;
    let best = 0;
    if (c && c.agentRead) {
      for (const m of messages.values()) {
        if (m.conversation_id === cid && m.seq <= c.agentRead && m.seq > best && m.sender && m.sender.role === 'visitor') best = m.seq;
      }
    }
    if (!best) {
      if (seenEl) { seenEl.remove(); seenEl = null; }
      return;
    }
    if (!seenEl) seenEl = h('li', { class: 'seen', 'data-testid': 'chat-seen', text: t('widget.seen') });
    seenEl.setAttribute('data-seq', String(best));
    seenEl.remove();
    placeInList(seenEl, [c.index, best + 0.5]);
  }

  // Highest seq up to which we hold every message (or know it hidden): resuming from it can
  // never leave a hole.
  function contiguousSeq(cid) {
    let seq = 0;
    while (messages.has(cid + ':' + (seq + 1)) || hidden.has(cid + ':' + (seq + 1))) seq++;
    return seq;
  }

  // Numbers between two messages with no message between them were taken by notes.
  function markHidden(cid, after, before) {
    for (let seq = after + 1; seq < before; seq++) hidden.add(cid + ':' + seq);
  }

  // A message event of this session: a gap since the previous one (or since the resume
  // cursor) is notes.
  function onStreamedMessage(m) {
    if (!m || typeof m.conversation_id !== 'string' || typeof m.seq !== 'number') return;
    const last = streamLast.get(m.conversation_id);
    if (typeof last === 'number' && m.seq > last + 1) markHidden(m.conversation_id, last, m.seq);
    if (typeof last !== 'number' || m.seq > last) streamLast.set(m.conversation_id, m.seq);
    addMessage(m, true);
  }

  function noteConversation(conv) {
    if (!conv || typeof conv.id !== 'string') return;
    const idx = conversationIndex(conv.id);
    const c = conversations.get(conv.id);
    c.status = conv.status;
    if (conv.status === 'closed' && !c.closedNoted) {
      c.closedNoted = true;
      const el = h('li', { class: 'note', 'data-testid': 'chat-note', text: t('widget.closedNote') });
      placeInList(el, [idx, Number.MAX_SAFE_INTEGER]);
    }
  }

  function submitInput() {
    const body = ui.input.value;
    if (!body.trim()) return;
    ui.input.value = '';
    stopTyping();
    queueSend(body, null);
  }

  // Shows the message as sending and sends it once connected; `attachment`: an uploaded file.
  function queueSend(body, attachment) {
    const clientMsgId = randomId('w-');
    const el = messageElement('visitor', t('widget.you'), body, t('widget.sending'), attachment);
    el.setAttribute('data-pending', 'true');
    pending.set(clientMsgId, { body: body, attachment: attachment, el: el, inFlight: false, failed: false });
    placeInList(el, [Number.MAX_SAFE_INTEGER, ++typedSeq]);
    scrollToEnd();
    flushPending();
  }

  function flushPending() {
    if (!transport || !welcomed) return;
    for (const [clientMsgId, p] of pending) {
      if (p.inFlight || p.failed) continue;
      p.inFlight = true;
      // No conversation_id: the gateway routes to the visitor's open conversation, creating one
      // if the previous was closed.
      const frame = { type: 'send', client_msg_id: clientMsgId, body: p.body };
      if (p.attachment) frame.attachment_id = p.attachment.id;
      request(frame, { kind: 'send', clientMsgId: clientMsgId });
    }
  }

  function onSendFailed(clientMsgId, err) {
    const p = pending.get(clientMsgId);
    if (!p) return;
    p.inFlight = false;
    if (err.code === 'unavailable' || err.code === 'internal') {
      // Nothing was written: retrying with the same client_msg_id is safe and cannot duplicate.
      p.el._meta.textContent = t('widget.retrying');
      setTimeout(flushPending, 2000);
      return;
    }
    p.failed = true;
    p.el.setAttribute('data-failed', 'true');
    p.el._meta.textContent = t('widget.notSent', { reason: err.message || err.code || 'error' });
  }

  // ---------------------------------------------------------------------------------------------
  // Transports
  //
  // Both have one interface: open(handlers, withToken) returns { kind, send(frame), close() } at
  // once and later calls handlers.onframe(frame) for every server event (acks and errors
  // included) and handlers.onclose(info) once when the session ends by itself (never after
  // close(), never synchronously). The rest of the widget does not care which one is in use.

  function socketUrl(withToken) {
    const u = new URL(endpointUrl('/ws-visitor/', openParams(withToken)));
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    return u.toString();
  }

  function openWebSocket(handlers, withToken) {
    let sock = null;
    let closed = false;
    const t = {
      kind: 'websocket',
      send: function (frame) {
        if (closed || !sock) return;
        try { sock.send(JSON.stringify(frame)); } catch (_) { /* closing: onclose follows */ }
      },
      close: function () {
        if (closed) return;
        closed = true;
        if (sock) { try { sock.close(); } catch (_) { /* already gone */ } }
      },
    };
    const lost = function (info) {
      if (closed) return;
      closed = true;
      handlers.onclose(info);
    };
    try {
      sock = new WebSocket(socketUrl(withToken));
    } catch (_) {
      // No WebSocket at all, or one refused on the spot (CSP, a stub): a failure like any other.
      setTimeout(function () { lost({}); }, 0);
      return t;
    }
    sock.onmessage = function (ev) {
      if (closed) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch (_) { return; }
      if (frame && typeof frame === 'object') handlers.onframe(frame);
    };
    sock.onclose = function (ev) { lost({ code: ev.code }); };
    return t;
  }

  function pollUrl(params) {
    return endpointUrl('/ws-visitor/poll', params);
  }

  function endpointUrl(path, params) {
    const u = new URL(baseUrl + path);
    for (const k of Object.keys(params)) {
      if (params[k] !== null && params[k] !== undefined) u.searchParams.set(k, String(params[k]));
    }
    return u.toString();
  }

  // fetch with a deadline; resolves { status, data } (data: parsed JSON or null), rejects when
  // the request never got an HTTP answer.
  function fetchJson(url, init, timeoutMs, ctrl) {
    ctrl = ctrl || new AbortController();
    const timer = setTimeout(function () { ctrl.abort(); }, timeoutMs);
    // No cookies and a text/plain body: a simple request, no CORS preflight on customer sites.
    const opts = Object.assign({ cache: 'no-store', credentials: 'omit', signal: ctrl.signal }, init);
    return fetch(url, opts).then(function (res) {
      return res.text().then(function (text) {
        let data = null;
        try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
        return { status: res.status, data: data };
      });
    }).finally(function () { clearTimeout(timer); });
  }

  // HTTP long-polling: POST opens a session (its answer carries `welcome`), one GET at a time
  // streams events by cursor, and each POST of frames is answered with their acks/errors.
  function openPolling(handlers, withToken) {
    let sid = null;
    let cursor = 0;
    let closed = false;
    let failures = 0;
    let getCtrl = null;
    let outbox = [];
    let flushQueued = false;

    const t = {
      kind: 'polling',
      send: function (frame) {
        if (closed) return;
        outbox.push(frame);
        // Frames sent in one go (pending messages after a reconnect) share one POST.
        if (!flushQueued) { flushQueued = true; Promise.resolve().then(flush); }
      },
      close: function () {
        if (closed) return;
        closed = true;
        if (getCtrl) getCtrl.abort();
      },
    };

    function fail(info) {
      if (closed) return;
      t.close();
      handlers.onclose(info);
    }

    function deliver(events) {
      if (!Array.isArray(events)) return;
      for (const e of events) {
        if (closed) return; // a frame may have replaced this transport
        if (e && typeof e === 'object') handlers.onframe(e);
      }
    }

    function poll() {
      if (closed) return;
      getCtrl = new AbortController();
      fetchJson(pollUrl({ sid: sid, cursor: cursor }), { method: 'GET' }, POLL_HOLD_TIMEOUT_MS, getCtrl).then(function (r) {
        if (closed) return;
        if (r.status === 200 && r.data && Array.isArray(r.data.events)) {
          failures = 0;
          if (typeof r.data.cursor === 'number') cursor = r.data.cursor;
          deliver(r.data.events);
          poll();
        } else if (r.status === 410) {
          fail({ status: 410, expired: true });
        } else {
          retry(r.status);
        }
      }, function () {
        if (!closed) retry(0);
      });
    }

    function retry(status) {
      if (++failures > POLL_RETRIES) return fail({ status: status });
      setTimeout(poll, 1000 * failures);
    }

    function flush() {
      flushQueued = false;
      if (closed || !sid || !outbox.length) return;
      // The gateway takes at most CHAT_POLL_MAX_FRAMES_PER_POST (default 16) frames a POST;
      // the rest follows once this one is answered.
      post(outbox.splice(0, MAX_FRAMES_PER_POST));
    }

    function post(frames) {
      const body = JSON.stringify(frames.length === 1 ? frames[0] : frames);
      fetchJson(pollUrl({ sid: sid }), { method: 'POST', body: body }, POLL_REQUEST_TIMEOUT_MS).then(function (r) {
        if (closed) return;
        if (r.status === 200 && r.data && Array.isArray(r.data.answers)) {
          deliver(r.data.answers);
          if (outbox.length) flush();
          return;
        }
        if (r.status === 410) return fail({ status: 410, expired: true });
        if (r.status === 413 && frames.length > 1) {
          for (const f of frames) post([f]); // find the one that is too large
          return;
        }
        if (r.status === 400 || r.status === 413) {
          // The gateway refused the body as a whole: answer each frame as the WebSocket would.
          const code = r.status === 413 ? 'too_large' : 'bad_request';
          const message = (r.data && r.data.message) || (r.status === 413 ? 'too large' : 'bad request');
          return deliver(frames.filter(function (f) { return f.id; }).map(function (f) {
            return { type: 'error', id: f.id, code: code, message: message };
          }));
        }
        // Anything else (5xx, a proxy's page): nothing says the frames were handled. Reopen and
        // resume; sends carry a client_msg_id, so resending them cannot duplicate.
        fail({ status: r.status });
      }, function () {
        fail({});
      });
    }

    const openUrl = pollUrl(openParams(withToken));
    fetchJson(openUrl, { method: 'POST', body: '' }, POLL_REQUEST_TIMEOUT_MS).then(function (r) {
      if (closed) return;
      if (r.status !== 200 || !r.data || typeof r.data.sid !== 'string') {
        return fail({ status: r.status, error: r.data && r.data.error, message: r.data && r.data.message });
      }
      sid = r.data.sid;
      cursor = typeof r.data.cursor === 'number' ? r.data.cursor : 0;
      deliver(r.data.events);
      poll();
      flush();
    }, function () {
      fail({});
    });
    return t;
  }

  function canUse(kind) {
    if (allowedTransports.indexOf(kind) < 0) return false;
    if (kind === 'websocket') return typeof window.WebSocket === 'function';
    return typeof fetch === 'function' && typeof AbortController === 'function';
  }

  function chooseInitialTransport() {
    if (!canUse('websocket') && canUse('polling')) {
      transportKind = 'polling';
      pollingReason = 'only';
    } else if (saved.transport === 'polling' && canUse('polling')) {
      transportKind = 'polling';
      pollingReason = 'preferred';
    } else {
      transportKind = 'websocket';
    }
  }

  // Opens a transport whose callbacks reach the widget only while it is the current one (or
  // the probe).
  function attach(kind, withToken) {
    const opened = Date.now();
    const handlers = {
      onframe: function (frame) {
        if (t === probe) onProbeFrame(t, frame);
        else if (t === transport) handleFrame(frame);
      },
      onclose: function (info) {
        if (t === probe) onProbeClosed(t);
        else if (t === transport) onTransportClosed(t, info || {}, withToken, opened);
      },
    };
    const t = kind === 'polling' ? openPolling(handlers, withToken) : openWebSocket(handlers, withToken);
    return t;
  }

  // Forgets the current transport without the reconnect its closing would otherwise cause.
  function dropTransport() {
    const t = transport;
    transport = null;
    welcomed = false;
    requests.clear();
    for (const p of pending.values()) p.inFlight = false;
    if (t) t.close();
  }

  // ---------------------------------------------------------------------------------------------
  // Connection

  function request(frame, meta) {
    const id = 'w' + (++requestSeq);
    frame.id = id;
    requests.set(id, meta || { kind: frame.type });
    if (transport) transport.send(frame);
    return id;
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
    if (transport) dropTransport();
    if (refused) return;
    setConnection('connecting', attempt === 0 ? t('widget.connecting') : t('widget.reconnecting'));
    const withToken = Boolean(presentedToken() && !tryWithoutToken);
    welcomed = false;
    transport = attach(transportKind, withToken);
    renderTransport();
  }

  function onTransportClosed(t, info, withToken, opened) {
    const hadWelcome = welcomed;
    transport = null;
    welcomed = false;
    requests.clear();
    for (const p of pending.values()) p.inFlight = false;
    if (t.kind === 'websocket') {
      if (!hadWelcome) onWebSocketFailedBeforeWelcome(withToken);
      else if (Date.now() - welcomedAt < WS_SHORT_LIVED_MS) {
        if (++wsShortStreak >= WS_SHORT_LIVED_BEFORE_FALLBACK) fallBackIfServerUp();
      } else {
        wsShortStreak = 0;
      }
    } else if (!hadWelcome) {
      onPollingFailedBeforeWelcome(info, withToken);
    }
    if (refused) return;
    scheduleReconnect();
  }

  // Resolves false when the server is unreachable, true otherwise; a 401 is handled on the way.
  // A session it opens is left to expire (60 s): this runs only after a failed upgrade.
  function whyRefused(withToken) {
    return fetchJson(pollUrl(openParams(withToken)), { method: 'POST', body: '' }, POLL_REQUEST_TIMEOUT_MS).then(function (r) {
      if (r.status === 401) onRefusedOpen(r.data && r.data.message, withToken);
      return true;
    }, function () {
      return false;
    });
  }

  function serverReachable() {
    return fetch(baseUrl + '/chat/health', { mode: 'no-cors', cache: 'no-store' }).then(function () {
      return true;
    }, function () {
      return false;
    });
  }

  // The browser hides the HTTP status of a refused upgrade. A stale or foreign visitor token gets
  // 401 forever, so if the server answers plain HTTP while refusing us, try once without the token
  // and adopt the new identity only if that works; a merely restarting server never costs the
  // visitor their conversation. The same check tells a proxy that kills upgrades (the server
  // answers HTTP) from a server that is down: only the former is worth falling back to polling.
  function onWebSocketFailedBeforeWelcome(withToken) {
    let suspectToken = withToken;
    if (tryWithoutToken) {
      tryWithoutToken = false; // no better without it: the token was not the problem
      suspectFailures = 0;
      suspectToken = false;
    }
    const mayFallBack = transportKind === 'websocket' && canUse('polling');
    if (!suspectToken && !mayFallBack && !user) return;
    // With a user, the same open over plain HTTP tells a refused user (401, and why) from
    // anything else; it also says whether the server is up.
    const check = user ? whyRefused(withToken) : serverReachable();
    check.then(function (up) {
      if (refused || tryWithoutToken) return;
      if (!up) {
        suspectFailures = 0; // server unreachable: says nothing about the token
        wsFailStreak = 0;
        return;
      }
      if (suspectToken && ++suspectFailures >= TOKEN_SUSPECT_AFTER) tryWithoutToken = true;
      if (mayFallBack && ++wsFailStreak >= WS_FAILS_BEFORE_FALLBACK) fallBackToPolling();
    });
  }

  function fallBackIfServerUp() {
    if (!canUse('polling')) return;
    serverReachable().then(function (up) { if (up) fallBackToPolling(); });
  }

  function fallBackToPolling() {
    wsFailStreak = 0;
    wsShortStreak = 0;
    if (transportKind !== 'websocket' || !canUse('polling')) return;
    if (transport && welcomed) return; // a WebSocket got through meanwhile: keep it
    transportKind = 'polling';
    pollingReason = 'fallback';
    if (window.console) console.info('[chat-widget] WebSocket keeps failing; using long-polling');
    scheduleWebSocketRetry();
    // Waiting to retry, or trying a WebSocket again: go to polling now.
    connect();
  }

  function onPollingFailedBeforeWelcome(info, withToken) {
    if (info.status === 401 && user) return onRefusedOpen(info.message, withToken);
    if (info.status === 401 && withToken) {
      // Unlike an upgrade, polling shows the status: the stored token is refused. Try without
      // it; the new identity is adopted only when that session is welcomed.
      tryWithoutToken = true;
      return;
    }
    tryWithoutToken = false;
    if ((info.status === 404 || info.status === 405) && canUse('websocket') && pollingReason !== 'only') {
      // A gateway without long-polling: back to WebSocket.
      transportKind = 'websocket';
      pollingReason = null;
      rememberTransport('websocket');
    }
  }

  function scheduleWebSocketRetry() {
    clearTimeout(wsRetryTimer);
    wsRetryTimer = setTimeout(probeWebSocket, WS_RETRY_AFTER_MS);
  }

  // On polling, tries a WebSocket alongside the running session and moves to it once it is
  // welcomed; the polling session goes on undisturbed if the WebSocket fails.
  function probeWebSocket() {
    clearTimeout(wsRetryTimer);
    wsRetryTimer = null;
    if (probe || transportKind !== 'polling' || pollingReason === 'only' || !canUse('websocket')) return;
    if (!transport || !welcomed) {
      // Polling is not up either: let the reconnect loop try WebSocket.
      transportKind = 'websocket';
      pollingReason = null;
      renderTransport();
      return;
    }
    probe = attach('websocket', Boolean(presentedToken() && !tryWithoutToken));
    probeTimer = setTimeout(function () {
      const p = probe;
      if (p) onProbeClosed(p);
      if (p) p.close();
    }, WS_PROBE_TIMEOUT_MS);
  }

  function onProbeFrame(p, frame) {
    if (frame.type !== 'welcome') return; // welcome is always first
    clearTimeout(probeTimer);
    probe = null;
    if (frame.preferred_transport === 'polling' && canUse('polling')) {
      // The gateway wants this visitor on polling: stay.
      p.close();
      pollingReason = 'preferred';
      rememberTransport('polling');
      return;
    }
    // Move over: the WebSocket session resumes from what we hold, pending sends go out on it.
    dropTransport();
    transport = p;
    transportKind = 'websocket';
    pollingReason = null;
    wsFailStreak = 0;
    wsShortStreak = 0;
    rememberTransport('websocket');
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
    renderTransport();
    handleFrame(frame);
  }

  function onProbeClosed(p) {
    if (p !== probe) return;
    clearTimeout(probeTimer);
    probe = null;
    // Still blocked: stay on polling, try again later.
    if (transportKind === 'polling') {
      pollingReason = 'fallback';
      scheduleWebSocketRetry();
    }
  }

  // Applies welcome.preferred_transport; true when this session is being replaced.
  function followPreference(pref) {
    if (!transport) return false;
    if (transport.kind === 'websocket' && pref === 'polling' && canUse('polling')) {
      rememberTransport('polling');
      transportKind = 'polling';
      pollingReason = 'preferred';
      clearTimeout(wsRetryTimer);
      wsRetryTimer = null;
      return true;
    }
    if (transport.kind !== 'polling' || pollingReason === 'only') return false;
    if (pref === 'polling') {
      rememberTransport('polling');
      pollingReason = 'preferred';
      clearTimeout(wsRetryTimer); // the gateway wants polling: no point retrying WebSocket
      wsRetryTimer = null;
    } else if (pref === 'websocket' && pollingReason === 'preferred') {
      // The rollout moved this visitor to WebSocket. After a fallback, the retry timer decides.
      rememberTransport('websocket');
      setTimeout(probeWebSocket, 0);
    }
    return false;
  }

  function scheduleReconnect() {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * Math.pow(2, attempt));
    // Jitter spreads the reconnect wave after a gateway restart.
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    attempt++;
    const due = Date.now() + delay;
    const show = function () {
      const secs = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setConnection('waiting', navigator.onLine === false
        ? t('widget.noNetwork', { seconds: secs })
        : t('widget.reconnectingIn', { seconds: secs }));
    };
    show();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(show, 1000);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  function handleFrame(f) {
    switch (f.type) {
      case 'welcome': return onWelcome(f);
      case 'ack': return onAck(f);
      case 'error': return onError(f);
      case 'message': return onStreamedMessage(f.message);
      case 'conversation': return noteConversation(f.conversation);
      case 'read': return onRead(f);
      case 'presence':
        if (typeof f.agents_online === 'number') { agentsOnline = f.agents_online; renderStatus(); }
        return;
      case 'typing': return onTypingEvent(f);
      default:
        return; // newer gateways may add events; ignoring them keeps old widgets working
    }
  }

  function onWelcome(f) {
    welcomed = true;
    welcomedAt = Date.now();
    attempt = 0;
    suspectFailures = 0;
    tryWithoutToken = false;
    if (transport && transport.kind === 'websocket') wsFailStreak = 0;
    if (typeof f.visitor_token === 'string' && f.visitor_token) saveToken(f.visitor_token);
    if (mergeToken) { markMerged(); mergeToken = null; }
    if (followPreference(f.preferred_transport)) {
      // The gateway wants this visitor on polling: reopen there (same token), resume there.
      connect();
      return;
    }
    visitorId = f.visitor_id || null;
    attachments.setLimits(f.uploads);
    agentsOnline = typeof f.agents_online === 'number' ? f.agents_online : 0;
    setConnection('open', t('widget.connected'));

    // Conversations we hold messages for: the gateway replays what we missed, then goes live.
    const cursors = {};
    for (const cid of conversations.keys()) cursors[cid] = contiguousSeq(cid);
    streamLast = new Map(Object.entries(cursors));
    // Sent even when empty: until its first resume the gateway holds live messages back.
    request({ type: 'resume', cursors: cursors });
    reportContext(true);

    const conv = f.conversation;
    if (conv && typeof conv.id === 'string') {
      const known = conversations.has(conv.id);
      noteConversation(conv);
      if (!currentConversationId || conversations.get(currentConversationId).index < conversations.get(conv.id).index) {
        currentConversationId = conv.id;
      }
      // Fresh page: load the conversation. Live events started with this session, so history
      // plus live leaves no gap; duplicates at the boundary are dropped by (conversation, seq).
      if (!known) loadHistory(conv.id, 0);
    }
    flushPending();
    scheduleRead();
  }

  function loadHistory(cid, afterSeq) {
    request({ type: 'history', conversation_id: cid, after_seq: afterSeq, limit: HISTORY_PAGE }, { kind: 'history', cid: cid, after: afterSeq });
  }

  function onAck(f) {
    const meta = requests.get(f.id);
    if (!meta) return;
    requests.delete(f.id);
    if (meta.kind === 'send') {
      if (f.message) addMessage(f.message, false);
      const p = pending.get(meta.clientMsgId);
      if (p) { p.inFlight = false; } // ack without message: leave it queued for the next flush
    } else if (meta.kind === 'read') {
      const c = conversations.get(meta.cid);
      if (c && typeof f.read_seq === 'number') c.readSent = Math.max(c.readSent, f.read_seq);
    } else if (meta.kind === 'contact') {
      onContactSaved(meta.email);
    } else if (meta.kind === 'history' && Array.isArray(f.messages)) {
      let prev = meta.after;
      for (const m of f.messages) {
        if (m && typeof m.seq === 'number') { markHidden(meta.cid, prev, m.seq); prev = m.seq; }
        addMessage(m, false);
      }
      // A page is cut by count or by bytes; `more` says another follows (older gateways
      // without it: a full page).
      const more = typeof f.more === 'boolean' ? f.more : f.messages.length >= HISTORY_PAGE;
      if (more && f.messages.length) {
        loadHistory(meta.cid, f.messages[f.messages.length - 1].seq);
      }
    }
  }

  function onError(f) {
    const meta = f.id ? requests.get(f.id) : null;
    if (!meta) {
      if (window.console) console.warn('[chat-widget] gateway error', f.code, f.message);
      return;
    }
    requests.delete(f.id);
    if (meta.kind === 'send') onSendFailed(meta.clientMsgId, f);
    else if (meta.kind === 'read') {
      // Not stored: let the next look try again (after the gateway's wait when limited).
      const c = conversations.get(meta.cid);
      if (c) c.readSent = 0;
      if (f.code === 'rate_limited') setTimeout(scheduleRead, f.retry_after_ms || READ_INTERVAL_MS);
    } else if (meta.kind === 'contact') onContactFailed(f);
    else if (window.console) console.warn('[chat-widget]', meta.kind, 'failed:', f.code, f.message);
  }

  // ---------------------------------------------------------------------------------------------
  // Typing indicators (docs/protocol.md, "Typing indicators"). While the visitor types, `typing`
  // goes out at most every TYPING_RESEND_MS (the gateway allows 2 a second), and `false` once
  // they send, leave the input, or stop for TYPING_IDLE_MS. An agent's typing shows until their
  // `false`, their next message, or the event's expiry, whichever comes first.

  const TYPING_RESEND_MS = 2500;
  const TYPING_IDLE_MS = 4000;
  const TYPING_MAX_SHOWN_MS = 30000;
  let typingSentAt = 0; // when our last `typing: true` went out; 0 while we are not typing
  let typingIdleTimer = null;
  const agentsTyping = new Map(); // agent id -> { name, timer }

  // Only into an open conversation: before the first message there is nobody to tell.
  function canSignalTyping() {
    const c = currentConversationId ? conversations.get(currentConversationId) : null;
    return Boolean(transport && welcomed && c && c.status === 'open');
  }

  function sendTyping(on) {
    typingSentAt = on ? Date.now() : 0;
    if (canSignalTyping()) request({ type: 'typing', conversation_id: currentConversationId, typing: on });
  }

  function onInputTyping() {
    clearTimeout(typingIdleTimer);
    if (!ui.input.value.trim()) { stopTyping(); return; }
    if (Date.now() - typingSentAt >= TYPING_RESEND_MS) sendTyping(true);
    typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(typingIdleTimer);
    typingIdleTimer = null;
    if (typingSentAt) sendTyping(false);
  }

  function onTypingEvent(f) {
    const s = f.sender;
    if (!s || s.role !== 'agent' || typeof s.id !== 'string' || f.conversation_id !== currentConversationId) return;
    clearAgentTyping(s.id);
    if (f.typing === true) {
      const ms = typeof f.expires_in_ms === 'number' && f.expires_in_ms > 0 ? Math.min(f.expires_in_ms, TYPING_MAX_SHOWN_MS) : 6000;
      const name = typeof s.name === 'string' && s.name ? s.name : t('widget.agent');
      agentsTyping.set(s.id, { name: name, timer: setTimeout(function () { clearAgentTyping(s.id); }, ms) });
    }
    renderTyping();
  }

  function clearAgentTyping(id) {
    const typist = agentsTyping.get(id);
    if (!typist) return;
    clearTimeout(typist.timer);
    agentsTyping.delete(id);
    renderTyping();
  }

  function renderTyping() {
    if (!ui) return;
    const names = Array.from(agentsTyping.values(), function (typist) { return typist.name; });
    ui.typing.hidden = names.length === 0;
    ui.typing.textContent = names.length === 0 ? ''
      : names.length > 1 ? t('widget.typingMany', { names: names.join(t('widget.listSeparator')) })
        : t('widget.typingOne', { name: names[0] });
  }

  // ---------------------------------------------------------------------------------------------
  // Visitor context: the page the visitor is on (URL, title, referrer), browser language, time
  // zone and user agent, plus config.attributes, reported after every welcome and on every
  // navigation (single-page apps too: pushState/replaceState are wrapped, popstate and hashchange
  // listened to), debounced and at most one a second (the gateway's limit). Values are cut to the
  // gateway's bounds (docs/protocol.md) here, so a long URL or title is shortened, never refused.

  const CONTEXT_DEBOUNCE_MS = 400;
  const CONTEXT_MIN_INTERVAL_MS = 1100;
  const MAX_ATTRIBUTES = 20;
  const ATTRIBUTE_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
  let contextTimer = null;
  let lastContextJson = null;
  let lastContextAt = 0;

  function cut(value, maxBytes) {
    if (typeof value !== 'string' || !value) return undefined;
    const enc = new TextEncoder();
    if (enc.encode(value).length <= maxBytes) return value;
    let out = '';
    let bytes = 0;
    for (const ch of value) {
      const n = enc.encode(ch).length;
      if (bytes + n > maxBytes) break;
      out += ch;
      bytes += n;
    }
    return out;
  }

  function webAddress(value) {
    return typeof value === 'string' && /^https?:\/\//i.test(value) ? cut(value, 2048) : undefined;
  }

  function contextAttributes() {
    const out = {};
    const given = config.attributes;
    if (!given || typeof given !== 'object') return out;
    let count = 0;
    for (const key of Object.keys(given)) {
      const v = given[key];
      const ok = ATTRIBUTE_KEY.test(key) && (typeof v === 'string' || typeof v === 'boolean' ||
        (typeof v === 'number' && isFinite(v)));
      if (!ok || count >= MAX_ATTRIBUTES) {
        if (window.console) console.warn('[chat-widget] attribute left out:', key);
        continue;
      }
      out[key] = typeof v === 'string' ? cut(v, 256) || '' : v;
      count++;
    }
    return out;
  }

  function pageContext() {
    let timeZone;
    try { timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { timeZone = undefined; }
    return {
      url: webAddress(location.href),
      title: cut(document.title, 256),
      referrer: webAddress(document.referrer),
      language: cut(navigator.language, 35),
      time_zone: cut(timeZone, 64),
      user_agent: cut(navigator.userAgent, 512),
      attributes: contextAttributes(),
    };
  }

  // `force`: after a welcome (a new session), even when nothing changed.
  function reportContext(force) {
    if (!transport || !welcomed) return;
    const context = pageContext();
    const json = JSON.stringify(context);
    if (!force && json === lastContextJson) return;
    lastContextJson = json;
    lastContextAt = Date.now();
    request({ type: 'context', context: context });
  }

  function scheduleContext() {
    clearTimeout(contextTimer);
    const wait = Math.max(CONTEXT_DEBOUNCE_MS, lastContextAt + CONTEXT_MIN_INTERVAL_MS - Date.now());
    contextTimer = setTimeout(function () { reportContext(false); }, wait);
  }

  function watchNavigation() {
    ['pushState', 'replaceState'].forEach(function (name) {
      const original = history[name];
      if (typeof original !== 'function') return;
      history[name] = function () {
        const result = original.apply(this, arguments);
        scheduleContext();
        return result;
      };
    });
    window.addEventListener('popstate', scheduleContext);
    window.addEventListener('hashchange', scheduleContext);
  }

  // ---------------------------------------------------------------------------------------------
  // Start

  function start() {
    ui = buildUi();
    renderStatus();
    setConnection(connection.state, connection.text);
    if (panelOpen || storageGet('sessionStorage', BASE_KEY + ':open')) openPanel();
    chooseInitialTransport();
    watchNavigation();
    connect();
    // The network coming back is a better signal than any backoff timer.
    window.addEventListener('online', function () { if (!transport) { attempt = 0; connect(); } });
    document.addEventListener('visibilitychange', scheduleRead);
  }

  window.ChatWidget = {
    version: 1,
    open: function () { openPanel(); },
    close: function () { closePanel(); },
    // A snapshot, for tests and debugging; mutating it changes nothing.
    get state() {
      return {
        connection: connection.state,
        connectionText: connection.text,
        agentsOnline: agentsOnline,
        visitorId: visitorId,
        conversationId: currentConversationId,
        messages: messages.size,
        pending: pending.size,
        open: panelOpen,
        serverBaseUrl: baseUrl,
        site: site,
        transport: currentTransport(),
        user: user ? { id: user.id, verified: Boolean(user.hash) } : null,
        refused: refused,
        agentsTyping: Array.from(agentsTyping.values(), function (a) { return a.name; }),
        locale: i18n.locale,
        contact: contactState,
      };
    },
  };

  if (document.body) start();
  else document.addEventListener('DOMContentLoaded', start, { once: true });
})();
