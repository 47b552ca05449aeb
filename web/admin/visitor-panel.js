/*
 * Visitor panel of the agent console: beside the open conversation, who the visitor is and where
 * they are now (page, title, referrer, language, time zone, browser, address and country, the
 * site's attributes), read with the `visitor` command (docs/protocol.md).
 *
 * console.js tells it, with DOM events on `document`, which conversation is open
 * (`chat-console:open`, detail {id, request}) and that something happened in it
 * (`chat-console:activity`, detail {id}); it re-reads the context then, and every
 * REFRESH_MS while the page is visible, so a visitor's navigation shows within seconds without
 * a message. Everything is rendered with textContent; links only for http(s) addresses.
 *
 * Above the context, who the main site says the visitor is (`profile`: name, email, user id,
 * docs/identity.md), marked "verified" when the gateway checked the main site's hash and
 * "unverified" when anyone could have typed it.
 */
/* global chatElement */
(function () {
  'use strict';

  const REFRESH_MS = 3000;
  const I18n = window.ChatConsoleI18n; // ./language.js
  const t = I18n.t;
  const h = chatElement; // ./shared/dom.js: data only ever becomes text
  const panel = document.getElementById('visitor-panel');
  if (!panel) return;

  let current = null; // { id, request }
  let timer = null;
  let inFlight = false;

  function link(url) {
    if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) return document.createTextNode(String(url || ''));
    const a = h('a', { href: url, target: '_blank', rel: 'noopener noreferrer nofollow' });
    a.textContent = url;
    return a;
  }

  function row(list, label, value, testid) {
    if (value === undefined || value === null || value === '') return;
    const dd = h('dd', testid ? { 'data-testid': testid } : {});
    dd.append(value instanceof Node ? value : document.createTextNode(String(value)));
    const dt = h('dt');
    dt.textContent = label;
    list.append(dt, dd);
  }

  function when(iso) {
    return I18n.dateTime(iso);
  }

  // The main site's user, if it named one: verified (its hash checked) or not.
  function profileOf(visitor) {
    const p = visitor && visitor.profile;
    if (!p || typeof p !== 'object') return null;
    const box = h('div', { class: 'visitor-profile', 'data-testid': 'visitor-profile' });
    const verified = p.verified === true;
    const mark = h('span', { class: 'identity-mark', 'data-testid': 'visitor-verified', 'data-verified': String(verified) });
    mark.textContent = verified ? t('panel.verified') : t('panel.unverified');
    mark.title = verified ? t('panel.verifiedHint') : t('panel.unverifiedHint');
    const list = h('dl', { class: 'visitor-facts' });
    row(list, t('panel.name'), p.name, 'visitor-name');
    row(list, t('panel.email'), p.email, 'visitor-email');
    row(list, t('panel.userId'), p.user_id, 'visitor-user-id');
    box.append(mark, list);
    return box;
  }

  function render(visitor) {
    const title = h('h3');
    title.textContent = t('panel.title');
    const list = h('dl', { class: 'visitor-facts' });
    const profile = profileOf(visitor);
    const head = profile ? [title, profile] : [title];
    const c = visitor && visitor.context;
    if (!c) {
      const empty = h('p', { class: 'empty', 'data-testid': 'visitor-empty' });
      empty.textContent = t('panel.noPage');
      panel.replaceChildren(...head, empty);
      return;
    }
    row(list, t('panel.page'), c.title, 'visitor-title');
    row(list, t('panel.url'), c.url ? link(c.url) : null, 'visitor-url');
    row(list, t('panel.referrer'), c.referrer ? link(c.referrer) : null, 'visitor-referrer');
    row(list, t('panel.language'), c.language, 'visitor-language');
    row(list, t('panel.timeZone'), c.time_zone, 'visitor-time-zone');
    row(list, t('panel.address'), c.ip ? c.ip + (c.country ? ' (' + c.country + ')' : '') : null, 'visitor-address');
    row(list, t('panel.browser'), c.user_agent, 'visitor-user-agent');
    const attributes = c.attributes || {};
    for (const key of Object.keys(attributes).sort()) row(list, key, attributes[key], 'visitor-attribute');
    row(list, t('panel.firstSeen'), visitor.first_seen_at ? when(visitor.first_seen_at) : null);
    row(list, t('panel.updated'), visitor.updated_at ? when(visitor.updated_at) : null, 'visitor-updated');
    panel.replaceChildren(...head, list);
  }

  function refresh() {
    const target = current;
    if (!target || inFlight) return;
    inFlight = true;
    target.request('visitor', { conversation_id: target.id }).then(function (ack) {
      if (current === target) render(ack.visitor);
    }, function (err) {
      if (err && err.code !== 'disconnected' && current === target) {
        const p = h('p', { class: 'error' });
        p.textContent = t('panel.failed', { reason: err.message || err.code });
        panel.replaceChildren(p);
      }
    }).finally(function () { inFlight = false; });
  }

  function schedule() {
    clearInterval(timer);
    timer = setInterval(function () {
      if (document.visibilityState === 'visible') refresh();
    }, REFRESH_MS);
  }

  document.addEventListener('chat-console:open', function (e) {
    const d = e.detail || {};
    if (typeof d.id !== 'string' || typeof d.request !== 'function') return;
    current = { id: d.id, request: d.request };
    panel.hidden = false;
    panel.replaceChildren();
    refresh();
    schedule();
  });

  // No conversation open any more (another site chosen).
  document.addEventListener('chat-console:close', function () {
    current = null;
    clearInterval(timer);
    panel.hidden = true;
    panel.replaceChildren();
  });

  document.addEventListener('chat-console:activity', function (e) {
    if (current && e.detail && e.detail.id === current.id) refresh();
  });
})();
