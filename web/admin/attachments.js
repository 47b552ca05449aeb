/*
 * Attachments in the agent console (docs/protocol.md#attachments, docs/http-api.md#attachments):
 * a paperclip button in the reply form sends an image or a file into the open conversation (as
 * an internal note while the Note toggle is on), and a message's `attachment` shows in the
 * transcript: images inline, other files as download links.
 *
 * Loaded before console.js, which calls window.ChatConsoleAttachments.view(attachment) for a
 * committed message and .label(attachment) for one still sending, and hands over with
 * `chat-console:ready` (detail {token, uploads, send}) the agent's token, `welcome.uploads`
 * (absent: uploads are off, no button) and send(conversationId, caption, note, attachment),
 * which queues the `send` with `attachment_id` like a typed reply.
 *
 * The upload is `POST /chat/api/attachments?conversation_id=…&name=…` with the agent's token;
 * the size is checked here first, the type is the gateway's to refuse (its message is shown).
 * The bytes need the token, which an <img src> cannot carry (and a token never goes in a URL),
 * so they are fetched and shown through object URLs, one per attachment of the open
 * conversation, revoked when the pane is cleared (another conversation, another site).
 * The paperclip, how an attachment shows and what an upload's answer means are shared with the
 * widget (./shared/attachments.js, loaded before this file). Everything is text: names come from
 * anonymous visitors.
 */
