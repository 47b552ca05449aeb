/*
 * What the visitor widget and the agent console share of attachments (docs/protocol.md#attachments,
 * docs/http-api.md#attachments): the paperclip, how a message's `attachment` shows, and what the
 * gateway's answer to an upload means. Text only: names come from anonymous people.
 *
 * What differs stays with each: how the bytes are fetched and kept (the widget with the visitor's
 * token, cross-origin without cookies, for the page's life; the console with the agent's, revoked
 * when its pane is cleared) and how a file is uploaded (the widget's goes with the next `send`;
 * the console's names the open conversation and may be a note): ../widget/attachments.js and
 * ../admin/attachments.js.
 *
 * Loaded like ./dom.js, which it uses: a script of the console's own
 * (/chat/admin/shared/attachments.js), and inside the widget's function scope
 * (gateway/src/assets.rs), where nothing becomes a global of the customer's page.
 */

// The paperclip of the attach buttons.
function chatPaperclipIcon() {
  'use strict';
  return chatIcon('M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6h-1.5z');
}

// The name an attachment shows under: its own, else "file".
function chatAttachmentName(a) {
  'use strict';
  return typeof a.name === 'string' && a.name ? a.name : 'file';
}

// What a message shows of its `attachment` (null for anything else): images (PNG, JPEG, GIF,
// WebP) inline, other files as a link with the name and size that downloads the file under its
// name. The bytes are fetched with opts.objectUrl(id) (a Promise of an object URL): an image's at
// once, a file's on the link's first click (files may be large), after which the link is an
// ordinary download; what cannot be fetched says "name could not be loaded".
//   opts: { t, size(bytes) (the language's), objectUrl(id), testid } where testid names the box
//   (`chat-attachment` in the widget, `attachment` in the console) and, with `-image` and
//   `-file`, the image and the link.
function chatAttachmentView(a, opts) {
  'use strict';
  if (!a || typeof a !== 'object' || typeof a.id !== 'string') return null;
  const t = opts.t;
  const name = chatAttachmentName(a);
  const image = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'].indexOf(a.content_type) >= 0;
  const box = chatElement('span', { class: 'attachment', 'data-testid': opts.testid, 'data-attachment-id': a.id, 'data-kind': image ? 'image' : 'file' });
  const missing = function () {
    box.replaceChildren(chatElement('span', { class: 'attachment-missing' }, t('attach.unavailable', { name: name })));
  };
  if (image) {
    const img = chatElement('img', { class: 'attachment-image', 'data-testid': opts.testid + '-image', alt: name, title: name });
    box.appendChild(img);
    opts.objectUrl(a.id).then(function (url) { img.src = url; }, missing);
    return box;
  }
  const link = chatElement('a', {
    class: 'attachment-file', 'data-testid': opts.testid + '-file', href: '#', download: name,
    title: t('attach.download', { name: name }),
  }, t('attach.file', { name: name, size: opts.size(a.size) }));
  link.addEventListener('click', function (e) {
    if (link.getAttribute('href').indexOf('blob:') === 0) return;
    e.preventDefault();
    opts.objectUrl(a.id).then(function (url) {
      if (!link.isConnected) return; // gone meanwhile (the console's pane was cleared)
      link.setAttribute('href', url);
      link.click();
    }, missing);
  });
  box.appendChild(link);
  return box;
}

// What the gateway answered to an upload (`POST /chat/api/attachments`, a fetch Response): a
// Promise of the attachment ({id, name, content_type, size}), or rejected with an Error whose
// message is the gateway's `message` (too large, a type it refuses, too many), else the status.
function chatUploadAnswer(res) {
  'use strict';
  return res.json().catch(function () { return null; }).then(function (data) {
    const a = data && data.attachment;
    if (res.status === 201 && a && typeof a.id === 'string') return a;
    throw new Error((data && typeof data.message === 'string' && data.message) || 'HTTP ' + res.status);
  });
}
