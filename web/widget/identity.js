/*
 * The main site's logged-in user in the visitor widget (docs/identity.md): which token a session
 * presents, the query parameters that open it, and a user the gateway refuses.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

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
  backoff.cancel();
  clearTimeout(wsRetryTimer);
  wsRetryTimer = null;
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
