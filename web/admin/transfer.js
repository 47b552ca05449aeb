/*
 * The agent console's **Transfer to…** menu (web/README.md, "Console: internal notes and
 * transfer"): the agents of the open conversation's site (`list_agents`, with the status of those
 * connected; oneself left out) and **Unassigned**; choosing one sends `assign` with `agent_id` (or
 * `unassign`). The `system` message the gateway then writes shows like any other message.
 *
 * Loaded before console.js, which calls it once:
 *
 *   ChatConsoleTransfer({ select, request, me(), selectedId(), conversations, logFailure,
 *     done(ack), failed(text) })
 *   returns { load(conversationId) }: fills the menu for the conversation just opened
 */
/* global chatElement */
window.ChatConsoleTransfer = function (opts) {
  'use strict';

  const t = window.ChatConsoleI18n.t; // ./language.js
  const select = opts.select;
  const request = opts.request;
  const conversations = opts.conversations;
  const h = chatElement; // ./shared/dom.js
  const logFailure = opts.logFailure;

  // An agent status (`online`, `away`, `offline`) in the console's language.
  function statusText(status) {
    if (status === 'away') return t('console.agentStatus.away');
    if (status === 'offline') return t('console.agentStatus.offline');
    return t('console.agentStatus.online');
  }

  // Transfer: the agents of the conversation's site (list_agents), and "Unassigned".
  function loadAgents(id) {
    const conv = conversations.get(id);
    const me = opts.me();
    const fields = conv && conv.site_id ? { site: conv.site_id } : {};
    request('list_agents', fields).then(function (ack) {
      if (opts.selectedId() !== id) return;
      const options = [h('option', { value: '', text: t('console.transferTo') })];
      // Each as an `agent_status` event shows them: { agent: { id, name }, status, connected }.
      for (const view of ack.agents || []) {
        const a = view && view.agent;
        if (!a || typeof a.id !== 'string' || (me && a.id === me.id)) continue;
        const name = a.name || a.id;
        const label = view.connected ? t('console.agentWithStatus', { name: name, status: statusText(view.status) }) : name;
        options.push(h('option', { value: 'agent:' + a.id, 'data-testid': 'transfer-option', text: label }));
      }
      options.push(h('option', { value: 'nobody', text: t('console.unassigned') }));
      select.replaceChildren.apply(select, options);
    }, logFailure('list_agents'));
  }

  select.addEventListener('change', function () {
    const id = opts.selectedId();
    const choice = select.value;
    select.value = '';
    if (!id || !choice) return;
    const done = opts.done;
    const failed = function (err) {
      opts.failed(t('console.transferFailed', { reason: err.message || err.code }));
    };
    if (choice === 'nobody') request('unassign', { conversation_id: id }).then(done, failed);
    else request('assign', { conversation_id: id, agent_id: choice.slice('agent:'.length) }).then(done, failed);
  });

  return { load: loadAgents };
};
