/*
 * The agent console's reply box and the replies on their way: Enter (without Shift) or the send
 * button sends; the **Note** toggle turns the next messages into internal notes (the box turns
 * amber; docs/protocol.md, "Internal notes"). A reply shows as sending until its ack, and one that
 * is not yet stored is sent again after a reconnect with the same client_msg_id.
 *
 * Loaded before console.js, which holds the open conversation and calls it once:
 *
 *   ChatConsoleReplies({ form, input, noteToggle, messages, request, welcomed(), selectedId(),
 *     messageElement(role, who, body, meta, kind, attachment), placeMessage(el, key),
 *     onMessage(message), attachmentLabel(attachment) })
 *   returns { queue(cid, body, note, attachment), flush(), confirm(clientMsgId),
 *             showIn(conversationId), disconnected() }
 */
window.ChatConsoleReplies = function (opts) {
  'use strict';

  const t = window.ChatConsoleI18n.t; // ./language.js
  const form = opts.form;
  const input = opts.input;
  const noteToggle = opts.noteToggle;
  const messages = opts.messages;
  const request = opts.request;
  const PENDING_KEY_BASE = 1e15; // sort key offset that keeps unconfirmed replies after every seq

  const pending = new Map(); // client_msg_id -> { cid, body, note, attachment, el, inFlight, failed }
  let typedSeq = 0;

  function randomId(prefix) {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, function (b) { return b.toString(16).padStart(2, '0'); }).join('');
  }

  // Internal notes: the reply box turns into a note box while the toggle is on.
  noteToggle.addEventListener('change', function () {
    form.setAttribute('data-note', String(noteToggle.checked));
    input.placeholder = noteToggle.checked
      ? t('console.notePlaceholder')
      : t('console.replyPlaceholder');
    input.focus();
  });

  form.addEventListener('submit', function (e) {
    e.preventDefault();
    sendReply();
  });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendReply();
    }
  });

  function sendReply() {
    const body = input.value;
    if (!body.trim() || !opts.selectedId()) return;
    input.value = '';
    queueReply(opts.selectedId(), body, noteToggle.checked, null);
  }

  // Shows a reply (or note) as sending and sends it; `attachment`: a file ./attachments.js
  // uploaded for conversation `cid`, which may no longer be the open one.
  function queueReply(cid, body, note, attachment) {
    const clientMsgId = randomId('a-');
    const el = opts.messageElement('agent', t('console.you'), body, t('console.sending'), note ? 'note' : 'text', attachment ? opts.attachmentLabel(attachment) : null);
    el.setAttribute('data-pending', 'true');
    const p = { cid: cid, body: body, note: note, attachment: attachment, el: el, key: PENDING_KEY_BASE + (++typedSeq), inFlight: false, failed: false };
    pending.set(clientMsgId, p);
    if (cid === opts.selectedId()) {
      opts.placeMessage(el, p.key);
      messages.scrollTop = messages.scrollHeight;
    }
    flushPending();
  }

  // Unconfirmed replies are (re)sent with their original client_msg_id, so a reply whose ack was
  // lost in a disconnect is stored once, never twice.
  function flushPending() {
    if (!opts.welcomed()) return;
    for (const [clientMsgId, p] of pending) {
      if (p.inFlight || p.failed) continue;
      p.inFlight = true;
      const frame = { conversation_id: p.cid, client_msg_id: clientMsgId, body: p.body };
      if (p.note) frame.note = true;
      if (p.attachment) frame.attachment_id = p.attachment.id;
      request('send', frame).then(function (ack) {
        if (ack.message) opts.onMessage(ack.message);
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

  // Replies typed in conversation `id` earlier and still unconfirmed, shown again when it opens.
  function showIn(id) {
    for (const p of pending.values()) if (p.cid === id) opts.placeMessage(p.el, p.key);
  }

  // The socket is gone: nothing is in flight any more; flush() after the next welcome resends.
  function disconnected() {
    for (const p of pending.values()) p.inFlight = false;
  }

  return { queue: queueReply, flush: flushPending, confirm: confirmPending, showIn: showIn, disconnected: disconnected };
};
