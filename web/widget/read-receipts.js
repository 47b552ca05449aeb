/*
 * Read receipts in the visitor widget (docs/protocol.md, "Read receipts"): `read` for what the
 * visitor has seen, and "Seen" under what an agent has read.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

// ---------------------------------------------------------------------------------------------
// Read receipts (docs/protocol.md, "Read receipts"): `read` tells the gateway how far the
// visitor has seen the current conversation (panel open, tab visible), at most every
// READ_INTERVAL_MS (the gateway allows 2 a second); a `read` event from an agent puts "Seen"
// under the newest visitor message it covers.

const READ_INTERVAL_MS = 600;
let readTimer = null;
let lastReadAt = 0;
let seenEl = null;

function scheduleRead() {
  if (readTimer || !panelOpen || !welcomed || document.visibilityState === 'hidden') return;
  const wait = Math.max(0, lastReadAt + READ_INTERVAL_MS - Date.now());
  readTimer = setTimeout(sendRead, wait);
}

function sendRead() {
  readTimer = null;
  const cid = currentConversationId;
  const c = cid ? conversations.get(cid) : null;
  if (!c || !transport || !welcomed || !panelOpen || document.visibilityState === 'hidden') return;
  const seq = contiguousSeq(cid);
  if (seq <= c.readSent) return;
  // Only what others wrote is worth telling: the visitor's own messages need no receipt.
  let news = false;
  for (let s = c.readSent + 1; s <= seq && !news; s++) {
    const m = messages.get(cid + ':' + s);
    news = !m || !m.sender || m.sender.role !== 'visitor';
  }
  if (!news) return;
  c.readSent = seq;
  lastReadAt = Date.now();
  request({ type: 'read', conversation_id: cid, seq: seq }, { kind: 'read', cid: cid });
}

function onRead(f) {
  if (typeof f.conversation_id !== 'string' || typeof f.seq !== 'number') return;
  const c = conversations.get(f.conversation_id);
  if (!c) return;
  if (f.role === 'agent') {
    c.agentRead = Math.max(c.agentRead, f.seq);
    renderSeen();
  } else if (f.role === 'visitor') {
    c.readSent = Math.max(c.readSent, f.seq); // read in another tab
  }
}

// One "Seen" line, under the newest visitor message of the current conversation an agent has
// read.
function renderSeen() {
  if (!ui) return;
  const cid = currentConversationId;
  const c = cid ? conversations.get(cid) : null;
  let best = 0;
  if (c && c.agentRead) {
    for (const m of messages.values()) {
      if (m.conversation_id === cid && m.seq <= c.agentRead && m.seq > best && m.sender && m.sender.role === 'visitor') best = m.seq;
    }
  }
  if (!best) {
    if (seenEl) { seenEl.remove(); seenEl = null; }
    return;
  }
  if (!seenEl) seenEl = h('li', { class: 'seen', 'data-testid': 'chat-seen', text: t('widget.seen') });
  seenEl.setAttribute('data-seq', String(best));
  seenEl.remove();
  placeInList(seenEl, [c.index, best + 0.5]);
}
