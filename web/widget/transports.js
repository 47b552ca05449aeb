/*
 * The visitor widget's two transports, a raw WebSocket on /ws-visitor/ and HTTP long-polling on
 * /ws-visitor/poll, behind one interface.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

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
