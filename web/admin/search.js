/*
 * Conversation search in the agent console: a search box above the conversation list. Typing
 * (after a pause) or Enter runs `search_conversations` (docs/protocol.md#search) over the
 * console's socket, for the site the switcher shows (all of the agent's sites otherwise); the
 * results replace the list until the box is emptied or Escape is pressed. A result shows the
 * matching message's snippet (or that the visitor's name or email matched); choosing it opens
 * the conversation. "More results" asks for the next page.
 *
 * console.js hands over `request` and `open` with `chat-console:ready` (again after every
 * reconnect). A search the socket could not answer (sent while disconnected, or cut by a
 * reconnect: session.js rejects such requests with `disconnected`) says so and runs again once
 * the console is connected, rather than leaving the agent with a search that never answers.
 * Text only, via textContent.
 */
/* global chatElement */
(function () {
  'use strict';

  const I18n = window.ChatConsoleI18n; // ./language.js
  const t = I18n.t;
  const h = chatElement; // ./shared/dom.js: data only ever becomes text
  const PAUSE_MS = 350;
  const sidebarHead = document.querySelector('.sidebar-head');
  const conversationList = document.getElementById('conversations');
  const noConversations = document.getElementById('no-conversations');
  if (!sidebarHead || !conversationList) return;

  let ctx = null; // { request, open }
  let timer = null;
  let generation = 0;
  let shown = []; // results on screen
  let nextCursor = null;
  let lastQuery = '';
  let rerun = false; // the search on screen got no answer for want of a connection

  document.addEventListener('chat-console:ready', function (e) {
    ctx = e.detail;
    if (rerun) {
      rerun = false;
      if (input.value.trim() && !results.hidden) run(null);
    }
  });

  const form = h('form', { class: 'search', role: 'search', 'data-testid': 'search-form' });
  const input = h('input', {
    type: 'search', class: 'search-input', placeholder: t('search.placeholder'), maxlength: '200',
    'aria-label': t('search.label'), 'data-testid': 'search-input', autocomplete: 'off',
  });
  form.append(input);
  sidebarHead.after(form);

  const status = h('p', { class: 'search-status', role: 'status', 'data-testid': 'search-status' });
  const results = h('ul', { class: 'conversations search-results', 'data-testid': 'search-results' });
  const more = h('button', { type: 'button', class: 'button subtle search-more', 'data-testid': 'search-more' }, t('search.more'));
  status.hidden = true;
  results.hidden = true;
  more.hidden = true;
  conversationList.before(status, results, more);

  function showResults(on) {
    results.hidden = !on;
    status.hidden = !on;
    conversationList.hidden = on;
    if (noConversations) noConversations.hidden = on || conversationList.children.length > 0;
    if (!on) more.hidden = true;
  }

  function siteFilter() {
    const sites = window.ChatSiteSwitcher;
    return sites && typeof sites.filter === 'function' ? sites.filter() : {};
  }

  function when(iso) {
    return iso ? I18n.dateTime(iso) : '';
  }

  function render() {
    results.replaceChildren();
    for (const r of shown) {
      const c = r.conversation || {};
      const button = h('button', {
        type: 'button', class: 'conversation', 'data-testid': 'search-result', 'data-conversation-id': c.id || '',
      });
      const row = h('div', { class: 'row' });
      row.append(h('span', { class: 'name' }, c.site_id ? c.site_id : t('console.conversation')),
        h('span', { class: 'badge', 'data-status': c.status }, c.status === 'closed' ? t('console.status.closed') : c.status ? t('console.status.open') : ''));
      button.append(row,
        h('div', { class: 'preview', 'data-testid': 'search-snippet' }, r.snippet ? r.snippet : t('search.visitorMatches')),
        h('div', { class: 'time' }, when(c.updated_at)));
      button.addEventListener('click', function () { if (ctx && c.id) ctx.open(c); });
      const item = h('li');
      item.append(button);
      results.append(item);
    }
    status.textContent = shown.length ? t('search.found', { count: shown.length + (nextCursor ? '+' : '') }) : t('search.none');
    more.hidden = !nextCursor;
  }

  function run(cursor) {
    const query = input.value.trim();
    rerun = false;
    if (!query) { generation++; showResults(false); return; }
    const mine = ++generation;
    lastQuery = query;
    const fields = Object.assign({ query: query, limit: 20 }, siteFilter());
    if (cursor) fields.cursor = cursor;
    showResults(true);
    if (!cursor) status.textContent = t('search.searching');
    // Not connected yet: said below like a request refused for that, and run on `ready`.
    const asked = ctx ? ctx.request('search_conversations', fields)
      : Promise.reject({ code: 'disconnected', message: t('console.notConnected') });
    asked.then(function (ack) {
      if (mine !== generation) return;
      const page = Array.isArray(ack.results) ? ack.results : [];
      shown = cursor ? shown.concat(page) : page;
      nextCursor = typeof ack.next_cursor === 'string' ? ack.next_cursor : null;
      render();
    }, function (err) {
      if (mine !== generation) return;
      if (!cursor) { shown = []; nextCursor = null; results.replaceChildren(); }
      if (err.code === 'disconnected') rerun = true;
      status.textContent = err.code === 'rate_limited' ? t('search.tooFast')
        : t('search.failed', { reason: err.message || err.code });
    });
  }

  input.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(function () { run(null); }, PAUSE_MS);
  });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') { input.value = ''; clearTimeout(timer); run(null); }
  });
  form.addEventListener('submit', function (e) {
    e.preventDefault();
    clearTimeout(timer);
    run(null);
  });
  more.addEventListener('click', function () { if (nextCursor && input.value.trim() === lastQuery) run(nextCursor); });
  // Another site chosen: the results are of the old one.
  document.addEventListener('chat-console:site', function () {
    if (input.value.trim() && !results.hidden) run(null);
  });
})();