/* global chatElement, chatPaperclipIcon, chatAttachmentName, chatAttachmentView, chatUploadAnswer */
window.ChatConsoleAttachments = (function () {
  'use strict';

  const I18n = window.ChatConsoleI18n; // ./language.js
  const t = I18n.t;
  const h = chatElement; // ./shared/dom.js: data only ever becomes text
  const formatSize = I18n.size;
  const API = '/chat/api/attachments';
  // A slow link may take this long for the largest upload; beyond it the upload is abandoned.
  const UPLOAD_TIMEOUT_MS = 120000;

  const form = document.getElementById('reply-form');
  const reply = document.getElementById('reply');
  const noteToggle = document.getElementById('note-toggle');

  let ctx = null; // { token, uploads, send } from console.js
  let limits = null; // welcome.uploads: { max_bytes, types }
  let openId = null; // the conversation in the pane
  let uploading = false;
  let urls = new Map(); // attachment id -> Promise of its object URL, for the open pane

  const input = h('input', { type: 'file', 'data-testid': 'attach-input' });
  input.hidden = true;
  const button = h('button', { type: 'button', class: 'button attach', 'data-testid': 'attach-button', 'aria-label': t('attach.button'), title: t('attach.button') });
  button.hidden = true;
  button.appendChild(chatPaperclipIcon()); // ./shared/attachments.js
  // Says what is being uploaded, or why a file was not sent (until the next file, or a click).
  const status = h('p', { class: 'attach-status', 'data-testid': 'attach-status', 'data-state': 'idle', role: 'status', 'aria-live': 'polite', title: t('attach.dismiss') });
  status.hidden = true;
  status.addEventListener('click', function () { if (!uploading) showStatus('idle', ''); });
  if (form) {
    const send = form.querySelector('[type="submit"]');
    form.insertBefore(button, send);
    form.insertBefore(input, send);
    form.before(status);
  }

  button.addEventListener('click', function () { input.click(); });
  input.addEventListener('change', function () {
    const file = input.files && input.files[0];
    input.value = ''; // the same file may be chosen again
    if (file) upload(file);
  });

  document.addEventListener('chat-console:ready', function (e) {
    ctx = e.detail;
    setLimits(ctx.uploads);
  });
  document.addEventListener('chat-console:open', function (e) {
    openId = e.detail && e.detail.id ? e.detail.id : null;
    dropUrls();
    renderButton();
  });
  document.addEventListener('chat-console:close', function () {
    openId = null;
    dropUrls();
    renderButton();
  });

  function setLimits(uploads) {
    const ok = uploads && typeof uploads === 'object' && typeof uploads.max_bytes === 'number' && uploads.max_bytes > 0;
    limits = ok ? { max_bytes: uploads.max_bytes, types: Array.isArray(uploads.types) ? uploads.types.map(String) : [] } : null;
    if (limits && limits.types.length) input.setAttribute('accept', limits.types.join(','));
    else input.removeAttribute('accept');
    renderButton();
  }

  function renderButton() {
    button.hidden = !limits;
    button.disabled = uploading || !openId;
  }

  function showStatus(state, text) {
    status.setAttribute('data-state', state);
    status.textContent = text || '';
    status.hidden = !text;
  }


  function upload(file) {
    const cid = openId;
    if (!limits || !ctx || !cid || uploading) return;
    const name = file.name || 'file';
    if (file.size > limits.max_bytes) {
      showStatus('error', t('attach.tooLarge', { name: name, size: formatSize(file.size), max: formatSize(limits.max_bytes) }));
      return;
    }
    // The caption and the kind are what the reply box holds when the file is chosen.
    const caption = reply && reply.value.trim() ? reply.value : '';
    const note = Boolean(noteToggle && noteToggle.checked);
    if (caption) reply.value = '';
    uploading = true;
    renderButton();
    showStatus('uploading', t('attach.uploading', { name: name }));
    const ctrl = new AbortController();
    const timer = setTimeout(function () { ctrl.abort(); }, UPLOAD_TIMEOUT_MS);
    const url = API + '?conversation_id=' + encodeURIComponent(cid) + '&name=' + encodeURIComponent(name);
    fetch(url, {
      method: 'POST', body: file, cache: 'no-store', signal: ctrl.signal,
      // The gateway checks the type against CHAT_UPLOAD_TYPES and the bytes against the type.
      headers: { Authorization: 'Bearer ' + ctx.token(), 'Content-Type': file.type || 'application/octet-stream' },
    }).then(chatUploadAnswer, function () {
      throw new Error(t('attach.unreachable'));
    }).then(function (attachment) {
      showStatus('idle', '');
      ctx.send(cid, caption, note, attachment);
    }, function (err) {
      if (caption && reply && !reply.value) reply.value = caption;
      showStatus('error', t('attach.failed', { name: name, reason: err.message }));
    }).finally(function () {
      clearTimeout(timer);
      uploading = false;
      renderButton();
    });
  }

  // The object URL of an attachment's bytes, fetched once while its conversation is open; a
  // failed fetch is tried again the next time the attachment is shown.
  function objectUrl(id) {
    let got = urls.get(id);
    if (got) return got;
    if (!ctx) return Promise.reject(new Error('not connected'));
    got = fetch(API + '/' + encodeURIComponent(id), { headers: { Authorization: 'Bearer ' + ctx.token() } }).then(function (res) {
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.blob();
    }).then(function (blob) {
      return URL.createObjectURL(blob);
    });
    urls.set(id, got);
    got.catch(function () { if (urls.get(id) === got) urls.delete(id); });
    return got;
  }

  // The pane was cleared: its images and links are gone, and so are their URLs (a fetch still
  // under way is revoked as soon as it is done).
  function dropUrls() {
    for (const got of urls.values()) got.then(function (url) { URL.revokeObjectURL(url); }, function () {});
    urls = new Map();
  }

  // What a committed message shows of its `attachment` (./shared/attachments.js).
  function view(a) {
    return chatAttachmentView(a, { t: t, size: formatSize, objectUrl: objectUrl, testid: 'attachment' });
  }

  // A file still being sent: its name and size only.
  function label(a) {
    if (!a || typeof a !== 'object') return null;
    return h('span', { class: 'attachment', 'data-testid': 'attachment', 'data-kind': 'pending' }, t('attach.file', { name: chatAttachmentName(a), size: formatSize(a.size) }));
  }

  return { view: view, label: label };
})();
