/*
 * Console notifications (issue 15): while the tab is hidden, a new conversation or a visitor's
 * message plays a short beep (WebAudio, no file) and shows a desktop notification (once the
 * agent allowed them with "Enable notifications": browsers ask only from a click), at most one
 * per conversation every ALERT_GAP_MS; the tab title counts the visitor messages that came while
 * hidden ("(3) Chat console"), and, once the tab is visible again, the conversations with unread
 * messages (as before). A mute toggle (localStorage["chat-admin-muted"]) silences sound and
 * notifications, never the title.
 *
 * console.js calls window.ChatConsoleAlerts.conversation(conv, label, open) for a conversation
 * it has not seen, .message(m, label, open) for a live visitor message, and .listed(n) with the
 * number of unread conversations after each render of the list.
 */
window.ChatConsoleAlerts = (function () {
  'use strict';

  const t = window.ChatConsoleI18n.t; // ./language.js
  const MUTE_KEY = 'chat-admin-muted';
  const ALERT_GAP_MS = 30000;
  const BODY_CHARS = 140;

  const enableButton = document.getElementById('notify-enable');
  const muteButton = document.getElementById('mute');
  let hiddenCount = 0; // visitor messages since the tab was hidden
  let listedCount = 0; // conversations with unread messages (console.js)
  const lastAlert = new Map(); // conversation id -> time of its last sound/notification
  let audio = null;

  function hidden() {
    return document.visibilityState === 'hidden';
  }

  function muted() {
    try { return localStorage.getItem(MUTE_KEY) === '1'; } catch (_) { return false; }
  }

  function renderTitle() {
    const n = hidden() && hiddenCount ? hiddenCount : listedCount;
    document.title = (n ? '(' + n + ') ' : '') + t('console.title');
  }

  function renderButtons() {
    const on = muted();
    muteButton.setAttribute('aria-pressed', String(on));
    muteButton.textContent = on ? t('console.notify.unmute') : t('console.notify.mute');
    const canAsk = typeof window.Notification === 'function' && window.Notification.permission === 'default';
    enableButton.hidden = !canAsk;
  }

  // Browsers let a page start audio only after a user gesture: the AudioContext is made on the
  // first click anywhere, then reused.
  function unlockAudio() {
    if (audio) return;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try { audio = new Ctx(); } catch (_) { audio = null; }
  }

  function beep() {
    if (!audio) return;
    try {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = 'sine';
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, audio.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.25);
      osc.connect(gain).connect(audio.destination);
      osc.start();
      osc.stop(audio.currentTime + 0.25);
    } catch (_) { /* no sound: the notification and the title remain */ }
  }

  function notifyDesktop(cid, title, body, open) {
    if (typeof window.Notification !== 'function' || window.Notification.permission !== 'granted') return;
    try {
      const n = new window.Notification(title, { body: body, tag: 'chat-' + cid });
      n.onclick = function () {
        window.focus();
        open();
        n.close();
      };
    } catch (_) { /* some browsers allow notifications only from a service worker */ }
  }

  // Sound and notification for conversation `cid`, unless muted, visible or alerted lately.
  function alert(cid, title, body, open) {
    if (!hidden() || muted()) return;
    const now = Date.now();
    if (now - (lastAlert.get(cid) || 0) < ALERT_GAP_MS) return;
    lastAlert.set(cid, now);
    beep();
    notifyDesktop(cid, title, body, open);
  }

  enableButton.addEventListener('click', function () {
    unlockAudio();
    const asked = window.Notification.requestPermission(renderButtons);
    if (asked && typeof asked.then === 'function') asked.then(renderButtons, renderButtons);
  });
  muteButton.addEventListener('click', function () {
    try { localStorage.setItem(MUTE_KEY, muted() ? '0' : '1'); } catch (_) { /* stays as it was */ }
    renderButtons();
  });
  document.addEventListener('click', unlockAudio, { capture: true });
  document.addEventListener('visibilitychange', function () {
    if (!hidden()) hiddenCount = 0;
    renderTitle();
  });
  renderButtons();

  return {
    conversation: function (conv, label, open) {
      alert(conv.id, t('console.notify.newConversation'), label, open);
    },
    message: function (m, label, open) {
      if (!hidden()) return;
      hiddenCount++;
      renderTitle();
      const body = String(m.body || '');
      alert(m.conversation_id, t('console.notify.newMessage', { name: label }),
        body.length > BODY_CHARS ? body.slice(0, BODY_CHARS) + '…' : body, open);
    },
    listed: function (n) {
      listedCount = n;
      renderTitle();
    },
  };
})();
