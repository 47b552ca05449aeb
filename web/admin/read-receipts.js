/*
 * Read receipts in the agent console (docs/protocol.md, "Read receipts"): each conversation
 * carries, from the server, `unread` (visitor messages after this agent's position), `read_seq`
 * (this agent's position) and `visitor_read_seq` (the visitor's, shown as "Seen"). `read` goes out
 * when the open conversation is seen, at most every READ_INTERVAL_MS (the gateway allows 2 a
 * second); the agent's own `read` events (another tab) clear the badge here too.
 *
 * Loaded before console.js, which holds the conversations and the open pane and calls it once:
 *
 *   ChatConsoleReadReceipts({ request, welcomed(), me(), selectedId(), conversations,
 *     paneMessages(), contiguousSeq(), unreadOf(conv), renderList(), scheduleRelist(),
 *     messages, logFailure })
 *     messages: the open conversation's message list (where "Seen" goes)
 *   returns { schedule(), onRead(frame), renderSeen() }
 */
/* global chatElement */
window.ChatConsoleReadReceipts = function (opts) {
  'use strict';

  const t = window.ChatConsoleI18n.t; // ./language.js
  const request = opts.request;
  const conversations = opts.conversations;
  const messages = opts.messages;
  const h = chatElement; // ./shared/dom.js
  const logFailure = opts.logFailure;
  const READ_INTERVAL_MS = 600;
  let readTimer = null;
  let lastReadAt = 0;

  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible' && opts.selectedId()) scheduleRead();
  });

  // Tells the gateway this agent has seen the open conversation up to what the pane holds
  // without a hole; throttled (READ_INTERVAL_MS) and only when that moves this agent's position.
  function scheduleRead() {
    if (readTimer || !opts.selectedId() || document.visibilityState === 'hidden') return;
    const wait = Math.max(0, lastReadAt + READ_INTERVAL_MS - Date.now());
    readTimer = setTimeout(sendRead, wait);
  }

  function sendRead() {
    readTimer = null;
    const id = opts.selectedId();
    const conv = id ? conversations.get(id) : null;
    if (!conv || !opts.welcomed() || document.visibilityState === 'hidden') return;
    const seq = opts.contiguousSeq();
    if (seq <= (conv.read_seq || 0)) {
      // Nothing new to store (read already, in another tab perhaps): the pane, once loaded,
      // tells what is left unread.
      if (opts.unreadOf(conv) && opts.paneMessages().size) { conv.unread = unreadInPane(conv.read_seq || 0); opts.renderList(); }
      return;
    }
    // Agents' messages (this agent's replies) need no receipt: only the visitor's count.
    if (!unreadInRange(conv.read_seq || 0, seq)) return;
    lastReadAt = Date.now();
    request('read', { conversation_id: id, seq: seq }).then(function (ack) {
      if (typeof ack.read_seq === 'number') noteOwnRead(id, ack.read_seq);
    }, function (err) {
      if (err.code === 'rate_limited') setTimeout(scheduleRead, err.retry_after_ms || READ_INTERVAL_MS);
      else logFailure('read')(err);
    });
  }

  // Visitor messages after `seq` in the open pane (which holds the whole conversation).
  function unreadInPane(seq) {
    return unreadInRange(seq, Infinity);
  }

  // Visitor messages with a seq in (after, upto] in the open pane.
  function unreadInRange(after, upto) {
    let n = 0;
    for (const m of opts.paneMessages().values()) {
      if (m.seq > after && m.seq <= upto && m.sender && m.sender.role === 'visitor') n++;
    }
    return n;
  }

  function noteOwnRead(id, seq) {
    const conv = conversations.get(id);
    if (!conv || seq < (conv.read_seq || 0)) return;
    conv.read_seq = seq;
    if (id === opts.selectedId()) conv.unread = unreadInPane(seq);
    else if (seq >= (conv.last_seq || 0)) conv.unread = 0;
    else opts.scheduleRelist(); // read elsewhere part of the way: the server counts the rest
    opts.renderList();
  }

  function onRead(f) {
    if (typeof f.conversation_id !== 'string' || typeof f.seq !== 'number') return;
    if (f.role === 'agent') {
      // This agent's own read from another tab or device clears its badge here too.
      const me = opts.me();
      if (me && f.agent_id === me.id) noteOwnRead(f.conversation_id, f.seq);
      return;
    }
    if (f.role !== 'visitor') return;
    const conv = conversations.get(f.conversation_id);
    if (!conv) return;
    conv.visitor_read_seq = Math.max(conv.visitor_read_seq || 0, f.seq);
    if (f.conversation_id === opts.selectedId()) renderSeen();
  }

  // "Seen" under the newest agent message of the open conversation the visitor has read.
  function renderSeen() {
    const old = messages.querySelector('[data-testid="message-seen"]');
    const conv = opts.selectedId() ? conversations.get(opts.selectedId()) : null;
    const upto = conv ? conv.visitor_read_seq || 0 : 0;
    let target = null;
    let best = 0;
    for (const el of messages.querySelectorAll('[data-role="agent"][data-seq]')) {
      const seq = Number(el.getAttribute('data-seq'));
      if (seq <= upto && seq > best) { best = seq; target = el; }
    }
    if (old && old.parentElement === target) return;
    if (old) old.remove();
    if (target) target.appendChild(h('span', { class: 'seen', 'data-testid': 'message-seen', text: t('console.seen') }));
  }

  return { schedule: scheduleRead, onRead: onRead, renderSeen: renderSeen };
};
