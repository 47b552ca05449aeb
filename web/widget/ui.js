/*
 * The visitor widget's interface: its shadow root, styles, bubble and panel, the connection and
 * status lines, and where each message goes in the list.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

// Builds an element: chatElement of ../shared/dom.js (in the loader's outer scope), where data
// only ever becomes text. A declaration, so the files before this one may call it too.
function h(tag, attrs, children) {
  return chatElement(tag, attrs, children);
}

function formatTime(iso) {
  return i18n.time(iso);
}

// ---------------------------------------------------------------------------------------------
// UI

const CSS = `
    :host { all: initial; }
    .root {
      --accent: #2563eb;
      position: fixed; bottom: 20px; right: 20px; z-index: 2147483647;
      font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
      color: #111827; -webkit-font-smoothing: antialiased;
    }
    .root.left { right: auto; left: 20px; }
    *, *::before, *::after { box-sizing: border-box; }
    [hidden] { display: none !important; }
    button, textarea { font: inherit; color: inherit; }
    .bubble {
      width: 56px; height: 56px; border-radius: 50%; border: none; cursor: pointer;
      background: var(--accent); color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25);
      display: flex; align-items: center; justify-content: center; position: relative;
    }
    .bubble:focus-visible, .send:focus-visible, .close:focus-visible { outline: 3px solid #93c5fd; outline-offset: 2px; }
    .bubble svg { width: 28px; height: 28px; fill: currentColor; }
    .badge {
      position: absolute; top: -4px; right: -4px; min-width: 20px; height: 20px; padding: 0 5px;
      border-radius: 10px; background: #dc2626; color: #fff; font-size: 12px; line-height: 20px;
      text-align: center; font-weight: 600;
    }
    .panel {
      position: absolute; bottom: 72px; right: 0; width: 360px; height: 520px;
      max-width: calc(100vw - 40px); max-height: calc(100vh - 112px);
      display: flex; flex-direction: column; background: #fff; border-radius: 12px; overflow: hidden;
      box-shadow: 0 12px 40px rgba(0,0,0,.25);
    }
    .root.left .panel { right: auto; left: 0; }
    .header { background: var(--accent); color: #fff; padding: 12px 14px; display: flex; align-items: flex-start; gap: 8px; }
    .heading { flex: 1; min-width: 0; }
    .title { margin: 0; font-size: 16px; font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
    .status { font-size: 12px; opacity: .95; display: flex; align-items: center; gap: 6px; }
    .dot { width: 8px; height: 8px; border-radius: 50%; background: #9ca3af; }
    .status[data-online="true"] .dot { background: #4ade80; }
    .close { background: transparent; border: none; color: #fff; font-size: 22px; line-height: 1; cursor: pointer; padding: 0 4px; }
    .conn { font-size: 12px; padding: 4px 14px; background: #fef3c7; color: #92400e; }
    .conn[data-state="open"] { background: #ecfdf5; color: #065f46; }
    .conn[data-state="refused"] { background: #fee2e2; color: #991b1b; }
    .list { flex: 1; overflow-y: auto; margin: 0; padding: 12px; list-style: none; background: #f9fafb; }
    .msg { display: flex; flex-direction: column; margin: 0 0 10px; max-width: 85%; }
    .msg[data-role="visitor"] { margin-left: auto; align-items: flex-end; }
    .msg .who { font-size: 11px; color: #6b7280; margin: 0 4px 2px; }
    .msg .body {
      padding: 8px 11px; border-radius: 12px; background: #fff; border: 1px solid #e5e7eb;
      white-space: pre-wrap; overflow-wrap: anywhere;
    }
    .msg[data-role="visitor"] .body { background: var(--accent); color: #fff; border-color: transparent; }
    .msg .meta { font-size: 11px; color: #6b7280; margin: 2px 4px 0; }
    .msg[data-pending="true"] .body { opacity: .7; }
    .msg[data-failed="true"] .meta { color: #b91c1c; }
    .note { text-align: center; font-size: 12px; color: #6b7280; margin: 6px 0 12px; }
    .seen { text-align: right; font-size: 11px; color: #6b7280; margin: -6px 4px 10px; }
    .empty { text-align: center; font-size: 13px; color: #6b7280; margin-top: 24px; }
    .typing { font-size: 12px; font-style: italic; color: #6b7280; padding: 2px 14px 4px; background: #f9fafb; }
    .composer { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e5e7eb; background: #fff; }
    .input {
      flex: 1; resize: none; height: 40px; max-height: 120px; padding: 9px 10px;
      border: 1px solid #d1d5db; border-radius: 8px; background: #fff; outline: none;
    }
    .input:focus { border-color: var(--accent); box-shadow: 0 0 0 2px rgba(37,99,235,.2); }
    .send { border: none; border-radius: 8px; padding: 0 14px; background: var(--accent); color: #fff; cursor: pointer; font-weight: 600; }
    .send:disabled { opacity: .5; cursor: default; }
    .offline { padding: 10px 12px; border-top: 1px solid #e5e7eb; background: #fffbeb; }
    .offline-note { margin: 0 0 6px; font-size: 13px; color: #92400e; }
    .offline[data-state="sent"] .offline-note { color: #065f46; margin: 0; }
    .offline-fields { display: flex; gap: 6px; }
    .offline-email { flex: 1; min-width: 0; padding: 6px 8px; border: 1px solid #d1d5db; border-radius: 6px; font: inherit; }
    .offline-submit { border: none; border-radius: 6px; padding: 0 10px; background: var(--accent); color: #fff; cursor: pointer; font: inherit; }
    .offline-submit:disabled { opacity: .5; cursor: default; }
    .sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
    @media (max-width: 480px) {
      .panel { position: fixed; inset: 0; width: auto; height: auto; max-width: none; max-height: none; border-radius: 0; }
      /* The full-screen panel has its own close button; the bubble would cover Send. */
      .root.open .bubble { display: none; }
    }
  `;

let ui = null;

function buildUi() {
  // A custom tag name is unlikely to be matched by site selectors such as `div { ... }`.
  const host = document.createElement('chat-widget');
  host.setAttribute('data-testid', 'chat-widget');
  // Inline !important beats any site rule aimed at the host; CSSOM writes are CSP-safe.
  host.style.setProperty('all', 'initial', 'important');
  host.style.setProperty('display', 'block', 'important');
  // Open mode so tests (and assistive tooling) can reach in; isolation is the same either way.
  const shadow = host.attachShadow({ mode: 'open' });

  if (shadow.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === 'function' && 'replaceSync' in CSSStyleSheet.prototype) {
    // Constructed sheets are not inline <style>, so a site CSP without 'unsafe-inline' still allows them.
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS + attachments.css);
    shadow.adoptedStyleSheets = [sheet];
  } else {
    shadow.appendChild(h('style', { text: CSS + attachments.css }));
  }

  const panelId = 'chat-widget-panel';
  const inputId = 'chat-widget-input';

  const badge = h('span', { class: 'badge', 'aria-hidden': 'true', hidden: true });
  const bubble = h('button', {
    type: 'button', class: 'bubble', 'data-testid': 'chat-bubble',
    'aria-label': t('widget.open'), 'aria-controls': panelId, 'aria-expanded': 'false',
    onclick: function () { panelOpen ? closePanel() : openPanel(); },
  }, [badge]);
  bubble.insertBefore(chatIcon('M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z'), badge);

  const status = h('div', { class: 'status', 'data-testid': 'chat-status', 'data-online': 'false' }, [
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('span', { class: 'status-text', text: t('widget.offline') }),
  ]);
  const conn = h('div', { class: 'conn', 'data-testid': 'chat-connection', role: 'status', 'aria-live': 'polite', 'data-state': 'connecting', text: t('widget.connecting') });
  const empty = h('li', { class: 'empty', text: t('widget.empty') });
  const list = h('ol', { class: 'list', 'data-testid': 'chat-messages', role: 'log', 'aria-live': 'polite', 'aria-label': t('widget.messages') }, [empty]);
  const input = h('textarea', {
    id: inputId, class: 'input', 'data-testid': 'chat-input', rows: '1', placeholder: t('widget.placeholder'),
    'aria-label': t('widget.message'), autocomplete: 'off',
  });
  const typing = h('div', { class: 'typing', 'data-testid': 'chat-typing', 'aria-live': 'polite', hidden: true });
  const sendButton = h('button', { type: 'submit', class: 'send', 'data-testid': 'chat-send', text: t('widget.send') });
  const form = h('form', { class: 'composer', 'aria-label': t('widget.compose') }, [attachments.button, attachments.input, input, sendButton]);
  const offline = buildOfflineForm();

  const panel = h('section', {
    id: panelId, class: 'panel', 'data-testid': 'chat-panel', role: 'dialog', 'aria-label': title, hidden: true,
  }, [
    h('div', { class: 'header' }, [
      h('div', { class: 'heading' }, [h('h2', { class: 'title', text: title }), status]),
      h('button', { type: 'button', class: 'close', 'aria-label': t('widget.close'), 'data-testid': 'chat-close', text: '×', onclick: closePanel }),
    ]),
    conn,
    list,
    typing,
    attachments.status,
    offline.box,
    form,
  ]);

  const root = h('div', { class: 'root' + (position === 'bottom-left' ? ' left' : '') }, [panel, bubble]);
  if (config.color) root.style.setProperty('--accent', String(config.color));
  shadow.appendChild(root);

  form.addEventListener('submit', function (e) { e.preventDefault(); submitInput(); });
  input.addEventListener('keydown', function (e) {
    // Enter sends, Shift+Enter is a newline; never interrupt an IME composition.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitInput(); }
  });
  panel.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') { closePanel(); bubble.focus(); }
  });
  input.addEventListener('input', onInputTyping);
  input.addEventListener('blur', stopTyping);

  document.body.appendChild(host);
  return { host, shadow, root, bubble, badge, panel, status, conn, list, empty, input, typing, offline };
}

function openPanel() {
  panelOpen = true;
  storageSet('sessionStorage', BASE_KEY + ':open', '1');
  if (!ui) return;
  ui.panel.hidden = false;
  ui.root.classList.add('open');
  ui.bubble.setAttribute('aria-expanded', 'true');
  ui.bubble.setAttribute('aria-label', t('widget.close'));
  unread = 0;
  renderBadge();
  scrollToEnd();
  ui.input.focus();
  scheduleRead();
}

function closePanel() {
  panelOpen = false;
  storageSet('sessionStorage', BASE_KEY + ':open', null);
  if (!ui) return;
  ui.panel.hidden = true;
  ui.root.classList.remove('open');
  ui.bubble.setAttribute('aria-expanded', 'false');
  renderBadge();
}

function renderBadge() {
  if (!ui) return;
  ui.badge.hidden = unread === 0;
  ui.badge.textContent = unread > 9 ? '9+' : String(unread);
  if (!panelOpen) ui.bubble.setAttribute('aria-label', unread ? t('widget.openUnread', { count: unread }) : t('widget.open'));
}

function renderStatus() {
  if (!ui) return;
  // Agents we cannot reach cannot answer: show Offline unless connected with someone online.
  const online = connection.state === 'open' && agentsOnline > 0;
  ui.status.setAttribute('data-online', String(online));
  ui.status.querySelector('.status-text').textContent = online ? t('widget.online') : t('widget.offline');
  renderOffline();
}

function setConnection(state, text) {
  connection = { state: state, text: text };
  if (ui) {
    ui.conn.setAttribute('data-state', state);
    ui.conn.textContent = text;
  }
  renderStatus();
  renderTransport();
}

function currentTransport() {
  return transport ? transport.kind : transportKind;
}

function renderTransport() {
  if (ui) ui.conn.setAttribute('data-transport', currentTransport());
}

function scrollToEnd() {
  if (ui) ui.list.scrollTop = ui.list.scrollHeight;
}

function nearBottom() {
  return !ui || ui.list.scrollHeight - ui.list.scrollTop - ui.list.clientHeight < 60;
}

// Order: conversations in the order first seen, then seq; notes close their conversation;
// unconfirmed sends always sit at the end, in the order typed.
function compareKeys(a, b) {
  return a[0] - b[0] || a[1] - b[1];
}

function placeInList(el, key) {
  el._chatKey = key;
  const list = ui.list;
  let after = list.lastElementChild;
  while (after && (!after._chatKey || compareKeys(after._chatKey, key) > 0)) {
    after = after.previousElementSibling;
  }
  const stick = nearBottom();
  if (after) after.after(el);
  else list.insertBefore(el, list.firstChild);
  ui.empty.hidden = true;
  if (stick) scrollToEnd();
}

function senderLabel(m) {
  if (m.sender && m.sender.role === 'visitor') return t('widget.you');
  return (m.sender && m.sender.name) || t('widget.agent');
}

// `attachment`: the message's file, shown above its text (the caption).
function messageElement(role, who, body, meta, attachment) {
  const metaEl = h('span', { class: 'meta', text: meta });
  const el = h('li', { class: 'msg', 'data-testid': 'chat-message', 'data-role': role }, [
    h('span', { class: 'who', text: who }),
    attachment
      ? h('div', { class: 'body' }, [attachments.view(attachment), body ? h('span', { class: 'caption', text: body }) : null])
      : h('div', { class: 'body', text: body }),
    metaEl,
  ]);
  el._meta = metaEl;
  return el;
}

function conversationIndex(cid) {
  let c = conversations.get(cid);
  if (!c) {
    c = { index: conversations.size, status: 'open', closedNoted: false, agentRead: 0, readSent: 0 };
    conversations.set(cid, c);
  }
  return c.index;
}
