/*
 * The agent console's language: the one chosen in the selector (kept in
 * localStorage["chat-admin-locale"]), else the first the browser prefers that we have (English or
 * Simplified Chinese, ../i18n/), else English. Translates the page's static text (elements with
 * `data-i18n="key"`, attributes named in `data-i18n-attr="attr:key;…"`) and exposes
 * window.ChatConsoleI18n = { locale, t, time, shortDateTime, dateTime, size } (web/i18n/i18n.js) for
 * the console's other scripts. Changing the language reloads the page (the token stays in
 * sessionStorage), which is simpler than re-rendering everything.
 */
/* global chatI18n, ChatLocales */
window.ChatConsoleI18n = (function () {
  'use strict';

  const KEY = 'chat-admin-locale';
  let chosen = null;
  try { chosen = localStorage.getItem(KEY); } catch (_) { /* no storage: the browser decides */ }
  const i18n = chatI18n(chosen, navigator.languages || [navigator.language]);

  document.documentElement.lang = i18n.locale;
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = i18n.t(el.getAttribute('data-i18n'));
  for (const el of document.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.getAttribute('data-i18n-attr').split(';')) {
      const at = pair.indexOf(':');
      if (at > 0) el.setAttribute(pair.slice(0, at).trim(), i18n.t(pair.slice(at + 1).trim()));
    }
  }
  document.title = i18n.t('console.title');

  const select = document.getElementById('language');
  if (select) {
    for (const code of Object.keys(ChatLocales).sort()) {
      const o = document.createElement('option');
      o.value = code;
      o.textContent = ChatLocales[code]['language.name'] || code;
      select.appendChild(o);
    }
    select.value = i18n.locale;
    select.addEventListener('change', function () {
      try { localStorage.setItem(KEY, select.value); } catch (_) { return; }
      location.reload();
    });
  }
  return i18n;
})();
