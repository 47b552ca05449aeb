/*
 * Chat widget for customer sites. Embedded with two tags:
 *
 *   <script>window.ChatWidgetConfig = { serverBaseUrl: "https://example.com" }</script>
 *   <script src="https://example.com/chat/widget/widget.js" async></script>
 *
 * It speaks the protocol of docs/protocol.md over one of two transports with the same frames: a raw
 * WebSocket on /ws-visitor/ (the default) or HTTP long-polling on /ws-visitor/poll (when WebSockets
 * are blocked on the way, or the gateway's rollout prefers it for this visitor).
 * Plain ES2020 with no dependencies and no build step: it runs on pages we do not control, so it
 * touches nothing global except one host element and `window.ChatWidget`, keeps its UI in a
 * shadow root (site CSS cannot reach in, ours cannot leak out) and renders data with textContent.
 *
 * Config (window.ChatWidgetConfig): serverBaseUrl, site ("default"), title, position
 * ("bottom-right" | "bottom-left"), color (accent CSS colour), transports (["websocket", "polling"]:
 * the transports allowed, WebSocket first; ["polling"] forces long-polling, ["websocket"] disables
 * the fallback), attributes (a flat object of strings, numbers and booleans shown to agents with the
 * page the visitor is on, e.g. { plan: "pro", orderCount: 3 }: at most 20, keys [A-Za-z0-9_.-]),
 * user ({ id, name, email, hash }: the main site's logged-in user, hash computed on its server;
 * docs/identity.md), locale ("en" | "zh-CN"; default: the browser's languages), offlineEmail
 * (true: when no agent is online, ask for an email address to answer at; false: don't).
 *
 * Every string shown comes from web/i18n/<locale>.js through t(): the gateway serves those
 * tables and web/i18n/i18n.js in front of the widget (gateway/src/assets.rs), with
 * ./attachments.js (images and files: the paperclip, uploads, how they show).
 *
 * The widget itself is ./state.js, ./identity.js, ./ui.js, ./offline.js, ./messages.js,
 * ./read-receipts.js, ./transports.js, ./connection.js, ./typing.js, ./visitor-context.js and this
 * file, which starts it and is window.ChatWidget. The gateway serves them in that order in one
 * strict function scope of their own: what one file declares the others use, and none of it
 * becomes a global of the customer's page. That function returns at once when the page already
 * has a widget (the loader is served under three paths; a page that includes two gets one).
 */

// ---------------------------------------------------------------------------------------------
// Start

function start() {
  ui = buildUi();
  renderStatus();
  setConnection(connection.state, connection.text);
  if (panelOpen || storageGet('sessionStorage', BASE_KEY + ':open')) openPanel();
  chooseInitialTransport();
  watchNavigation();
  connect();
  // The network coming back is a better signal than any backoff timer.
  window.addEventListener('online', function () { if (!transport) { backoff.reset(); connect(); } });
  document.addEventListener('visibilitychange', scheduleRead);
}

window.ChatWidget = {
  version: 1,
  open: function () { openPanel(); },
  close: function () { closePanel(); },
  // A snapshot, for tests and debugging; mutating it changes nothing.
  get state() {
    return {
      connection: connection.state,
      connectionText: connection.text,
      agentsOnline: agentsOnline,
      visitorId: visitorId,
      conversationId: currentConversationId,
      messages: messages.size,
      pending: pending.size,
      open: panelOpen,
      serverBaseUrl: baseUrl,
      site: site,
      transport: currentTransport(),
      user: user ? { id: user.id, verified: Boolean(user.hash) } : null,
      refused: refused,
      agentsTyping: Array.from(agentsTyping.values(), function (a) { return a.name; }),
      locale: i18n.locale,
      contact: contactState,
    };
  },
};

if (document.body) start();
else document.addEventListener('DOMContentLoaded', start, { once: true });
