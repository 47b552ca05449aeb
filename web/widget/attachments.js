/*
 * Attachments in the visitor widget (docs/protocol.md#attachments, docs/http-api.md#attachments):
 * a paperclip button beside the message box, the upload over HTTP, and how a message's
 * `attachment` shows (images inline, other files as download links).
 *
 * The gateway serves this file with i18n/*.js, ../shared/dom.js (chatElement),
 * ../shared/attachments.js (the paperclip, how an attachment shows and what an upload's answer
 * means, shared with the console) and widget.js in one function scope (gateway/src/assets.rs),
 * so chatWidgetAttachments() is not a global of the customer's page; widget.js calls it once and
 * puts what it returns into its UI:
 *
 *   chatWidgetAttachments({ baseUrl, t, size, credentials, takeCaption, restoreCaption, send })
 *     credentials()        -> { token, user }: the visitor token of `welcome` and
 *                             ChatWidgetConfig.user (or null); no token: no upload
 *     takeCaption()        -> the message box's text, emptied (sent with the file)
 *     restoreCaption(text) puts it back when the upload fails
 *     send(caption, attachment) queues the `send` frame with `attachment_id`
 *   returns { css, button, input, status, setLimits(welcome.uploads), view(attachment) }
 *
 * The size is checked here against `welcome.uploads.max_bytes` (a file over it is never sent);
 * the type only narrows the file picker (`accept`), the gateway decides and its message is shown.
 * The bytes of an attachment need the visitor's token, which an <img src> cannot carry (and a
 * token never goes in a URL), so they are fetched and shown through an object URL, one per
 * attachment for the page's life (the widget never drops a message). Everything is text:
 * names come from anonymous people.
 */
