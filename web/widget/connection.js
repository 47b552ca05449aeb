/*
 * The visitor widget's connection: opening a session on a transport, reconnecting with a back-off,
 * falling back to long-polling and back, and handling what the gateway sends.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

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
  backoff.cancel();
  if (transport) dropTransport();
  if (refused) return;
  setConnection('connecting', backoff.attempts() === 0 ? t('widget.connecting') : t('widget.reconnecting'));
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
  backoff.cancel();
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
  backoff.schedule(function (secs) {
    setConnection('waiting', navigator.onLine === false
      ? t('widget.noNetwork', { seconds: secs })
      : t('widget.reconnectingIn', { seconds: secs }));
  }, connect);
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
  backoff.reset();
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
