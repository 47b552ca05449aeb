/*
 * The visitor widget's configuration (window.ChatWidgetConfig), its constants and its state, and
 * the storage it keeps the visitor's token in.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

// currentScript is only set while the loader first runs, so capture it before anything async.
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
const backoff = chatBackoff(); // ../shared/backoff.js: reconnects and their countdown
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
  baseUrl: baseUrl, t: t, size: i18n.size,
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

function randomId(prefix) {
  const bytes = new Uint8Array(12);
  // randomUUID needs a secure context; customer sites may still be plain http.
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
}
