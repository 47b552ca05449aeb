/*
 * The visitor widget's messages: each committed message shown once whatever brought it, the seq
 * numbers taken by agents' notes, and the visitor's sends, pending until acknowledged.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

// ---------------------------------------------------------------------------------------------
// Messages

// Adds a committed message once, wherever it came from (ack, live event, replay, history).
function addMessage(m, live) {
  if (!m || typeof m.conversation_id !== 'string' || typeof m.seq !== 'number') return;
  const idx = conversationIndex(m.conversation_id);
  if (m.client_msg_id && pending.has(m.client_msg_id)) {
    // Our own send, confirmed via a live event or a replay after its ack was lost.
    const p = pending.get(m.client_msg_id);
    pending.delete(m.client_msg_id);
    if (p.el) p.el.remove();
  }
  const key = m.conversation_id + ':' + m.seq;
  if (messages.has(key)) return;
  messages.set(key, m);
  if (!currentConversationId || conversations.get(currentConversationId).index < idx) {
    currentConversationId = m.conversation_id;
  }
  const role = (m.sender && m.sender.role) || 'agent';
  const el = m.kind === 'system'
    ? h('li', { class: 'note', 'data-testid': 'chat-system', text: String(m.body) })
    : messageElement(role, senderLabel(m), String(m.body), formatTime(m.created_at), m.attachment);
  el.setAttribute('data-seq', String(m.seq));
  el.setAttribute('data-conversation-id', m.conversation_id);
  placeInList(el, [idx, m.seq]);
  if (role === 'agent' && m.sender && agentsTyping.has(m.sender.id)) clearAgentTyping(m.sender.id);
  if (live && role !== 'visitor' && !panelOpen) {
    unread++;
    renderBadge();
  }
  if (role === 'visitor' && m.conversation_id === currentConversationId) renderSeen();
  scheduleRead();
}

// Highest seq up to which we hold every message (or know it hidden): resuming from it can
// never leave a hole.
function contiguousSeq(cid) {
  let seq = 0;
  while (messages.has(cid + ':' + (seq + 1)) || hidden.has(cid + ':' + (seq + 1))) seq++;
  return seq;
}

// Numbers between two messages with no message between them were taken by notes.
function markHidden(cid, after, before) {
  for (let seq = after + 1; seq < before; seq++) hidden.add(cid + ':' + seq);
}

// A message event of this session: a gap since the previous one (or since the resume
// cursor) is notes.
function onStreamedMessage(m) {
  if (!m || typeof m.conversation_id !== 'string' || typeof m.seq !== 'number') return;
  const last = streamLast.get(m.conversation_id);
  if (typeof last === 'number' && m.seq > last + 1) markHidden(m.conversation_id, last, m.seq);
  if (typeof last !== 'number' || m.seq > last) streamLast.set(m.conversation_id, m.seq);
  addMessage(m, true);
}

function noteConversation(conv) {
  if (!conv || typeof conv.id !== 'string') return;
  const idx = conversationIndex(conv.id);
  const c = conversations.get(conv.id);
  c.status = conv.status;
  if (conv.status === 'closed' && !c.closedNoted) {
    c.closedNoted = true;
    const el = h('li', { class: 'note', 'data-testid': 'chat-note', text: t('widget.closedNote') });
    placeInList(el, [idx, Number.MAX_SAFE_INTEGER]);
  }
}

function submitInput() {
  const body = ui.input.value;
  if (!body.trim()) return;
  ui.input.value = '';
  stopTyping();
  queueSend(body, null);
}

// Shows the message as sending and sends it once connected; `attachment`: an uploaded file.
function queueSend(body, attachment) {
  const clientMsgId = randomId('w-');
  const el = messageElement('visitor', t('widget.you'), body, t('widget.sending'), attachment);
  el.setAttribute('data-pending', 'true');
  pending.set(clientMsgId, { body: body, attachment: attachment, el: el, inFlight: false, failed: false });
  placeInList(el, [Number.MAX_SAFE_INTEGER, ++typedSeq]);
  scrollToEnd();
  flushPending();
}

function flushPending() {
  if (!transport || !welcomed) return;
  for (const [clientMsgId, p] of pending) {
    if (p.inFlight || p.failed) continue;
    p.inFlight = true;
    // No conversation_id: the gateway routes to the visitor's open conversation, creating one
    // if the previous was closed.
    const frame = { type: 'send', client_msg_id: clientMsgId, body: p.body };
    if (p.attachment) frame.attachment_id = p.attachment.id;
    request(frame, { kind: 'send', clientMsgId: clientMsgId });
  }
}

function onSendFailed(clientMsgId, err) {
  const p = pending.get(clientMsgId);
  if (!p) return;
  p.inFlight = false;
  if (err.code === 'unavailable' || err.code === 'internal') {
    // Nothing was written: retrying with the same client_msg_id is safe and cannot duplicate.
    p.el._meta.textContent = t('widget.retrying');
    setTimeout(flushPending, 2000);
    return;
  }
  p.failed = true;
  p.el.setAttribute('data-failed', 'true');
  p.el._meta.textContent = t('widget.notSent', { reason: err.message || err.code || 'error' });
}
