/*
 * Typing indicators in the visitor widget (docs/protocol.md, "Typing indicators"): the visitor's
 * `typing`, and the agents typing shown under the messages.
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

// ---------------------------------------------------------------------------------------------
// Typing indicators (docs/protocol.md, "Typing indicators"). While the visitor types, `typing`
// goes out at most every TYPING_RESEND_MS (the gateway allows 2 a second), and `false` once
// they send, leave the input, or stop for TYPING_IDLE_MS. An agent's typing shows until their
// `false`, their next message, or the event's expiry, whichever comes first.

const TYPING_RESEND_MS = 2500;
const TYPING_IDLE_MS = 4000;
const TYPING_MAX_SHOWN_MS = 30000;
let typingSentAt = 0; // when our last `typing: true` went out; 0 while we are not typing
let typingIdleTimer = null;
const agentsTyping = new Map(); // agent id -> { name, timer }

// Only into an open conversation: before the first message there is nobody to tell.
function canSignalTyping() {
  const c = currentConversationId ? conversations.get(currentConversationId) : null;
  return Boolean(transport && welcomed && c && c.status === 'open');
}

function sendTyping(on) {
  typingSentAt = on ? Date.now() : 0;
  if (canSignalTyping()) request({ type: 'typing', conversation_id: currentConversationId, typing: on });
}

function onInputTyping() {
  clearTimeout(typingIdleTimer);
  if (!ui.input.value.trim()) { stopTyping(); return; }
  if (Date.now() - typingSentAt >= TYPING_RESEND_MS) sendTyping(true);
  typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(typingIdleTimer);
  typingIdleTimer = null;
  if (typingSentAt) sendTyping(false);
}

function onTypingEvent(f) {
  const s = f.sender;
  if (!s || s.role !== 'agent' || typeof s.id !== 'string' || f.conversation_id !== currentConversationId) return;
  clearAgentTyping(s.id);
  if (f.typing === true) {
    const ms = typeof f.expires_in_ms === 'number' && f.expires_in_ms > 0 ? Math.min(f.expires_in_ms, TYPING_MAX_SHOWN_MS) : 6000;
    const name = typeof s.name === 'string' && s.name ? s.name : t('widget.agent');
    agentsTyping.set(s.id, { name: name, timer: setTimeout(function () { clearAgentTyping(s.id); }, ms) });
  }
  renderTyping();
}

function clearAgentTyping(id) {
  const typist = agentsTyping.get(id);
  if (!typist) return;
  clearTimeout(typist.timer);
  agentsTyping.delete(id);
  renderTyping();
}

function renderTyping() {
  if (!ui) return;
  const names = Array.from(agentsTyping.values(), function (typist) { return typist.name; });
  ui.typing.hidden = names.length === 0;
  ui.typing.textContent = names.length === 0 ? ''
    : names.length > 1 ? t('widget.typingMany', { names: names.join(t('widget.listSeparator')) })
      : t('widget.typingOne', { name: names[0] });
}
