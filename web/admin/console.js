/*
 * Agent console, served at /chat/admin/: the conversation list, the open conversation and the
 * reply box, over the session of ./session.js (the agent JWT and the /ws-admin/ WebSocket of
 * docs/protocol.md). Plain ES2020, no build step. All data is rendered with textContent: message
 * bodies and names come from anonymous visitors.
 *
 * Its parts loaded before it (./session.js, ./read-receipts.js, ./transfer.js, ./replies.js,
 * ./attachments.js) are called from here, each once with what it needs of the console; those
 * loaded after it listen to its `chat-console:*` DOM events.
 */
/* global chatElement */
(function () {
  'use strict';

  const SELECTED_KEY = 'chat-admin-selected';
  const HISTORY_PAGE = 500;
  const LIST_LIMIT = 500;

  const I18n = window.ChatConsoleI18n; // ./language.js
  const t = I18n.t;
  const Alerts = window.ChatConsoleAlerts; // ./alerts.js
  const Sites = window.ChatSiteSwitcher; // ./site-switcher.js
  const Attachments = window.ChatConsoleAttachments; // ./attachments.js
  const h = chatElement; // ./shared/dom.js: data only ever becomes text

  const $ = function (id) { return document.getElementById(id); };
  const els = {
    filter: $('filter'),
    list: $('conversations'),
    noConversations: $('no-conversations'),
    paneEmpty: $('pane-empty'),
    pane: $('pane'),
    paneTitle: $('pane-title'),
    paneMeta: $('pane-meta'),
    paneError: $('pane-error'),
    assign: $('assign'),
    transfer: $('transfer'),
    noteToggle: $('note-toggle'),
    close: $('close'),
    messages: $('messages'),
    replyForm: $('reply-form'),
    reply: $('reply'),
  };

  const session = window.ChatConsoleSession({ welcome: onWelcome, event: onEvent, gone: onSocketGone }); // ./session.js
  const request = session.request;
  const storageGet = session.storageGet;
  const storageSet = session.storageSet;
  let me = null; // { id, name } from welcome
  let relistTimer = null;

  const conversations = new Map(); // id -> conversation (+ preview)
  let selectedId = null;
  let paneMessages = new Map(); // seq -> message, for the selected conversation only
  const UNREAD_CAP = 100; // the gateway stops counting here (docs/protocol.md, "Read receipts")
  const receipts = window.ChatConsoleReadReceipts({ // ./read-receipts.js
    request: request,
    welcomed: session.welcomed,
    me: function () { return me; },
    selectedId: function () { return selectedId; },
    conversations: conversations,
    paneMessages: function () { return paneMessages; },
    contiguousSeq: contiguousSeq,
    unreadOf: unreadOf,
    renderList: renderList,
    scheduleRelist: scheduleRelist,
    messages: els.messages,
    logFailure: logFailure,
  });
  const transfer = window.ChatConsoleTransfer({ // ./transfer.js
    select: els.transfer,
    request: request,
    me: function () { return me; },
    selectedId: function () { return selectedId; },
    conversations: conversations,
    logFailure: logFailure,
    done: actionDone,
    failed: function (text) { showPaneError(text); renderPane(); },
  });
  const replies = window.ChatConsoleReplies({ // ./replies.js
    form: els.replyForm,
    input: els.reply,
    noteToggle: els.noteToggle,
    messages: els.messages,
    request: request,
    welcomed: session.welcomed,
    selectedId: function () { return selectedId; },
    messageElement: messageElement,
    placeMessage: placeMessage,
    onMessage: onMessage,
    attachmentLabel: function (attachment) { return Attachments.label(attachment); },
  });

  // ---------------------------------------------------------------------------------------------
  // Helpers

  function formatTime(iso) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? I18n.time(d) : I18n.shortDateTime(d);
  }

  function timeOf(iso) {
    const t = Date.parse(iso);
    return isNaN(t) ? 0 : t;
  }

  function visitorLabel(conv) {
    const id = conv && conv.visitor_id ? String(conv.visitor_id) : '';
    return t('console.visitorLabel', { id: id ? id.slice(0, 8) : '?' });
  }

  function unreadOf(conv) {
    return Math.max(0, Math.min(UNREAD_CAP, conv.unread || 0));
  }
  function unreadText(n) {
    return n >= UNREAD_CAP ? '99+' : String(n);
  }

  // ---------------------------------------------------------------------------------------------
  // Session (./session.js)

  function onSocketGone() {
    replies.disconnected();
    renderPane();
  }

  function onEvent(f) {
    if (f.type === 'message') return onMessage(f.message, true);
    if (f.type === 'conversation') return onConversation(f.conversation);
    if (f.type === 'read') return receipts.onRead(f);
    // Unknown events (newer gateway) are ignored on purpose; `typing` and `agent_status` are
    // ./signals.js's.
  }

  function onWelcome(f, agent) {
    me = agent;
    Sites.welcome(f.sites, me.id);

    // Replay what the open pane missed while we were away; the list is simply fetched again.
    // Always resume (with no cursor when no pane is open): until its first resume the gateway
    // holds live messages back, so that replayed and live ones arrive in order.
    const cursors = {};
    if (selectedId) cursors[selectedId] = contiguousSeq();
    request('resume', { cursors: cursors }).catch(logFailure('resume'));
    refreshList().then(function () {
      const remembered = storageGet(SELECTED_KEY);
      if (!selectedId && remembered && conversations.has(remembered)) openConversation(remembered);
    });
    replies.flush();
    // What ./canned.js, ./search.js and ./attachments.js need: this socket, the token (for the
    // HTTP API), who we are, a way to open a conversation that may not be in the list, the
    // upload limits and a way to send an uploaded file.
    document.dispatchEvent(new CustomEvent('chat-console:ready', {
      detail: {
        request: request,
        token: session.token,
        agent: me,
        open: function (conv) { onConversation(conv); openConversation(conv.id); },
        uploads: f.uploads || null,
        send: replies.queue,
      },
    }));
  }

  function logFailure(what) {
    return function (err) {
      if (err.code !== 'disconnected') console.warn('[chat-console]', what, 'failed:', err.code, err.message);
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Conversation list

  function refreshList() {
    return request('list_conversations', Object.assign({ limit: LIST_LIMIT }, Sites.filter())).then(function (ack) {
      Sites.seen(ack.conversations || []);
      const states = (ack.read_state && typeof ack.read_state === 'object') ? ack.read_state : {};
      const fresh = new Map();
      for (const c of ack.conversations || []) {
        const old = conversations.get(c.id);
        // The server's read state; a field it leaves out is 0.
        const state = states[c.id] || {};
        fresh.set(c.id, Object.assign({ preview: old ? old.preview : null }, c, {
          unread: state.unread || 0,
          read_seq: state.read_seq || 0,
          visitor_read_seq: Math.max(state.visitor_read_seq || 0, old ? old.visitor_read_seq || 0 : 0),
        }));
      }
      // Keep the open conversation even if it fell off the list window.
      if (selectedId && !fresh.has(selectedId) && conversations.has(selectedId)) fresh.set(selectedId, conversations.get(selectedId));
      conversations.clear();
      for (const [id, c] of fresh) conversations.set(id, c);
      renderList();
      renderPane();
      receipts.renderSeen();
      receipts.schedule();
    }, logFailure('list_conversations'));
  }

  // A message for a conversation we have never heard of (its `conversation` event raced us or
  // fell outside the list window): fetch the list once things settle.
  function scheduleRelist() {
    clearTimeout(relistTimer);
    relistTimer = setTimeout(refreshList, 300);
  }

  function onConversation(conv) {
    if (!conv || typeof conv.id !== 'string') return;
    const old = conversations.get(conv.id);
    // Read state is not in `conversation` events: keep what the list and live events said.
    // `waiting` is sent only when true: an update without it clears the mark.
    conversations.set(conv.id, Object.assign({}, old || {}, conv, { waiting: conv.waiting === true, preview: old ? old.preview : null }));
    if (!old && session.welcomed() && Sites.shows(conv)) {
      Alerts.conversation(conv, visitorLabel(conv), function () { openConversation(conv.id); });
    }
    renderList();
    if (conv.id === selectedId) renderPane();
  }

  function sortedConversations() {
    const filter = els.filter.value;
    return Array.from(conversations.values())
      .filter(function (c) { return Sites.shows(c) && (filter === 'all' || c.status === filter || c.id === selectedId); })
      .sort(function (a, b) { return timeOf(b.updated_at) - timeOf(a.updated_at); });
  }

  function renderList() {
    // Rebuilding is simplest; keep keyboard focus on the same conversation across rebuilds.
    const focusedId = document.activeElement && document.activeElement.getAttribute('data-conversation-id');
    const items = sortedConversations();
    const frag = document.createDocumentFragment();
    let unreadCount = 0;
    for (const c of items) {
      const count = unreadOf(c);
      const unread = count > 0;
      if (unread) unreadCount++;
      const assignee = c.assignee ? (me && c.assignee.id === me.id ? t('console.you') : c.assignee.name || c.assignee.id) : t('console.unassigned');
      const button = h('button', {
        type: 'button', class: 'conversation', 'data-testid': 'conversation-item', 'data-conversation-id': c.id,
        'data-status': c.status, 'data-unread': String(unread), 'data-unread-count': String(count),
        'data-waiting': String(Boolean(c.waiting)), 'aria-current': c.id === selectedId ? 'true' : null,
        onclick: function () { openConversation(c.id); },
      }, [
        h('div', { class: 'row' }, [
          h('span', { class: 'name', text: visitorLabel(c) }),
          unread ? h('span', { class: 'unread', 'data-testid': 'conversation-unread', 'aria-label': t('console.unreadCount', { count: unreadText(count) }), text: unreadText(count) }) : null,
          c.waiting ? h('span', { class: 'badge waiting', 'data-testid': 'conversation-waiting', title: t('console.waitingHint'), text: t('console.waiting') }) : null,
          h('span', { class: 'badge', 'data-status': c.status, text: c.status === 'closed' ? t('console.status.closed') : t('console.status.open') }),
        ]),
        Sites.spansSeveral() ? h('div', { class: 'site', 'data-testid': 'conversation-site', text: c.site_id || '' }) : null,
        h('div', { class: 'row' }, [
          h('span', { class: 'who', 'data-testid': 'conversation-assignee', text: assignee }),
          h('span', { class: 'time', text: formatTime(c.updated_at) }),
        ]),
        c.preview ? h('div', { class: 'preview', text: c.preview.body }) : null,
      ]);
      frag.appendChild(h('li', null, [button]));
    }
    els.list.replaceChildren(frag);
    els.noConversations.hidden = items.length > 0;
    Alerts.listed(unreadCount);
    if (focusedId) {
      const again = els.list.querySelector('[data-conversation-id="' + CSS.escape(focusedId) + '"]');
      if (again) again.focus();
    }
  }

  els.filter.addEventListener('change', renderList);

  // Another site chosen (./site-switcher.js): the open conversation goes if it is not of it.
  document.addEventListener('chat-console:site', function () {
    const open = selectedId ? conversations.get(selectedId) : null;
    if (open && !Sites.shows(open)) {
      selectedId = null;
      storageSet(SELECTED_KEY, null);
      els.messages.replaceChildren();
      renderPane();
      announce('close', null);
    }
    renderList();
    refreshList();
  });

  // ---------------------------------------------------------------------------------------------
  // Conversation pane

  function openConversation(id) {
    selectedId = id;
    storageSet(SELECTED_KEY, id);
    paneMessages = new Map();
    els.messages.replaceChildren();
    showPaneError(null);
    replies.showIn(id); // replies typed here earlier and still unconfirmed stay visible
    renderList();
    renderPane();
    loadHistory(id, 0);
    transfer.load(id);
    announce('open', id);
    els.reply.focus();
  }

  // Tells ./visitor-panel.js which conversation is open, and that something happened in it.
  function announce(what, id) {
    const conv = id ? conversations.get(id) : null;
    const detail = what === 'open' ? { id: id, request: request, site: conv ? conv.site_id : null } : { id: id };
    document.dispatchEvent(new CustomEvent('chat-console:' + what, { detail: detail }));
  }

  function loadHistory(id, afterSeq) {
    request('history', { conversation_id: id, after_seq: afterSeq, limit: HISTORY_PAGE }).then(function (ack) {
      if (selectedId !== id) return;
      const list = ack.messages || [];
      for (const m of list) addPaneMessage(m);
      // A page is cut by count or by bytes (CHAT_WS_MAX_FRAME_BYTES); `more` says another
      // follows.
      const more = typeof ack.more === 'boolean' ? ack.more : list.length >= HISTORY_PAGE;
      if (more && list.length) loadHistory(id, list[list.length - 1].seq);
    }, function (err) {
      // A disconnect is healed by `resume` after reconnecting; anything else the agent should see.
      if (err.code !== 'disconnected' && selectedId === id) showPaneError(t('console.historyFailed', { reason: err.message || err.code }));
    });
  }

  function renderPane() {
    const conv = selectedId ? conversations.get(selectedId) : null;
    els.pane.hidden = !selectedId;
    els.paneEmpty.hidden = Boolean(selectedId);
    if (!selectedId) return;
    els.paneTitle.textContent = conv ? visitorLabel(conv) : t('console.conversation');
    const parts = [];
    if (conv) {
      parts.push(conv.status === 'closed' ? t('console.closed') : t('console.open'));
      if (conv.waiting) parts.push(t('console.waitingMeta'));
      parts.push(conv.assignee ? t('console.assignedTo', { name: me && conv.assignee.id === me.id ? t('console.youLower') : conv.assignee.name || conv.assignee.id }) : t('console.unassigned'));
      if (conv.created_at) parts.push(t('console.started', { time: formatTime(conv.created_at) }));
    }
    els.paneMeta.textContent = parts.join(' · ');
    const mine = Boolean(conv && conv.assignee && me && conv.assignee.id === me.id);
    els.assign.textContent = mine ? t('console.assignedToYou') : t('console.assignToMe');
    els.assign.disabled = !session.welcomed() || mine || !conv;
    els.transfer.disabled = !session.welcomed() || !conv;
    els.close.disabled = !session.welcomed() || !conv || conv.status === 'closed';
  }

  function showPaneError(text) {
    els.paneError.hidden = !text;
    els.paneError.textContent = text || '';
  }

  function placeMessage(el, key) {
    el._key = key;
    const list = els.messages;
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    let after = list.lastElementChild;
    while (after && after._key > key) after = after.previousElementSibling;
    if (after) after.after(el);
    else list.prepend(el);
    if (stick) list.scrollTop = list.scrollHeight;
  }

  // `attachment`: an element of ./attachments.js showing the message's file, above its text.
  function messageElement(role, who, body, meta, kind, attachment) {
    const metaEl = h('span', { class: 'meta', text: meta });
    const el = h('li', { class: 'message', 'data-testid': 'message', 'data-role': role, 'data-kind': kind || 'text' }, [
      h('span', { class: 'who', text: who }),
      attachment
        ? h('div', { class: 'body', 'data-testid': 'message-body' }, [attachment, body ? h('span', { class: 'caption', text: body }) : null])
        : h('div', { class: 'body', 'data-testid': 'message-body', text: body }),
      metaEl,
    ]);
    el._meta = metaEl;
    return el;
  }

  function addPaneMessage(m) {
    if (paneMessages.has(m.seq)) return; // the same message arrives as ack, event and replay
    paneMessages.set(m.seq, m);
    const role = (m.sender && m.sender.role) || 'visitor';
    let who;
    if (role === 'visitor') who = t('console.visitor');
    else if (me && m.sender.id === me.id) who = t('console.you');
    else who = m.sender.name || m.sender.id || t('console.agentName');
    const kind = m.kind === 'note' || m.kind === 'system' ? m.kind : 'text';
    const el = messageElement(role, who, String(m.body), formatTime(m.created_at), kind, m.attachment ? Attachments.view(m.attachment) : null);
    el.setAttribute('data-seq', String(m.seq));
    placeMessage(el, m.seq);
    if (role === 'agent') receipts.renderSeen();
    receipts.schedule();
  }

  // Highest seq up to which the pane holds every message: resuming from it leaves no hole.
  function contiguousSeq() {
    let seq = 0;
    while (paneMessages.has(seq + 1)) seq++;
    return seq;
  }

  // `live`: a `message` event (not an ack, a replay or history), which may call for an alert.
  function onMessage(m, live) {
    if (!m || typeof m.conversation_id !== 'string' || typeof m.seq !== 'number') return;
    const known = conversations.get(m.conversation_id);
    const isNew = !known || (known.last_seq || 0) < m.seq; // not seen by this console before
    if (m.client_msg_id) replies.confirm(m.client_msg_id);
    let conv = conversations.get(m.conversation_id);
    if (!conv) {
      conv = { id: m.conversation_id, status: 'open', assignee: null, last_seq: 0, updated_at: m.created_at, preview: null, unread: 0, read_seq: 0, visitor_read_seq: 0 };
      conversations.set(conv.id, conv);
      scheduleRelist();
    }
    // A visitor message this agent has not seen yet adds to the server's count until the next
    // list; the open conversation, while the tab is visible, is read at once instead.
    const fresh = m.seq > (conv.last_seq || 0) && m.seq > (conv.read_seq || 0);
    const seenNow = m.conversation_id === selectedId && document.visibilityState !== 'hidden';
    if (fresh && !seenNow && m.sender && m.sender.role === 'visitor') conv.unread = Math.min(UNREAD_CAP, (conv.unread || 0) + 1);
    conv.last_seq = Math.max(conv.last_seq || 0, m.seq);
    if (timeOf(m.created_at) > timeOf(conv.updated_at)) conv.updated_at = m.created_at;
    if (!conv.preview || conv.preview.seq < m.seq) conv.preview = { seq: m.seq, body: String(m.body) || (m.attachment ? String(m.attachment.name) : '') };
    if (m.conversation_id === selectedId) {
      addPaneMessage(m);
      announce('activity', m.conversation_id);
    }
    renderList();
    if (live && isNew && m.sender && m.sender.role === 'visitor' && Sites.shows(conv)) {
      Alerts.message(m, visitorLabel(conv), function () { openConversation(m.conversation_id); });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Actions (the transfer menu is ./transfer.js's, the reply box ./replies.js's)

  // An action on the open conversation went through: the gateway's answer carries it as it is now.
  function actionDone(ack) {
    showPaneError(null);
    if (ack.conversation) onConversation(ack.conversation);
  }

  els.assign.addEventListener('click', function () {
    const id = selectedId;
    els.assign.disabled = true;
    request('assign', { conversation_id: id }).then(actionDone, function (err) {
      showPaneError(t('console.assignFailed', { reason: err.message || err.code }));
      renderPane();
    });
  });

  els.close.addEventListener('click', function () {
    const id = selectedId;
    els.close.disabled = true;
    request('close', { conversation_id: id }).then(actionDone, function (err) {
      showPaneError(t('console.closeFailed', { reason: err.message || err.code }));
      renderPane();
    });
  });

  // ---------------------------------------------------------------------------------------------
  // Start

  // Only once every deferred script of the page has run (DOMContentLoaded follows them): the
  // files after this one (./canned.js, ./search.js, ./signals.js, ...) listen for
  // `chat-console:ready`, `chat-console:open` and `chat-console:event`, and a welcome that
  // arrived while one of them was still loading (slow network, busy machine) was an event it
  // never heard, leaving its part of the console dead until the next reconnect.
  if (document.readyState === 'complete') session.start();
  else document.addEventListener('DOMContentLoaded', session.start, { once: true });
})();
