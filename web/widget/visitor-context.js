/*
 * The visitor context the widget reports (docs/protocol.md, "Visitor context"): the page, the
 * browser's language and time zone, and ChatWidgetConfig.attributes, followed across navigations.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

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
