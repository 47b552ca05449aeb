/*
 * Live signals in the agent console, never stored (docs/protocol.md, "Typing indicators" and
 * "Agent status"):
 *
 * - typing: while the agent types a reply, `typing` goes out at most every TYPING_RESEND_MS,
 *   and `false` once they send, leave the input, switch conversation or stop for TYPING_IDLE_MS.
 *   A visitor typing shows as "typing…" on their conversation in the list and under the open
 *   conversation's messages, as does a colleague typing there; each clears on `false`, on a
 *   message from the same sender, or when the event's `expires_in_ms` runs out.
 * - status: the selector in the top bar sets the agent's status (`set_status`: online, away,
 *   offline; every session of the agent shares it, and only online agents count in the
 *   visitors' *Online*); below the conversation list, the colleagues connected now with theirs
 *   (`list_agents` after each welcome, then `agent_status` events).
 *
 * session.js hands every server event to it as a `chat-console:event` DOM event (detail
 * {event, request}); console.js says which conversation is open with `chat-console:open` / `:close`.
 * Everything is rendered with textContent.
 */
/* global chatElement */
(function () {
  'use strict';

  const t = window.ChatConsoleI18n.t; // ./language.js
  const h = chatElement; // ./shared/dom.js: data only ever becomes text
  const TYPING_RESEND_MS = 2500;
  const TYPING_IDLE_MS = 4000;
  const TYPING_DEFAULT_MS = 6000;
  const TYPING_MAX_SHOWN_MS = 30000;

  const $ = function (id) { return document.getElementById(id); };
  const statusSelect = $('agent-status');
  const typingLine = $('typing');
  const reply = $('reply');
  const replyForm = $('reply-form');
  const list = $('conversations');
  const agentList = $('agents');
  if (!statusSelect || !typingLine || !reply || !list || !agentList) return;

  let request = null; // the console's, as handed with its latest event
  let me = null; // our agent id
  let selectedId = null;
  let typingIn = null; // the conversation our last `typing: true` named; null while not typing
  let typingSentAt = 0;
  let idleTimer = null;
  const typing = new Map(); // conversation id -> Map(sender key -> { role, name, timer })
  const agents = new Map(); // agent id -> agent_status view

  function ask(type, fields) {
    if (!request) return Promise.reject({ code: 'disconnected' });
    return request(type, fields);
  }

  // ---------------------------------------------------------------------------------------------
  // Events from session.js and console.js

  document.addEventListener('chat-console:event', function (e) {
    const f = e.detail && e.detail.event;
    if (!f) return;
    request = e.detail.request;
    if (f.type === 'welcome') onWelcome(f);
    else if (f.type === 'typing') onTyping(f);
    else if (f.type === 'agent_status') onAgentStatus(f);
    else if (f.type === 'message' && f.message && f.message.sender) {
      clearTyping(f.message.conversation_id, senderKey(f.message.sender));
    }
  });

  document.addEventListener('chat-console:open', function (e) {
    if (typingIn && typingIn !== e.detail.id) stopTyping();
    selectedId = e.detail.id;
    renderTyping();
  });
  document.addEventListener('chat-console:close', function () {
    stopTyping();
    selectedId = null;
    renderTyping();
  });

  function onWelcome(f) {
    me = f.agent && f.agent.id ? String(f.agent.id) : null;
    typingIn = null;
    typingSentAt = 0;
    showStatus(typeof f.status === 'string' ? f.status : 'online');
    statusSelect.hidden = false;
    // session.js marks the session welcomed once this event is handled: ask right after.
    Promise.resolve().then(refreshAgents);
  }

  // ---------------------------------------------------------------------------------------------
  // Our status and our colleagues'

  function showStatus(status) {
    statusSelect.value = status;
    statusSelect.setAttribute('data-status', status);
  }

  statusSelect.addEventListener('change', function () {
    const wanted = statusSelect.value;
    statusSelect.setAttribute('data-status', wanted);
    ask('set_status', { status: wanted }).then(function (ack) {
      if (ack.agent_status) onAgentStatus(ack.agent_status);
    }, function (err) {
      console.warn('[chat-console] set_status failed:', err.code, err.message);
      const mine = me && agents.get(me);
      showStatus(mine ? mine.status : 'online');
    });
  });

  function refreshAgents() {
    ask('list_agents', {}).then(function (ack) {
      agents.clear();
      for (const view of ack.agents || []) if (view && view.agent) agents.set(String(view.agent.id), view);
      renderAgents();
    }, function (err) {
      if (err.code !== 'disconnected') console.warn('[chat-console] list_agents failed:', err.code, err.message);
    });
  }

  function onAgentStatus(view) {
    if (!view || !view.agent || typeof view.agent.id !== 'string') return;
    if (view.connected === false) agents.delete(view.agent.id);
    else agents.set(view.agent.id, view);
    if (view.agent.id === me && typeof view.status === 'string') showStatus(view.status);
    renderAgents();
  }

  // An agent status (`online`, `away`, `offline`) in the console's language.
  function statusText(status) {
    if (status === 'away') return t('console.agentStatus.away');
    if (status === 'offline') return t('console.agentStatus.offline');
    return t('console.agentStatus.online');
  }

  function renderAgents() {
    const sorted = Array.from(agents.values()).sort(function (a, b) {
      return String(a.agent.name).localeCompare(String(b.agent.name));
    });
    const frag = document.createDocumentFragment();
    for (const view of sorted) {
      const li = h('li', { 'data-testid': 'agent-item', 'data-agent-id': view.agent.id, 'data-status': view.status });
      li.append(h('span', { class: 'dot', 'aria-hidden': 'true' }));
      const own = view.agent.name || view.agent.id;
      const name = view.agent.id === me ? t('console.agentYou', { name: own }) : own;
      li.append(h('span', { class: 'agent-name' }, name));
      li.append(h('span', { class: 'agent-state', 'data-testid': 'agent-state' }, statusText(view.status)));
      frag.append(li);
    }
    agentList.replaceChildren(frag);
  }

  // ---------------------------------------------------------------------------------------------
  // Typing: ours

  function sendTyping(cid, on) {
    ask('typing', { conversation_id: cid, typing: on }).catch(function (err) {
      if (err.code !== 'disconnected') console.warn('[chat-console] typing failed:', err.code, err.message);
    });
  }

  function stopTyping() {
    clearTimeout(idleTimer);
    idleTimer = null;
    if (typingIn) sendTyping(typingIn, false);
    typingIn = null;
    typingSentAt = 0;
  }

  reply.addEventListener('input', function () {
    clearTimeout(idleTimer);
    // An internal note is for colleagues: the visitor must not see "typing…" for it.
    const note = document.getElementById('note-toggle');
    if (!selectedId || !reply.value.trim() || (note && note.checked)) { stopTyping(); return; }
    if (typingIn !== selectedId || Date.now() - typingSentAt >= TYPING_RESEND_MS) {
      typingIn = selectedId;
      typingSentAt = Date.now();
      sendTyping(selectedId, true);
    }
    idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  });
  reply.addEventListener('blur', stopTyping);
  reply.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) stopTyping();
  });
  if (replyForm) replyForm.addEventListener('submit', stopTyping);

  // ---------------------------------------------------------------------------------------------
  // Typing: theirs

  function senderKey(sender) {
    return String(sender.role) + ':' + String(sender.id);
  }

  function onTyping(f) {
    const s = f.sender;
    if (!s || typeof f.conversation_id !== 'string' || (s.role === 'agent' && s.id === me)) return;
    const key = senderKey(s);
    clearTyping(f.conversation_id, key, true);
    if (f.typing === true) {
      const ms = typeof f.expires_in_ms === 'number' && f.expires_in_ms > 0 ? Math.min(f.expires_in_ms, TYPING_MAX_SHOWN_MS) : TYPING_DEFAULT_MS;
      let who = typing.get(f.conversation_id);
      if (!who) typing.set(f.conversation_id, who = new Map());
      who.set(key, {
        role: s.role,
        name: s.role === 'visitor' ? t('console.visitor') : String(s.name || s.id),
        timer: setTimeout(function () { clearTyping(f.conversation_id, key); }, ms),
      });
    }
    renderTyping();
  }

  function clearTyping(cid, key, quiet) {
    const who = typing.get(cid);
    const typist = who && who.get(key);
    if (!typist) return;
    clearTimeout(typist.timer);
    who.delete(key);
    if (!who.size) typing.delete(cid);
    if (!quiet) renderTyping();
  }

  function renderTyping() {
    const who = selectedId ? typing.get(selectedId) : null;
    const names = who ? Array.from(who.values(), function (typist) { return typist.name; }) : [];
    typingLine.hidden = names.length === 0;
    typingLine.textContent = names.length === 0 ? ''
      : names.length > 1 ? t('console.typingMany', { names: names.join(t('console.listSeparator')) })
        : t('console.typingOne', { name: names[0] });
    markList();
  }

  // "typing…" on the conversations whose visitor types; console.js rebuilds the list, so the
  // marks are put back after each rebuild.
  function markList() {
    for (const button of list.querySelectorAll('[data-conversation-id]')) {
      const who = typing.get(button.getAttribute('data-conversation-id'));
      const visitorTyping = Boolean(who && Array.from(who.values()).some(function (typist) { return typist.role === 'visitor'; }));
      const mark = button.querySelector('.typing-mark');
      button.setAttribute('data-typing', String(visitorTyping));
      if (visitorTyping && !mark) button.append(h('span', { class: 'typing-mark', 'data-testid': 'conversation-typing' }, t('console.typingMark')));
      else if (!visitorTyping && mark) mark.remove();
    }
  }
  new MutationObserver(markList).observe(list, { childList: true });
})();
