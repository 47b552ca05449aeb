/*
 * Canned replies in the agent console (docs/http-api.md#canned-responses).
 *
 * Typing `/` at the start of the reply box offers the canned responses of the open
 * conversation's site whose shortcut starts with what follows (then those whose title contains
 * it); ArrowUp/ArrowDown choose, Enter or Tab insert, Escape closes. Inserting replaces the reply
 * box's text with the response's body, placeholders filled:
 *
 *   {{visitor.name}}, {{visitor.email}}  who the main site says the visitor is (`visitor` command)
 *   {{agent.name}}                       the signed-in agent's name
 *
 * A value that is unknown becomes empty, or the fallback written after `|`:
 * `{{visitor.name|there}}`. Other `{{…}}` are left as written.
 *
 * "Canned replies" in the conversation's actions opens a dialog to list, add, edit and delete
 * the site's responses. Responses are read and written over the HTTP API with the agent's token;
 * console.js hands over what this file needs with `chat-console:ready` (detail {request, token,
 * agent, open}) and tells which conversation is open with `chat-console:open` (detail {id, site}).
 * Everything is rendered with textContent.
 */
/* global chatElement */
(function () {
  'use strict';

  const t = window.ChatConsoleI18n.t; // ./language.js
  const h = chatElement; // ./shared/dom.js: data only ever becomes text
  const API = '/chat/api/canned-responses';
  const STALE_MS = 30000;
  const MAX_OFFERED = 8;

  const reply = document.getElementById('reply');
  const form = document.getElementById('reply-form');
  const actions = document.querySelector('.pane-head .actions');
  if (!reply || !form || !actions) return;

  let ctx = null; // { request, token, agent }
  let open = null; // { id, site }
  const bySite = new Map(); // site -> { at, list }
  let offered = [];
  let chosen = 0;

  document.addEventListener('chat-console:ready', function (e) { ctx = e.detail; });
  document.addEventListener('chat-console:open', function (e) {
    open = e.detail && e.detail.id ? { id: e.detail.id, site: e.detail.site || null } : null;
    closeMenu();
    if (open && open.site) load(open.site).catch(function () {});
  });
  document.addEventListener('chat-console:close', function () { open = null; closeMenu(); });

  function call(method, path, body) {
    if (!ctx) return Promise.reject(new Error(t('console.notConnected')));
    const headers = { Authorization: 'Bearer ' + ctx.token() };
    if (body) headers['Content-Type'] = 'application/json';
    return fetch(path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined, cache: 'no-store' })
      .then(function (res) {
        if (res.status === 204) return {};
        return res.json().catch(function () { return {}; }).then(function (json) {
          if (!res.ok) throw new Error(json.message || ('HTTP ' + res.status));
          return json;
        });
      });
  }

  function load(site, force) {
    const cached = bySite.get(site);
    if (cached && !force && Date.now() - cached.at < STALE_MS) return Promise.resolve(cached.list);
    return call('GET', API + '?site=' + encodeURIComponent(site)).then(function (json) {
      const list = Array.isArray(json.canned_responses) ? json.canned_responses : [];
      bySite.set(site, { at: Date.now(), list: list });
      return list;
    });
  }

  // ---------------------------------------------------------------------------------------------
  // The `/` menu

  const menu = h('ul', { class: 'canned-menu', role: 'listbox', 'data-testid': 'canned-menu', 'aria-label': t('canned.title') });
  menu.hidden = true;
  form.prepend(menu);

  function typedShortcut() {
    const m = /^\/([^\s/]*)$/.exec(reply.value);
    return m ? m[1].toLowerCase() : null;
  }

  function closeMenu() {
    menu.hidden = true;
    offered = [];
    reply.removeAttribute('aria-activedescendant');
  }

  function renderMenu() {
    menu.replaceChildren();
    offered.forEach(function (c, i) {
      const item = h('li', {
        id: 'canned-option-' + i, role: 'option', class: 'canned-option', 'data-testid': 'canned-option',
        'data-shortcut': c.shortcut, 'aria-selected': String(i === chosen),
      });
      item.append(h('span', { class: 'canned-shortcut' }, '/' + c.shortcut), h('span', { class: 'canned-title' }, c.title));
      item.addEventListener('mousedown', function (e) { e.preventDefault(); insert(c); });
      menu.append(item);
    });
    menu.hidden = offered.length === 0;
    if (offered.length) reply.setAttribute('aria-activedescendant', 'canned-option-' + chosen);
  }

  function offer() {
    const typed = typedShortcut();
    if (typed === null || !open || !open.site) { closeMenu(); return; }
    const site = open.site;
    load(site).then(function (list) {
      if (typedShortcut() !== typed || !open || open.site !== site) return;
      const first = list.filter(function (c) { return c.shortcut.startsWith(typed); });
      const then = list.filter(function (c) {
        return !c.shortcut.startsWith(typed) && typed && String(c.title).toLowerCase().includes(typed);
      });
      offered = first.concat(then).slice(0, MAX_OFFERED);
      chosen = 0;
      renderMenu();
    }, function (err) {
      console.warn('[chat-console] canned replies:', err.message);
      closeMenu();
    });
  }

  reply.addEventListener('input', offer);
  reply.addEventListener('blur', function () { setTimeout(closeMenu, 150); });

  // On the form, in the capture phase: before replies.js's own Enter (send) on the reply box.
  form.addEventListener('keydown', function (e) {
    if (menu.hidden || !offered.length || e.target !== reply) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      chosen = (chosen + (e.key === 'ArrowDown' ? 1 : offered.length - 1)) % offered.length;
      renderMenu();
    } else if ((e.key === 'Enter' && !e.shiftKey && !e.isComposing) || e.key === 'Tab') {
      insert(offered[chosen]);
    } else if (e.key === 'Escape') {
      closeMenu();
    } else {
      return;
    }
    e.preventDefault();
    e.stopPropagation();
  }, true);

  // Fills {{visitor.name}}, {{visitor.email}}, {{agent.name}}; `|fallback` when unknown.
  function fill(body, values) {
    return String(body).replace(/\{\{\s*(visitor\.name|visitor\.email|agent\.name)\s*(?:\|([^}]*))?\}\}/g, function (_, key, fallback) {
      const v = values[key];
      return v ? String(v) : (fallback || '').trim();
    });
  }

  function visitorProfile(conversationId) {
    if (!ctx || !conversationId) return Promise.resolve(null);
    return ctx.request('visitor', { conversation_id: conversationId }).then(function (ack) {
      return (ack.visitor && ack.visitor.profile) || null;
    }, function () { return null; });
  }

  function insert(canned) {
    closeMenu();
    const conversationId = open && open.id;
    const needsVisitor = /\{\{\s*visitor\./.test(canned.body);
    (needsVisitor ? visitorProfile(conversationId) : Promise.resolve(null)).then(function (profile) {
      if (!open || open.id !== conversationId) return;
      reply.value = fill(canned.body, {
        'visitor.name': profile && profile.name,
        'visitor.email': profile && profile.email,
        'agent.name': ctx && ctx.agent && ctx.agent.name,
      });
      reply.focus();
      reply.setSelectionRange(reply.value.length, reply.value.length);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Managing them

  const manageButton = h('button', { type: 'button', class: 'button', 'data-testid': 'canned-manage-button' }, t('canned.title'));
  actions.prepend(manageButton);

  const dialog = h('dialog', { class: 'canned-dialog', 'data-testid': 'canned-dialog', 'aria-labelledby': 'canned-dialog-title' });
  const title = h('h2', { id: 'canned-dialog-title' });
  const error = h('p', { class: 'error', role: 'alert', 'data-testid': 'canned-error' });
  const list = h('ul', { class: 'canned-list', 'data-testid': 'canned-list' });
  const editor = h('form', { class: 'canned-editor', 'data-testid': 'canned-editor' });
  const shortcutInput = h('input', { name: 'shortcut', required: '', maxlength: '32', pattern: '[a-z0-9_\\-]+', placeholder: t('canned.shortcutPlaceholder'), 'data-testid': 'canned-shortcut', autocomplete: 'off' });
  const titleInput = h('input', { name: 'title', required: '', maxlength: '100', placeholder: t('canned.titlePlaceholder'), 'data-testid': 'canned-title' });
  const bodyInput = h('textarea', { name: 'body', required: '', rows: '3', placeholder: t('canned.textPlaceholder'), 'data-testid': 'canned-body' });
  const save = h('button', { type: 'submit', class: 'button primary', 'data-testid': 'canned-save' }, t('canned.add'));
  const cancel = h('button', { type: 'button', class: 'button subtle', 'data-testid': 'canned-cancel-edit' }, t('canned.new'));
  const done = h('button', { type: 'button', class: 'button', 'data-testid': 'canned-done' }, t('canned.done'));
  const label = function (text, input) { const l = h('label', {}, text); l.append(input); return l; };
  editor.append(label(t('canned.shortcut'), shortcutInput), label(t('canned.titleLabel'), titleInput), label(t('canned.text'), bodyInput), h('div', { class: 'canned-buttons' }));
  editor.lastChild.append(save, cancel);
  dialog.append(title, error, list, editor, done);
  document.body.append(dialog);
  error.hidden = true;

  let editing = null; // id of the response in the editor, or null for a new one
  let site = null;

  function showError(text) { error.hidden = !text; error.textContent = text || ''; }

  function resetEditor() {
    editing = null;
    editor.reset();
    save.textContent = t('canned.add');
  }

  function renderList(items) {
    list.replaceChildren();
    for (const c of items) {
      const edit = h('button', { type: 'button', class: 'link-button', 'data-testid': 'canned-edit' }, t('canned.edit'));
      const remove = h('button', { type: 'button', class: 'link-button', 'data-testid': 'canned-delete' }, t('canned.delete'));
      edit.addEventListener('click', function () {
        editing = c.id;
        shortcutInput.value = c.shortcut;
        titleInput.value = c.title;
        bodyInput.value = c.body;
        save.textContent = t('canned.save');
        shortcutInput.focus();
      });
      remove.addEventListener('click', function () {
        call('DELETE', API + '/' + encodeURIComponent(c.id)).then(refresh, function (err) { showError(t('canned.deleteFailed', { reason: err.message })); });
      });
      const item = h('li', { class: 'canned-item', 'data-testid': 'canned-item', 'data-shortcut': c.shortcut });
      item.append(h('span', { class: 'canned-shortcut' }, '/' + c.shortcut), h('span', { class: 'canned-title' }, c.title),
        h('span', { class: 'canned-text' }, c.body), edit, remove);
      list.append(item);
    }
    if (!items.length) list.append(h('li', { class: 'empty' }, t('canned.none')));
  }

  function refresh() {
    if (!site) return Promise.resolve();
    return load(site, true).then(function (items) { showError(null); renderList(items); }, function (err) { showError(t('canned.loadFailed', { reason: err.message })); });
  }

  manageButton.addEventListener('click', function () {
    site = open && open.site;
    if (!site) return;
    title.textContent = t('canned.ofSite', { site: site });
    resetEditor();
    showError(null);
    renderList((bySite.get(site) || { list: [] }).list);
    refresh();
    if (typeof dialog.showModal === 'function') dialog.showModal(); else dialog.setAttribute('open', '');
  });
  done.addEventListener('click', function () { dialog.close(); });
  cancel.addEventListener('click', resetEditor);

  editor.addEventListener('submit', function (e) {
    e.preventDefault();
    const fields = { shortcut: shortcutInput.value.trim(), title: titleInput.value.trim(), body: bodyInput.value };
    const written = editing
      ? call('PUT', API + '/' + encodeURIComponent(editing), fields)
      : call('POST', API, Object.assign({ site: site }, fields));
    written.then(function () { resetEditor(); return refresh(); }, function (err) { showError(t('canned.saveFailed', { reason: err.message })); });
  });

  window.ChatCanned = { fill: fill }; // for tests and integrators
})();