function chatWidgetAttachments(opts) {
  'use strict';

  const t = opts.t;
  const formatSize = opts.size;
  const h = chatElement; // ../shared/dom.js
  const API = opts.baseUrl + '/chat/api/attachments';
  // A slow link may take this long for the largest upload; beyond it the upload is abandoned.
  const UPLOAD_TIMEOUT_MS = 120000;

  const css = `
    .attach { border: none; border-radius: 8px; width: 36px; padding: 0; background: transparent; color: #6b7280; cursor: pointer; display: flex; align-items: center; justify-content: center; }
    .attach:hover { color: var(--accent); }
    .attach:focus-visible { outline: 3px solid #93c5fd; outline-offset: 2px; }
    .attach:disabled { opacity: .5; cursor: default; }
    .attach svg { width: 20px; height: 20px; fill: currentColor; }
    .attach-status { font-size: 12px; padding: 4px 14px; background: #eff6ff; color: #1e40af; cursor: default; }
    .attach-status[data-state="error"] { background: #fee2e2; color: #991b1b; cursor: pointer; }
    .attachment-image { display: block; max-width: 100%; max-height: 240px; border-radius: 8px; }
    .attachment-file { color: inherit; text-decoration: underline; overflow-wrap: anywhere; }
    .attachment-missing { font-style: italic; opacity: .8; }
    .caption { display: block; margin-top: 6px; }
  `;

  let limits = null; // welcome.uploads: { max_bytes, types }
  let uploading = false;
  const urls = new Map(); // attachment id -> Promise of its object URL

  const input = h('input', { type: 'file', 'data-testid': 'chat-attach-input', hidden: true });
  const button = h('button', {
    type: 'button', class: 'attach', 'data-testid': 'chat-attach', 'aria-label': t('attach.button'), title: t('attach.button'),
    hidden: true, onclick: function () { input.click(); },
  });
  button.appendChild(chatPaperclipIcon()); // ../shared/attachments.js
  // Says what is being uploaded, or why a file was not sent (until the next file, or a click).
  const status = h('div', {
    class: 'attach-status', 'data-testid': 'chat-attach-status', 'data-state': 'idle', role: 'status', 'aria-live': 'polite',
    title: t('attach.dismiss'), hidden: true,
    onclick: function () { if (!uploading) showStatus('idle', ''); },
  });

  input.addEventListener('change', function () {
    const file = input.files && input.files[0];
    input.value = ''; // the same file may be chosen again
    if (file) upload(file);
  });

  // `uploads` of welcome; absent: uploads are off, and so is the button.
  function setLimits(uploads) {
    const ok = uploads && typeof uploads === 'object' && typeof uploads.max_bytes === 'number' && uploads.max_bytes > 0;
    limits = ok ? { max_bytes: uploads.max_bytes, types: Array.isArray(uploads.types) ? uploads.types.map(String) : [] } : null;
    button.hidden = !limits;
    if (limits && limits.types.length) input.setAttribute('accept', limits.types.join(','));
    else input.removeAttribute('accept');
  }

  function showStatus(state, text) {
    status.setAttribute('data-state', state);
    status.textContent = text || '';
    status.hidden = !text;
  }


  // The signed-in user goes along as on every session open: base64url of its JSON (a header
  // holds ASCII only), no padding.
  function userHeader(user) {
    const bytes = new TextEncoder().encode(JSON.stringify(user));
    let binary = '';
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function authHeaders() {
    const c = opts.credentials();
    if (!c || !c.token) return null;
    const headers = { Authorization: 'Bearer ' + c.token };
    if (c.user) headers['X-Chat-User'] = userHeader(c.user);
    return headers;
  }

  function upload(file) {
    if (!limits || uploading) return;
    const name = file.name || 'file';
    if (file.size > limits.max_bytes) {
      showStatus('error', t('attach.tooLarge', { name: name, size: formatSize(file.size), max: formatSize(limits.max_bytes) }));
      return;
    }
    const headers = authHeaders();
    if (!headers) return;
    // The gateway checks the type against CHAT_UPLOAD_TYPES and the bytes against the type.
    headers['Content-Type'] = file.type || 'application/octet-stream';
    const caption = opts.takeCaption();
    uploading = true;
    button.disabled = true;
    showStatus('uploading', t('attach.uploading', { name: name }));
    const ctrl = new AbortController();
    const timer = setTimeout(function () { ctrl.abort(); }, UPLOAD_TIMEOUT_MS);
    // No conversation_id: the gateway binds the file to the conversation of the `send` that
    // carries it (a closed conversation's next message opens a new one).
    fetch(API + '?name=' + encodeURIComponent(name), {
      method: 'POST', body: file, headers: headers, credentials: 'omit', cache: 'no-store', signal: ctrl.signal,
    }).then(chatUploadAnswer, function () {
      throw new Error(t('attach.unreachable'));
    }).then(function (attachment) {
      // The uploader shows its own file without downloading it again.
      urls.set(attachment.id, Promise.resolve(URL.createObjectURL(file)));
      showStatus('idle', '');
      opts.send(caption, attachment);
    }, function (err) {
      opts.restoreCaption(caption);
      showStatus('error', t('attach.failed', { name: name, reason: err.message }));
    }).finally(function () {
      clearTimeout(timer);
      uploading = false;
      button.disabled = false;
    });
  }

  // The object URL of an attachment's bytes, fetched once; a failed fetch is tried again the
  // next time the attachment is shown.
  function objectUrl(id) {
    let got = urls.get(id);
    if (got) return got;
    const headers = authHeaders();
    if (!headers) return Promise.reject(new Error('no token'));
    got = fetch(API + '/' + encodeURIComponent(id), { headers: headers, credentials: 'omit' }).then(function (res) {
      if (!res.ok) throw new Error('HTTP ' + res.status);
      return res.blob();
    }).then(function (blob) {
      return URL.createObjectURL(blob);
    });
    urls.set(id, got);
    got.catch(function () { urls.delete(id); });
    return got;
  }

  // What a message shows of its `attachment` (../shared/attachments.js).
  function view(a) {
    return chatAttachmentView(a, { t: t, size: formatSize, objectUrl: objectUrl, testid: 'chat-attachment' });
  }

  return { css: css, button: button, input: input, status: status, setLimits: setLimits, view: view };
}
