/*
 * The reconnect back-off shared by the visitor widget and the agent console: after a lost or
 * refused connection, wait 0.5 s, 1 s, 2 s, … up to 30 s (each wait drawn between half and all of
 * that, so that the clients a gateway restart drops do not all come back at once), with a
 * countdown to show, until a session is welcomed again.
 *
 * Loaded like ./dom.js: a script of the console's own (/chat/admin/shared/backoff.js), and inside
 * the widget's function scope (gateway/src/assets.rs), where nothing becomes a global of the
 * customer's page.
 *
 * chatBackoff() returns
 *   schedule(show, run)  cancels what was scheduled, then after the next wait calls run();
 *                        meanwhile show(seconds left) now and every second
 *   cancel()             drops the scheduled run and its countdown
 *   reset()              the next wait is the shortest again (a session was welcomed)
 *   attempts()           waits scheduled since the last reset (0: this is a first connect)
 */
function chatBackoff() {
  'use strict';
  const MIN_MS = 500;
  const MAX_MS = 30000;
  let attempt = 0;
  let retryTimer = null;
  let countdownTimer = null;

  function cancel() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
  }

  function schedule(show, run) {
    const base = Math.min(MAX_MS, MIN_MS * Math.pow(2, attempt));
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    attempt++;
    const due = Date.now() + delay;
    const tick = function () { show(Math.max(1, Math.ceil((due - Date.now()) / 1000))); };
    cancel();
    tick();
    countdownTimer = setInterval(tick, 1000);
    retryTimer = setTimeout(run, delay);
  }

  return {
    schedule: schedule,
    cancel: cancel,
    reset: function () { attempt = 0; },
    attempts: function () { return attempt; },
  };
}
